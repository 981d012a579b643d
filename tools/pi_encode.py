"""The encode job `make pi-check` runs inside the arm64 root (and on the host to compare).

Standalone on purpose: inside the root only the installed `device` package, numpy, Pillow and
tflite-runtime exist. For each image it writes the container (`NAME.wl`) and the quantised
latents this side recovers from it (`NAME.npz`: float32 y_hat of each part the model codes,
from `Decoder.decode_latents`, keyed by `part_latents`).

Every input that could differ between runs is fixed: capture time, trap id, boxes from the
MegaDetector file. The analysis transform runs with the reference kernels here (a thin
adapter: the encoder's default is the fast kernels, which the determinism rule allows on the
trap), so that the containers themselves can be compared byte for byte across CPUs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CAPTURE_TIME = 1_700_000_000
TRAP_ID = 1


def part_latents(decoder, data: bytes) -> tuple[dict, int]:
    """({"<index>-<kind>": y_hat} of each part of container `data` that carries latents, in
    stream order; the count of bands decoded as the prior mean). An info bar is bilevel-coded
    (no latents; its bytes are compared with the container's)."""
    from device.codec.container import KIND_INFOBAR

    container = decoder.unpack(data)
    latents, missing = {}, 0
    for i, part in enumerate(container.parts):
        if part.kind == KIND_INFOBAR:
            continue
        if part.z is None:  # the part's z is lost: nothing of it decodes
            missing += part.band_count or 1
            continue
        y_hat, lost = decoder.decode_latents(container, part)
        latents[f"{i}-{part.name}"] = y_hat
        missing += len(lost)
    return latents, missing


def encode_all(images: Path, out: Path, bundle: Path, budget: int, size: int) -> list[Path]:
    import numpy as np

    from device.codec.bundle import ANALYSIS
    from device.codec.decoder import Decoder
    from device.codec.encoder import BudgetError, Encoder
    from device.codec.tflite import TFLiteModel
    from device.imageio import load_image
    from device.saliency import boxes_for, load_megadetector

    out.mkdir(parents=True, exist_ok=True)
    encoder = Encoder(bundle, size=size)
    encoder.analysis = TFLiteModel(encoder.bundle.file(ANALYSIS), reference=True)
    decoder = Decoder(encoder.bundle)
    results = images / "megadetector.json"
    detections = load_megadetector(results) if results.is_file() else {}
    written = []
    for path in sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png")):
        boxes = boxes_for(detections, path) if detections else None
        kwargs = dict(boxes=boxes, capture_time=CAPTURE_TIME, trap_id=TRAP_ID)
        try:
            result = encoder.encode(load_image(path), budget=budget, **kwargs)
        except BudgetError:  # as the trap service does: the smallest container it can make
            result = encoder.encode(load_image(path), step=encoder.max_step, **kwargs)
        target = out / f"{path.stem}.wl"
        target.write_bytes(result.data)
        latents, _ = part_latents(decoder, result.data)
        np.savez(target.with_suffix(".npz"), **latents)
        written.append(target)
        print(f"{path.name}: {len(result.data)} bytes", flush=True)
    return written


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    job = json.loads((here / "job.json").read_text())
    encode_all(here / "images", here / "out", here / "bundle", job["budget"], job["size"])
    sys.exit(0)

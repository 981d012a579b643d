"""The encode job `make pi-check` runs inside the arm64 root (and on the host to compare).

Standalone on purpose: inside the root only the installed `device` package, numpy, Pillow and
tflite-runtime exist. For each image it writes the container (`NAME.wl`) and the quantised
latents this side recovers from it (`NAME.npy`, float32 y_hat from `Decoder.decode_latents`).

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
        _, y_hat, _ = decoder.decode_latents(result.data)
        np.save(target.with_suffix(".npy"), y_hat)
        written.append(target)
        print(f"{path.name}: {len(result.data)} bytes", flush=True)
    return written


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    job = json.loads((here / "job.json").read_text())
    encode_all(here / "images", here / "out", here / "bundle", job["budget"], job["size"])
    sys.exit(0)

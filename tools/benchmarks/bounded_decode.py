"""Bounded decoding: the worst container the decoder accepts, and fuzzed containers by outcome.

    python -m tools.benchmarks.bounded_decode [--fuzz N]

Prints the time and peak memory (ru_maxrss) of decoding a container at every size limit of
docs/container.md (largest capture, largest coded part, no stream bytes: the cheapest file
that costs the base the most), then N mutated copies of a real two-part container sorted by
outcome (decoded, refused with ContainerError or another WildlinkError, anything else).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np

from device.codec.container import (
    KIND_CONTEXT,
    MAX_CAPTURE_PIXELS,
    MAX_CODED_PIXELS,
    Container,
    ContainerError,
    Part,
    pack,
)
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder
from device.errors import WildlinkError
from device.imageio import load_image
from device.saliency import boxes_for, load_megadetector

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "data"


def worst_case(decoder: Decoder) -> Container:
    side = int(np.sqrt(MAX_CODED_PIXELS))
    width = height = int(np.sqrt(MAX_CAPTURE_PIXELS))
    part = Part(KIND_CONTEXT, (0, 0, width, height), side, side, b"", ())
    return Container(decoder.bundle.model_id, width, height, (part,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=2000, help="mutated containers to try")
    args = parser.parse_args()
    decoder = Decoder()
    data = pack(worst_case(decoder))
    start = time.monotonic()
    try:
        result = decoder.decode(data)
        outcome = f"decoded to {result.image.shape[1]}x{result.image.shape[0]}"
    except WildlinkError as exc:
        outcome = f"refused: {exc}"
    seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"worst accepted container: {len(data)} bytes, capture {MAX_CAPTURE_PIXELS / 1e6:.0f} "
          f"Mpx, one part of {MAX_CODED_PIXELS / 1e6:.1f} Mpx coded: {outcome} in "
          f"{seconds:.1f} s, peak RSS {peak:.0f} MiB")
    image = load_image(SAMPLES / "camtrap" / "missouri.jpg")
    boxes = boxes_for(load_megadetector(SAMPLES / "camtrap" / "megadetector.json"), "missouri.jpg")
    valid = Encoder().encode(image, boxes=boxes, budget=2000, capture_time=1).data
    rng = np.random.default_rng(0)
    outcomes: Counter = Counter()
    slowest = 0.0
    for _ in range(args.fuzz):
        raw = bytearray(valid)
        for _ in range(int(rng.integers(1, 4))):
            kind = rng.integers(3)
            pos = int(rng.integers(len(raw))) if raw else 0
            if kind == 0 and raw:
                raw[pos] ^= int(rng.integers(1, 256))
            elif kind == 1:
                del raw[pos:]
            else:
                raw[pos:pos] = bytes([int(rng.integers(256))])
        start = time.monotonic()
        try:
            decoder.decode(bytes(raw))
            outcomes["decoded"] += 1
        except ContainerError:
            outcomes["ContainerError"] += 1
        except WildlinkError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - counting is the point
            outcomes[f"other: {type(exc).__name__}"] += 1
        slowest = max(slowest, time.monotonic() - start)
    print(f"fuzzed {args.fuzz} mutated copies of a {len(valid)}-byte two-part container: "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
          + f"; slowest {slowest:.2f} s")


if __name__ == "__main__":
    main()

"""The exact integer h_s against TFLite's reference kernels, over the eval sets (a long sweep).

tests/test_exact_int8.py proves the equality on the shipped samples in CI; this runs the same
comparison on every eval image and the site frames, through every shipped bundle's own g_a,
plus random z symbols, and reports the int8 outputs and scale indexes that differ (must be 0).

Run: `python -m tools.benchmarks.hs_exact [--data DIR] [--size 1024] [--random 200]
[--limit N]` (N images per set, evenly spaced; 0 = all).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m tools.benchmarks.hs_exact"


def _images(data: Path, limit: int = 0) -> dict[str, list[Path]]:
    suffixes = (".jpg", ".jpeg", ".png")
    sets = {}
    for name in ("kodak", "camtrap", "ena24"):
        folder = data / "eval" / name
        sets[name] = sorted(p for p in folder.glob("*") if p.suffix.lower() in suffixes)
    for site in sorted(p for p in (data / "sites").glob("*") if p.is_dir()):
        sets[f"sites/{site.name}"] = sorted(site.glob("*.jpg"))
    if limit:
        sets = {k: v[:: max(1, len(v) // limit)][:limit] for k, v in sets.items()}
    return {k: v for k, v in sets.items() if v}


def compare(bundle_dir: Path, paths: list[Path], size: int, random: int, seed: int = 19) -> dict:
    """Counts of frames, elements and differences between exact and reference h_s."""
    from device.codec import latents
    from device.codec.bundle import HYPER_SYNTHESIS
    from device.codec.encoder import Encoder
    from device.codec.tflite import TFLiteModel, quantize
    from device.imageio import load_image, resize, transmit_shape

    encoder = Encoder(bundle_dir)
    reference = TFLiteModel(encoder.bundle.file(HYPER_SYNTHESIS), reference=True)
    (detail,) = reference.inputs
    offset, lut = encoder.tables.z_offset, encoder.tables.lut
    counts = {"inputs": 0, "elements": 0, "int8_diff": 0, "index_diff": 0}

    def one(z_hat):
        fed = quantize(z_hat[None], detail)
        (ours,), (theirs,) = encoder.hyper.run_raw(fed), reference.run_raw(fed)
        counts["inputs"] += 1
        counts["elements"] += ours.size
        counts["int8_diff"] += int((ours != theirs).sum())
        ours_i, theirs_i = lut[ours.astype(int) + 128], lut[theirs.astype(int) + 128]
        counts["index_diff"] += int((ours_i != theirs_i).sum())

    for path in paths:
        image = load_image(path)
        _, z = encoder.analyse(resize(image, *transmit_shape(*image.shape[:2], size)))
        one(latents.z_hat(latents.z_symbols(z, offset), offset))
    rng = np.random.default_rng(seed)
    for _ in range(random):
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        spread = int(rng.choice([1, 3, 10, 60]))
        symbols = rng.integers(-spread, spread + 1, (h, w, encoder.bundle.hyper_channels))
        one(latents.z_hat(symbols, offset))
    return counts


def run(data: Path, size: int, random: int, limit: int = 0) -> str:
    from device.codec.bundle import Bundle

    models = ROOT / "device" / "models"
    sites = sorted(p.parent for p in models.glob("sites/*/*/manifest.json"))
    bundles = [models / "default", *sites]
    sets = _images(data, limit)
    if not sets:
        return f"No eval images or site frames under {data} (set --data or WILDLINK_DATA).\n"
    lines = [
        "### Exact integer h_s against TFLite's reference kernels",
        "",
        f"`{COMMAND} --size {size} --random {random} --limit {limit}` with data `{data}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: the default bundle on "
        f"{f'{limit} images of each' if limit else 'every'} eval set and site, each site example "
        "on its own site's, every bundle on "
        f"{random} random z grids (1..12 x 1..12, symbols within +-1, 3, 10 or 60).",
        "",
        "| bundle | images | h_s runs | int8 outputs | differing | differing indexes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for folder in bundles:
        bundle = Bundle.load(folder)
        own = f"sites/{folder.parent.name}"  # a site example on its own site's frames
        names = list(sets) if folder.name == "default" else [n for n in sets if n == own]
        paths = [p for n in names for p in sets[n]]
        c = compare(folder, paths, size, random)
        label = str(folder.relative_to(models))
        lines.append(f"| {label} ({bundle.model_id}) | {', '.join(names) or '-'} | "
                     f"{c['inputs']} | {c['elements']} | {c['int8_diff']} | "
                     f"{c['index_diff']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(os.environ.get("WILDLINK_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--size", type=int, default=1024, help="long side of the coded frames")
    parser.add_argument("--random", type=int, default=200, help="random z grids per bundle")
    parser.add_argument("--limit", type=int, default=0, help="images per set (0 = all)")
    args = parser.parse_args()
    print(run(args.data, args.size, args.random, args.limit))


if __name__ == "__main__":
    main()

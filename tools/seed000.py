"""Seed 000 reproduced: compression ratio against SSIM on one camera-trap site.

The poster (`../shared/seeds/000_*.txt`) compares a baseline codec, its encoder fine-tuned on the
site (full and LoRA) and JPEG, "without and with saliency guidance" (a 0.001:1 background/animal
loss weighting plus a background blur). Here, on the frames of a site folder after the split
(the fine-tuning uses the frames before it):

- without guidance: every codec gets the frame as it is; no boxes, so no ROI steps;
- with guidance: the site's background model (`device.background`, learning from the frames
  before the split, then each test frame in order) gives the animal boxes; the frame is
  blurred outside them by seed 001's pre-filter before every codec, and wildlink also uses the
  boxes for its ROI steps. Models trained with the 0.001:1 weighting are given with
  `--guided-bundle`; without them the guided run uses the same bundles.

Reproduce with::

    python -m tools.seed000 --site ../shared/data/sites/peru-sdzg1 \
        --bundle baseline=device/models/default --bundle full=DIR --bundle lora=DIR \
        --out out/seed000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tools.evaluate import ClassicalCoder, EvalImage, load_images, run_evaluation
from tools.evaluate import saliency_prefilter as blur_outside_boxes

JPEG_QUALITIES = (1, 3, 5, 10, 20, 40)


def site_split(folder: Path, size: int, split: float) -> tuple[list[EvalImage], list[EvalImage]]:
    """(training frames, test frames) of a site in file order (the trap's capture order)."""
    images = load_images(folder, None, size)
    cut = max(1, min(len(images) - 1, int(round(len(images) * split))))
    return images[:cut], images[cut:]


def with_background_boxes(train: Sequence[EvalImage], test: Sequence[EvalImage]):
    """The test frames with boxes from a background model that learned the training frames."""
    from device.background import BackgroundModel

    model = BackgroundModel()
    for image in train:
        model.observe(image.pixels)
    out = []
    for image in test:
        found = model.observe(image.pixels)
        boxes = () if found is None else tuple((b.x, b.y, b.w, b.h) for b in found.boxes)
        out.append(EvalImage(image.name, image.pixels, boxes))
    return out


def _coders(bundles: dict[str, Path], steps: Sequence[float]):
    from tools.baselines import CODECS
    from tools.wildlink_coder import WildlinkCoder

    coders = []
    for name, path in bundles.items():
        coder = WildlinkCoder.from_bundle(path)
        coder.name, coder.label, coder.sweep = name, name, tuple(steps)
        coders.append(coder)
    coders.append(ClassicalCoder(CODECS["jpeg"], JPEG_QUALITIES))
    return coders


def run_seed000(
    site: Path,
    bundles: dict[str, Path],
    out: Path,
    *,
    guided_bundles: dict[str, Path] | None = None,
    size: int = 1024,
    split: float = 0.5,
    steps: Sequence[float] = (0, 4, 8, 12, 16),
    limit: int | None = None,
    progress: bool = True,
) -> str:
    """Both runs; writes seed000.png and returns the Markdown tables."""
    train, test = site_split(site, size, split)
    test = test[-limit:] if limit else test  # the last frames: the background model is warm
    plain = [EvalImage(im.name, im.pixels, ()) for im in test]
    guided = with_background_boxes(train, test)
    found = sum(1 for im in guided if im.boxes)
    runs = {
        "without guidance": run_evaluation(plain, _coders(bundles, steps), with_ms_ssim=False,
                                           with_ssim=True, progress=progress, size=size),
        "with guidance": run_evaluation(
            guided, _coders(guided_bundles or bundles, steps),
            prefilters={"saliency": blur_outside_boxes}, with_ms_ssim=False, with_ssim=True,
            progress=progress, size=size,
        ),
    }
    lines = [f"Site `{site.name}`: {len(train)} frames before the split (fine-tuning, background "
             f"model), {len(test)} test frames at long side {size}; the background model found "
             f"animals in {found} of them (the others are coded unfiltered, without ROI steps).",
             "", "| guidance | codec | setting | ratio | SSIM | box SSIM |", "|---|---|---|---|---|---|"]
    curves_by_run = {}
    for run_name, result in runs.items():
        curves = _ssim_curves(result.rows)
        curves_by_run[run_name] = (curves, result.labels)
        for key, points in curves.items():
            for p in points:
                box = "-" if np.isnan(p["box_ssim"]) else f"{p['box_ssim']:.4f}"
                lines.append(f"| {run_name} | {result.labels.get(key, key)} | {p['setting']:g} | "
                             f"{p['ratio']:.0f}:1 | {p['ssim']:.4f} | {box} |")
    out.mkdir(parents=True, exist_ok=True)
    _plot(curves_by_run, out / "seed000.png")
    lines += ["", f"Plot: `{out / 'seed000.png'}` (compression ratio against SSIM, as the "
              "poster's figures)."]
    return "\n".join(lines) + "\n"


def _ssim_curves(rows) -> dict[str, list[dict]]:
    """Mean compression ratio (24 / mean bpp), full-image SSIM and box SSIM per setting."""
    from tools.evaluate import series_key

    groups: dict[tuple[str, float], list] = {}
    for row in rows:
        if row.mode == "sweep":
            groups.setdefault((series_key(row.codec, row.prefilter), row.setting), []).append(row)
    curves: dict[str, list[dict]] = {}
    for (key, setting), members in groups.items():
        bpp = float(np.mean([r.bpp for r in members]))
        box = [r.box_ssim for r in members if not np.isnan(r.box_ssim)]
        curves.setdefault(key, []).append({
            "setting": setting,
            "ratio": 24.0 / bpp,
            "ssim": float(np.mean([r.ssim for r in members])),
            "box_ssim": float(np.mean(box)) if box else float("nan"),
        })
    for points in curves.values():
        points.sort(key=lambda p: p["ratio"])
    return curves


def _plot(curves_by_run: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves_by_run), figsize=(10, 4), dpi=110, squeeze=False)
    for ax, (run_name, (curves, labels)) in zip(axes[0], curves_by_run.items(), strict=True):
        for key, points in curves.items():
            ax.plot([p["ratio"] for p in points], [p["ssim"] for p in points], "-o", ms=3,
                    label=labels.get(key, key))
        ax.set_xlabel("compression ratio (24-bit raw / bytes)")
        ax.set_ylabel("SSIM")
        ax.set_title(f"Compression ratio vs SSIM: {run_name}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _named_paths(values: Sequence[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"expected NAME=DIR, got {value!r}")
        out[name] = Path(path)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.seed000",
                                     description="Seed 000: compression ratio against SSIM")
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--bundle", action="append", default=[], help="NAME=DIR (repeat)")
    parser.add_argument("--guided-bundle", action="append", default=[],
                        help="NAME=DIR of models trained with the 0.001:1 weighting (repeat)")
    parser.add_argument("--split", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--steps", default="0,4,8,12,16", help="wildlink global steps j_g")
    parser.add_argument("--out", type=Path, default=Path("out/seed000"))
    args = parser.parse_args(argv)
    if not args.bundle:
        parser.error("give at least one --bundle NAME=DIR")
    text = run_seed000(args.site, _named_paths(args.bundle), args.out,
                       guided_bundles=_named_paths(args.guided_bundle) or None,
                       size=args.size, split=args.split, limit=args.limit or None,
                       steps=tuple(int(v) for v in args.steps.split(",") if v.strip()))
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

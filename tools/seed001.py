"""Seed 001 reproduced on our data: saliency-driven smoothing, storage and downstream rate.

Downes, Saltwick, Chen, "Saliency Driven Imagery Preprocessing for Efficient Compression",
SIGSPATIAL 2023 (`../shared/seeds/001_*.txt`). Their experiments, on eval/kodak and
eval/camtrap instead of satellite scenes:

1. Table 3: the kernel widths each synthetic mask (half, grid, Perlin) maps to, with pixel shares
   and the effective kernel width K_e (eq. 3).
2. Sec. 5.1 / fig. 5: storage-rate reduction (PNG) and MSE of saliency smoothing against uniform
   smoothing, compared at the same K_e (the uniform curve, K = 1..17, interpolated at K_e).
3. Sec. 5.2 / figs. 10-11: downstream rate reduction for JPEG 2000 (OpenJPEG rate = compression
   ratio, their parameter) and AVIF (in place of BPG, which Pillow lacks) across settings.

The blur and the masks are the trap's own (`device.prefilter`, `device.masks`), so these numbers
describe the code that runs on the Pi. Reproduce with::

    python -m tools.seed001 --out out/seed001            # full (shared data)
    python -m tools.seed001 --quick --out out/seed001    # shipped samples, seconds
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.masks import SYNTHETIC_MASKS
from device.prefilter import MAX_K, effective_kernel_width, kernel_size, prefilter
from tools.evaluate import EvalImage, Progress, load_images

UNIFORM_K = tuple(range(1, 2 * MAX_K + 2, 2))  # 1, 3, ..., 17
MASKS = ("half", "grid", "perlin")
# Downstream settings: JPEG 2000 compression ratios (OpenJPEG "rates"), AVIF quality.
DOWNSTREAM = {
    "jp2": (2.0, 4.0, 8.0, 20.0, 50.0),
    "avif": (10, 30, 50, 70),
}
DOWNSTREAM_UNIFORM_K = 9  # the uniform variant of figs. 10/12: K_e of the half mask


@dataclass(frozen=True)
class StorageRow:
    dataset: str
    image: str
    variant: str  # "uniform" or a mask name
    kernel: float  # K for uniform, K_e for a mask
    png_bytes: int
    reduction: float  # % of the unsmoothed PNG's bytes saved
    mse: float


@dataclass(frozen=True)
class DownstreamRow:
    dataset: str
    image: str
    codec: str
    setting: float
    variant: str  # "uniform K=9" or a mask name
    bytes: int
    base_bytes: int  # the unsmoothed image at the same setting
    reduction: float  # % of base_bytes saved


def uniform_level(size: int) -> float:
    """The saliency level whose K(s) (eq. 2) is `size`: s = 1 - (size - 1) / (2 |k|)."""
    return 1.0 - (size - 1) / (2.0 * MAX_K)


def _smooth_uniform(pixels: np.ndarray, size: int) -> np.ndarray:
    return prefilter(pixels, np.full((1, 1), uniform_level(size), np.float32))


def _png_bytes(pixels: np.ndarray) -> int:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return len(buffer.getvalue())


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))


def mask_table(height: int = 768, width: int = 1024) -> list[dict]:
    """Seed 001 table 3: kernel widths per mask, their pixel shares, and K_e (eq. 3)."""
    rows = []
    for name in MASKS:
        levels = SYNTHETIC_MASKS[name](height, width)
        sizes = np.asarray(kernel_size(levels))
        widths, counts = np.unique(sizes, return_counts=True)
        rows.append({
            "mask": name,
            "widths": [int(w) for w in widths],
            "shares": [float(c) / sizes.size for c in counts],
            "k_e": effective_kernel_width(levels),
        })
    return rows


def storage_experiment(
    images: Sequence[EvalImage], dataset: str, progress: bool = True
) -> list[StorageRow]:
    """PNG bytes of every image uniformly smoothed at K = 1..17 and saliency-smoothed per mask."""
    rows = []
    bar = Progress(len(images), f"seed001 storage {dataset}", progress)
    for image in images:
        base = _png_bytes(image.pixels)
        for size in UNIFORM_K:
            smoothed = image.pixels if size == 1 else _smooth_uniform(image.pixels, size)
            nbytes = base if size == 1 else _png_bytes(smoothed)
            rows.append(StorageRow(dataset, image.name, "uniform", float(size), nbytes,
                                   100.0 * (1 - nbytes / base), _mse(image.pixels, smoothed)))
        for name in MASKS:
            levels = SYNTHETIC_MASKS[name](*image.pixels.shape[:2])
            smoothed = prefilter(image.pixels, levels)
            nbytes = _png_bytes(smoothed)
            rows.append(StorageRow(dataset, image.name, name, effective_kernel_width(levels),
                                   nbytes, 100.0 * (1 - nbytes / base),
                                   _mse(image.pixels, smoothed)))
        bar.step(image.name)
    return rows


def downstream_experiment(
    images: Sequence[EvalImage],
    dataset: str,
    settings: dict[str, Sequence[float]] = DOWNSTREAM,
    progress: bool = True,
) -> list[DownstreamRow]:
    """Bytes of JPEG 2000 / AVIF at each setting, for the original and each smoothed variant."""
    from tools.baselines import CODECS

    rows = []
    bar = Progress(len(images), f"seed001 downstream {dataset}", progress)
    for image in images:
        h, w = image.pixels.shape[:2]
        variants = {f"uniform K={DOWNSTREAM_UNIFORM_K}":
                    _smooth_uniform(image.pixels, DOWNSTREAM_UNIFORM_K)}
        for name in MASKS:
            variants[name] = prefilter(image.pixels, SYNTHETIC_MASKS[name](h, w))
        for codec_name, values in settings.items():
            codec = CODECS[codec_name]
            for setting in values:
                base = len(codec.encode(image.pixels, setting))
                for variant, pixels in variants.items():
                    nbytes = len(codec.encode(pixels, setting))
                    rows.append(DownstreamRow(dataset, image.name, codec_name, float(setting),
                                              variant, nbytes, base, 100.0 * (1 - nbytes / base)))
        bar.step(image.name)
    return rows


def summarize_storage(rows: Sequence[StorageRow]) -> dict[str, dict]:
    """Per dataset: the mean uniform curve and, per mask, saliency vs uniform at the same K_e."""
    out: dict[str, dict] = {}
    for dataset in sorted({r.dataset for r in rows}):
        mine = [r for r in rows if r.dataset == dataset]
        curve = []
        for size in UNIFORM_K:
            sel = [r for r in mine if r.variant == "uniform" and r.kernel == size]
            curve.append((float(size), float(np.mean([r.reduction for r in sel])),
                          float(np.mean([r.mse for r in sel]))))
        ks = [c[0] for c in curve]
        masks = {}
        for name in MASKS:
            sel = [r for r in mine if r.variant == name]
            k_e = float(np.mean([r.kernel for r in sel]))
            masks[name] = {
                "k_e": k_e,
                "reduction": float(np.mean([r.reduction for r in sel])),
                "mse": float(np.mean([r.mse for r in sel])),
                "uniform_reduction": float(np.interp(k_e, ks, [c[1] for c in curve])),
                "uniform_mse": float(np.interp(k_e, ks, [c[2] for c in curve])),
            }
        images = len({r.image for r in mine})
        out[dataset] = {"curve": curve, "masks": masks, "images": images}
    return out


def summarize_downstream(rows: Sequence[DownstreamRow]) -> dict[tuple, tuple[float, float]]:
    """(dataset, codec, setting, variant) -> (mean reduction %, mean unsmoothed bytes)."""
    groups: dict[tuple, list[DownstreamRow]] = {}
    for r in rows:
        groups.setdefault((r.dataset, r.codec, r.setting, r.variant), []).append(r)
    return {k: (float(np.mean([r.reduction for r in v])),
                float(np.mean([r.base_bytes for r in v])))
            for k, v in groups.items()}


def plot_storage(summary: dict[str, dict], path: Path) -> None:
    """Fig. 5 (a, b): rate reduction and MSE against K, uniform curve and mask points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    markers = {"half": "s", "grid": "^", "perlin": "D"}
    for i, (dataset, entry) in enumerate(summary.items()):
        color = f"C{i}"
        ks = [c[0] for c in entry["curve"]]
        axes[0].plot(ks, [c[1] for c in entry["curve"]], "-", color=color,
                     label=f"{dataset}: uniform")
        axes[1].plot(ks, [c[2] for c in entry["curve"]], "-", color=color,
                     label=f"{dataset}: uniform")
        for name, m in entry["masks"].items():
            axes[0].plot([m["k_e"]], [m["reduction"]], markers[name], color=color,
                         label=f"{dataset}: {name} mask")
            axes[1].plot([m["k_e"]], [m["mse"]], markers[name], color=color)
    axes[0].set_ylabel("PNG storage-rate reduction (%)")
    axes[1].set_ylabel("MSE against the original")
    for ax in axes:
        ax.set_xlabel("kernel width K (uniform) / effective K_e (mask)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Seed 001 fig. 5: saliency vs uniform smoothing")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_downstream(summary: dict[tuple, tuple[float, float]], path: Path) -> None:
    """Figs. 10/11: rate reduction by codec setting, one panel per (dataset, codec)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(k[0], k[1]) for k in summary})
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), dpi=110,
                             squeeze=False)
    for ax, (dataset, codec) in zip(axes[0], panels, strict=True):
        variants = sorted({k[3] for k in summary if k[:2] == (dataset, codec)})
        for variant in variants:
            pts = sorted((k[2], v[0]) for k, v in summary.items()
                         if k[:2] == (dataset, codec) and k[3] == variant)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=3, label=variant)
        if codec == "jp2":
            ax.set_xscale("log")
            ticks = sorted({k[2] for k in summary if k[:2] == (dataset, codec)})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("JPEG 2000 compression ratio (log)")
        else:
            ax.set_xlabel("AVIF quality")
        ax.set_title(f"{dataset}: {codec}", fontsize=9)
        ax.set_ylabel("rate reduction (%)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(storage: dict[str, dict], downstream: dict[tuple, tuple[float, float]],
             plots: Sequence[Path] = ()) -> str:
    lines = ["### Seed 001 table 3: kernel widths per synthetic mask (1024x768)", "",
             "| mask | kernel widths K | pixel shares | K_e (eq. 3) |", "|---|---|---|---|"]
    for row in mask_table():
        shares = ", ".join(f"{s:.2f}" for s in row["shares"])
        lines.append(f"| {row['mask']} | {row['widths']} | [{shares}] | {row['k_e']:.2f} |")
    lines += ["", "Paper: grid [1, 5, 11, 17] 0.25 each; half [1, 17] 0.5 each; Perlin "
              "[1, 5, 9, 13] [0.06, 0.44, 0.42, 0.08] (our Perlin field differs in its random "
              "gradients, so its shares differ).", ""]
    lines += ["### Seed 001 fig. 5: PNG storage-rate reduction, saliency vs uniform at the same "
              "K_e", "",
              "| data | mask | K_e | saliency: reduction | uniform at K_e: reduction | "
              "saliency MSE | uniform MSE at K_e |", "|---|---|---|---|---|---|---|"]
    for dataset, entry in storage.items():
        for name, m in entry["masks"].items():
            lines.append(
                f"| {dataset} ({entry['images']}) | {name} | {m['k_e']:.2f} | "
                f"{m['reduction']:.1f}% | {m['uniform_reduction']:.1f}% | {m['mse']:.1f} | "
                f"{m['uniform_mse']:.1f} |"
            )
    lines += ["", "Uniform curve (mean PNG reduction % / MSE per K):", ""]
    lines += ["| data | " + " | ".join(f"K={k}" for k in UNIFORM_K) + " |",
              "|---|" + "---|" * len(UNIFORM_K)]
    for dataset, entry in storage.items():
        cells = " | ".join(f"{c[1]:.1f}% / {c[2]:.0f}" for c in entry["curve"])
        lines.append(f"| {dataset} | {cells} |")
    lines += ["", "### Seed 001 figs. 10-11: downstream rate reduction at the same codec setting",
              "", "Bytes saved by smoothing before the codec, against the unsmoothed image at "
              "the same setting (positive = smaller file).", ""]
    variants = sorted({k[3] for k in downstream})
    lines += ["| data | codec | setting | " + " | ".join(variants) + " | unsmoothed bytes |",
              "|---|---|---|" + "---|" * (len(variants) + 1)]
    for dataset, codec, setting in sorted({k[:3] for k in downstream}):
        cells = " | ".join(f"{downstream[(dataset, codec, setting, v)][0]:.1f}%"
                           for v in variants)
        base = downstream[(dataset, codec, setting, variants[0])][1]
        label = f"ratio {setting:g}:1" if codec == "jp2" else f"q {setting:g}"
        lines.append(f"| {dataset} | {codec} | {label} | {cells} | {base:.0f} |")
    if plots:
        lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in plots)]
    return "\n".join(lines) + "\n"


def run_seed001(
    datasets: dict[str, tuple[Path, int]],
    out: Path,
    *,
    downstream_limit: int | None = None,
    limit: int | None = None,
    settings: dict[str, Sequence[float]] = DOWNSTREAM,
    progress: bool = True,
) -> str:
    """Both experiments on each dataset {name: (folder, long side)}; writes PNG plots and CSVs."""
    import csv
    from dataclasses import asdict, fields

    storage_rows: list[StorageRow] = []
    downstream_rows: list[DownstreamRow] = []
    for name, (folder, size) in datasets.items():
        images = load_images(folder, None, size, limit=limit)
        storage_rows += storage_experiment(images, name, progress)
        subset = images[:downstream_limit] if downstream_limit else images
        downstream_rows += downstream_experiment(subset, name, settings, progress)
    out.mkdir(parents=True, exist_ok=True)
    for rows, cls, file in ((storage_rows, StorageRow, "storage.csv"),
                            (downstream_rows, DownstreamRow, "downstream.csv")):
        with open(out / file, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([f.name for f in fields(cls)])
            writer.writerows(list(asdict(r).values()) for r in rows)
    storage = summarize_storage(storage_rows)
    downstream = summarize_downstream(downstream_rows)
    plots = [out / "seed001_storage.png", out / "seed001_downstream.png"]
    plot_storage(storage, plots[0])
    plot_downstream(downstream, plots[1])
    return markdown(storage, downstream, plots)


def default_datasets(data: Path, quick: bool) -> dict[str, tuple[Path, int]]:
    if quick:
        from tools.benchmarks import SAMPLES

        return {"samples": (SAMPLES / "camtrap", 512)}
    return {"kodak": (data / "eval" / "kodak", 0), "camtrap": (data / "eval" / "camtrap", 1024)}


def main(argv: Sequence[str] | None = None) -> int:
    from tools.benchmarks import data_dir

    parser = argparse.ArgumentParser(prog="python -m tools.seed001", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path("out/seed001"))
    parser.add_argument("--quick", action="store_true", help="shipped samples only")
    parser.add_argument("--limit", type=int, default=0,
                        help="images per dataset for the storage experiment (0 = all)")
    parser.add_argument("--downstream-limit", type=int, default=4,
                        help="images per dataset for the downstream codecs (0 = all)")
    args = parser.parse_args(argv)
    datasets = default_datasets(args.data or data_dir(), args.quick)
    text = run_seed001(datasets, args.out, downstream_limit=args.downstream_limit or None,
                       limit=args.limit or None)
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

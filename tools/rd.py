"""Rate-distortion helpers: Bjontegaard delta rate and the matplotlib RD plots.

BD-rate follows G. Bjontegaard, "Calculation of average PSNR differences between RD-curves",
ITU-T VCEG-M33, 2001: fit log(rate) as a cubic polynomial of quality for each curve, integrate
both over the quality interval they share, and turn the mean log-rate difference into percent.
Negative means the test curve needs fewer bytes than the anchor for the same quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["bd_rate", "plot_curves", "plot_budgets"]

METRIC_LABELS = {
    "psnr": "full-image PSNR (dB)",
    "ms_ssim": "MS-SSIM",
    "box_psnr": "animal-box PSNR (dB)",
    "box_ssim": "animal-box SSIM",
    "bg_psnr": "background PSNR (dB)",
}


def _clean(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    return np.log(r[keep]), q[keep]


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """Bjontegaard delta rate of test against anchor in percent; NaN without 2+ points each or
    without a shared quality range. Uses a cubic fit when a curve has 4+ points, else lower."""
    la, qa = _clean(anchor_rate, anchor_quality)
    lt, qt = _clean(test_rate, test_quality)
    if len(qa) < 2 or len(qt) < 2 or np.ptp(qa) == 0 or np.ptp(qt) == 0:
        return float("nan")
    low = max(qa.min(), qt.min())
    high = min(qa.max(), qt.max())
    if not high > low:
        return float("nan")
    pa = np.polyfit(qa, la, min(3, len(qa) - 1))
    pt = np.polyfit(qt, lt, min(3, len(qt) - 1))
    ia, it = np.polyint(pa), np.polyint(pt)
    mean_a = (np.polyval(ia, high) - np.polyval(ia, low)) / (high - low)
    mean_t = (np.polyval(it, high) - np.polyval(it, low)) / (high - low)
    return float((math.exp(mean_t - mean_a) - 1.0) * 100.0)


def _style(key: str) -> str:
    """Solid for a codec as is, dashed for a pre-filtered variant ("avif+saliency")."""
    return "--o" if "+" in key else "-o"


def _color(key: str, keys) -> str:
    """One colour per codec, shared by its pre-filtered variants."""
    bases = sorted({k.split("+")[0] for k in keys})
    return f"C{bases.index(key.split('+')[0]) % 10}"


def plot_curves(
    curves: dict[str, list[dict]],
    metric: str,
    labels: dict[str, str],
    path: Path,
    title: str,
) -> None:
    """Quality against bits per pixel (log x), one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for key, points in curves.items():
        pts = [p for p in points if not math.isnan(p[metric])]
        if not pts:
            continue
        ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], _style(key),
                color=_color(key, curves), ms=3, label=labels.get(key, key))
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (log)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_budgets(
    table: dict[tuple[str, int], dict],
    labels: dict[str, str],
    path: Path,
    title: str,
    metric: str = "box_psnr",
) -> None:
    """A quality figure (default animal-box PSNR) against the byte budget; budgets a codec
    cannot meet are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for key in sorted({k for k, _ in table}):
        pts = sorted((b, e) for (k, b), e in table.items() if k == key)
        xs = [b for b, e in pts if not math.isnan(e[metric])]
        ys = [e[metric] for b, e in pts if not math.isnan(e[metric])]
        if xs:
            ax.plot(xs, ys, _style(key), color=_color(key, {k for k, _ in table}), ms=3,
                    label=labels.get(key, key))
    ax.set_xscale("log")
    ax.set_xlabel("byte budget per image (log)")
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)}, images that fit")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""Reports of an evaluation: mean RD curves, BD-rate matrices, budget tables, CSV, plots, Markdown.

Split from `tools.evaluate` (which runs the codecs) so that each module keeps one job; both
`wildlink eval` and the benchmark section write their tables through `write_outputs` and
`markdown_report`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from tools.evaluate import METRICS, EvalResult, Row, series_key
from tools.rd import bd_rate


def _nanmean(values: Iterable[float]) -> float:
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else float("nan")


def sweep_curves(rows: Sequence[Row], boxed_only: bool = False) -> dict[str, list[dict]]:
    """Mean point per (series, setting), sorted by rate: {series: [{bpp, psnr, ...}, ...]}.

    With `boxed_only`, only images that have boxes count (for the box metrics, so that rate
    and box quality are averaged over the same images).
    """
    groups: dict[tuple[str, float], list[Row]] = {}
    for row in rows:
        if row.mode != "sweep" or (boxed_only and math.isnan(row.box_psnr)):
            continue
        groups.setdefault((series_key(row.codec, row.prefilter), row.setting), []).append(row)
    curves: dict[str, list[dict]] = {}
    for (key, setting), members in groups.items():
        point = {"setting": setting, "images": len(members)}
        for name in METRICS:
            point[name] = _nanmean(getattr(r, name) for r in members)
        point["ratio"] = 24.0 / point["bpp"] if point["bpp"] > 0 else float("nan")
        curves.setdefault(key, []).append(point)
    for points in curves.values():
        points.sort(key=lambda p: p["bpp"])
    return curves


def budget_table(rows: Sequence[Row]) -> dict[tuple[str, int], dict]:
    """Per (series, budget): images that fit, and mean metrics over those that fit."""
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        if row.mode == "budget":
            groups.setdefault((series_key(row.codec, row.prefilter), row.budget), []).append(row)
    table = {}
    for key, members in groups.items():
        fits = [r for r in members if not math.isnan(r.bytes)]
        entry = {"images": len(members), "fit": len(fits)}
        for name in METRICS:
            entry[name] = _nanmean(getattr(r, name) for r in fits)
        table[key] = entry
    return table


def bd_matrix(curves: dict[str, list[dict]], metric: str) -> dict[tuple[str, str], float]:
    """BD-rate (%) of every series against every other, on (bpp, metric) curves."""
    out = {}
    for test, tp in curves.items():
        for anchor, ap in curves.items():
            if test == anchor:
                continue
            out[(test, anchor)] = bd_rate(
                [p["bpp"] for p in ap], [p[metric] for p in ap],
                [p["bpp"] for p in tp], [p[metric] for p in tp],
            )
    return out


# ---------------------------------------------------------------------------------------------
# Outputs


def write_csv(rows: Sequence[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f.name for f in fields(Row)])
        for row in rows:
            writer.writerow(
                [f"{v:.6g}" if isinstance(v, float) else v for v in asdict(row).values()]
            )


def write_outputs(result: EvalResult, out: Path, title: str = "Evaluation") -> dict[str, Path]:
    """rows.csv, curves.csv, report.md and the RD plots in `out`; returns what was written."""
    from tools.rd import plot_budgets, plot_curves

    out.mkdir(parents=True, exist_ok=True)
    written = {"rows": out / "rows.csv", "curves": out / "curves.csv", "report": out / "report.md"}
    write_csv(result.rows, written["rows"])
    curves = sweep_curves(result.rows)
    boxed = sweep_curves(result.rows, boxed_only=True)
    with open(written["curves"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series", "subset", "setting", "images", *METRICS])
        for subset, table in (("all", curves), ("boxed", boxed)):
            for key, points in table.items():
                for p in points:
                    writer.writerow([key, subset, p["setting"], p["images"],
                                     *(f"{p[m]:.6g}" for m in METRICS)])
    if curves:
        for metric, source in (("psnr", curves), ("ms_ssim", curves), ("box_psnr", boxed)):
            if any(not math.isnan(p[metric]) for pts in source.values() for p in pts):
                path = out / f"rd_{metric}.png"
                plot_curves(source, metric, result.labels, path, title)
                written[f"rd_{metric}"] = path
    budgets = budget_table(result.rows)
    if budgets:
        path = out / "budget_box_psnr.png"
        plot_budgets(budgets, result.labels, path, title)
        written["budget"] = path
        for metric in ("box_ssim", "bg_psnr"):
            path = out / f"budget_{metric}.png"
            plot_budgets(budgets, result.labels, path, title, metric)
            written[f"budget_{metric}"] = path
    written["report"].write_text(markdown_report(result, title, plots=written))
    return written


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}"
    )


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}:1"


def _bd_table(curves: dict[str, list[dict]], metric: str, labels: dict[str, str]) -> list[str]:
    keys = list(curves)
    matrix = bd_matrix(curves, metric)
    lines = ["| test \\ anchor | " + " | ".join(labels.get(k, k) for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for test in keys:
        cells = ["" if test == anchor else _fmt(matrix[(test, anchor)], 1) for anchor in keys]
        lines.append(f"| {labels.get(test, test)} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(
    result: EvalResult, title: str, plots: dict[str, Path] | None = None, level: int = 3
) -> str:
    """The tables of one evaluation as Markdown (curves, BD-rates, budgets)."""
    h = "#" * level
    lines = []
    curves = sweep_curves(result.rows)
    boxed = sweep_curves(result.rows, boxed_only=True)
    if curves:
        lines += [f"{h} {title}: rate-distortion (mean over images per setting)", "",
                  "| codec | setting | bytes | bpp | ratio | PSNR | MS-SSIM | box PSNR | "
                  "box SSIM | bg PSNR |", "|---|---|---|---|---|---|---|---|---|---|"]
        for key, points in curves.items():
            for p in points:
                lines.append(
                    f"| {result.labels.get(key, key)} | {p['setting']:g} | {p['bytes']:.0f} | "
                    f"{p['bpp']:.4f} | {_ratio(p['ratio'])} | {_fmt(p['psnr'])} | "
                    f"{_fmt(p['ms_ssim'], 4)} | {_fmt(p['box_psnr'])} | {_fmt(p['box_ssim'], 4)}"
                    f" | {_fmt(p['bg_psnr'])} |"
                )
        lines += ["", "Box PSNR/SSIM and background PSNR average over images with animal boxes "
                  "only; everything else over all images.", ""]
        lines += [f"{h} {title}: BD-rate, full-image PSNR (%, negative = fewer bytes than the "
                  "anchor at equal quality)", ""]
        lines += _bd_table(curves, "psnr", result.labels) + [""]
        if any(not math.isnan(p["box_psnr"]) for pts in boxed.values() for p in pts):
            lines += [f"{h} {title}: BD-rate, animal-box PSNR (%, rate and quality over the "
                      "images with boxes)", ""]
            lines += _bd_table(boxed, "box_psnr", result.labels) + [""]
        lines += ["BD-rate: Bjontegaard (VCEG-M33), cubic fit of log-rate against quality, "
                  "integrated over the overlapping quality range; '-' = no overlap.", ""]
    budgets = budget_table(result.rows)
    if budgets:
        lines += [f"{h} {title}: byte budgets (best setting that fits)", "",
                  "| codec | budget (B) | fit | mean bytes | ratio | PSNR | box PSNR | box SSIM "
                  "| bg PSNR |", "|---|---|---|---|---|---|---|---|---|"]
        for (key, budget), e in sorted(budgets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            ratio = 24.0 / e["bpp"] if e["bpp"] > 0 else float("nan")
            lines.append(
                f"| {result.labels.get(key, key)} | {budget} | {e['fit']}/{e['images']} | "
                f"{_fmt(e['bytes'], 0)} | {_ratio(ratio)} | {_fmt(e['psnr'])} | "
                f"{_fmt(e['box_psnr'])} | {_fmt(e['box_ssim'], 4)} | {_fmt(e['bg_psnr'])} |"
            )
        lines += ["", "'fit' counts images where even the smallest setting fits; the metrics "
                  "average over those images only.", ""]
    if plots:
        pngs = [p for k, p in plots.items() if str(p).endswith(".png")]
        if pngs:
            lines += ["Plots: " + ", ".join(f"`{p}`" for p in pngs), ""]
    lines.append(f"{result.image_count} images, long side {result.size or 'native'}, "
                 f"{result.seconds:.0f} s.")
    return "\n".join(lines) + "\n"



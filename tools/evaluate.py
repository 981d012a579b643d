"""The evaluation engine: codecs x settings x images -> per-image rows, curves, BD-rates, plots.

Why one engine: `wildlink eval` and `make bench` must produce the same numbers from the same
code, so the CLI and `tools/benchmarks/evaluation.py` both call `run_evaluation` and
`markdown_report`.

Every decoded image is compared with the *original* (resized) image, also when the encoder got
the saliency pre-filtered one: the blur is a loss the sender chose, and the metrics must show it.
Sizes are the bytes the codec wrote (for wildlink: the whole container), so
`bpp = 8 * bytes / (H * W)` and `ratio = 24 * H * W / (8 * bytes)` (24-bit raw over bytes sent).

Example::

    images = load_images(Path("eval/camtrap"), Path("eval/camtrap/megadetector.json"))
    result = run_evaluation(images, [ClassicalCoder(CODECS["jpeg"])], budgets=(8000,))
    write_outputs(result, Path("out"))
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from tools.baselines import Codec, fit_budget
from tools.errors import UserError
from tools.metrics import region_metrics
from tools.rd import bd_rate

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class EvalImage:
    """One test image at the evaluation size, with its animal boxes (normalised x, y, w, h)."""

    name: str
    pixels: np.ndarray  # uint8 (H, W, 3)
    boxes: tuple[Box, ...] = ()

    @property
    def pixel_count(self) -> int:
        return int(self.pixels.shape[0] * self.pixels.shape[1])


class Coder(Protocol):
    """What the engine needs from a codec (classical or wildlink)."""

    name: str
    label: str
    sweep: tuple[float, ...]

    def encode(self, image: EvalImage, pixels: np.ndarray, setting: float) -> bytes: ...

    def decode(self, data: bytes, image: EvalImage) -> np.ndarray: ...

    def fit_budget(
        self, image: EvalImage, pixels: np.ndarray, budget: int
    ) -> tuple[float, bytes] | None: ...


@dataclass(frozen=True)
class ClassicalCoder:
    """A Pillow codec seen through the `Coder` protocol."""

    codec: Codec
    sweep: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        return self.codec.name

    @property
    def label(self) -> str:
        return self.codec.label

    def __post_init__(self) -> None:
        if not self.sweep:
            object.__setattr__(self, "sweep", self.codec.sweep)

    def encode(self, image: EvalImage, pixels: np.ndarray, setting: float) -> bytes:
        return self.codec.encode(pixels, setting)

    def decode(self, data: bytes, image: EvalImage) -> np.ndarray:
        return self.codec.decode(data)

    def fit_budget(self, image: EvalImage, pixels: np.ndarray, budget: int):
        fit = fit_budget(self.codec, pixels, budget)
        return None if fit is None else (fit.setting, fit.data)


@dataclass(frozen=True)
class Row:
    """One codec run on one image (one CSV line). Metrics are NaN when nothing fit the budget."""

    image: str
    codec: str
    prefilter: str
    mode: str  # "sweep" or "budget"
    setting: float
    budget: int
    bytes: float
    bpp: float
    ratio: float
    psnr: float
    ms_ssim: float
    box_psnr: float
    box_ssim: float
    bg_psnr: float
    encode_s: float


METRICS = ("bytes", "bpp", "ratio", "psnr", "ms_ssim", "box_psnr", "box_ssim", "bg_psnr")


@dataclass
class EvalResult:
    rows: list[Row] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # series key -> plot label
    seconds: float = 0.0
    image_count: int = 0
    size: int = 0


# ---------------------------------------------------------------------------------------------
# Inputs


def load_megadetector(path: Path, min_conf: float = 0.2) -> dict[str, tuple[Box, ...]]:
    """Animal boxes per file name from a MegaDetector batch JSON (format 1.x), conf >= min_conf."""
    import json

    try:
        data = json.loads(Path(path).read_text())
        categories = data.get("detection_categories", {"1": "animal"})
        animal = {k for k, v in categories.items() if v == "animal"}
        out: dict[str, tuple[Box, ...]] = {}
        for entry in data["images"]:
            boxes = tuple(
                tuple(float(v) for v in det["bbox"])
                for det in entry.get("detections") or ()
                if det.get("category") in animal and float(det["conf"]) >= min_conf
            )
            out[Path(entry["file"]).name] = boxes
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a MegaDetector results file ({exc})") from None
    return out


def load_images(
    folder: Path,
    boxes_json: Path | None = None,
    size: int = 1024,
    *,
    min_conf: float = 0.2,
    limit: int | None = None,
) -> list[EvalImage]:
    """Every image in `folder` (sorted), resized so the long side is `size` (0: unchanged).

    Images are never upscaled. With `boxes_json`, files it does not list get no boxes.
    """
    from PIL import Image, ImageOps

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no images in {folder}")
    if limit:
        files = files[:limit]
    boxes = load_megadetector(boxes_json, min_conf) if boxes_json else {}
    images = []
    for path in files:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            if size and max(img.size) > size:
                scale = size / max(img.size)
                new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(new, Image.Resampling.LANCZOS)
            pixels = np.asarray(img)
        images.append(EvalImage(path.name, pixels, boxes.get(path.name, ())))
    return images


# ---------------------------------------------------------------------------------------------
# Running


class Progress:
    """A one-line progress bar on stderr (rewritten in place on a terminal, every 10% if not)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.done, self.start, self._last_decile = 0, time.monotonic(), -1
        self.tty = enabled and sys.stderr.isatty()

    def step(self, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        frac = self.done / self.total
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(24 * frac)
        line = f"{self.label} [{bar:<24}] {self.done}/{self.total} {elapsed:4.0f}s eta {eta:4.0f}s"
        if self.tty:
            sys.stderr.write(f"\r{line} {note[:30]:<30}")
            if self.done >= self.total:
                sys.stderr.write("\n")
        elif int(frac * 10) != self._last_decile:
            self._last_decile = int(frac * 10)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _row(
    image: EvalImage,
    coder: Coder,
    prefilter: str,
    mode: str,
    setting: float,
    budget: int,
    data: bytes | None,
    seconds: float,
    with_ms_ssim: bool,
) -> Row:
    nan = float("nan")
    if data is None:
        return Row(image.name, coder.name, prefilter, mode, nan, budget, *(nan,) * 8, seconds)
    decoded = coder.decode(data, image)
    quality = region_metrics(image.pixels, decoded, image.boxes, with_ms_ssim=with_ms_ssim)
    nbytes = len(data)
    bpp = 8.0 * nbytes / image.pixel_count
    return Row(
        image.name,
        coder.name,
        prefilter,
        mode,
        float(setting),
        budget,
        float(nbytes),
        bpp,
        24.0 / bpp,
        quality["psnr"],
        quality["ms_ssim"],
        quality["box_psnr"],
        quality["box_ssim"],
        quality["bg_psnr"],
        seconds,
    )


Prefilter = Callable[[EvalImage], np.ndarray]


def run_evaluation(
    images: Sequence[EvalImage],
    coders: Sequence[Coder],
    *,
    prefilters: dict[str, Prefilter | None] | None = None,
    budgets: Sequence[int] = (),
    sweep: bool = True,
    with_ms_ssim: bool = True,
    progress: bool = True,
    size: int = 0,
) -> EvalResult:
    """Run every coder on every image: its sweep settings and/or each byte budget.

    `prefilters` maps a name ("none", "saliency") to a function giving the pixels to encode
    (None = the image as is). Every combination is one series in the result.
    """
    prefilters = prefilters or {"none": None}
    result = EvalResult(image_count=len(images), size=size)
    for pname in prefilters:
        for coder in coders:
            key = series_key(coder.name, pname)
            result.labels[key] = coder.label + ("" if pname == "none" else f" + {pname}")
    per_image = sum(len(c.sweep) if sweep else 0 for c in coders) + len(budgets) * len(coders)
    bar = Progress(per_image * len(images) * len(prefilters), "eval", progress)
    start = time.monotonic()
    for image in images:
        done: list[Row] = []  # this image's rows on unfiltered pixels, reused when identical
        for pname, prefilter in prefilters.items():
            pixels = image.pixels if prefilter is None else prefilter(image)
            if pixels is image.pixels and done:
                result.rows += [replace(r, prefilter=pname) for r in done]
                for _ in done:
                    bar.step(f"{image.name} (unchanged)")
                continue
            rows = []
            for coder in coders:
                for setting in coder.sweep if sweep else ():
                    t0 = time.perf_counter()
                    data = coder.encode(image, pixels, setting)
                    dt = time.perf_counter() - t0
                    # MS-SSIM (the slowest metric) on unfiltered sweeps only.
                    ms = with_ms_ssim and prefilter is None
                    rows.append(_row(image, coder, pname, "sweep", setting, 0, data, dt, ms))
                    bar.step(f"{coder.name} {image.name}")
                for budget in budgets:
                    t0 = time.perf_counter()
                    fit = coder.fit_budget(image, pixels, int(budget))
                    dt = time.perf_counter() - t0
                    setting, data = fit if fit is not None else (float("nan"), None)
                    # MS-SSIM only on the sweep: the budget tables do not show it.
                    rows.append(
                        _row(image, coder, pname, "budget", setting, int(budget), data, dt, False)
                    )
                    bar.step(f"{coder.name} {budget} B")
            if pixels is image.pixels:
                done = rows
            result.rows += rows
    result.seconds = time.monotonic() - start
    return result


def series_key(codec: str, prefilter: str) -> str:
    return codec if prefilter == "none" else f"{codec}+{prefilter}"


# ---------------------------------------------------------------------------------------------
# Aggregation


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


def saliency_prefilter(image: EvalImage) -> np.ndarray:
    """Seed 001's saliency blur with the animal boxes as the mask (1 inside, 0 outside).

    Uses the trap's own pre-filter (`device.prefilter`), so the baselines get exactly the blur
    the trap would apply. An image without boxes is left as it is.
    """
    try:
        from device import prefilter
    except ImportError:
        raise UserError("the saliency pre-filter (device/prefilter.py) is not built yet") from None
    from tools.metrics import box_mask

    if not image.boxes:
        return image.pixels  # no animal found: nothing to protect, nothing to blur
    level = box_mask(image.pixels.shape[:2], image.boxes).astype(np.float32)
    return prefilter.prefilter(image.pixels, level)

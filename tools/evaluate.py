"""The evaluation engine: codecs x settings x images -> per-image rows, curves, BD-rates, plots.

Why one engine: `wildlink eval` and `make bench` must produce the same numbers from the same
code, so the CLI and `tools/benchmarks/evaluation.py` both call `run_evaluation` here and
`tools.report` (curves, BD-rates, CSV, plots, Markdown) on its result.

Every decoded image is compared with the *original* (resized) image, also when the encoder got
the saliency pre-filtered one: the blur is a loss the sender chose, and the metrics must show it.
Sizes are the bytes the codec wrote (for wildlink: the whole container), so
`bpp = 8 * bytes / (H * W)` and `ratio = 24 * H * W / (8 * bytes)` (24-bit raw over bytes sent).

Three kinds of coder: `ClassicalCoder` (a Pillow codec at the frame size, sweep and budgets),
the budget-only baselines of `tools.bestres` and `tools.twopart`, and `SchemeCoder`, which wraps
any `encode(image, boxes, budget) -> (decoded at the capture size, bytes used)` callable (the
slot for wildlink's one-part and two-part rows, `tools.wildlink_coder`).

Example::

    images = load_images(Path("eval/camtrap"), Path("eval/camtrap/megadetector.json"))
    result = run_evaluation(images, [ClassicalCoder(CODECS["jpeg"])], budgets=(8000,))
    tools.report.write_outputs(result, Path("out"))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from tools.baselines import Codec, fit_budget
from tools.errors import UserError
from tools.metrics import region_metrics

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
    ) -> tuple[float, bytes] | Coded | None: ...


@dataclass(frozen=True, eq=False)
class Coded:
    """One coding, already decoded: what a row is measured from."""

    setting: float
    nbytes: int
    decoded: np.ndarray  # uint8 (H, W, 3) at the evaluation size


#: A whole scheme as one callable: (pixels, boxes, budget) -> (decoded at the capture size,
#: bytes used), or None when nothing fits the budget.
EncodeFn = Callable[[np.ndarray, tuple[Box, ...], int], "tuple[np.ndarray, int] | None"]


@dataclass
class SchemeCoder:
    """Any scheme given as an `EncodeFn`, through the `Coder` protocol (budgets only).

    The scheme does its own resizing, pre-filtering and decoding; the engine only checks that
    it kept to the budget and returned a picture of the capture size.
    """

    name: str
    label: str
    encode_fn: EncodeFn
    sweep: tuple[float, ...] = ()

    def encode(self, image: EvalImage, pixels: np.ndarray, setting: float) -> bytes:
        raise UserError(f"{self.name} is measured at byte budgets only (give --budgets)")

    def decode(self, data: bytes, image: EvalImage) -> np.ndarray:
        raise UserError(f"{self.name} returns its decoded picture itself")

    def fit_budget(self, image: EvalImage, pixels: np.ndarray, budget: int) -> Coded | None:
        out = self.encode_fn(pixels, image.boxes, int(budget))
        if out is None:
            return None
        decoded, used = np.asarray(out[0]), int(out[1])
        if used > budget:
            raise UserError(f"{self.name} used {used} B on {image.name}, over the {budget} B "
                            "budget")
        if decoded.shape != image.pixels.shape:
            raise UserError(f"{self.name} returned a {decoded.shape} picture for "
                            f"{image.name}, expected the capture size {image.pixels.shape}")
        return Coded(float("nan"), used, decoded)


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
    ssim: float  # full-image SSIM, NaN unless asked for (seed 000 plots it)
    box_psnr: float
    box_ssim: float
    bg_psnr: float
    encode_s: float


METRICS = (
    "bytes", "bpp", "ratio", "psnr", "ms_ssim", "ssim", "box_psnr", "box_ssim", "bg_psnr"
)


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
    budget: int,
    coded: Coded | None,
    seconds: float,
    with_ms_ssim: bool,
    with_ssim: bool = False,
) -> Row:
    nan = float("nan")
    if coded is None:
        return Row(image.name, coder.name, prefilter, mode, nan, budget, *(nan,) * 9, seconds)
    quality = region_metrics(image.pixels, coded.decoded, image.boxes,
                             with_ms_ssim=with_ms_ssim, with_ssim=with_ssim)
    nbytes = coded.nbytes
    bpp = 8.0 * nbytes / image.pixel_count
    return Row(
        image.name,
        coder.name,
        prefilter,
        mode,
        float(coded.setting),
        budget,
        float(nbytes),
        bpp,
        24.0 / bpp,
        quality["psnr"],
        quality["ms_ssim"],
        quality["ssim"],
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
    with_ssim: bool = False,
    progress: bool = True,
    size: int = 0,
    cache: Path | None = None,
) -> EvalResult:
    """Run every coder on every image: its sweep settings and/or each byte budget.

    `prefilters` maps a name ("none", "saliency") to a function giving the pixels to encode
    (None = the image as is). Every combination is one series in the result. `cache` is a
    JSON-lines file of rows: rows found there (same image, codec, pre-filter, setting or
    budget) are reused and new ones appended, so a long run can be stopped and resumed. It
    trusts the file: use a fresh one whenever a codec, the images or the size change.
    """
    prefilters = prefilters or {"none": None}
    cached = _load_cache(cache)
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
                    key = (image.name, coder.name, pname, "sweep", float(setting))
                    if key not in cached:
                        t0 = time.perf_counter()
                        data = coder.encode(image, pixels, setting)
                        dt = time.perf_counter() - t0
                        coded = Coded(setting, len(data), coder.decode(data, image))
                        # MS-SSIM (the slowest metric) on unfiltered sweeps only.
                        ms = with_ms_ssim and prefilter is None
                        cached[key] = _row(image, coder, pname, "sweep", 0, coded, dt, ms,
                                           with_ssim)
                        _remember(cache, cached[key])
                    rows.append(cached[key])
                    bar.step(f"{coder.name} {image.name}")
                for budget in budgets:
                    key = (image.name, coder.name, pname, "budget", float(budget))
                    if key not in cached:
                        t0 = time.perf_counter()
                        fit = coder.fit_budget(image, pixels, int(budget))
                        dt = time.perf_counter() - t0
                        # MS-SSIM only on the sweep: the budget tables do not show it.
                        cached[key] = _row(image, coder, pname, "budget", int(budget),
                                           _coded(coder, image, fit), dt, False)
                        _remember(cache, cached[key])
                    rows.append(cached[key])
                    bar.step(f"{coder.name} {budget} B")
            if pixels is image.pixels:
                done = rows
            result.rows += rows
    result.seconds = time.monotonic() - start
    return result


def _coded(coder: Coder, image: EvalImage, fit) -> Coded | None:
    """A `fit_budget` answer as a `Coded`: (setting, bytes) is decoded here."""
    if fit is None or isinstance(fit, Coded):
        return fit
    setting, data = fit
    return Coded(setting, len(data), coder.decode(data, image))


def _row_key(row: Row) -> tuple:
    value = row.setting if row.mode == "sweep" else row.budget
    return (row.image, row.codec, row.prefilter, row.mode, float(value))


def _load_cache(path: Path | None) -> dict[tuple, Row]:
    import json

    if path is None or not Path(path).is_file():
        return {}
    out = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            row = Row(**json.loads(line))
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}:{number}: not a row of this evaluation ({exc})") from None
        out[_row_key(row)] = row
    return out


def _remember(path: Path | None, row: Row) -> None:
    import json
    from dataclasses import asdict

    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(asdict(row)) + "\n")


def series_key(codec: str, prefilter: str) -> str:
    return codec if prefilter == "none" else f"{codec}+{prefilter}"


def saliency_prefilter(image: EvalImage) -> np.ndarray:
    """Seed 001's saliency blur with the animal boxes as the mask (1 inside, 0 outside).

    Uses the trap's own pre-filter (`device.prefilter`), so the baselines get exactly the blur
    the trap would apply. An image without boxes is left as it is.
    """
    from device import prefilter
    from tools.metrics import box_mask

    if not image.boxes:
        return image.pixels  # no animal found: nothing to protect, nothing to blur
    level = box_mask(image.pixels.shape[:2], image.boxes).astype(np.float32)
    return prefilter.prefilter(image.pixels, level)

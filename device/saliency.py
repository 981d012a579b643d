"""Saliency: which parts of a picture matter (DESIGN.md data flow, step 3).

Three sources behind one interface; each returns a `SaliencyMap` (boxes plus a per-pixel level
map in [0, 1] for the pre-filter):

- `megadetector_boxes`: boxes from a MegaDetector results JSON (category 1 = animal,
  `conf >= 0.2` by default, MegaDetector's own order kept);
- `BackgroundModel` (device/background.py): what moved against a per-site running median;
- `spectral_residual`: Hou and Zhang (CVPR 2007), the fallback before a background exists.

`Saliency` is the policy that picks one, in one place for the encoder and the trap: "auto" takes
the picture's boxes (given, or looked up in MegaDetector results), else the background model
(on the camera's low-resolution picture) once it has seen enough pictures of this illumination
mode, else spectral residual. `compute_saliency(image, mode)` is that policy for one picture.

Example:
    >>> detections = load_megadetector("megadetector.json")           # doctest: +SKIP
    >>> result = compute_saliency(image, "auto", boxes=detections.get("cat.jpg"))
    >>> result.boxes, result.levels.shape
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path, PurePath

import numpy as np

from device.background import BackgroundConfig, BackgroundModel
from device.boxes import (
    MAX_BOXES,
    Box,
    SaliencyMap,
    component_boxes,
    dilate,
    downsample,
    info_bar_rows,
    levels_from_boxes,
    luma,
    merge_boxes,
    resize_bilinear,
)
from device.errors import ConfigError
from device.prefilter import blur

__all__ = [
    "MODES",
    "Box",
    "Saliency",
    "SaliencyMap",
    "BackgroundConfig",
    "BackgroundModel",
    "compute_saliency",
    "load_megadetector",
    "megadetector_boxes",
    "from_boxes",
    "spectral_residual",
    "levels_from_boxes",
]

MODES = ("auto", "boxes", "background", "spectral", "none")
ANIMAL = 1
DEFAULT_THRESHOLD = 0.2
LEVELS = 4  # distinct saliency levels of the spectral map


class SaliencyError(ConfigError):
    """Saliency input (a MegaDetector file, a mode) is unusable."""


def megadetector_boxes(
    entry: dict, threshold: float = DEFAULT_THRESHOLD, categories=(ANIMAL,)
) -> list[Box]:
    """Boxes of one image entry of a MegaDetector results file, in the file's order.

    Keeps `category` in `categories` with `conf >= threshold`; if more than the container's
    16 remain, the most confident 16 are kept (still in file order).
    """
    detections = entry.get("detections") or []  # failed images carry None
    boxes = []
    for det in detections:
        try:
            category, conf = int(det["category"]), float(det["conf"])
            x, y, w, h = (float(v) for v in det["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SaliencyError(f"malformed MegaDetector detection {det!r}: {exc}") from None
        if category in categories and conf >= threshold and w > 0 and h > 0:
            boxes.append(Box(x, y, w, h, conf, category))
    if len(boxes) > MAX_BOXES:
        keep = set(sorted(range(len(boxes)), key=lambda i: -boxes[i].conf)[:MAX_BOXES])
        boxes = [b for i, b in enumerate(boxes) if i in keep]
    return boxes


def load_megadetector(
    path: str | Path, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, list[Box]]:
    """Read a MegaDetector batch results JSON: {file as written: boxes}.

    Look images up with `boxes_for(detections, image_path)`, which also matches by file name.
    """
    try:
        data = json.loads(Path(path).read_text())
        images = data["images"]
        return {str(e["file"]): megadetector_boxes(e, threshold) for e in images}
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SaliencyError(f"cannot read MegaDetector results {path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise SaliencyError(f"{path} is not a MegaDetector results file (no {exc})") from None


def boxes_for(detections: dict[str, list[Box]], image_path: str | Path) -> list[Box]:
    """The boxes of `image_path` in a loaded results file (exact path, then file name)."""
    key = str(image_path)
    if key in detections:
        return detections[key]
    name = PurePath(key).name
    matches = [k for k in detections if PurePath(k.replace("\\", "/")).name == name]
    if len(matches) == 1:
        return detections[matches[0]]
    if len(detections) == 1 and not matches:
        return next(iter(detections.values()))
    reason = "several entries match" if matches else "it has no entry for"
    raise SaliencyError(f"MegaDetector results: {reason} {name}")


def from_boxes(image: np.ndarray, boxes, background: float = 0.0) -> SaliencyMap:
    """Saliency from known boxes: level 1 inside, `background` outside."""
    height, width = np.asarray(image).shape[:2]
    boxes = tuple(b.clipped() for b in boxes if b.clipped().area > 0)[:MAX_BOXES]
    return SaliencyMap(boxes, levels_from_boxes(boxes, height, width, background), "boxes")


def spectral_residual(
    image: np.ndarray, width: int = 64, background: float = 0.0, min_area: float = 0.004
) -> SaliencyMap:
    """Spectral residual saliency (Hou and Zhang, CVPR 2007).

    On a ~64-column grey thumbnail: R(f) = L(f) - h_3 * L(f), with L the log amplitude
    spectrum and h_3 a 3x3 mean (eq. 5); S(x) = g * |F^-1[exp(R(f) + i P(f))]|^2 (eq. 6);
    object map S > 3 E[S] (sec. 3.3). Levels: S / threshold clipped to [0, 1] and rounded to
    4 levels, 1 in the boxes.
    """
    height, width_full = np.asarray(image).shape[:2]
    full = luma(image)
    top, bottom = info_bar_rows(full)
    grey = downsample(full, width)
    # Burned-in info bars are text on a flat strip, the most "surprising" thing in a picture:
    # cut them off before the transform, then give them saliency 0.
    scale = grey.shape[0] / height
    cut_top, cut_bottom = int(np.ceil(top * scale)), int(np.ceil(bottom * scale))
    if grey.shape[0] - cut_top - cut_bottom < 8:
        cut_top = cut_bottom = 0
    inner = grey[cut_top : grey.shape[0] - cut_bottom]
    spectrum = np.fft.fft2(inner)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    phase = np.angle(spectrum)
    padded = np.pad(log_amp, 1, mode="wrap")  # the spectrum is periodic
    h, w = log_amp.shape
    mean3 = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    residual = log_amp - mean3
    inner_sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    inner_sal = blur(inner_sal.astype(np.float32), 9)  # g: Gaussian, sigma ~1.6 cells
    sal = np.zeros(grey.shape, np.float32)
    sal[cut_top : cut_top + h] = inner_sal
    threshold = 3.0 * float(sal.mean())
    if threshold <= 0:
        return SaliencyMap((), np.ones((height, width_full), np.float32), "spectral")
    objects = dilate(sal > threshold, 1)
    boxes = tuple(merge_boxes(component_boxes(objects, min_area))[:MAX_BOXES])
    levels = np.clip(resize_bilinear(sal / threshold, height, width_full), 0.0, 1.0)
    # Four levels (K = 17, 11, 5, 1): the pre-filter costs one blur per distinct K.
    levels = np.floor(levels * (LEVELS - 1) + 0.5) / (LEVELS - 1)
    levels = np.maximum(levels_from_boxes(boxes, height, width_full, background), levels)
    return SaliencyMap(boxes, levels.astype(np.float32), "spectral")


def no_saliency(image: np.ndarray) -> SaliencyMap:
    """Everything salient: no boxes, no blur."""
    height, width = np.asarray(image).shape[:2]
    return SaliencyMap((), np.ones((height, width), np.float32), "none")


class Saliency:
    """The saliency policy: which source speaks for a picture, and what the background learns.

    The one place that decides (the encoder and the trap both call it). For each picture, in
    order: MegaDetector boxes (given; else a `megadetector.json` beside the picture's file; else
    the configured `detections`, looked up by file name); else the site's background model,
    on the camera's low-resolution picture when there is one (it learns that one, once); else
    spectral residual saliency. A mode other than "auto" narrows the choice to one source.

    Args:
        mode: "auto", "boxes", "background", "spectral" or "none".
        background: the site's `BackgroundModel`, or None (no background source).
        detections: MegaDetector results (`load_megadetector`) to look pictures up in, or None.
        lenient: in mode "boxes", a picture without boxes falls back to "auto" instead of
            raising (a trap must not fail on a picture the detector skipped).
        background_path: where `save` keeps the background model (None: not kept).

    Example:
        >>> policy = Saliency.for_site("auto", Path("background.npz"))     # doctest: +SKIP
        >>> found = policy(small, lores=picture.lores, path=picture.path)
        >>> found.source, found.boxes
    """

    def __init__(self, mode: str = "auto", background: BackgroundModel | None = None,
                 detections: dict[str, list[Box]] | None = None, *, lenient: bool = False,
                 background_path: Path | None = None) -> None:
        if mode not in MODES:
            raise SaliencyError(f"unknown saliency mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.background = background
        self.detections = detections
        self.lenient = lenient
        self.background_path = background_path
        self._beside: dict[Path, dict[str, list[Box]]] = {}  # folder -> its megadetector.json

    @classmethod
    def for_site(cls, mode: str, background_path: Path | None = None,
                 detections: dict[str, list[Box]] | None = None) -> Saliency:
        """A trap's policy: its background model loaded from `background_path` (or a new
        one) when the mode uses one, and lenient about pictures the detector skipped."""
        background = None
        if mode in ("auto", "background"):
            if background_path is not None and Path(background_path).is_file():
                background = BackgroundModel.load(background_path)
            else:
                background = BackgroundModel()
        return cls(mode, background, detections, lenient=True, background_path=background_path)

    def boxes_of(self, path: str | Path | None) -> tuple[Box, ...] | None:
        """MegaDetector boxes known for the picture at `path` (its file or name), or None.

        A `megadetector.json` beside the file first (a camera card, a replay folder), then the
        configured results by file name.
        """
        if path is None:
            return None
        path = Path(path)
        lookups = []
        if path.is_file():  # a camera's own name (no file) has no folder to look in
            folder = path.parent
            if folder not in self._beside:
                results = folder / "megadetector.json"
                self._beside[folder] = load_megadetector(results) if results.is_file() else {}
            lookups.append((self._beside[folder], path))
        lookups.append((self.detections, path.name))
        for detections, key in lookups:
            if detections:
                try:
                    return tuple(boxes_for(detections, key))
                except SaliencyError:  # no entry for this picture: the next source
                    pass
        return None

    def __call__(self, image: np.ndarray, *, boxes=None, lores: np.ndarray | None = None,
                 path: str | Path | None = None, background_level: float = 0.0,
                 learn: bool = True) -> SaliencyMap:
        """One saliency map for `image` ([H, W, 3] uint8 at transmit size).

        Args:
            boxes: known boxes (e.g. from MegaDetector); None: looked up for `path`.
            lores: the camera's low-resolution picture of the same instant, for the background
                model (None: the model sees `image`).
            path: the picture's file (or name), to look its boxes up.
            background_level: level outside the boxes (0 = strongest blur).
            learn: the background model learns this picture.
        """
        mode = self.mode
        if mode == "none":
            return no_saliency(image)
        if boxes is None and mode in ("auto", "boxes"):
            boxes = self.boxes_of(path)
        if mode == "boxes" and boxes is None:
            if not self.lenient:
                raise SaliencyError("saliency mode 'boxes' needs boxes (e.g. --boxes MD.json)")
            mode = "auto"  # no detector output for this picture: fall back, never fail
        if mode in ("auto", "boxes") and boxes is not None:
            return from_boxes(image, boxes, background_level)
        if mode in ("auto", "background") and self.background is not None:
            found = self.background.observe(image if lores is None else lores, learn=learn)
            if found is not None:  # its boxes at the transmit size
                return replace(from_boxes(image, found.boxes, background_level),
                               source="background")
        elif mode == "background":
            raise SaliencyError(
                "saliency mode 'background' needs a background model (--background-model SITE.npz)"
            )
        return spectral_residual(image, background=background_level)

    def save(self) -> None:
        """Keep the background model at `background_path` (raises OSError, e.g. a full card)."""
        if self.background is not None and self.background_path is not None:
            self.background.save(self.background_path)


def compute_saliency(
    image: np.ndarray,
    mode: str = "auto",
    boxes=None,
    background: BackgroundModel | None = None,
    learn: bool = True,
    background_level: float = 0.0,
    lores: np.ndarray | None = None,
) -> SaliencyMap:
    """One saliency map for `image` ([H, W, 3] uint8 at transmit size): `Saliency(mode,
    background)` for one picture (its docstring has the policy and the arguments)."""
    policy = Saliency(mode, background)
    return policy(image, boxes=boxes, lores=lores, background_level=background_level,
                  learn=learn)

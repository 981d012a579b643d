"""Boxes, level maps and the small binary-image toolkit the saliency sources share.

Numpy only (no scipy on the trap): luma, block downsampling, box blur, 3x3 morphology,
connected components and component boxes. Boxes use MegaDetector's convention: `[x, y, w, h]`
normalised to the image size, top-left origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.errors import ImageError

#: The container carries at most this many boxes (DESIGN.md, container contract).
MAX_BOXES = 16
#: Confidence of a box found by saliency (spectral residual, background model) rather than by a
#: detector: it says where to spend bits, not that an animal is there. It travels as the
#: container's confidence byte 0, which no detector box reaches (MegaDetector boxes are kept from
#: conf 0.2), and the base station reports such boxes as regions, never as animals.
REGION_CONF = 0.0


@dataclass(frozen=True)
class Box:
    """One region of interest, normalised `[x, y, w, h]` as in MegaDetector's `bbox`."""

    x: float
    y: float
    w: float
    h: float
    conf: float = 1.0
    category: int = 1

    def clipped(self) -> Box:
        """The part of the box inside the unit square (may have zero size)."""
        x0, y0 = min(max(self.x, 0.0), 1.0), min(max(self.y, 0.0), 1.0)
        x1, y1 = min(max(self.x + self.w, 0.0), 1.0), min(max(self.y + self.h, 0.0), 1.0)
        return Box(x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0), self.conf, self.category)

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1), half-open, covering every pixel the box touches."""
        b = self.clipped()
        r0, c0 = int(np.floor(b.y * height)), int(np.floor(b.x * width))
        r1, c1 = int(np.ceil((b.y + b.h) * height)), int(np.ceil((b.x + b.w) * width))
        return r0, max(r1, r0 + 1 if b.h > 0 else r0), c0, max(c1, c0 + 1 if b.w > 0 else c0)

    @property
    def area(self) -> float:
        b = self.clipped()
        return b.w * b.h


@dataclass(frozen=True, eq=False)
class SaliencyMap:
    """What every saliency source returns.

    Attributes:
        boxes: regions of interest, most important first within the source's own order.
        levels: float32 [H, W] in [0, 1]; 1 = keep sharp, 0 = blur most (seed 001).
        source: "boxes", "background", "spectral" or "none".
    """

    boxes: tuple[Box, ...]
    levels: np.ndarray
    source: str


def levels_from_boxes(
    boxes, height: int, width: int, background: float = 0.0, margin: float = 0.0
) -> np.ndarray:
    """Level map: 1 inside each box (grown by `margin` of the image size), `background` outside.

    With no boxes the whole image is salient (level 1): nothing is known to be background.
    """
    if not boxes:
        return np.ones((height, width), np.float32)
    levels = np.full((height, width), float(background), np.float32)
    for box in boxes:
        grown = Box(box.x - margin, box.y - margin, box.w + 2 * margin, box.h + 2 * margin)
        r0, r1, c0, c1 = grown.pixels(height, width)
        levels[r0:r1, c0:c1] = 1.0
    return levels


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an [H, W, 3] image (or the image itself if grey), float32."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float32)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ImageError(f"expected an RGB image, got shape {image.shape}")
    rgb = image[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def downsample(plane: np.ndarray, width: int) -> np.ndarray:
    """Block-average a 2-D plane to about `width` columns (integer factor, edges cropped)."""
    factor = max(1, plane.shape[1] // max(width, 1))
    h, w = plane.shape[0] // factor, plane.shape[1] // factor
    if h == 0 or w == 0:
        return plane.astype(np.float32)
    block = plane[: h * factor, : w * factor].astype(np.float32)
    return block.reshape(h, factor, w, factor).mean(axis=(1, 3))


def box_blur(plane: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window via cumulative sums (edge-replicated), float32."""
    if radius <= 0:
        return plane.astype(np.float32)
    padded = np.pad(plane.astype(np.float64), radius + 1, mode="edge")
    cum = padded.cumsum(0).cumsum(1)
    n = 2 * radius + 1
    h, w = plane.shape
    total = cum[n : n + h, n : n + w] - cum[0:h, n : n + w] - cum[n : n + h, 0:w] + cum[0:h, 0:w]
    return (total / (n * n)).astype(np.float32)


def _shifts(mask: np.ndarray, op) -> np.ndarray:
    padded = np.pad(mask, 1, mode="constant", constant_values=op is np.logical_and)
    out = padded[1:-1, 1:-1].copy()
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out = op(out, padded[dy : dy + h, dx : dx + w])
    return out


def dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary dilation by a 3x3 square, `iterations` times."""
    for _ in range(iterations):
        mask = _shifts(mask, np.logical_or)
    return mask


def erode(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary erosion by a 3x3 square (outside the image counts as set)."""
    for _ in range(iterations):
        mask = _shifts(mask, np.logical_and)
    return mask


def opening(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Erode then dilate: removes specks smaller than the structuring element."""
    return dilate(erode(mask, iterations), iterations)


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels (0 = background, 1..n) by min-label propagation with pointer jumping."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    big = np.iinfo(np.int64).max
    labels = np.where(mask, np.arange(h * w, dtype=np.int64).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, mode="constant", constant_values=big)
        best = labels
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                best = np.minimum(best, padded[dy : dy + h, dx : dx + w])
        best = np.where(mask, best, big)
        # Pointer jumping: follow each label to the label its root pixel now holds.
        flat = best.ravel()
        fg = flat != big
        flat[fg] = flat[flat[fg]]
        if np.array_equal(best, labels):
            break
        labels = best
    roots, dense = np.unique(labels[mask], return_inverse=True)
    out = np.zeros((h, w), np.int32)
    out[mask] = dense + 1
    return out, len(roots)


def component_boxes(mask: np.ndarray, min_area: float = 0.0, pad: int = 0) -> list[Box]:
    """Boxes of the 8-connected components of `mask` covering at least `min_area` (fraction).

    Sorted largest first; each box grown by `pad` cells and normalised to the mask size, with
    confidence `REGION_CONF` (a salient region, not a detection).
    """
    labels, count = connected_components(mask)
    if count == 0:
        return []
    h, w = mask.shape
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols] - 1
    sizes = np.bincount(ids, minlength=count)
    r0 = np.full(count, h)
    c0 = np.full(count, w)
    r1 = np.zeros(count, int)
    c1 = np.zeros(count, int)
    np.minimum.at(r0, ids, rows)
    np.minimum.at(c0, ids, cols)
    np.maximum.at(r1, ids, rows + 1)
    np.maximum.at(c1, ids, cols + 1)
    boxes = []
    for i in np.argsort(-sizes, kind="stable"):
        if sizes[i] < min_area * h * w:
            continue
        y0, y1 = max(r0[i] - pad, 0), min(r1[i] + pad, h)
        x0, x1 = max(c0[i] - pad, 0), min(c1[i] + pad, w)
        boxes.append(
            Box(x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h, conf=REGION_CONF)
        )
    return boxes


def resize_bilinear(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D float plane (pixel centres aligned), float32."""
    plane = np.asarray(plane, np.float32)
    sh, sw = plane.shape
    y = np.clip((np.arange(height) + 0.5) * sh / height - 0.5, 0, sh - 1)
    x = np.clip((np.arange(width) + 0.5) * sw / width - 0.5, 0, sw - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, sh - 1), np.minimum(x0 + 1, sw - 1)
    fy, fx = (y - y0)[:, None].astype(np.float32), (x - x0)[None, :].astype(np.float32)
    top = plane[y0][:, x0] * (1 - fx) + plane[y0][:, x1] * fx
    bottom = plane[y1][:, x0] * (1 - fx) + plane[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def merge_boxes(boxes) -> list[Box]:
    """Union overlapping boxes until none overlap (an animal's parts become one box).

    The merged box keeps the highest confidence; the list stays sorted largest first.
    """
    boxes = [b.clipped() for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h:
                    x0, y0 = min(a.x, b.x), min(a.y, b.y)
                    x1, y1 = max(a.x + a.w, b.x + b.w), max(a.y + a.h, b.y + b.h)
                    boxes[i] = Box(x0, y0, x1 - x0, y1 - y0, max(a.conf, b.conf), a.category)
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes, key=lambda b: -b.area)


def info_bar_rows(plane: np.ndarray, limit: float = 0.12, share: float = 0.6) -> tuple[int, int]:
    """Heights (top, bottom) of burned-in info bars in a luma plane.

    Camera traps print date and temperature on a flat strip: a row where at least `share`
    of the pixels lie within 10 grey levels of the row median. Scans inwards from each edge
    over at most `limit` of the height. A flat sky counts too, which costs nothing: it is not
    salient either.
    """
    h = plane.shape[0]
    step = max(1, plane.shape[1] // 256)
    sample = plane[:, ::step]
    flat = np.mean(np.abs(sample - np.median(sample, axis=1, keepdims=True)) <= 10, axis=1)
    bar = flat >= share
    most = int(limit * h)
    top = int(np.argmin(bar[:most])) if not bar[:most].all() else most
    bottom = int(np.argmin(bar[::-1][:most])) if not bar[::-1][:most].all() else most
    return top, bottom

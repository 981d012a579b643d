"""The classical two-part scheme: AVIF of the animal crop + AVIF of the whole frame, small.

Why: at a few kilobytes the animal needs the bytes, the scene only needs to be recognisable.
A careful user with stock tools sends two files: the union of the animal boxes plus a margin,
coded at its best scale (upsampling allowed), and the whole frame at a low resolution as
context. The receiver upsamples the context to the capture size and pastes the crop with a
feathered blend (`compose`, reusable for any two-part decoder). This is the baseline wildlink's
container v2 must beat (issue 13).

Rate split: for each share of the budget in `CONTEXT_SHARES`, the context takes its best
resolution within that share (scored by background PSNR) and the crop its best scale within
the rest (scored by box PSNR); the split kept maximises `box PSNR + BG_WEIGHT * background PSNR`
of the composed picture (BG_WEIGHT 0.5: a dB of scene is worth half a dB of animal, so the
context is not starved to its smallest file).

Bytes on the wire: a 15-byte header (`PACK`: capture height and width, crop rectangle, feather
width, crop length) + crop AVIF + context AVIF. Everything counts against the budget.

Example::

    coder = TwoPartCoder()
    setting, data = coder.fit_budget(image, image.pixels, 3000)   # len(data) <= 3000
    picture = coder.decode(data, image)                           # capture size
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tools.baselines import CODECS, Codec, resample
from tools.bestres import ResolutionSearch
from tools.errors import UserError
from tools.metrics import box_mask, psnr

__all__ = ["BG_WEIGHT", "CONTEXT_SHARES", "CONTEXT_SIDES", "CROP_SCALES", "MARGIN", "PACK",
           "Rect", "TwoPartCoder", "box_union", "compose", "crop_rect", "feather_alpha",
           "feather_width", "pack", "unpack"]

#: Margin around the union of the boxes, as a fraction of the union's width / height.
MARGIN = 0.15
#: Smallest margin in pixels (room for the feather on small animals).
MIN_MARGIN = 8
#: Long sides tried for the context, largest first.
CONTEXT_SIDES = (384, 320, 256, 208, 160, 128)
#: Scales of the crop tried (upsampling allowed), and the largest crop side coded.
CROP_SCALES = (3.0, 2.0, 1.5, 1.0, 0.75, 0.5)
MAX_CROP_SIDE = 1024
#: Shares of the budget offered to the context.
CONTEXT_SHARES = (0.15, 0.25, 0.35, 0.5)
BG_WEIGHT = 0.5
#: Header: capture height, width; crop x0, y0, x1, y1 (pixels); feather (pixels); crop length.
PACK = struct.Struct(">HHHHHHBH")


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle [x0, x1) x [y0, y1) of the capture."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0:self.y1, self.x0:self.x1]


def box_union(boxes: Sequence, shape: Sequence[int]) -> Rect:
    """The pixel rectangle around every normalised [x, y, w, h] box."""
    if not boxes:
        raise UserError("the two-part scheme needs at least one animal box")
    mask = box_mask((int(shape[0]), int(shape[1])), boxes)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise UserError(f"the boxes {list(boxes)} lie outside the frame")
    return Rect(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def crop_rect(boxes: Sequence, shape: Sequence[int], margin: float = MARGIN) -> Rect:
    """The union of the boxes plus `margin` (at least `MIN_MARGIN` px), clipped to the frame."""
    union = box_union(boxes, shape)
    my = max(MIN_MARGIN, round(margin * union.shape[0]))
    mx = max(MIN_MARGIN, round(margin * union.shape[1]))
    return Rect(max(0, union.x0 - mx), max(0, union.y0 - my), min(int(shape[1]), union.x1 + mx),
                min(int(shape[0]), union.y1 + my))


def feather_width(union: Rect, rect: Rect) -> int:
    """Half the narrowest margin left inside the frame: the blend stays off the animal."""
    margins = [m for m in (union.x0 - rect.x0, union.y0 - rect.y0, rect.x1 - union.x1,
                           rect.y1 - union.y1) if m > 0]
    return max(1, min(margins, default=2) // 2)


def feather_alpha(rect: Rect, shape: Sequence[int], width: int) -> np.ndarray:
    """Crop weight (h, w) in (0, 1]: a linear ramp over `width` px from each edge inside the
    frame, 1 along edges on the frame border (nothing to blend with there)."""

    def ramp(n: int, start: int, stop: int, size: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float32) + 0.5
        near = np.full(n, np.inf, np.float32) if start == 0 else i
        far = np.full(n, np.inf, np.float32) if stop == size else n - i
        return np.clip(np.minimum(near, far) / max(1, width), 0.0, 1.0)

    h, w = rect.shape
    ay = ramp(h, rect.y0, rect.y1, int(shape[0]))
    ax = ramp(w, rect.x0, rect.x1, int(shape[1]))
    return ay[:, None] * ax[None, :]


def compose(context: np.ndarray, crop: np.ndarray, rect: Rect, shape: Sequence[int],
            feather: int) -> np.ndarray:
    """The picture at the capture `shape`: `context` upsampled, `crop` (any size, scaled to
    `rect`) blended in with `feather_alpha`. uint8 (H, W, 3)."""
    out = resample(context, int(shape[0]), int(shape[1])).astype(np.float32)
    patch = resample(crop, *rect.shape).astype(np.float32)
    alpha = feather_alpha(rect, shape, feather)[:, :, None]
    region = rect.cut(out)
    region[...] = alpha * patch + (1.0 - alpha) * region
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pack(shape: Sequence[int], rect: Rect, feather: int, crop: bytes, context: bytes) -> bytes:
    """The two files as one message (the 15-byte `PACK` header first)."""
    head = PACK.pack(int(shape[0]), int(shape[1]), rect.x0, rect.y0, rect.x1, rect.y1,
                     int(feather), len(crop))
    return head + crop + context


def unpack(data: bytes) -> tuple[tuple[int, int], Rect, int, bytes, bytes]:
    """Inverse of `pack`: (shape, rect, feather, crop bytes, context bytes)."""
    if len(data) < PACK.size:
        raise UserError(f"two-part message of {len(data)} B is shorter than its header")
    height, width, x0, y0, x1, y1, feather, n = PACK.unpack_from(data)
    rect = Rect(x0, y0, x1, y1)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height) or PACK.size + n > len(data):
        raise UserError("two-part message has a bad header (crop outside the frame or cut)")
    body = data[PACK.size:]
    return (height, width), rect, feather, body[:n], body[n:]


@dataclass
class TwoPartCoder:
    """AVIF crop + AVIF context through the evaluation's `Coder` protocol (budgets only).

    The setting reported is the context's share of the bytes. Images without boxes do not fit
    (there is no crop to code); the table counts them as such.
    """

    codec: Codec = field(default_factory=lambda: CODECS["avif"])
    shares: tuple[float, ...] = CONTEXT_SHARES
    context_sides: tuple[int, ...] = CONTEXT_SIDES
    crop_scales: tuple[float, ...] = CROP_SCALES
    sweep: tuple[float, ...] = ()
    _last: tuple | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.codec.name}-twopart"

    @property
    def label(self) -> str:
        return f"{self.codec.label} crop+context"

    def encode(self, image, pixels: np.ndarray, setting: float) -> bytes:
        raise UserError(f"{self.name} is measured at byte budgets only (give --budgets)")

    def _searches(self, image, pixels: np.ndarray):
        """(rect, feather, context search, crop search) of one image, shared by its budgets."""
        key = (image.name, id(pixels))
        if self._last is None or self._last[0] != key:
            shape = image.pixels.shape[:2]
            rect = crop_rect(image.boxes, shape)
            feather = min(255, feather_width(box_union(image.boxes, shape), rect))
            full = box_mask(shape, image.boxes)
            original_crop = rect.cut(image.pixels)
            crop_mask = rect.cut(full)
            long = max(rect.shape)
            crop_sides = sorted({min(MAX_CROP_SIDE, max(16, round(long * s)))
                                 for s in self.crop_scales}, reverse=True)
            context = ResolutionSearch(
                self.codec, pixels, lambda d: psnr(image.pixels, d, ~full), shape,
                [s for s in self.context_sides if s <= max(shape)] or [max(shape)])
            crop = ResolutionSearch(
                self.codec, rect.cut(pixels), lambda d: psnr(original_crop, d, crop_mask),
                rect.shape, crop_sides)
            self._last = (key, rect, feather, context, crop)
        return self._last[1:]

    def fit_budget(self, image, pixels: np.ndarray, budget: int):
        if not image.boxes:
            return None
        rect, feather, context, crop = self._searches(image, pixels)
        shape = image.pixels.shape[:2]
        mask = box_mask(shape, image.boxes)
        room = int(budget) - PACK.size
        best = None
        for share in self.shares:
            ctx = context.best(int(room * share))
            if ctx is None:
                continue
            part = crop.best(room - len(ctx.data))
            if part is None:
                continue
            picture = compose(ctx.decoded, part.decoded, rect, shape, feather)
            value = psnr(image.pixels, picture, mask) + BG_WEIGHT * psnr(
                image.pixels, picture, ~mask)
            if best is None or value > best[0]:
                best = (value, share, pack(shape, rect, feather, part.data, ctx.data))
        return None if best is None else (float(best[1]), best[2])

    def decode(self, data: bytes, image) -> np.ndarray:
        shape, rect, feather, crop, context = unpack(data)
        return compose(self.codec.decode(context), self.codec.decode(crop), rect, shape,
                       feather)

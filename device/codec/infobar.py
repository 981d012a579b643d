"""The camera's burned-in information bar (date, time, temperature) as a part of its own.

Most camera traps print a strip of text along the top or bottom of every frame; to an
ecologist it is data. The learned codec blurs it unreadable at LoRa budgets, so the bar is
found (`find_bars`), reduced to two colours and a bitmap, and coded with the bilevel coder
(device/codec/bilevel.py): a few hundred bytes, sharp at the base.

An info-bar part (container kind `KIND_INFOBAR`) reuses the part layout: its z stream holds
the two colours (background RGB, ink RGB: 6 bytes) and band 0 the bitmap at the part's coded
size; level and steps are 0.
"""

from __future__ import annotations

import numpy as np

from device.boxes import info_bar_rows, luma
from device.codec import bilevel
from device.codec.container import KIND_INFOBAR, Band, Part, part_header_size
from device.errors import ContainerError
from device.imageio import resize

#: A bar is at least this many rows of the capture (and not the scan's whole limit: that is
#: a flat sky or wall, not a strip of text), and at least this share of it is ink.
MIN_ROWS = 8
MIN_INK = 0.03
#: Widest bitmap sent; a wider bar is scaled down (text stays legible to ~1280 px).
MAX_WIDTH = 1280
#: Share of the budget above which the bar is sent at half the width, then not at all;
#: a bitmap under MIN_CODED_ROWS rows is not legible, so it is not sent.
MAX_SHARE = 0.2
MIN_CODED_ROWS = 10


def find_bars(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Capture-pixel rects (x0, y0, x1, y1) of the info bars at the top and bottom."""
    plane = luma(image)
    h, w = plane.shape
    limit = 0.12
    top, bottom = info_bar_rows(plane, limit=limit)
    rects = []
    for rows, (y0, y1) in ((top, (0, top)), (bottom, (h - bottom, h))):
        if rows < MIN_ROWS or rows >= int(limit * h):
            continue
        strip = plane[y0:y1]
        ink = np.abs(strip - np.median(strip, axis=1, keepdims=True)) > 40
        if ink.mean() >= MIN_INK:
            rects.append((0, y0, w, y1))
    return rects


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of uint8-range values (the split that best separates two classes)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256)
    hist = hist.astype(np.float64)
    total = hist.sum()
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(np.argmax(between)) + 0.5


def code_bar(image: np.ndarray, rect, width: int | None = None) -> Part:
    """The info-bar part for `rect` of the capture, its bitmap `width` px wide (default:
    the bar's own width, at most MAX_WIDTH)."""
    x0, y0, x1, y1 = rect
    strip = image[y0:y1, x0:x1]
    w = min(x1 - x0, MAX_WIDTH) if width is None else int(width)
    h = max(1, int(round((y1 - y0) * w / (x1 - x0))))
    small = resize(strip, h, w)
    grey = luma(small)
    ink = grey > _otsu(grey)
    if ink.mean() > 0.5:  # the minority is the ink
        ink = ~ink
    background = small[~ink].mean(axis=0) if (~ink).any() else np.zeros(3)
    colour = small[ink].mean(axis=0) if ink.any() else np.full(3, 255.0)
    colours = bytes(int(round(v)) for v in (*background, *colour))
    bitmap = bilevel.encode(ink)
    return Part(KIND_INFOBAR, tuple(int(v) for v in rect), w, h, colours,
                (Band(0, bitmap),))


def decode_bar(part: Part) -> np.ndarray:
    """uint8 [coded_height, coded_width, 3] of an info-bar part (z = its two colours)."""
    if part.z is None or len(part.z) != 6:
        raise ContainerError("info bar part: its colours are missing or not 6 bytes")
    background = np.frombuffer(part.z[:3], np.uint8)
    colour = np.frombuffer(part.z[3:], np.uint8)
    bands = {b.index: b.data for b in part.bands}
    ink = bilevel.decode(bands.get(0, b""), part.coded_height, part.coded_width)
    return np.where(ink[..., None], colour, background).astype(np.uint8)


def part_bytes(part: Part) -> int:
    """Streams plus this part's header share."""
    return part_header_size(part.kind, len(part.bands)) + len(part.z) + sum(len(b.data) for b in part.bands)


def bars_within(image: np.ndarray, budget: int) -> list[Part]:
    """The info-bar parts of `image`, each at full width, half width, or left out, so that
    together they stay within MAX_SHARE of `budget`."""
    parts = []
    room = MAX_SHARE * budget
    for rect in find_bars(image):
        width = min(rect[2] - rect[0], MAX_WIDTH)
        while (rect[3] - rect[1]) * width / (rect[2] - rect[0]) >= MIN_CODED_ROWS:
            part = code_bar(image, rect, width)
            if part_bytes(part) <= room:
                parts.append(part)
                room -= part_bytes(part)
                break
            width //= 2
    return parts

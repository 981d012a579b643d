"""Two-part coding: the animals in full detail, the scene as context, in one container.

At a few kilobytes a one-image coding spends most bytes on background latents while the
animal hits the model's rate ceiling. Two-part coding sends instead

- *regions*: each animal crop (boxes grown by a margin, merged when they overlap or are
  close), cut from the full-resolution capture and coded at a scale of its own, and
- a *context*: the whole picture at a low resolution, which the base upsamples and pastes the
  regions onto (device/codec/compose.py).

Rate control over the whole container (docs/codec.md, "Two-part rate control"):

1. The context gets `CONTEXT_SHARE` of the budget (at least `CONTEXT_MIN_BYTES`). Its long
   side is chosen so that the finest step that fits lands near `CONTEXT_STEP`: bytes grow
   about with the pixel count, so one trial coding predicts the side (a context floor: the
   scene is never starved to a smear, nor coded at a size its bytes cannot feed).
2. The regions share the rest at one common scale (coded pixels per capture pixel) and one
   step, chosen the same way around `REGION_STEP`; the scale may exceed the capture's own
   (`REGION_MAX_SCALE`) when a small animal could use more bytes than the model spends on
   it at step 0 (the rate ceiling of a one-rate model).
3. Exact coding confirms; the regions' step moves until the container fits.

The camera's info bar, where there is one, is coded first as a bilevel part of its own
(device/codec/infobar.py, at most `infobar.MAX_SHARE` of the budget) and its bytes come off
the top.

Every estimate is the model's own -log2 p; the distortion proxy is the step itself (at one
size a finer step is never worse, and across sizes the target step keeps each part where the
model codes efficiently).
"""

from __future__ import annotations

import math
import time

import numpy as np

from device.boxes import Box, levels_from_boxes
from device.codec import infobar
from device.codec.container import KIND_REGION, MAX_CODED_PIXELS, MAX_CODED_SIDE, header_size
from device.codec.encoder import AnalysedPart, _tick
from device.codec.ratecontrol import BudgetError
from device.imageio import resize, transmit_shape
from device.prefilter import prefilter

#: Share of the budget the context gets, and its floor in bytes.
CONTEXT_SHARE = 0.25
CONTEXT_MIN_BYTES = 350
#: The step each part's size is chosen for (scale-table steps; exp(3 d) ~ 1.45x coarser).
CONTEXT_STEP = 4
REGION_STEP = 2
#: Smallest and largest context long side.
CONTEXT_MIN_SIDE, CONTEXT_MAX_SIDE = 96, 1024
#: A region grows by this share of its box's longer side (at least REGION_MIN_MARGIN px of
#: the capture) so the feathered blend at the base falls on background.
REGION_MARGIN = 0.15
REGION_MIN_MARGIN = 16
#: Regions closer than their margin are merged; at most this many are sent.
MAX_REGIONS = 4
#: Coded pixels per capture pixel: at most REGION_MAX_SCALE times what a 1024-px transmit
#: image would give (upsampling lets a small animal use the bytes it has: the one-rate
#: model's rate ceiling), never less than the capture's own pixels; the coded long side of a
#: region at least REGION_MIN_SIDE.
REGION_MAX_SCALE = 3.0
REGION_MIN_SIDE = 48
#: Left over after the regions reach step 0 at their largest scale, this share of the
#: budget goes back to the context.
REGIVE_SHARE = 0.1
#: Trial codings per part while searching the size.
SEARCHES = 3


def region_rects(boxes, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Capture-pixel rectangles (x0, y0, x1, y1) of the regions for `boxes` (QuantBox)."""
    rects = []
    for b in boxes:
        x0, x1 = b.x0 * width // 255, -(-b.x1 * width // 255)
        y0, y1 = b.y0 * height // 255, -(-b.y1 * height // 255)
        if x1 <= x0 or y1 <= y0:
            continue
        m = max(REGION_MIN_MARGIN, int(round(REGION_MARGIN * max(x1 - x0, y1 - y0))))
        rects.append((max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, width), min(y1 + m, height), m))
    merged = True
    while merged:  # merge rectangles that overlap or are closer than their margin
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                gap = min(a[4], b[4])
                if a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap:
                    rects[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]),
                                max(a[4], b[4]))
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    rects.sort(key=lambda r: -(r[2] - r[0]) * (r[3] - r[1]))
    while len(rects) > MAX_REGIONS:  # merge the two smallest
        a, b = rects.pop(), rects.pop()
        rects.append((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]),
                      max(a[4], b[4])))
        rects.sort(key=lambda r: -(r[2] - r[0]) * (r[3] - r[1]))
    return [r[:4] for r in rects]


def _snap(side: float, low: int, high: int) -> int:
    """A long side rounded to a multiple of 16 within [low, high]."""
    return int(min(max(16 * round(side / 16), low), high))


def _finest(part, budget: int, rung, top: int, low: int) -> int:
    """The finest global step in [low, top] whose estimate fits `budget` (top if none does);
    `rung` maps a global step to (level, step) (the encoder's `RateLadder.rung`)."""
    lo, hi = low, top
    while lo < hi:
        mid = (lo + hi) // 2
        if part.estimate(*rung(mid)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return lo


class _Regions:
    """All regions of a picture at one common scale, coded and estimated together."""

    def __init__(self, encoder, picture, rects, scale: float, use_prefilter: bool):
        self.scale = scale
        self.parts = []
        for rect in rects:
            x0, y0, x1, y1 = rect
            crop = picture.image[y0:y1, x0:x1]
            h = max(1, int(round((y1 - y0) * scale)))
            w = max(1, int(round((x1 - x0) * scale)))
            clock = time.perf_counter()
            pixels = resize(crop, h, w)
            prefiltered = False
            if use_prefilter and picture.boxes:
                levels = self._levels(picture, rect, h, w, encoder.background_level)
                if np.any(levels < 1.0):
                    pixels, prefiltered = prefilter(pixels, levels), True
            _tick(picture.timings, "prefilter", clock)
            self.parts.append(AnalysedPart(encoder, picture, KIND_REGION, rect, pixels, 0,
                                           prefiltered))

    @staticmethod
    def _levels(picture, rect, h: int, w: int, background: float) -> np.ndarray:
        """The saliency levels of the boxes, in the region's own coordinates at its coded size."""
        x0, y0, x1, y1 = rect
        rw, rh = (x1 - x0) / picture.width, (y1 - y0) / picture.height
        fx, fy = x0 / picture.width, y0 / picture.height
        inside = []
        for b in picture.boxes:
            n = b.to_box()
            inside.append(Box((n.x - fx) / rw, (n.y - fy) / rh, n.w / rw, n.h / rh, n.conf))
        return levels_from_boxes(inside, h, w, background)

    def estimate(self, level: int, step: int) -> int:
        return sum(p.estimate(level, step) for p in self.parts)

    def exact(self, level: int, step: int) -> int:
        return sum(p.exact(level, step) for p in self.parts)


def _context(encoder, picture, budget: int):
    """(AnalysedPart, step) of the context for `budget` bytes (see the module docstring)."""
    side = _snap(math.sqrt(budget * 8 / 0.12 * picture.width / picture.height), CONTEXT_MIN_SIDE,
                 min(CONTEXT_MAX_SIDE, max(picture.width, picture.height)))
    rung = encoder.ladder.rung
    tried: dict[int, tuple] = {}
    for _ in range(SEARCHES):
        th, tw = transmit_shape(picture.height, picture.width, side)
        clock = time.perf_counter()
        small = resize(picture.image, th, tw)
        _tick(picture.timings, "resize", clock)
        # The context is the scene: not pre-filtered (the regions carry the animals).
        part = encoder.context_part(picture, small, np.ones((th, tw), np.float32), False, 0)
        step = _finest(part, budget, rung, encoder.max_step, encoder.min_step)
        tried[side] = (part, step)
        ratio = part.estimate(*rung(CONTEXT_STEP)) / max(budget, 1)
        new = _snap(side / math.sqrt(ratio), CONTEXT_MIN_SIDE,
                    min(CONTEXT_MAX_SIDE, max(picture.width, picture.height)))
        if new in tried or abs(new - side) < 32:
            break
        side = new
    # The largest side tried whose step is within 2 of the target, else the finest step.
    good = [s for s, (_, j) in tried.items() if j <= CONTEXT_STEP + 2]
    best = max(good) if good else min(tried, key=lambda s: tried[s][1])
    return tried[best]


def encode(encoder, picture, budget: int, use_prefilter: bool, animals: bool = True):
    """(parts in stream order, estimated bits per part) for `picture` within `budget` bytes.

    Stream order: animal regions, info bars, context. Without `animals` (no boxes, or boxes
    that are only saliency guesses) the context is the only coded image.
    """
    rects = region_rects(picture.boxes, picture.width, picture.height) if animals else []
    rung = encoder.ladder.rung
    finest = encoder.finest_step  # a small animal may go finer than the model's own step
    bars = infobar.bars_within(picture.image, budget)
    base = header_size(len(picture.boxes), [], picture.name) + sum(infobar.part_bytes(p) for p in bars)
    if not rects:
        context, step = _context(encoder, picture, budget - base)
        return _finish(encoder, picture, budget, [], context, step, base, bars=bars)
    context_budget = max(CONTEXT_MIN_BYTES, int(CONTEXT_SHARE * budget))
    context, c_step = _context(encoder, picture, context_budget)
    room = budget - base - context.estimate(*rung(c_step))
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects)
    longest = max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects)
    low = REGION_MIN_SIDE / longest
    native = max(1.0, REGION_MAX_SCALE * 1024 / max(picture.width, picture.height))
    cap = min(native, math.sqrt(MAX_CODED_PIXELS / 2 / area),
              MAX_CODED_SIDE / longest)
    scale = min(max(math.sqrt(max(room, 1) * 8 / 0.25 / area), low), cap)
    tried: dict[float, tuple] = {}
    for _ in range(SEARCHES):
        regions = _Regions(encoder, picture, rects, scale, use_prefilter)
        step = _finest(regions, max(room, 1), rung, encoder.max_step, finest)
        tried[scale] = (regions, step)
        ratio = regions.estimate(*rung(REGION_STEP)) / max(room, 1)
        new = min(max(scale / math.sqrt(ratio), low), cap)
        if any(abs(new - s) / s < 0.12 for s in tried):
            break
        scale = new
    good = [s for s, (_, j) in tried.items() if j <= REGION_STEP + 2]
    best = max(good) if good else min(tried, key=lambda s: tried[s][1])
    regions, r_step = tried[best]
    spare = budget - base - regions.estimate(*rung(r_step)) - context.estimate(*rung(c_step))
    if r_step == finest and spare > REGIVE_SHARE * budget:
        context, c_step = _context(encoder, picture, context.estimate(*rung(c_step)) + spare)
    return _finish(encoder, picture, budget, regions.parts, context, c_step, base, r_step, bars)


def _finish(encoder, picture, budget, regions, context, c_step, base, r_step=0, bars=()):
    """Exact coding: move the regions' step (then the context's) until the container fits;
    use a finer step where the estimate left room."""
    top, rung = encoder.max_step, encoder.ladder.rung
    finest = encoder.finest_step  # a small animal may go finer than the model's own step

    def size(rs: int, cs: int) -> int:
        return base + sum(p.exact(*rung(rs)) for p in regions) + context.exact(*rung(cs))

    while size(r_step, c_step) > budget:
        if regions and r_step < top:
            r_step += 1
        elif c_step < top:
            c_step += 1
        else:
            error = BudgetError(
                f"cannot fit the picture in {budget} bytes: it needs at least "
                f"{size(r_step, c_step)} bytes (raise the budget)"
            )
            error.needed = size(r_step, c_step)
            raise error
    while regions and r_step > finest and size(r_step - 1, c_step) <= budget:
        r_step -= 1
    while c_step > encoder.min_step and size(r_step, c_step - 1) <= budget:
        c_step -= 1
    parts = [p.code(*rung(r_step)) for p in regions] + list(bars) + [context.code(*rung(c_step))]
    bar_bits = [{"z": 8 * len(p.z), "bands": [8 * len(b.data) for b in p.bands]} for p in bars]
    bits = [p.bits(*rung(r_step)) for p in regions] + bar_bits + [context.bits(*rung(c_step))]
    return parts, bits

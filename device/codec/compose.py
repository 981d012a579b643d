"""The base station's picture from a container's parts: context below, regions on top.

The context is upsampled to the capture size; each region (and the info bar) is resized to
its rectangle and blended in with a feathered edge, so no seam shows where the sharp crop
meets the soft context. Edges that lie on the frame border are not feathered (there is no
context beyond them to blend with). Without a context, grey surrounds the regions.
"""

from __future__ import annotations

import numpy as np

from device.codec.container import KIND_CONTEXT, Part

#: Feather width as a share of a region's shorter side, and its bounds in pixels. The encoder
#: grows each region by a margin larger than this, so the blend covers background only.
FEATHER_SHARE = 0.08
FEATHER_MIN, FEATHER_MAX = 2, 48
GREY = 128


def upsample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 resize for the base (Pillow's bilinear in C: the capture size can be 24 Mpx, where
    a float copy in numpy would cost gigabytes)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def feather(height: int, width: int, edges: tuple[bool, bool, bool, bool], px: int) -> np.ndarray:
    """float32 [height, width] weights: 1 inside, a linear ramp to 0 over `px` pixels at the
    edges flagged in `edges` (top, bottom, left, right)."""
    rows = np.ones(height, np.float32)
    cols = np.ones(width, np.float32)
    ramp_h = np.clip((np.arange(height, dtype=np.float32) + 0.5) / max(px, 1), 0.0, 1.0)
    ramp_w = np.clip((np.arange(width, dtype=np.float32) + 0.5) / max(px, 1), 0.0, 1.0)
    top, bottom, left, right = edges
    if top:
        rows = np.minimum(rows, ramp_h)
    if bottom:
        rows = np.minimum(rows, ramp_h[::-1])
    if left:
        cols = np.minimum(cols, ramp_w)
    if right:
        cols = np.minimum(cols, ramp_w[::-1])
    return rows[:, None] * cols[None, :]


def feather_width(part: Part) -> int:
    x0, y0, x1, y1 = part.rect
    return int(np.clip(round(FEATHER_SHARE * min(x1 - x0, y1 - y0)), FEATHER_MIN, FEATHER_MAX))


def compose(width: int, height: int, decoded) -> np.ndarray:
    """uint8 [height, width, 3] from (part, image at its coded size) pairs in stream order.

    The context goes down first, then the regions in reverse stream order (the first region,
    the most important, ends on top).
    """
    context = [img for part, img in decoded if part.kind == KIND_CONTEXT]
    if context:
        canvas = np.array(upsample(context[0], height, width), np.uint8)
    else:
        canvas = np.full((height, width, 3), GREY, np.uint8)
    has_context = bool(context)
    for part, img in reversed([d for d in decoded if d[0].kind != KIND_CONTEXT]):
        x0, y0, x1, y1 = part.rect
        patch = upsample(img, y1 - y0, x1 - x0).astype(np.float32)
        if has_context:
            edges = (y0 > 0, y1 < height, x0 > 0, x1 < width)
            alpha = feather(y1 - y0, x1 - x0, edges, feather_width(part))[..., None]
            below = canvas[y0:y1, x0:x1].astype(np.float32)
            patch = alpha * patch + (1.0 - alpha) * below
        canvas[y0:y1, x0:x1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    return canvas

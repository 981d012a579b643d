"""Adaptive binary arithmetic coding of a bilevel image (for the camera's info bar).

Text on a flat strip is two colours: coded as a bitmap with a context model it costs a few
hundred bytes and stays sharp, where the learned codec (trained on photographs) blurs it
unreadable. This is the JBIG idea, hand-written because no library on the trap provides it:

- context: 10 already-coded neighbours (two rows above, two pixels to the left), so each
  pixel's probability comes from the shape of the strokes around it;
- probabilities: 12-bit, adapted after every pixel by 1/32 of the error;
- coder: a carry-propagating binary range coder (32-bit low, range kept above 2^24; the
  same construction as LZMA's), integer arithmetic only, so both ends agree on every CPU.

Example:
    >>> data = encode(bitmap)                    # bool [h, w]      # doctest: +SKIP
    >>> (decode(data, *bitmap.shape) == bitmap).all()
"""

from __future__ import annotations

import numpy as np

from device.errors import ContainerError

_BITS = 12
_ONE = 1 << _BITS
_SHIFT = 5
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF
#: Neighbours of pixel (r, c) that form its context, as (row offset, column offset).
TEMPLATE = ((-2, -1), (-2, 0), (-2, 1), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2),
            (0, -2), (0, -1))
#: Largest bitmap either end accepts (a bar at capture resolution is far smaller).
MAX_PIXELS = 1 << 20


def _contexts(padded: np.ndarray, r: int, width: int) -> list[int]:
    """The context number of every pixel of row r (padded by 2 on each side and on top)."""
    ctx = np.zeros(width, np.int64)
    for bit, (dr, dc) in enumerate(TEMPLATE):
        if dr < 0:
            ctx |= padded[r + 2 + dr, 2 + dc : 2 + dc + width].astype(np.int64) << bit
    return ctx.tolist()


def encode(bitmap: np.ndarray) -> bytes:
    """The coded bytes of bool [h, w] `bitmap`."""
    h, w = bitmap.shape
    if h * w > MAX_PIXELS:
        raise ContainerError(f"bitmap of {w}x{h} is larger than {MAX_PIXELS} pixels")
    padded = np.zeros((h + 2, w + 4), np.uint8)
    padded[2:, 2:-2] = bitmap
    probs = [_ONE // 2] * (1 << len(TEMPLATE))
    low, rng, cache, pending = 0, _MASK32, 0, 1
    out = bytearray()

    def shift_low():
        nonlocal low, cache, pending
        if low < 0xFF000000 or low > _MASK32:
            carry = low >> 32
            temp = cache
            while True:
                out.append((temp + carry) & 0xFF)
                temp = 0xFF
                pending -= 1
                if pending == 0:
                    break
            cache = (low >> 24) & 0xFF
        pending += 1
        low = (low << 8) & _MASK32

    for r in range(h):
        above = _contexts(padded, r, w)
        row = padded[r + 2]
        left2 = left1 = 0
        for c in range(w):
            ctx = above[c] | (left2 << 8) | (left1 << 9)
            bit = int(row[c + 2])
            p = probs[ctx]
            bound = (rng >> _BITS) * p
            if bit == 0:
                rng = bound
                probs[ctx] = p + ((_ONE - p) >> _SHIFT)
            else:
                low += bound
                rng -= bound
                probs[ctx] = p - (p >> _SHIFT)
            while rng < _TOP:
                rng = (rng << 8) & _MASK32
                shift_low()
            left2, left1 = left1, bit
    for _ in range(5):
        shift_low()
    return bytes(out[1:])  # the first byte is always the initial cache (0)


def decode(data: bytes, height: int, width: int) -> np.ndarray:
    """bool [height, width] from `encode`'s bytes; a short or damaged stream decodes to
    something (bits past its end read as 0), never raises except for a size out of range."""
    if not (0 < height and 0 < width and height * width <= MAX_PIXELS):
        raise ContainerError(f"bitmap size {width}x{height} out of range")
    stream = bytes(data) + b"\x00" * 8
    pos = 0
    code = 0
    for _ in range(4):
        code = (code << 8) | stream[pos]
        pos += 1
    rng = _MASK32
    probs = [_ONE // 2] * (1 << len(TEMPLATE))
    padded = np.zeros((height + 2, width + 4), np.uint8)
    limit = len(stream) - 1
    for r in range(height):
        above = _contexts(padded, r, width)
        row = padded[r + 2]
        left2 = left1 = 0
        for c in range(width):
            ctx = above[c] | (left2 << 8) | (left1 << 9)
            p = probs[ctx]
            bound = (rng >> _BITS) * p
            if code < bound:
                rng = bound
                probs[ctx] = p + ((_ONE - p) >> _SHIFT)
                bit = 0
            else:
                code -= bound
                rng -= bound
                probs[ctx] = p - (p >> _SHIFT)
                bit = 1
            while rng < _TOP:
                rng = (rng << 8) & _MASK32
                code = ((code << 8) | stream[min(pos, limit)]) & _MASK32
                pos += 1
            row[c + 2] = bit
            left2, left1 = left1, bit
    return padded[2:, 2:-2].astype(bool)

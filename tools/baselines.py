"""Classical codecs through Pillow (JPEG, WebP, AVIF, JPEG 2000), at a setting or a byte budget.

Why Pillow: it is what a base station already has, and it carries libjpeg(-turbo), libwebp,
libavif and OpenJPEG, so the baselines are the real encoders, not approximations.

Each codec exposes one ordered list of settings, from the smallest file to the largest, so a byte
budget is met by bisection over that list (`fit_budget`). Settings are:

- JPEG: libjpeg quality 1..95 (Huffman tables optimised, 4:2:0, as a careful sender would);
- WebP: quality 0..100 (method 6, the slowest and smallest);
- AVIF: quality 0..100 (Pillow's libavif plugin, speed 6, 4:2:0);
- JPEG 2000: OpenJPEG compression ratio ("rates" mode), from 8000:1 down to 4:1, one layer.

Example::

    >>> codec = CODECS["jpeg"]
    >>> data = codec.encode(image, 10)          # bytes
    >>> decoded = codec.decode(data)            # uint8 (H, W, 3)
    >>> fit = fit_budget(codec, image, 8000)    # best setting within 8000 bytes, or None
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tools.errors import UserError

__all__ = ["Codec", "CODECS", "BudgetFit", "fit_budget", "get_codecs"]


@dataclass(frozen=True)
class Codec:
    """A Pillow codec with its ordered settings (smallest file first)."""

    name: str
    label: str
    pil_format: str
    setting_name: str
    search_space: tuple[float, ...]  # every setting, smallest file first (budget bisection)
    sweep: tuple[float, ...]  # the subsample used for rate-distortion curves
    options: Callable[[float], dict]

    def encode(self, image: np.ndarray, setting: float) -> bytes:
        """Encode an (H, W, 3) uint8 image at one setting."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(
            buffer, self.pil_format, **self.options(setting)
        )
        return buffer.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        """Decode any Pillow-readable bytes into an (H, W, 3) uint8 array."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))


def _jpeg(q: float) -> dict:
    return {"quality": int(q), "optimize": True}


def _webp(q: float) -> dict:
    return {"quality": int(q), "method": 6}


def _avif(q: float) -> dict:
    return {"quality": int(q), "speed": 6, "subsampling": "4:2:0"}


def _jp2(ratio: float) -> dict:
    return {"quality_mode": "rates", "quality_layers": [float(ratio)], "irreversible": True}


# JPEG 2000 ratios: 96 log-spaced values from 8000:1 to 4:1 (larger ratio = smaller file).
_JP2_RATIOS = tuple(float(f"{r:.4g}") for r in np.geomspace(8000.0, 4.0, 96))

CODECS: dict[str, Codec] = {
    "jpeg": Codec(
        "jpeg", "JPEG", "JPEG", "quality", tuple(range(1, 96)), (1, 5, 10, 20, 35, 60), _jpeg
    ),
    "webp": Codec(
        "webp", "WebP", "WEBP", "quality", tuple(range(0, 101)), (0, 5, 15, 30, 50, 75), _webp
    ),
    "avif": Codec(
        "avif", "AVIF", "AVIF", "quality", tuple(range(0, 101)), (0, 10, 20, 35, 50, 70), _avif
    ),
    "jp2": Codec(
        "jp2",
        "JPEG 2000",
        "JPEG2000",
        "ratio",
        _JP2_RATIOS,
        (2000.0, 1000.0, 500.0, 250.0, 100.0, 40.0),
        _jp2,
    ),
}


def get_codecs(names: Sequence[str]) -> list[Codec]:
    """The classical codecs named (unknown names are a `UserError`)."""
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise UserError(f"unknown codec {', '.join(unknown)}; known: {', '.join(CODECS)}")
    return [CODECS[n] for n in names]


@dataclass(frozen=True)
class BudgetFit:
    """The largest setting whose file fits the budget, with its bytes."""

    setting: float
    data: bytes
    encodes: int  # how many encodes the search took


def fit_budget(codec: Codec, image: np.ndarray, budget: int) -> BudgetFit | None:
    """Bisect `codec.search_space` for the best setting within `budget` bytes.

    Assumes file size grows with the setting (true for these encoders up to a few bytes of
    noise; the result always fits, it may miss a marginally better setting). None when even the
    smallest setting does not fit.
    """
    space = codec.search_space
    cache: dict[int, bytes] = {}

    def size_at(i: int) -> int:
        if i not in cache:
            cache[i] = codec.encode(image, space[i])
        return len(cache[i])

    if size_at(0) > budget:
        return None
    lo, hi = 0, len(space) - 1  # invariant: space[lo] fits
    if size_at(hi) <= budget:
        return BudgetFit(space[hi], cache[hi], len(cache))
    while hi - lo > 1:  # invariant: space[hi] does not fit
        mid = (lo + hi) // 2
        if size_at(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return BudgetFit(space[lo], cache[lo], len(cache))

"""Classical codecs through Pillow (JPEG, WebP, AVIF, JPEG 2000), at a setting or a byte budget.

Why Pillow: it is what a base station already has, and it carries libjpeg(-turbo), libwebp,
libavif and OpenJPEG, so the baselines are the real encoders, not approximations.

Each codec exposes one ordered list of settings, from the smallest file to the largest, so a byte
budget is met by bisection over that list (`fit_budget`). Settings are:

- JPEG: libjpeg quality 1..95 (Huffman tables optimised, 4:2:0, as a careful sender would);
- WebP: quality 0..100 (method 6, the slowest and smallest);
- AVIF: quality 0..100 (Pillow's libavif plugin, speed 6, 4:2:0);
- JPEG 2000: OpenJPEG compression ratio ("rates" mode), from 8000:1 down to 4:1, one layer.

`VARIANTS` lists the other encoder options a careful user also tries at low rates (AVIF's
chroma subsampling); `variants(codec)` gives one `Codec` per option set. `resample` is the one
resize the tools use around a codec (Lanczos, as a careful user would scale before and after).

Example::

    >>> codec = CODECS["jpeg"]
    >>> data = codec.encode(image, 10)          # bytes
    >>> decoded = codec.decode(data)            # uint8 (H, W, 3)
    >>> fit = fit_budget(codec, image, 8000)    # best setting within 8000 bytes, or None
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from tools.errors import UserError

__all__ = ["Codec", "CODECS", "BudgetFit", "VARIANTS", "fit_budget", "get_codecs", "resample",
           "variants"]


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
    # Optional first guess of the setting from (raw bytes, budget), for the budget search.
    guess: Callable[[int, int], float] | None = None
    # Encoder options on top of `options(setting)` (a variant, e.g. AVIF 4:4:4), as pairs.
    extra: tuple[tuple[str, object], ...] = ()

    def encode(self, image: np.ndarray, setting: float) -> bytes:
        """Encode an (H, W, 3) uint8 image at one setting."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(
            buffer, self.pil_format, **{**self.options(setting), **dict(self.extra)}
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
        "jpeg", "JPEG", "JPEG", "quality", tuple(range(1, 96)), (1, 5, 10, 25, 50), _jpeg
    ),
    "webp": Codec(
        "webp", "WebP", "WEBP", "quality", tuple(range(0, 101)), (0, 10, 25, 45, 70), _webp
    ),
    "avif": Codec(
        "avif", "AVIF", "AVIF", "quality", tuple(range(0, 101)), (0, 15, 30, 45, 65), _avif
    ),
    "jp2": Codec(
        "jp2",
        "JPEG 2000",
        "JPEG2000",
        "ratio",
        _JP2_RATIOS,
        (2000.0, 800.0, 300.0, 120.0, 40.0),
        _jp2,
        lambda raw, budget: raw / budget,  # OpenJPEG's rate is raw bytes over coded bytes
    ),
}


#: Option sets tried beside the default at low rates (first = the default of `options`).
#: AVIF: 4:4:4 measured +0.05-0.5 dB at equal bytes on camtrap frames at 512 px (libaom,
#: speed 6); speed 3 gains a further ~0.4 dB at 10x the encode time, too slow to search here.
VARIANTS: dict[str, tuple[tuple[tuple[str, object], ...], ...]] = {
    "avif": ((), (("subsampling", "4:4:4"),)),
}


def variants(codec: Codec) -> list[Codec]:
    """`codec` with each of its `VARIANTS` option sets (just `codec` if it has none)."""
    return [replace(codec, extra=extra) for extra in VARIANTS.get(codec.name, ((),))]


def resample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Lanczos resize of an (H, W, 3) uint8 image (Pillow); a copy-free no-op at the same size."""
    from PIL import Image

    image = np.asarray(image)
    if image.shape[:2] == (height, width):
        return image
    out = Image.fromarray(np.ascontiguousarray(image)).resize(
        (int(width), int(height)), Image.Resampling.LANCZOS
    )
    return np.asarray(out)


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
    encodes: int  # encodes the search took (with a shared cache: all encodes in the cache)


def fit_budget(
    codec: Codec,
    image: np.ndarray,
    budget: int,
    cache: dict[int, bytes] | None = None,
    start: float | None = None,
) -> BudgetFit | None:
    """The best setting of `codec.search_space` within `budget` bytes.

    Bisection, or for a codec with a `guess` (JPEG 2000's ratio ~ raw bytes / budget) a
    galloping search from the guess, which needs 2 to 4 encodes instead of 7. Assumes file size
    grows with the setting (true for these encoders up to a few bytes of noise; the result
    always fits, it may miss a marginally better setting). None when even the smallest setting
    does not fit. `cache` (setting index -> bytes, for this codec and image) lets searches at
    several budgets share their encodes; `start` (a setting near the answer, e.g. the one found
    at a neighbouring resolution) replaces the guess.
    """
    space = codec.search_space
    cache = {} if cache is None else cache

    def fits(i: int) -> bool:
        if i not in cache:
            cache[i] = codec.encode(image, space[i])
        return len(cache[i]) <= budget

    def found(i: int) -> BudgetFit:
        return BudgetFit(space[i], cache[i], len(cache))

    last = len(space) - 1
    if start is not None:
        at = int(np.argmin([abs(v - start) for v in space]))
        lo, hi = _gallop(fits, at, last)
        if lo is None:
            return None
        if hi is None:
            return found(lo)
    elif codec.guess is None:
        if not fits(0):
            return None
        if fits(last):
            return found(last)
        lo, hi = 0, last
    else:
        raw = int(np.asarray(image).size)
        target = codec.guess(raw, budget)
        start = int(np.argmin([abs(np.log(v / target)) for v in space]))
        lo, hi = _gallop(fits, start, last)
        if lo is None:
            return None
        if hi is None:
            return found(lo)
    while hi - lo > 1:  # invariant: space[lo] fits, space[hi] does not
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return found(lo)


def _gallop(fits, start: int, last: int) -> tuple[int | None, int | None]:
    """Bracket the answer from `start` with doubling steps: (lo fits, hi does not or None)."""
    step = 1
    if fits(start):
        lo = start
        while lo < last:
            j = min(lo + step, last)
            if not fits(j):
                return lo, j
            lo, step = j, step * 2
        return lo, None
    hi = start
    while hi > 0:
        j = max(hi - step, 0)
        if fits(j):
            return j, hi
        hi, step = j, step * 2
    return None, None

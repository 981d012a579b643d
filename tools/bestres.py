"""A classical codec at its best resolution within a byte budget: the careful user's baseline.

Why: at a few kilobytes a codec coding the full 1024 px frame either does not fit or spends its
bytes on a very coarse quantiser; a careful sender scales the frame down first and the receiver
scales it back up. Measured at 1024 px only, most codecs "do not fit" at 2000 B, which flatters
wildlink (issue 13).

`ResolutionSearch` tries long sides (`LONG_SIDES`, large to small), the codec's option variants
(`tools.baselines.VARIANTS`) and, at each, the largest quality that fits
(`tools.baselines.fit_budget`); it keeps the candidate whose decoded picture, scaled back to the
target size, scores best (the evaluation's objective: animal-box PSNR against the original).

Bounds: a side where even the lowest quality does not fit costs one encode; the side search
stops after `patience` fitting sides in a row score below the best (the score is unimodal in the
side in practice: too large is coarse, too small is blurry); each side's quality search starts
from the previous side's answer (2 to 4 encodes instead of 7); variants after the first are
tried only at the best side. A codec with a `SEARCH_PROXY` is searched with its faster
options and confirmed with the real encoder at the winning side. Encodes are cached per (variant, side), so
the searches at several budgets of one image share them.

Example::

    search = ResolutionSearch(CODECS["avif"], pixels, box_score(original, boxes))
    choice = search.best(2000)       # Choice(side=448, setting=31, data=b"...", ...) or None
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from tools.baselines import Codec, fit_budget, resample, variants
from tools.errors import UserError
from tools.metrics import box_mask, psnr

__all__ = ["LONG_SIDES", "PATIENCE", "BestResolutionCoder", "Choice", "ResolutionSearch",
           "box_score", "scaled_shape", "sides_for"]

#: Long sides tried for a whole frame (about 0.8x apart), largest first.
LONG_SIDES = (1024, 832, 672, 544, 448, 368, 304, 256, 208, 160, 128)
#: Fitting sides in a row that score below the best before the side search stops.
PATIENCE = 3
#: Most quality settings searched per codec: a longer list is thinned evenly (JPEG's 1..95,
#: AVIF's and WebP's 0..100 searched in steps of 2, where one step moves box PSNR ~0.05 dB;
#: JPEG 2000's 96 ratios are already log-spaced and thinned to 48).
#: Options of a faster encoder that runs the side and variant search; the real encoder then
#: confirms the winning side (quality searched again from the proxy's answer). AVIF at speed 8
#: encodes 3-5x faster than speed 6 and its files are ~4% larger at the same quality.
SEARCH_PROXY: dict[str, tuple[tuple[str, object], ...]] = {"avif": (("speed", 8),)}
MAX_SETTINGS = 52

Score = Callable[[np.ndarray], float]  # decoded picture at the target size -> higher is better


def scaled_shape(shape: Sequence[int], side: int) -> tuple[int, int]:
    """(height, width) of `shape` scaled so its long side is `side` (aspect kept, >= 1 px)."""
    height, width = int(shape[0]), int(shape[1])
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def sides_for(long_side: int, sides: Sequence[int] = LONG_SIDES) -> tuple[int, ...]:
    """The native long side, then every smaller one of `sides` (no upsampling of a frame)."""
    return (int(long_side), *(s for s in sorted(set(sides), reverse=True) if s < long_side))


def box_score(original: np.ndarray, boxes: Sequence = ()) -> Score:
    """Animal-box PSNR against `original` (full-image PSNR when there are no boxes)."""
    mask = box_mask(original.shape[:2], boxes) if boxes else None
    return lambda decoded: psnr(original, decoded, mask)


@dataclass(frozen=True, eq=False)
class Choice:
    """The best coding found for one budget."""

    codec: Codec  # the variant used (its `extra` options)
    side: int  # long side coded, pixels
    setting: float  # the codec's quality setting
    data: bytes
    decoded: np.ndarray = field(repr=False)  # uint8, scaled to the target size
    score: float


class ResolutionSearch:
    """Best (side, variant, quality) of one codec on one image, for any number of budgets.

    Args:
        codec: the classical codec (its variants come from `tools.baselines.VARIANTS`).
        image: uint8 (H, W, 3), the pixels to code (pre-filtered or not).
        score: decoded picture at `target_shape` -> figure to maximise.
        target_shape: (height, width) the decoded picture is scaled to (default: the image's).
        sides: long sides to try, in any order (default: `sides_for` the image).
        patience: see `PATIENCE`.
    """

    def __init__(
        self,
        codec: Codec,
        image: np.ndarray,
        score: Score,
        target_shape: Sequence[int] | None = None,
        sides: Sequence[int] | None = None,
        patience: int = PATIENCE,
    ) -> None:
        self.image = np.asarray(image)
        self.target = tuple(int(v) for v in (target_shape or self.image.shape[:2]))
        chosen = sides if sides is not None else sides_for(max(self.image.shape[:2]))
        self.sides = tuple(sorted({int(s) for s in chosen}, reverse=True))
        if not self.sides or min(self.sides) < 1:
            raise UserError(f"long sides must be positive pixel counts, got {sides}")
        stride = -(-len(codec.search_space) // MAX_SETTINGS)
        self.variants = [replace(v, search_space=v.search_space[::stride])
                         for v in variants(codec)]
        proxy = SEARCH_PROXY.get(codec.name, ())
        self.proxies = [replace(v, extra=(*v.extra, *proxy)) for v in self.variants]
        self.has_proxy = bool(proxy)
        self.score, self.patience = score, max(1, int(patience))
        self._pixels: dict[int, np.ndarray] = {}
        self._encodes: dict[tuple[bool, int, int], dict[int, bytes]] = {}
        self._scores: dict[tuple[bool, int, int, float], float] = {}

    def _scaled(self, side: int) -> np.ndarray:
        if side not in self._pixels:
            self._pixels[side] = resample(self.image, *scaled_shape(self.image.shape, side))
        return self._pixels[side]

    def _decoded(self, variant: Codec, data: bytes) -> np.ndarray:
        return resample(variant.decode(data), *self.target)

    def _try(self, vi: int, side: int, budget: int, start: float | None = None,
             real: bool = False) -> tuple[float, float, bytes] | None:
        """(score, setting, data) of the largest fitting quality at one side, or None;
        `start` is a setting near the answer (the neighbouring side's) to search from; the
        proxy encoder unless `real` (the same without a proxy)."""
        real = real or not self.has_proxy
        variant = (self.variants if real else self.proxies)[vi]
        fit = fit_budget(variant, self._scaled(side), budget,
                         self._encodes.setdefault((real, vi, side), {}), start)
        if fit is None:
            return None
        key = (real, vi, side, fit.setting)
        if key not in self._scores:
            self._scores[key] = float(self.score(self._decoded(variant, fit.data)))
        return self._scores[key], fit.setting, fit.data

    def best(self, budget: int) -> Choice | None:
        """The best-scoring coding within `budget` bytes, or None if nothing fits."""
        best: tuple[float, int, int, float, bytes] | None = None  # score, vi, side, setting, data
        worse, start = 0, None
        for side in self.sides:
            found = self._try(0, side, budget, start)
            if found is None:
                continue
            start = found[1]
            if best is None or found[0] > best[0]:
                best, worse = (found[0], 0, side, found[1], found[2]), 0
            else:
                worse += 1
                if worse >= self.patience:
                    break
        if best is None:
            return None
        side = best[2]
        for vi in range(1, len(self.variants)):
            found = self._try(vi, side, budget, best[3])
            if found is not None and found[0] > best[0]:
                best = (found[0], vi, side, found[1], found[2])
        _, vi, chosen, setting, _ = best
        real = None
        for side in self.sides[self.sides.index(chosen):]:  # smaller if the real file is larger
            real = self._try(vi, side, budget, setting, real=True)
            if real is not None:
                break
        if real is None:
            return None
        score, setting, data = real
        variant = self.variants[vi]
        return Choice(variant, side, setting, data, self._decoded(variant, data), score)


@dataclass
class BestResolutionCoder:
    """A classical codec at its best resolution, through the evaluation's `Coder` protocol.

    Budget only (no sweep): the setting reported is the long side coded. Decoding scales the
    picture back to the evaluation size with the same Lanczos resize.
    """

    codec: Codec
    sides: tuple[int, ...] = LONG_SIDES
    sweep: tuple[float, ...] = ()
    _last: tuple[tuple[str, int], ResolutionSearch] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.codec.name}-best"

    @property
    def label(self) -> str:
        return f"{self.codec.label} best res."

    def encode(self, image, pixels: np.ndarray, setting: float) -> bytes:
        raise UserError(f"{self.name} is measured at byte budgets only (give --budgets)")

    def _search(self, image, pixels: np.ndarray) -> ResolutionSearch:
        key = (image.name, id(pixels))  # one image's budgets share one search (and its cache)
        if self._last is None or self._last[0] != key:
            sides = sides_for(max(pixels.shape[:2]), self.sides)
            search = ResolutionSearch(self.codec, pixels, box_score(image.pixels, image.boxes),
                                      image.pixels.shape[:2], sides)
            self._last = (key, search)
        return self._last[1]

    def fit_budget(self, image, pixels: np.ndarray, budget: int):
        choice = self._search(image, pixels).best(int(budget))
        return None if choice is None else (float(choice.side), choice.data)

    def decode(self, data: bytes, image) -> np.ndarray:
        return resample(self.codec.decode(data), *image.pixels.shape[:2])

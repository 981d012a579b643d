"""wildlink itself seen through the evaluation engine's `Coder` protocol.

Why an adapter: the trap's `Encoder` resizes, finds saliency and pre-filters by itself; for a
fair table the engine must control those steps exactly as it does for the classical codecs. So
the adapter hands the encoder the engine's pixels (already at the evaluation size, already
pre-filtered in the "+ saliency" runs), turns the trap's own pre-filter off, and passes the
MegaDetector boxes so that the ROI steps (finer quantisation inside the boxes) apply whenever an
image has boxes. `roi=False` gives the same codec without ROI steps (background step 0).

Settings are the global step j_g (0 = the model's own quality; each +6 roughly doubles the
quantisation step; for a variable-rate model a point of its `RateLadder`); budgets use the
encoder's own rate control. The default sweep is `rd_sweep` of the bundle's ladder.

Example::

    coder = WildlinkCoder.from_bundle(None)          # the shipped default model
    data = coder.encode(image, image.pixels, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.codec.container import MAX_CODED_SIDE
from tools.evaluate import EncodeFn, EvalImage, SchemeCoder

#: Global steps j_g swept for the RD curves (quantisation step x1, x1.6, x2.7, x4.4, x7.2 for
#: the default scale table's d ~ 0.12).
SWEEP_STEPS = (0, 4, 8, 12, 16)
#: Steps beyond a variable-rate model's coarsest level that its sweep adds (x1.85, x3.4 coarser):
#: below the coarsest level's own rate the only way down is a coarser step.
COARSER_STEPS = (6, 12)
#: No resize inside the encoder: the engine has already resized every image (the encoder
#: never upscales; its size may not exceed the container's largest coded side).
_NO_RESIZE = MAX_CODED_SIDE


def rd_sweep(ladder) -> tuple[float, ...]:
    """Global steps of one RD curve over a bundle's whole rate range, finest first.

    A one-rate bundle (one level) sweeps `SWEEP_STEPS`. A variable-rate one sweeps each
    level's own point (step 0 of the level its decoder was trained for) and `COARSER_STEPS`
    beyond the coarsest level, capped at `ladder.coarsest`.

    Args:
        ladder: the bundle's `device.codec.ratecontrol.RateLadder` (`Encoder.ladder`).
    """
    if len(ladder.offsets) == 1:
        return tuple(float(s) for s in SWEEP_STEPS)
    top = max(ladder.offsets)
    coarser = (min(top + s, ladder.coarsest) for s in COARSER_STEPS)
    return tuple(float(t) for t in sorted({*ladder.offsets, *coarser}))


@dataclass
class WildlinkCoder:
    """Encoder + decoder of one bundle; `roi` switches the ROI steps on or off."""

    encoder: object
    decoder: object
    name: str = "wildlink"
    label: str = "wildlink"
    sweep: tuple[float, ...] = SWEEP_STEPS
    roi: bool = True

    @classmethod
    def from_bundle(cls, bundle: str | Path | None, roi: bool = True) -> WildlinkCoder:
        from device.codec.bundle import Bundle
        from device.codec.decoder import Decoder
        from device.codec.encoder import DEFAULT_BACKGROUND_STEP, Encoder

        loaded = Bundle.load(bundle)
        # One image per container: the engine owns the size and the pre-filter, and the
        # setting is that image's step (the two-part trap is `wildlink_two_part` below).
        encoder = Encoder(
            loaded, size=_NO_RESIZE, background_step=DEFAULT_BACKGROUND_STEP if roi else 0,
            two_part="off",
        )
        name, label = ("wildlink", "wildlink") if roi else ("wildlink-noroi", "wildlink (no ROI)")
        return cls(encoder, Decoder(loaded), name=name, label=label,
                   sweep=rd_sweep(encoder.ladder), roi=roi)

    def _encode(self, image: EvalImage, pixels: np.ndarray, **options):
        from device.boxes import Box

        boxes = tuple(Box(*b) for b in image.boxes) if image.boxes else None
        return self.encoder.encode(
            pixels,
            boxes=boxes,
            saliency="boxes" if boxes else "none",
            capture_time=0,
            use_prefilter=False,  # the engine applies the pre-filter itself, like for all codecs
            **options,
        )

    def encode(self, image: EvalImage, pixels: np.ndarray, setting: float) -> bytes:
        return self._encode(image, pixels, step=int(setting)).data

    def decode(self, data: bytes, image: EvalImage) -> np.ndarray:
        decoded = self.decoder.decode(data).image
        if decoded.shape != image.pixels.shape:
            raise ValueError(f"decoded {decoded.shape}, expected {image.pixels.shape}")
        return decoded

    def fit_budget(self, image: EvalImage, pixels: np.ndarray, budget: int):
        from device.codec.ratecontrol import BudgetError

        try:
            result = self._encode(image, pixels, budget=int(budget))
        except BudgetError:
            return None
        return float(result.header.step), result.data


# ---------------------------------------------------------------------------------------------
# Whole wildlink schemes as `encode(pixels, boxes, budget) -> (decoded, bytes)` callables: the
# rows "wildlink one-part" and "wildlink two-part" of the fair-baseline table
# (tools/benchmarks/evaluation.py). Unlike `WildlinkCoder`, each scheme runs as the trap does:
# its own pre-filter, its own size ladder, its own decoder back to the capture size.


def _wildlink_scheme(bundle, two_part: str) -> EncodeFn:
    """`Encoder(bundle, two_part=...).encode(pixels, boxes=..., budget=B)` as the trap runs it,
    decoded by `Decoder(bundle)` at the capture size."""
    from device.boxes import Box
    from device.codec.bundle import Bundle
    from device.codec.decoder import Decoder
    from device.codec.encoder import Encoder
    from device.codec.ratecontrol import BudgetError

    loaded = Bundle.load(bundle)
    encoder, decoder = Encoder(loaded, two_part=two_part), Decoder(loaded)

    def encode(pixels: np.ndarray, boxes, budget: int):
        try:
            result = encoder.encode(pixels, boxes=tuple(Box(*b) for b in boxes) or None,
                                    budget=int(budget), capture_time=0)
        except BudgetError:
            return None
        return decoder.decode(result.data).image, len(result.data)

    return encode


def wildlink_one_part(bundle: str | Path | None = None) -> EncodeFn:
    """One image per container (`two_part="off"`), the trap before container v2."""
    return _wildlink_scheme(bundle, "off")


def wildlink_two_part(bundle: str | Path | None = None) -> EncodeFn:
    """Container v2: the animals as regions from the capture, the frame as context."""
    return _wildlink_scheme(bundle, "auto")


#: name -> (table label, factory taking a bundle path or None).
SCHEMES = {
    "wildlink-twopart": ("wildlink two-part", wildlink_two_part),
    "wildlink-onepart": ("wildlink one-part", wildlink_one_part),
}


def scheme_coder(name: str, bundle: str | Path | None = None) -> SchemeCoder:
    """The `SchemeCoder` of one of `SCHEMES`, with `bundle` (None: the shipped default model)."""
    label, factory = SCHEMES[name]
    return SchemeCoder(name, label, factory(bundle))

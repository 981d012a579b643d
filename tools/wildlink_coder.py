"""wildlink itself seen through the evaluation engine's `Coder` protocol.

Why an adapter: the trap's `Encoder` resizes, finds saliency and pre-filters by itself; for a
fair table the engine must control those steps exactly as it does for the classical codecs. So
the adapter hands the encoder the engine's pixels (already at the evaluation size, already
pre-filtered in the "+ saliency" runs), turns the trap's own pre-filter off, and passes the
MegaDetector boxes so that the ROI steps (finer quantisation inside the boxes) apply whenever an
image has boxes. `roi=False` gives the same codec without ROI steps (background step 0).

Settings are the global step j_g (0 = the model's own quality; each +6 roughly doubles the
quantisation step); budgets use the encoder's own rate control.

Example::

    coder = WildlinkCoder.from_bundle(None)          # the shipped default model
    data = coder.encode(image, image.pixels, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.evaluate import EvalImage

#: Global steps j_g swept for the RD curves (quantisation step x1, x1.6, x2.7, x4.4, x7.2 for
#: the default scale table's d ~ 0.12).
SWEEP_STEPS = (0, 4, 8, 12, 16)
#: No resize inside the encoder: the engine has already resized every image.
_NO_RESIZE = 1 << 20


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
        encoder = Encoder(
            loaded, size=_NO_RESIZE, background_step=DEFAULT_BACKGROUND_STEP if roi else 0
        )
        name, label = ("wildlink", "wildlink") if roi else ("wildlink-noroi", "wildlink (no ROI)")
        return cls(encoder, Decoder(loaded), name=name, label=label, roi=roi)

    def _encode(self, image: EvalImage, pixels: np.ndarray, **options):
        from device.regions import Box

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

"""The entropy tables and rate levels of a bundle, in the form both ends code with.

Encoder, decoder and `inspect` all read a bundle through `CodingTables`, so no end builds its
own view of the tables (docs/bundle.md names the arrays).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.codec.bundle import Bundle
from device.errors import BundleError, ContainerError


@dataclass(frozen=True, eq=False)
class CodingTables:
    """A bundle's range-coder tables, h_s index LUT, scale step and rate levels.

    Attributes:
        y, z: (cdf, offsets, lengths, precision, overflow width), the range coder's arguments.
        z_offset: TFC's median offset of each z channel.
        lut: int8 h_s output -> scale index.
        d: the scale table's log step.
        scale_count: entries in the scale table.
        level_steps: int32 [K, M] channel steps of a variable-rate model's K levels (None for
            a one-rate model, whose only level is 0).
        mean: the model is mean-scale (h_s has a second output, the mean of y).
        hyper_outputs: the role of each h_s output in the file's order ("indexes", "means").
        reference_level: the level whose step 0 is step 0 of the rate ladder
            (device/codec/ratecontrol.py); the middle level unless the manifest names one.
    """

    y: tuple
    z: tuple
    z_offset: np.ndarray
    lut: np.ndarray
    d: float
    scale_count: int
    level_steps: np.ndarray | None = None
    mean: bool = False
    hyper_outputs: tuple[str, ...] = ("indexes",)
    reference_level: int = 0

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> CodingTables:
        e = bundle.entropy
        entropy = bundle.manifest.get("entropy", {})
        coder = (int(entropy.get("precision", 16)), int(entropy.get("overflow_width", 4)))
        lut = np.asarray(e["hs_index_lut"], np.int32)
        count = int(np.asarray(e["y_cdf"]).shape[0])
        if lut.shape != (256,) or lut.min() < 0 or lut.max() >= count:
            raise BundleError(f"bundle {bundle.path}: hs_index_lut must be 256 indexes < {count}")
        if e["z_offset"].shape[0] != bundle.hyper_channels:
            raise BundleError(f"bundle {bundle.path}: z_offset does not match hyper_channels")
        levels = None
        if "level_steps" in e:
            levels = np.asarray(e["level_steps"], np.int32)
            if levels.ndim != 2 or levels.shape[1] != bundle.latent_channels:
                raise BundleError(
                    f"bundle {bundle.path}: level_steps must be [levels, {bundle.latent_channels}]"
                )
        mean = bool(bundle.manifest.get("mean_scale", False))
        roles = tuple(bundle.manifest.get("hyper_outputs") or
                      (("indexes", "means") if mean else ("indexes",)))
        if sorted(roles) != sorted(("indexes", "means") if mean else ("indexes",)):
            raise BundleError(f"bundle {bundle.path}: hyper_outputs {list(roles)} do not fit "
                              f"a {'mean-scale' if mean else 'scale-only'} model")
        count_levels = 1 if levels is None else int(levels.shape[0])
        reference = (bundle.manifest.get("rate_levels") or {}).get("reference", count_levels // 2)
        if not isinstance(reference, int) or not 0 <= reference < count_levels:
            raise BundleError(f"bundle {bundle.path}: reference level {reference!r} is not one "
                              f"of its {count_levels} levels")
        return cls(
            y=(e["y_cdf"], e["y_cdf_offset"], e["y_cdf_length"], *coder),
            z=(e["z_cdf"], e["z_cdf_offset"], e["z_cdf_length"], *coder),
            z_offset=np.asarray(e["z_offset"], np.float32),
            lut=lut,
            d=bundle.scale_step,
            scale_count=count,
            level_steps=levels,
            mean=mean,
            hyper_outputs=roles,
            reference_level=reference,
        )

    @property
    def levels(self) -> int:
        """Rate levels the model offers (1 for a one-rate model)."""
        return 1 if self.level_steps is None else int(self.level_steps.shape[0])

    def steps_of(self, level: int) -> np.ndarray | None:
        """The channel steps [M] of `level` (None for a one-rate model)."""
        if not 0 <= level < self.levels:
            raise ContainerError(f"rate level {level} is not one of the model's {self.levels}")
        return None if self.level_steps is None else self.level_steps[level]

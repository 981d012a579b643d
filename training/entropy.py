"""The arrays of a bundle's ``entropy.npz`` (docs/bundle.md) from a trained model.

TFC's range-coder tables come from the entropy models rebuilt with ``compression=True``
(precision 16) and are split into padded rows by the device's own reader of TFC tables
(`device.codec.rangecoder.split_flat_cdf`), so the code tested against TFC is the code that
writes bundles. A variable-rate model adds its levels' integer channel steps.
"""

from __future__ import annotations

import numpy as np

from device.codec.rangecoder import split_flat_cdf
from training.convert import ExportError
from training.model import HyperpriorCodec

PRECISION = 16
OVERFLOW_WIDTH = 4


def _table(entropy_model, rows: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cdf, offset, length, precision = split_flat_cdf(entropy_model.cdf.numpy(),
                                                    entropy_model.cdf_offset.numpy())
    if cdf.shape[0] != rows or precision != PRECISION:
        raise ExportError(f"the {name} table has {cdf.shape[0]} rows at precision {precision}, "
                          f"expected {rows} at {PRECISION}")
    return cdf, offset, length


def index_lut(scale: float, zero_point: int, num_scales: int) -> np.ndarray:
    """int8 output q of h_s -> scale index: floor(scale * (q - zp) + 1/2) clipped to [0, S)."""
    q = np.arange(-128, 128, dtype=np.float64)
    index = np.floor(np.float64(scale) * (q - zero_point) + 0.5)
    return np.clip(index, 0, num_scales - 1).astype(np.int32)


def level_steps(model: HyperpriorCodec) -> np.ndarray | None:
    """int32 [K, M]: each level's channel steps as the forward pass rounds them (None for a
    one-rate model)."""
    if model.rate_steps is None:
        return None
    return np.round(model.rate_steps.numpy()).astype(np.int32)


def entropy_tables(model: HyperpriorCodec, hs_scale: float, hs_zero_point: int) -> dict:
    """The arrays of entropy.npz; (hs_scale, hs_zero_point) quantise h_s's index head."""
    c = model.config
    y_model, z_model = model.entropy_models(compression=True, precision=PRECISION)
    y_cdf, y_offset, y_len = _table(y_model, c.num_scales, "y")
    z_cdf, z_offset_cdf, z_len = _table(z_model, c.hyper, "z")
    offset = z_model.quantization_offset
    z_offset = np.zeros(c.hyper, np.float32) if offset is None else offset.numpy()
    tables = {
        "y_cdf": y_cdf,
        "y_cdf_offset": y_offset,
        "y_cdf_length": y_len,
        "z_cdf": z_cdf,
        "z_cdf_offset": z_offset_cdf,
        "z_cdf_length": z_len,
        "z_offset": np.asarray(z_offset, np.float32).reshape(c.hyper),
        "hs_index_lut": index_lut(hs_scale, hs_zero_point, c.num_scales),
        "scale_table": np.exp(np.log(c.scale_min) + c.scale_step * np.arange(c.num_scales)),
    }
    steps = level_steps(model)
    if steps is not None:
        tables["level_steps"] = steps
    return tables

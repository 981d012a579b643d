"""What encoder and decoder must compute identically: z symbols, scale indexes, ROI steps, bands.

Symbols (Balle et al. 2018, "Variational image compression with a scale hyperprior"):
    z_hat = round(z - o) + o              factorized prior, o = TFC's median offset per channel
    i     = LUT[h_s(z_hat) + 128]         scale index of every y element (int8 h_s, exact_int8.py)
    y_q   = round((y - mu) / Delta_j), Delta_j = exp(j d),  coded with index max(i - j, 0)
    y_hat = y_q * Delta_j + mu            mu = 0 unless the model is mean-scale

ROI steps (DESIGN.md): on the latent grid of each part, j = j_g inside the boxes (each grown
by one latent), j = j_g + j_bg outside; a variable-rate model adds its level's step per
channel. Everything here that the decoder must reproduce uses integers: boxes arrive as
8-bit corners, steps as small integers, indexes from the int8 LUT. `PartPlan` is the one
place that turns a part's header into its latent grid, for encoder, decoder and `inspect`.

y is coded in independent bands of `rows` latent rows (the container's `band_rows`); band b
holds rows [b * rows, (b + 1) * rows), and bands that touch a box are sent first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.codec.exact_int8 import ExactInt8Model
from device.codec.tflite import TFLiteModel, dequantize, quantize
from device.errors import BundleError

#: Latent rows per band when the encoder chooses the band count (64 px at 16x downsampling).
ROWS_PER_BAND = 4
#: The container's box corners are 8-bit fractions of the image size.
BOX_SCALE = 255
#: The container numbers bands with one byte.
MAX_BANDS = 255
#: Pixels per latent (g_a downsamples 16x; h_a another 4x).
DOWNSAMPLE = 16


def z_symbols(z: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """round(z - o) as int32 (TFC's quantisation of the factorized prior)."""
    return np.round(z - offset.astype(np.float32)).astype(np.int32)


def z_hat(symbols: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """symbols + o as float32: the side information both ends feed to h_s."""
    return symbols.astype(np.float32) + offset.astype(np.float32)


def z_indexes(shape: tuple) -> np.ndarray:
    """CDF row of each z element: its channel (the factorized prior is per channel)."""
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape).copy()


def hyper_indexes(
    model: ExactInt8Model | TFLiteModel, z_hat_: np.ndarray, lut: np.ndarray
) -> np.ndarray:
    """Scale indexes [4h, 4w, M] from z_hat [h, w, Cz] via the int8 h_s and its LUT.

    `model`: the exact integer h_s both ends run, or a reference-kernel TFLiteModel (the test
    oracle). The index head is the h_s's one int8 output; float outputs (a mean-scale h_s's
    dequantised means) are left to the caller.
    """
    (detail,) = model.inputs
    outs = [o for o in model.run_raw(quantize(z_hat_[None], detail)) if o.dtype == np.int8]
    if len(outs) != 1:
        raise BundleError(f"{model.path.name} must have one int8 output (the scale indexes)")
    (out,) = outs
    return lut_indexes(out, lut)


def lut_indexes(q: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """i = LUT[q + 128], int32, of h_s's int8 index head q [1, 4h, 4w, M] (batch dropped)."""
    return lut.astype(np.int32)[q[0].astype(np.int32) + 128]


def hyper_synthesis(model: ExactInt8Model | TFLiteModel, tables, z_hat_: np.ndarray):
    """(scale indexes [4h, 4w, M], means [4h, 4w, M] float32 or None) of z_hat with the
    bundle's h_s: the one call both ends make (`tables` is the bundle's `CodingTables`).

    A mean-scale h_s has two outputs, told apart by the manifest's `hyper_outputs`. The mean
    is dequantised with its tensor's own scale and zero point (float32 basic ops); both ends
    run the same integers, and even a mean that differed would only move the picture.
    """
    if not tables.mean:
        return hyper_indexes(model, z_hat_, tables.lut), None
    (detail,) = model.inputs
    outs = model.run_raw(quantize(z_hat_[None], detail))
    if len(outs) != len(tables.hyper_outputs):
        raise BundleError(f"{model.path.name} has {len(outs)} outputs; the manifest names "
                          f"{len(tables.hyper_outputs)}")
    role = dict(zip(tables.hyper_outputs, zip(outs, model.outputs, strict=True), strict=True))
    q, _ = role["indexes"]
    if q.dtype != np.int8:
        raise BundleError(f"{model.path.name}: the scale-index output must be int8")
    indexes = lut_indexes(q, tables.lut)
    means, mean_detail = role["means"]
    return indexes, dequantize(means, mean_detail)[0]


def roi_mask(corners, capture_w: int, capture_h: int, rect, coded_w: int, coded_h: int,
             latent_h: int, latent_w: int) -> np.ndarray:
    """Bool [latent_h, latent_w]: the latents of one part under the boxes, each grown by one.

    Args:
        corners: (x0, y0, x1, y1) per box, integers in 1/255 of the capture (the container's
            8-bit corners).
        capture_w, capture_h: the capture size; rect: the part's (x0, y0, x1, y1) in it.
        coded_w, coded_h: the part's coded size; it sits top-left in the padded latent grid.
    Integer arithmetic only: the decoder must find the same latents. For a part covering the
    whole frame this is version 1's rule, floor(corner * coded / (255 * 16)) - 1.
    """
    mask = np.zeros((latent_h, latent_w), bool)
    rx0, ry0, rx1, ry1 = (int(v) for v in rect)
    per_h = BOX_SCALE * DOWNSAMPLE * (ry1 - ry0)
    per_w = BOX_SCALE * DOWNSAMPLE * (rx1 - rx0)
    for x0, y0, x1, y1 in corners:
        r0 = ((int(y0) * capture_h - BOX_SCALE * ry0) * coded_h) // per_h - 1
        c0 = ((int(x0) * capture_w - BOX_SCALE * rx0) * coded_w) // per_w - 1
        r1 = -((-(int(y1) * capture_h - BOX_SCALE * ry0) * coded_h) // per_h) + 1  # ceil
        c1 = -((-(int(x1) * capture_w - BOX_SCALE * rx0) * coded_w) // per_w) + 1
        r0, c0 = max(r0, 0), max(c0, 0)
        if r1 > r0 and c1 > c0:
            mask[r0 : max(r1, 0), c0 : max(c1, 0)] = True
    return mask


def step_map(roi: np.ndarray, j_g: int, j_bg: int, has_boxes: bool) -> np.ndarray:
    """int32 step j per latent: j_g in the ROI, j_g + j_bg outside (j_g everywhere if no boxes)."""
    if not has_boxes:
        return np.full(roi.shape, j_g, np.int32)
    return np.where(roi, j_g, j_g + j_bg).astype(np.int32)


def channel_steps(steps: np.ndarray, level_steps: np.ndarray | None) -> np.ndarray:
    """int32 j per latent element: the ROI step map [h, w] plus the rate level's step per
    channel [M] (a variable-rate model's gain, on the scale table's grid); [h, w, 1] if none."""
    if level_steps is None:
        return steps.astype(np.int32)[..., None]
    return (steps.astype(np.int32)[..., None] + level_steps.astype(np.int32)[None, None, :])


def quantize_y(y: np.ndarray, steps: np.ndarray, d: float, mean: np.ndarray | None = None):
    """y_q = round((y - mu) / exp(j d)), int32; `steps` from `channel_steps` (mu = 0 if none)."""
    delta = np.exp(steps.astype(np.float64) * d).astype(np.float32)
    centred = y if mean is None else y - mean
    return np.round(centred / delta).astype(np.int32)


def dequantize_y(y_q: np.ndarray, steps: np.ndarray, d: float, mean: np.ndarray | None = None):
    """y_hat = y_q * exp(j d) + mu (float32)."""
    delta = np.exp(steps.astype(np.float64) * d).astype(np.float32)
    y_hat = y_q.astype(np.float32) * delta
    return y_hat if mean is None else y_hat + mean


def shift_indexes(indexes: np.ndarray, steps: np.ndarray, top: int) -> np.ndarray:
    """Index of y / Delta_j: i - j, clipped to [0, top] (the table is log-spaced with step d;
    `top` = its last index, `CodingTables.scale_count - 1`).

    The clip at 0 keeps the finest scale for elements quantised far coarser than predicted;
    `steps` may be negative (finer than the model's own step), hence the clip at `top`.
    """
    return np.clip(indexes - steps.astype(np.int32), 0, int(top)).astype(np.int32)


def rows_per_band(latent_h: int) -> int:
    """Latent rows per band: ROWS_PER_BAND, more if the container's 255 bands would not do."""
    return max(ROWS_PER_BAND, -(-latent_h // MAX_BANDS))


def band_count(latent_h: int, rows: int) -> int:
    """Bands of `rows` latent rows that cover `latent_h` rows (the last may be shorter)."""
    return max(1, -(-latent_h // max(rows, 1)))


def band_rows(latent_h: int, rows: int) -> list[tuple[int, int]]:
    """Row range [r0, r1) of each band: band b holds rows [b * rows, (b + 1) * rows)."""
    return [(b * rows, min((b + 1) * rows, latent_h)) for b in range(band_count(latent_h, rows))]


def band_order(roi: np.ndarray, rows: int, has_boxes: bool) -> list[int]:
    """Bands touching the ROI first (top to bottom), then the rest (top to bottom)."""
    ranges = band_rows(roi.shape[0], rows)
    if not has_boxes:
        return list(range(len(ranges)))
    hot = [b for b, (r0, r1) in enumerate(ranges) if roi[r0:r1].any()]
    return hot + [b for b in range(len(ranges)) if b not in hot]


@dataclass(frozen=True, eq=False)
class PartPlan:
    """A part's latent grid as both ends compute it from the header alone."""

    latent_h: int
    latent_w: int
    z_shape: tuple[int, int, int]
    roi: np.ndarray  # bool [h, w]
    steps: np.ndarray  # int32 [h, w, 1 or M]: ROI steps plus the level's channel steps
    ranges: list[tuple[int, int]]  # latent rows of each band


def plan_part(container, part, pad_multiple: int, hyper_channels: int,
              level_steps: np.ndarray | None) -> PartPlan:
    """The latent plan of `part` of `container` (a `device.codec.container.Container`)."""
    ph = -(-part.coded_height // pad_multiple) * pad_multiple
    pw = -(-part.coded_width // pad_multiple) * pad_multiple
    lh, lw = ph // DOWNSAMPLE, pw // DOWNSAMPLE
    corners = [b.corners for b in container.boxes]
    roi = roi_mask(corners, container.width, container.height, part.rect, part.coded_width,
                   part.coded_height, lh, lw)
    steps = step_map(roi, part.step, part.background_step, bool(corners))
    return PartPlan(lh, lw, (ph // 64, pw // 64, hyper_channels), roi,
                    channel_steps(steps, level_steps), band_rows(lh, part.band_rows))

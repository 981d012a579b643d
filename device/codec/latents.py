"""What encoder and decoder must compute identically: z symbols, scale indexes, ROI steps, bands.

Symbols (Balle et al. 2018, "Variational image compression with a scale hyperprior"):
    z_hat = round(z - o) + o              factorized prior, o = TFC's median offset per channel
    i     = LUT[h_s(z_hat) + 128]         scale index of every y element (int8 h_s, exact_int8.py)
    y_q   = round(y / Delta_j), Delta_j = exp(j d),  coded with index max(i - j, 0)
    y_hat = y_q * Delta_j

ROI steps (DESIGN.md): on the latent grid, j = j_g inside the boxes (each grown by one latent),
j = j_g + j_bg outside. Everything here that the decoder must reproduce uses integers: boxes
arrive as 8-bit corners, steps as small integers, indexes from the int8 LUT.

y is coded in independent bands of `rows` latent rows (the container's `band_rows`); band b
holds rows [b * rows, (b + 1) * rows), and bands that touch a box are sent first.
"""

from __future__ import annotations

import numpy as np

from device.codec.exact_int8 import ExactInt8Model
from device.codec.tflite import TFLiteModel, quantize
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
    return lut.astype(np.int32)[out[0].astype(np.int32) + 128]


def roi_mask(corners, image_h: int, image_w: int, latent_h: int, latent_w: int) -> np.ndarray:
    """Bool [latent_h, latent_w]: the latents under the boxes, each grown by one latent.

    Args:
        corners: (x0, y0, x1, y1) per box, integers in 1/255 of the *image* size (the
            container's 8-bit corners); the image sits top-left in the padded latent grid.
        image_h, image_w: the coded (transmit) image size in pixels, before padding.
    Integer arithmetic only: the decoder must find the same latents.
    """
    mask = np.zeros((latent_h, latent_w), bool)
    per_h, per_w = BOX_SCALE * DOWNSAMPLE, BOX_SCALE * DOWNSAMPLE
    for x0, y0, x1, y1 in corners:
        r0 = (int(y0) * image_h) // per_h - 1
        c0 = (int(x0) * image_w) // per_w - 1
        r1 = -((-int(y1) * image_h) // per_h) + 1  # ceil division
        c1 = -((-int(x1) * image_w) // per_w) + 1
        mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
    return mask


def step_map(roi: np.ndarray, j_g: int, j_bg: int, has_boxes: bool) -> np.ndarray:
    """int32 step j per latent: j_g in the ROI, j_g + j_bg outside (j_g everywhere if no boxes)."""
    if not has_boxes:
        return np.full(roi.shape, j_g, np.int32)
    return np.where(roi, j_g, j_g + j_bg).astype(np.int32)


def quantize_y(y: np.ndarray, steps: np.ndarray, d: float) -> np.ndarray:
    """y_q = round(y / exp(j d)), int32; steps [h, w] broadcast over channels."""
    delta = np.exp(steps.astype(np.float64) * d).astype(np.float32)[..., None]
    return np.round(y / delta).astype(np.int32)


def dequantize_y(y_q: np.ndarray, steps: np.ndarray, d: float) -> np.ndarray:
    """y_hat = y_q * exp(j d) (float32)."""
    delta = np.exp(steps.astype(np.float64) * d).astype(np.float32)[..., None]
    return y_q.astype(np.float32) * delta


def shift_indexes(indexes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Index of y / Delta_j: i - j, clipped at 0 (the table is log-spaced with step d)."""
    return np.maximum(indexes - steps[..., None].astype(np.int32), 0).astype(np.int32)


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

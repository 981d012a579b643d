"""Image quality metrics in plain numpy: PSNR, SSIM, MS-SSIM, and their box-restricted forms.

Why our own: the evaluation must run on a base station without SciPy or TensorFlow, and the
animal-box metrics need the SSIM *map*, which most libraries hide.

Conventions (the ones learned-compression papers use, so numbers compare with published ones):
images are uint8 (or float in [0, 255]) arrays of shape (H, W, 3) or (H, W); PSNR uses peak 255
and the MSE over all channels; SSIM and MS-SSIM are computed per channel and averaged, as
`tf.image.ssim_multiscale` does.

- SSIM: Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
  structural similarity", IEEE TIP 2004 (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03).
- MS-SSIM: Wang, Simoncelli, Bovik, "Multi-scale structural similarity for image quality
  assessment", Asilomar 2003 (5 scales, weights of their Table/eq. 7, 2x2 average pooling).

Boxes are MegaDetector boxes: [x, y, w, h] normalised to the image size, origin top left.

Example::

    >>> a = np.zeros((32, 32, 3), np.uint8); b = a.copy(); b[0, 0, 0] = 255
    >>> round(psnr(a, b), 2)
    34.9
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAX_PSNR",
    "box_mask",
    "mse",
    "psnr",
    "ssim",
    "ssim_map",
    "ms_ssim",
    "region_metrics",
]

# PSNR of identical images is infinite; averages over images need a finite number. 100 dB is far
# above any lossy codec (an MSE of 6.5e-6) and is what we report for "no error".
MAX_PSNR = 100.0

_K1, _K2, _PEAK = 0.01, 0.03, 255.0
_WIN, _SIGMA = 11, 1.5
# Wang et al. 2003, MS-SSIM exponents beta_j = gamma_j for scales 1..5 (alpha_5 on luminance).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

Box = Sequence[float]


def _as_float(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {array.shape}")
    return array


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _psnr_from_mse(value: float) -> float:
    if value <= 0.0:
        return MAX_PSNR
    return float(min(MAX_PSNR, 10.0 * np.log10(_PEAK**2 / value)))


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over all channels, optionally only where `mask` (H, W) is true."""
    a, b = _check_pair(a, b)
    err = np.mean((a - b) ** 2, axis=2)
    if mask is None:
        return float(err.mean())
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    return float(err[mask].mean())


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (peak 255), capped at `MAX_PSNR`; NaN for an empty mask."""
    value = mse(a, b, mask)
    return float("nan") if np.isnan(value) else _psnr_from_mse(value)


def _gaussian_window() -> np.ndarray:
    x = np.arange(_WIN, dtype=np.float64) - (_WIN - 1) / 2
    g = np.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


_GAUSS = _gaussian_window().astype(np.float32)


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian filter, 'valid' part only: (H, W, C) -> (H-10, W-10, C)."""
    n = _WIN
    rows = x.shape[0] - n + 1
    cols = x.shape[1] - n + 1
    tmp = _GAUSS[0] * x[0:rows]
    for i in range(1, n):
        tmp = tmp + _GAUSS[i] * x[i : i + rows]
    out = _GAUSS[0] * tmp[:, 0:cols]
    for i in range(1, n):
        out = out + _GAUSS[i] * tmp[:, i : i + cols]
    return out


def _ssim_parts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luminance term l and contrast-structure term cs maps (Wang 2004 eq. 6-9, C3 = C2/2)."""
    if min(a.shape[0], a.shape[1]) < _WIN:
        raise ValueError(f"image too small for an {_WIN}x{_WIN} SSIM window: {a.shape[:2]}")
    c1 = (_K1 * _PEAK) ** 2
    c2 = (_K2 * _PEAK) ** 2
    mu_a = _filter_valid(a)
    mu_b = _filter_valid(b)
    var_a = _filter_valid(a * a) - mu_a**2
    var_b = _filter_valid(b * b) - mu_b**2
    cov = _filter_valid(a * b) - mu_a * mu_b
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return lum, cs


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM averaged over channels, shape (H-10, W-10): window centres only."""
    a, b = _check_pair(a, b)
    lum, cs = _ssim_parts(a, b)
    return np.mean(lum * cs, axis=2)


def _crop_mask(mask: np.ndarray) -> np.ndarray:
    """A full-size (H, W) mask cut to the window centres of `ssim_map`."""
    half = _WIN // 2
    return np.asarray(mask, dtype=bool)[half:-half, half:-half]


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM; with a (H, W) `mask`, the mean over windows centred inside it (NaN if none)."""
    smap = ssim_map(a, b)
    if mask is None:
        return float(smap.mean())
    inside = _crop_mask(mask)
    if not inside.any():
        return float("nan")
    return float(smap[inside].mean())


def _pool2(x: np.ndarray) -> np.ndarray:
    rows, cols = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[:rows, :cols]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang 2003 eq. 7): prod_j cs_j^w_j * l_M^w_M, per channel, averaged.

    Needs a short side of at least 176 px (11 px at the coarsest of 5 scales).
    """
    a, b = _check_pair(a, b)
    if min(a.shape[0], a.shape[1]) < _WIN * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(f"image too small for 5-scale MS-SSIM: {a.shape[:2]}")
    weights = np.asarray(MS_SSIM_WEIGHTS)
    values = []
    for scale in range(len(weights)):
        lum, cs = _ssim_parts(a, b)
        cs_mean = np.maximum(cs.mean(axis=(0, 1)), 0.0)  # per channel; clamp as TF does (relu)
        if scale == len(weights) - 1:
            lum_mean = np.maximum(lum.mean(axis=(0, 1)), 0.0)
            values.append(lum_mean * cs_mean)
        else:
            values.append(cs_mean)
            a, b = _pool2(a), _pool2(b)
    stacked = np.stack(values)  # (scales, C)
    return float(np.mean(np.prod(stacked ** weights[:, None], axis=0)))


def box_mask(shape: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    """Boolean (H, W) mask, true inside any of the normalised [x, y, w, h] boxes."""
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x, y, w, h = (float(v) for v in box)
        x0 = int(np.clip(np.floor(x * width), 0, width))
        y0 = int(np.clip(np.floor(y * height), 0, height))
        x1 = int(np.clip(np.ceil((x + w) * width), 0, width))
        y1 = int(np.clip(np.ceil((y + h) * height), 0, height))
        mask[y0:y1, x0:x1] = True
    return mask


def region_metrics(
    original: np.ndarray,
    decoded: np.ndarray,
    boxes: Sequence[Box] = (),
    *,
    with_ms_ssim: bool = True,
    with_ssim: bool = False,
) -> dict[str, float]:
    """Every quality figure of one decoded image: full-image PSNR, MS-SSIM (and SSIM if asked),
    box PSNR/SSIM and background PSNR (NaN where there are no boxes, or no background)."""
    a, b = _check_pair(original, decoded)
    err = np.mean((a - b) ** 2, axis=2)
    mask = box_mask(a.shape[:2], boxes)
    out = {"psnr": _psnr_from_mse(float(err.mean()))}
    out["ms_ssim"] = ms_ssim(a, b) if with_ms_ssim else float("nan")
    out["ssim"] = float(ssim_map(a, b).mean()) if with_ssim else float("nan")
    if mask.any():
        out["box_psnr"] = _psnr_from_mse(float(err[mask].mean()))
        out["box_ssim"] = _box_ssim(a, b, mask)
    else:
        out["box_psnr"] = out["box_ssim"] = float("nan")
    out["bg_psnr"] = _psnr_from_mse(float(err[~mask].mean())) if (~mask).any() else float("nan")
    return out


def _box_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """`ssim(a, b, mask)` computed on the boxes' bounding rectangle only (same value, faster)."""
    half = _WIN // 2
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1 = max(rows[0] - half, 0), min(rows[-1] + half + 1, mask.shape[0])
    c0, c1 = max(cols[0] - half, 0), min(cols[-1] + half + 1, mask.shape[1])
    if r1 - r0 < _WIN or c1 - c0 < _WIN:
        return ssim(a, b, mask)
    return ssim(a[r0:r1, c0:c1], b[r0:r1, c0:c1], mask[r0:r1, c0:c1])

"""Saliency-driven smoothing before encoding (seed 001, Downes et al., SIGSPATIAL 2023, sec. 4).

Each pixel gets a Gaussian blur whose kernel width falls with its saliency level s in [0, 1]:

    K(s) = 2 * floor((1 - s) * |k|) + 1,  k in {3, 5, ..., 17}, |k| = 8       (seed 001, eq. 2)

so s = 1 keeps the pixel (K = 1) and s = 0 gets the widest kernel (K = 17). As in the seed
(sec. 4.3), the image is blurred once per *distinct* K present in the level map and the copies
are composited by mask, so the cost is linear in the number of distinct K. Each blur is two
separable 1-D passes and is computed only over the bounding box of the pixels that use it
(plus the kernel radius), which is exact, because a pixel's blur reads only its neighbourhood.

The seed does not state sigma for a K-tap kernel; we use OpenCV's convention for
`getGaussianKernel(K, sigma<=0)`: sigma = 0.3 * ((K - 1) / 2 - 1) + 0.8. Borders reflect
without repeating the edge pixel (OpenCV's BORDER_REFLECT_101, numpy's "reflect").

Example:
    >>> from device.masks import half_mask
    >>> levels = half_mask(768, 1024)            # left half salient, right half not
    >>> smoothed = prefilter(image, levels)      # doctest: +SKIP
    >>> effective_kernel_width(levels)           # eq. 3: (1 + 17) / 2
    9.0
"""

from __future__ import annotations

import numpy as np

from device.errors import ImageError

#: |k| of eq. 2: the number of kernel sizes above 1, so K ranges over 1, 3, ..., 2*|k|+1.
MAX_K = 8
# Guards floor() against round-off in levels written as fractions (e.g. 1 - 0.75 in binary).
_EPS = 1e-9


def kernel_size(levels: np.ndarray | float, max_k: int = MAX_K) -> np.ndarray | int:
    """K(s) of seed 001 eq. 2 for a saliency level (scalar) or a level map (array of int)."""
    s = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0)
    k = 2 * np.floor((1.0 - s) * max_k + _EPS).astype(np.int64) + 1
    return int(k) if k.ndim == 0 else k


def effective_kernel_width(levels: np.ndarray, max_k: int = MAX_K) -> float:
    """K_e(M) of seed 001 eq. 3: the kernel widths weighted by the share of pixels using them."""
    sizes = kernel_size(np.asarray(levels), max_k)
    return float(np.mean(sizes)) if np.size(sizes) else 1.0


def gaussian_sigma(size: int) -> float:
    """Sigma of a `size`-tap Gaussian (OpenCV's getGaussianKernel rule for sigma <= 0)."""
    return 0.3 * ((size - 1) * 0.5 - 1.0) + 0.8


def gaussian_kernel(size: int) -> np.ndarray:
    """Sampled, normalised 1-D Gaussian of odd length `size` (seed 001 eq. 1, one axis)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    radius = size // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * gaussian_sigma(size) ** 2))
    return g / g.sum()


def blur(image: np.ndarray, size: int) -> np.ndarray:
    """Separable Gaussian blur of a float32 [H, W] or [H, W, C] array with a `size`-tap kernel."""
    out = np.asarray(image, dtype=np.float32)
    if size <= 1:
        return out.copy()
    for axis in (0, 1):
        out = _blur_axis(out, gaussian_kernel(size), axis)
    return out


def _blur_axis(x: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """One 1-D pass; symmetric taps are paired so each pair costs one multiply."""
    radius = len(weights) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(x, pad, mode="reflect")
    n = x.shape[axis]

    def window(offset: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axis] = slice(radius + offset, radius + offset + n)
        return padded[tuple(index)]

    out = window(0) * np.float32(weights[radius])
    pair = np.empty_like(out)  # reused: no temporaries inside the loop
    for offset in range(1, radius + 1):
        np.add(window(-offset), window(offset), out=pair)
        pair *= np.float32(weights[radius + offset])
        out += pair
    return out


def resize_levels(levels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a level map to the image size (seed 001 sec. 4.3, step 1)."""
    levels = np.asarray(levels)
    if levels.shape == (height, width):
        return levels
    if levels.ndim != 2 or levels.size == 0:
        raise ImageError(f"saliency levels must be a 2-D map, got shape {levels.shape}")
    rows = (np.arange(height) * levels.shape[0]) // height
    cols = (np.arange(width) * levels.shape[1]) // width
    return levels[rows[:, None], cols[None, :]]


def prefilter(image: np.ndarray, levels: np.ndarray, max_k: int = MAX_K) -> np.ndarray:
    """Blur `image` by its saliency `levels` (seed 001 sec. 4.3).

    Args:
        image: [H, W, C] or [H, W]; uint8 (0..255) or float (any range, e.g. [0, 1]).
        levels: [h, w] saliency in [0, 1] (1 = keep); resized nearest-neighbour to [H, W].
        max_k: |k| of eq. 2 (8 gives K up to 17).

    Returns:
        An array of the image's shape and dtype; pixels with K = 1 are copied unchanged.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"expected an [H, W] or [H, W, C] image, got shape {image.shape}")
    height, width = image.shape[:2]
    sizes = kernel_size(resize_levels(levels, height, width), max_k)
    out = image.copy()
    for size in np.unique(sizes):
        if size <= 1:
            continue
        mask = sizes == size
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        radius = int(size) // 2
        # Exact: the window holds every pixel the kernel reaches from a masked pixel, and the
        # wrong values that reflecting at an inner window edge makes stay within `radius` of it.
        r0, r1 = max(rows[0] - radius, 0), min(rows[-1] + radius + 1, height)
        c0, c1 = max(cols[0] - radius, 0), min(cols[-1] + radius + 1, width)
        window = image[r0:r1, c0:c1].astype(np.float32)
        blurred = blur(window, int(size))
        sub = mask[r0:r1, c0:c1]
        if np.issubdtype(image.dtype, np.integer):
            info = np.iinfo(image.dtype)
            blurred = np.clip(np.rint(blurred), info.min, info.max)
        out[r0:r1, c0:c1][sub] = blurred[sub].astype(image.dtype)
    return out

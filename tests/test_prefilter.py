"""Seed 001's saliency-driven smoothing: kernel sizes, K_e, compositing, separability."""

from __future__ import annotations

import numpy as np
import pytest

from device.errors import ImageError
from device.masks import grid_mask, half_mask, perlin_mask
from device.prefilter import (
    blur,
    effective_kernel_width,
    gaussian_kernel,
    kernel_size,
    prefilter,
)


def test_kernel_size_is_eq2():
    assert kernel_size(1.0) == 1
    assert kernel_size(0.0) == 17
    assert [kernel_size(s) for s in (0.25, 0.5, 0.75)] == [13, 9, 5]
    # Table 3 of the seed: the grid levels [0, .33, .66, 1] give [17, 11, 5, 1].
    assert kernel_size(np.array([0.0, 0.33, 0.66, 1.0])).tolist() == [17, 11, 5, 1]
    s = np.linspace(0, 1, 1001)
    assert set(np.unique(kernel_size(s))) == set(range(1, 18, 2))
    assert kernel_size(-0.5) == 17 and kernel_size(1.5) == 1  # clipped to [0, 1]


@pytest.mark.parametrize(
    "make, sizes, shares",
    [
        (half_mask, [1, 17], [0.5, 0.5]),
        (grid_mask, [1, 5, 11, 17], [0.25] * 4),
        (perlin_mask, [1, 5, 9, 13], [0.06, 0.44, 0.42, 0.08]),
    ],
)
def test_synthetic_masks_match_table3(make, sizes, shares):
    mask = make(384, 512)
    values, counts = np.unique(kernel_size(mask), return_counts=True)
    assert values.tolist() == sizes
    np.testing.assert_allclose(counts / mask.size, shares, atol=0.05)


def test_effective_kernel_width_is_eq3():
    assert effective_kernel_width(half_mask(10, 10)) == 9.0
    assert effective_kernel_width(grid_mask(40, 40)) == pytest.approx((1 + 5 + 11 + 17) / 4)
    assert effective_kernel_width(np.ones((3, 3))) == 1.0


def test_gaussian_kernel_is_normalised_and_symmetric():
    for size in range(3, 18, 2):
        g = gaussian_kernel(size)
        assert g.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(g, g[::-1])
        assert np.argmax(g) == size // 2
    with pytest.raises(ValueError):
        gaussian_kernel(4)


def test_blur_is_separable_2d_gaussian():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (40, 50)).astype(np.float32)
    size = 7
    g = gaussian_kernel(size)
    kernel2d = np.outer(g, g)
    padded = np.pad(image, size // 2, mode="reflect")
    direct = np.zeros_like(image, dtype=np.float64)
    for dy in range(size):
        for dx in range(size):
            direct += kernel2d[dy, dx] * padded[dy : dy + 40, dx : dx + 50]
    np.testing.assert_allclose(blur(image, size), direct, atol=1e-3)


def test_salient_pixels_are_untouched_and_background_is_smoothed():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    levels = half_mask(64, 96)
    out = prefilter(image, levels)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[:, :48], image[:, :48])
    assert out[:, 48:].std() < image[:, 48:].std() / 3


def test_composite_equals_full_blurs_masked():
    """Blurring only each K's window gives exactly the seed's full-image blur per K."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    levels = np.ones((70, 90), np.float32)
    levels[10:30, 20:50] = 0.0  # K = 17 in a small window
    levels[40:60, 5:15] = 0.5  # K = 9
    out = prefilter(image, levels)
    sizes = kernel_size(levels)
    expected = image.copy()
    for size in (9, 17):
        full = np.clip(np.rint(blur(image, size)), 0, 255).astype(np.uint8)
        expected[sizes == size] = full[sizes == size]
    np.testing.assert_array_equal(out, expected)


def test_float_and_grey_images_and_level_resizing():
    image = np.random.default_rng(3).uniform(0, 1, (32, 48)).astype(np.float32)
    out = prefilter(image, np.zeros((4, 6)))  # coarse map, resized nearest-neighbour
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, blur(image, 17), atol=1e-6)
    uniform = np.full((20, 20, 3), 77, np.uint8)
    np.testing.assert_array_equal(prefilter(uniform, np.zeros((20, 20))), uniform)


def test_tiny_image_and_bad_levels():
    tiny = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert prefilter(tiny, np.zeros((2, 2))).shape == (2, 2, 3)
    with pytest.raises(ImageError):
        prefilter(tiny, np.zeros((2, 2, 2)))
    with pytest.raises(ImageError):
        prefilter(np.zeros((2,), np.uint8), np.zeros((2, 2)))

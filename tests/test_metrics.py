"""tools.metrics: PSNR, SSIM, MS-SSIM and the box-restricted metrics against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools import metrics


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(8, 8, 3)).astype(np.float64)
    # A smooth-ish image (upsampled noise) and a noisy copy: realistic SSIM values.
    image = np.kron(base, np.ones((32, 32, 1)))[:200, :240]
    image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    noisy = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    return image, noisy


def test_psnr_of_one_wrong_pixel():
    a = np.zeros((32, 32, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    # MSE = 255^2 / 3072, so PSNR = 10 log10(3072).
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(32 * 32 * 3))


def test_identical_images_hit_the_caps(pair):
    image, _ = pair
    assert metrics.psnr(image, image) == metrics.MAX_PSNR
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.ms_ssim(image, image) == pytest.approx(1.0)


def test_ssim_is_symmetric_and_falls_with_noise(pair):
    image, noisy = pair
    rng = np.random.default_rng(1)
    noisier = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    s1 = metrics.ssim(image, noisy)
    assert s1 == pytest.approx(metrics.ssim(noisy, image), abs=1e-6)
    assert 0.0 < metrics.ssim(image, noisier) < s1 < 1.0
    assert metrics.ms_ssim(image, noisier) < metrics.ms_ssim(image, noisy) < 1.0


def test_ssim_and_ms_ssim_match_tensorflow(pair):
    tf = pytest.importorskip("tensorflow")
    image, noisy = pair
    ours = metrics.ssim(image, noisy)
    theirs = float(tf.image.ssim(image[None], noisy[None], max_val=255))
    assert ours == pytest.approx(theirs, abs=2e-3)
    ours_ms = metrics.ms_ssim(image, noisy)
    theirs_ms = float(tf.image.ssim_multiscale(image[None], noisy[None], max_val=255))
    assert ours_ms == pytest.approx(theirs_ms, abs=2e-3)


def test_box_mask_maps_normalised_boxes_and_clips():
    mask = metrics.box_mask((100, 200), [(0.1, 0.2, 0.25, 0.5), (-0.1, 0.9, 0.2, 0.5)])
    assert mask[20:70, 20:70].all()
    assert not mask[19, 30] and not mask[70, 30] and not mask[30, 19] and not mask[30, 70]
    assert mask[90:, :20].all() and not mask[89, 5]
    assert metrics.box_mask((10, 10), []).sum() == 0


def test_region_metrics_split_box_and_background(pair):
    image, _ = pair
    damaged = image.copy()
    damaged[50:100, 60:120] = 0  # all the damage inside the box
    box = (60 / 240, 50 / 200, 60 / 240, 50 / 200)
    out = metrics.region_metrics(image, damaged, [box])
    assert out["bg_psnr"] == metrics.MAX_PSNR
    assert out["box_psnr"] < out["psnr"] < metrics.MAX_PSNR
    assert out["box_ssim"] < 0.5
    assert out["box_ssim"] == pytest.approx(
        metrics.ssim(image, damaged, metrics.box_mask(image.shape[:2], [box])), abs=1e-6
    )


def test_region_metrics_without_boxes_are_nan(pair):
    image, noisy = pair
    out = metrics.region_metrics(image, noisy, [], with_ms_ssim=False)
    assert math.isnan(out["box_psnr"]) and math.isnan(out["box_ssim"])
    assert math.isnan(out["ms_ssim"])
    assert out["bg_psnr"] == pytest.approx(out["psnr"])


def test_bad_shapes_are_value_errors(pair):
    image, _ = pair
    with pytest.raises(ValueError, match="differ"):
        metrics.psnr(image, image[:-1])
    with pytest.raises(ValueError, match="too small"):
        metrics.ms_ssim(image[:100], image[:100])
    with pytest.raises(ValueError, match="too small"):
        metrics.ssim(image[:5, :5], image[:5, :5])
    assert metrics.psnr(image, image, np.zeros(image.shape[:2], bool)) != metrics.psnr(
        image, image
    )  # empty mask gives NaN, not a number

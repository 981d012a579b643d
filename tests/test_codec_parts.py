"""Codec building blocks without a model: image I/O, resize, ROI steps, bands, rate control."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from device.codec import latents
from device.codec.ratecontrol import BudgetError, choose_step
from device.errors import ImageError
from device.imageio import as_rgb8, load_image, resize, save_image, transmit_shape


def test_load_image_normalises_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    for name in ("grey.png", "rgba.png", "deep.png", "palette.png"):
        image = load_image(tmp_path / name)
        assert image.shape == (40, 60, 3) and image.dtype == np.uint8, name
    deep = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(deep[..., 1], rgb[..., 0])  # 16 -> 8 bits exactly


def test_load_image_applies_exif_rotation(tmp_path):
    image = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (60, 40, 3)


def test_load_image_refuses_bad_files(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "text.jpg")
    Image.new("RGB", (8, 100)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="at least 16"):
        load_image(tmp_path / "tiny.png")
    Image.new("1", (12000, 9000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageError, match="megapixels"):
        load_image(tmp_path / "huge.png")
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:100])
    with pytest.raises(ImageError):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")


def test_as_rgb8_and_save(tmp_path):
    assert as_rgb8(np.zeros((20, 20))).shape == (20, 20, 3)
    assert as_rgb8(np.ones((20, 20, 4), np.float32)).max() == 255
    assert as_rgb8(np.full((20, 20, 3), 65535, np.uint16)).max() == 255
    with pytest.raises(ImageError):
        as_rgb8(np.zeros((20, 20, 2)))
    with pytest.raises(ImageError):
        as_rgb8(np.zeros((4, 20, 3), np.uint8))
    save_image(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ImageError):
        save_image(tmp_path / "a.tiff", np.zeros((20, 20, 3), np.uint8))


def test_transmit_shape_and_resize():
    assert transmit_shape(3000, 4000, 1024) == (768, 1024)
    assert transmit_shape(500, 400, 1024) == (500, 400)  # never upscales
    assert transmit_shape(1024, 100, 512) == (512, 50)
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    small = resize(image, 75, 100)
    assert small.shape == (75, 100, 3) and small.dtype == np.uint8
    # A 4x box average: the mean is kept and noise shrinks.
    assert abs(small.mean() - image.mean()) < 1.0 and small.std() < image.std() / 2
    flat = np.full((50, 70, 3), 99, np.uint8)
    np.testing.assert_array_equal(resize(flat, 123, 45), np.full((123, 45, 3), 99, np.uint8))


def test_roi_mask_grows_boxes_by_one_latent_with_integer_corners():
    # A 1024x768 image: 64x48 latents. A box over pixels 256..511 x 192..383.
    corners = [(int(0.25 * 255), int(0.25 * 255), -(-255 // 2), -(-255 // 2))]
    roi = latents.roi_mask(corners, 1024, 768, (0, 0, 1024, 768), 1024, 768, 48, 64)
    rows, cols = np.nonzero(roi)
    # first row floor(63 * 768 / (255 * 16)) - 1, last ceil(128 * 768 / (255 * 16)) + 1 - 1
    assert rows.min() == 10 and cols.min() == 14
    assert rows.max() == 25 and cols.max() == 33
    assert not latents.roi_mask([], 1024, 768, (0, 0, 1024, 768), 1024, 768, 48, 64).any()
    whole = latents.roi_mask([(0, 0, 255, 255)], 4000, 2800, (0, 0, 4000, 2800), 1000, 700, 44, 64)
    assert whole[:44, :63].all()
    # A region part: the same box seen from a crop at twice the capture's resolution.
    crop = latents.roi_mask(corners, 1024, 768, (192, 128, 704, 512), 1024, 768, 48, 64)
    rows, cols = np.nonzero(crop)
    # rows: (63 * 768 / 255 - 128) * 2 / 16 = 7.7 -> 7 - 1; (128 * 768 / 255 - 128) * 2 / 16
    # = 32.2 -> 33 + 1 (exclusive); columns likewise from 192
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 33, 6, 41)


def test_steps_and_index_shift_are_integer_and_inverse():
    roi = np.zeros((4, 4), bool)
    roi[1:3, 1:3] = True
    steps = latents.channel_steps(latents.step_map(roi, 2, 5, has_boxes=True), None)
    assert steps[1, 1, 0] == 2 and steps[0, 0, 0] == 7
    assert (latents.step_map(roi, 3, 5, has_boxes=False) == 3).all()
    indexes = np.full((4, 4, 2), 4, np.int32)
    shifted = latents.shift_indexes(indexes, steps, 63)
    assert shifted[1, 1, 0] == 2 and shifted[0, 0, 0] == 0
    # A step finer than the model's own (negative: regions with bytes to spare) never points
    # past the scale table's last entry.
    finer = latents.shift_indexes(np.array([[[60, 3]]], np.int32), np.array([[[-8]]], np.int32), 63)
    assert finer.tolist() == [[[63, 11]]]
    y = np.random.default_rng(2).normal(0, 10, (4, 4, 2)).astype(np.float32)
    d = 0.123
    y_q = latents.quantize_y(y, steps, d)
    y_hat = latents.dequantize_y(y_q, steps, d)
    delta = np.exp(steps * d)
    assert np.all(np.abs(y_hat - y) <= delta / 2 + 1e-5)


def test_bands_cover_rows_and_put_roi_first():
    for h in (1, 5, 12, 48, 49, 2000):
        rows = latents.rows_per_band(h)
        ranges = latents.band_rows(h, rows)
        assert len(ranges) == latents.band_count(h, rows) <= latents.MAX_BANDS
        assert ranges[0][0] == 0 and ranges[-1][1] == h
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:], strict=False))
    assert latents.rows_per_band(48) == 4 and latents.rows_per_band(2000) == 8
    roi = np.zeros((48, 64), bool)
    roi[30:34] = True
    assert latents.band_order(roi, 4, True)[:2] == [7, 8]
    assert latents.band_order(roi, 4, False) == list(range(12))


def test_choose_step_finds_smallest_fitting_step():
    sizes = {j: 10000 // (j + 1) for j in range(64)}
    calls = []

    def exact(j):
        calls.append(j)
        return sizes[j] + 3

    assert choose_step(lambda j: sizes[j], exact, 1000, 63) == 10
    assert len(calls) <= 3
    assert choose_step(lambda j: sizes[j], lambda j: sizes[j], 20000, 63) == 0
    with pytest.raises(BudgetError, match="at least"):
        choose_step(lambda j: sizes[j], lambda j: sizes[j], 100, 63)
    with pytest.raises(BudgetError):
        choose_step(lambda j: sizes[j], lambda j: sizes[j], 0, 63)

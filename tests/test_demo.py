"""`make demo`: its airtime and JPEG helpers, and a small end-to-end run of two processes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from service_helpers import TINY_BUNDLE, small_samples

from device.link import frames
from device.radio.airtime import time_on_air
from tools import demo


def test_airtime_counts_every_fragment_with_its_header():
    payload = 255 - frames.data_overhead(True)
    count, seconds = demo.airtime(3 * payload + 10, 9)
    assert count == 4
    expected = 3 * time_on_air(255, 9, 125e3) + time_on_air(10 + frames.data_overhead(True), 9,
                                                              125e3)
    assert math.isclose(seconds, expected)
    assert demo.airtime(1000, 7)[1] < demo.airtime(1000, 9)[1]


def test_jpeg_at_the_same_bytes_fits_the_budget():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    decoded, size, note = demo.jpeg_at(image, 1500)
    assert 0 < size <= 1500 and decoded.shape == image.shape and "size" in note


@pytest.mark.slow
def test_table_shows_a_dash_for_a_frame_without_animal_box():
    row = dict(name="empty.jpg", bytes=900, ratio=500.0, frames=4, sf7=0.4, sf9=1.2,
               jpeg_box=float("nan"), ours_box=float("nan"), jpeg_psnr=21.5, ours_psnr=22.25,
               jpeg_note="q5")  # fmt: skip
    line = demo.table([row]).splitlines()[2]
    assert "nan" not in line and "| - (q5) | - | 21.50 | 22.25 |" in line


def test_demo_end_to_end(tmp_path, capsys):
    samples = small_samples(tmp_path / "samples", width=320)
    code = demo.main(["--out", str(tmp_path / "out"), "--samples", str(samples), "--bundle",
                      str(TINY_BUNDLE), "--budget", "800", "--size", "320", "--speedup", "50",
                      "--timeout", "240"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2/2 pictures at the base" in out and "exit codes 0, 0" in out
    assert "| missouri.jpg |" in out and "| wellington.jpg |" in out
    assert (tmp_path / "out" / "missouri.jpg").stat().st_size > 1000
    # The panels are at the transmit size: the base's composed picture, not its context part.
    from PIL import Image

    with Image.open(tmp_path / "out" / "missouri.jpg") as im:
        assert im.width == 3 * 320 + 2 * 8

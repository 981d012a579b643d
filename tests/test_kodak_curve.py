"""The Kodak bench's RD sweep of a bundle and its curve helpers (no TensorFlow, no codecs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from device.codec.bundle import Bundle
from device.codec.ratecontrol import RateLadder
from device.codec.tables import CodingTables
from tools.benchmarks.evaluation import bd_rate_over, kodak_budget, psnr_at
from tools.wildlink_coder import COARSER_STEPS, SWEEP_STEPS, rd_sweep

DATA = Path(__file__).resolve().parent / "data"


def _ladder(name: str) -> RateLadder:
    return RateLadder.of(CodingTables.from_bundle(Bundle.load(DATA / name)))


def test_variable_rate_sweep_is_every_level_then_two_coarser_points():
    ladder = _ladder("tiny_vr_bundle")
    sweep = rd_sweep(ladder)
    coarsest = max(ladder.offsets)
    assert set(ladder.offsets) <= set(sweep)
    assert [t for t in sweep if t > coarsest] == [coarsest + s for s in COARSER_STEPS]
    assert list(sweep) == sorted(set(sweep))


def test_variable_rate_sweep_is_capped_at_the_coarsest_step():
    ladder = RateLadder((10, 0, -5), top=8)  # coarsest step t = 18
    assert rd_sweep(ladder) == (-5.0, 0.0, 10.0, 16.0, 18.0)


def test_one_rate_sweep_is_unchanged():
    assert rd_sweep(_ladder("tiny_bundle")) == tuple(float(s) for s in SWEEP_STEPS)


def test_kodak_budget_is_bits_per_pixel_of_768x512():
    assert kodak_budget(0.5) == 24576 and kodak_budget(0.03) == 1475


def test_psnr_at_is_linear_in_log_rate_and_nan_outside():
    assert psnr_at([0.2, 0.1], [32.0, 30.0], math.sqrt(0.02)) == pytest.approx(31.0)
    assert math.isnan(psnr_at([0.1, 0.2], [30.0, 32.0], 0.05))


def test_bd_rate_over_finds_a_constant_rate_saving_despite_a_long_test_curve():
    """Test = anchor at 0.8x the rate inside the anchor's range (-20%); its points far outside
    bend away, and must not pull the fit."""
    quality = np.linspace(28.0, 34.0, 6)
    anchor = [(float(np.exp((q - 40.0) / 4.0)), float(q)) for q in quality]
    inside = [(0.8 * float(np.exp((q - 40.0) / 4.0)), float(q)) for q in np.linspace(27, 35, 9)]
    outside = [(0.001, 10.0), (0.002, 14.0), (50.0, 60.0), (90.0, 61.0)]
    assert bd_rate_over(anchor, inside + outside) == pytest.approx(-20.0, abs=0.01)
    assert math.isnan(bd_rate_over(anchor, [(1.0, 50.0), (2.0, 52.0)]))


def test_from_bundle_sweeps_the_bundles_whole_range_by_default():
    from tools.wildlink_coder import WildlinkCoder

    coder = WildlinkCoder.from_bundle(DATA / "tiny_vr_bundle")
    assert coder.sweep == rd_sweep(coder.encoder.ladder) == (-6.0, 0.0, 6.0, 12.0, 18.0)

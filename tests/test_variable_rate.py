"""Variable-rate, mean-scale bundles: the rate ladder, both ends' latents, budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.codec.container import pack, unpack
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder, Picture
from device.codec.ratecontrol import RateLadder
from device.codec.tables import CodingTables
from device.errors import BundleError

DATA = Path(__file__).parent / "data"
#: 3 levels (lambda 0.001, 0.004, 0.016), mean-scale, widths 16/16/16/8, trained 2 steps:
#: `wildlink train --data tests/data/site --analysis 16 --synthesis 16 --latent 16 --hyper 8
#: --lambdas 0.001 0.004 0.016 --mean --mixed --patch 64 --batch 2 --steps 2`, then
#: `wildlink export RUN --out tests/data/tiny_vr_bundle --calibration 4 --calibration-size 64`.
TINY_VR = DATA / "tiny_vr_bundle"


@pytest.fixture(scope="module")
def vr():
    return Encoder(TINY_VR), Decoder(TINY_VR)


def test_the_ladder_maps_global_steps_to_levels_in_rate_order():
    ladder = RateLadder((5, 2, 0, -3), top=63)
    assert [ladder.rung(t) for t in (-5, -3, -1, 0, 1, 2, 4, 5, 9)] == [
        (3, -2), (3, 0), (3, 2), (2, 0), (2, 1), (1, 0), (1, 2), (0, 0), (0, 4)]
    assert (ladder.finest, ladder.coarsest) == (-3, 68)
    assert [ladder.rung(ladder.at(q)) for q in range(4)] == [(q, 0) for q in range(4)]
    one_rate = RateLadder((0,), top=63)
    assert [one_rate.rung(t) for t in (0, 7, 63)] == [(0, 0), (0, 7), (0, 63)]


def test_tied_levels_go_to_the_finer_one_above_and_below_the_finest_point():
    ladder = RateLadder((3, 0, 0), top=63)  # levels 1 and 2 both sit at t = 0
    assert [ladder.rung(t) for t in (-2, -1, 0, 1, 3)] == [
        (2, -2), (2, -1), (2, 0), (2, 1), (0, 0)]
    levels = [ladder.rung(t)[0] for t in range(ladder.coarsest, ladder.finest - 5, -1)]
    assert levels == sorted(levels)  # as t falls the level never goes back to a coarser one


def test_tables_read_levels_means_and_the_reference_level(vr):
    encoder, _ = vr
    tables = encoder.tables
    assert tables.mean and tables.levels == 3 and tables.reference_level == 1
    assert tables.hyper_outputs in (("indexes", "means"), ("means", "indexes"))
    assert encoder.ladder.at(1) == 0 and encoder.min_step <= 0 < encoder.max_step


def test_a_manifest_with_wrong_head_roles_is_refused(tmp_path):
    import json
    import shutil

    from device.codec.bundle import Bundle

    shutil.copytree(TINY_VR, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["hyper_outputs"] = ["indexes"]
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="hyper_outputs"):
        CodingTables.from_bundle(Bundle.load(tmp_path / "b"))


def test_each_level_decodes_to_the_encoders_latents_and_finer_levels_cost_more(vr, missouri):
    encoder, decoder = vr
    image, _ = missouri
    picture = Picture(image, (), 0, 0, {})
    small = image[::4, ::4].copy()
    part = encoder.context_part(picture, small, np.ones(small.shape[:2], np.float32), False, 0)
    levels = range(encoder.tables.levels)
    container = picture.container(encoder.bundle.model_id, [part.code(q, 0) for q in levels])
    unpacked = unpack(pack(container))
    for q, coded in zip(levels, unpacked.parts, strict=True):
        assert (coded.level, coded.step) == (q, 0)
        y_hat, missing = decoder.decode_latents(unpacked, coded)
        assert missing == ()
        np.testing.assert_array_equal(y_hat, part.y_hat(q, 0))
    sizes = [part.exact(q, 0) for q in levels]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_without_a_budget_the_step_is_a_point_of_the_ladder(vr, missouri):
    encoder, decoder = vr
    image, _ = missouri
    result = encoder.encode(image, saliency="none", step=encoder.ladder.at(2), use_prefilter=False)
    (part,) = unpack(result.data).parts
    assert (part.level, part.step) == (2, 0)
    assert decoder.decode(result.data).image.shape == image.shape


def test_a_step_below_the_finest_level_codes_finer_down_to_finest_step(vr, missouri):
    """The top of the range: the finest level at negative steps, as far as `finest_step`."""
    from device.errors import ConfigError

    encoder, decoder = vr
    image, _ = missouri
    sizes = []
    for t in (encoder.min_step, encoder.finest_step):
        result = encoder.encode(image, saliency="none", step=t, use_prefilter=False)
        (part,) = unpack(result.data).parts
        assert part.level == len(encoder.ladder.offsets) - 1 and part.step == t - encoder.min_step
        assert decoder.decode(result.data).image.shape == image.shape
        sizes.append(len(result.data))
    assert sizes[1] > sizes[0]
    with pytest.raises(ConfigError, match="step must be in"):
        encoder.encode(image, saliency="none", step=encoder.finest_step - 1)


def test_a_budget_picks_levels_and_steps_on_the_ladder_and_fits(vr, missouri):
    encoder, decoder = vr
    image, boxes = missouri
    for budget in (600, 3000):
        result = encoder.encode(image, boxes=boxes, budget=budget)
        assert len(result.data) <= budget
        container = unpack(result.data)
        for part in container.parts:
            assert 0 <= part.level < encoder.tables.levels
        assert decoder.decode(result.data).incomplete == {}
    assert pack(unpack(result.data)) == result.data

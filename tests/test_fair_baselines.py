"""Fair baselines: best resolution within a budget, the AVIF crop+context scheme, scheme slots."""

from __future__ import annotations

import numpy as np
import pytest

from tools import cli
from tools.baselines import CODECS, VARIANTS, fit_budget, resample
from tools.bestres import BestResolutionCoder, ResolutionSearch, box_score, scaled_shape
from tools.errors import UserError
from tools.evaluate import EvalImage, SchemeCoder, run_evaluation
from tools.metrics import box_mask
from tools.twopart import (
    PACK,
    Rect,
    TwoPartCoder,
    box_union,
    compose,
    crop_rect,
    feather_alpha,
    feather_width,
    pack,
    unpack,
)

BOXES = ((0.375, 0.25, 0.25, 0.375),)  # x, y, w, h: a 32 x 36 px animal in 96 x 128


def _scene(height: int = 96, width: int = 128) -> np.ndarray:
    """Smooth background with a textured 'animal' where BOXES is."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=2).astype(np.float32)
    mask = box_mask((height, width), BOXES)
    base[mask] += rng.normal(0, 40, (int(mask.sum()), 3))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image() -> EvalImage:
    return EvalImage("scene.png", _scene(), BOXES)


# --- best resolution ------------------------------------------------------------------------


def test_best_resolution_is_the_best_side_within_the_budget(image):
    codec, sides = CODECS["jpeg"], (128, 96, 64, 48, 32)
    score = box_score(image.pixels, image.boxes)
    budget = len(codec.encode(resample(image.pixels, *scaled_shape(image.pixels.shape, 64)), 30))
    exhaustive = ResolutionSearch(codec, image.pixels, score, sides=sides, patience=len(sides))
    choice = exhaustive.best(budget)
    codec = exhaustive.variants[0]  # the (thinned) quality list the search used
    assert choice is not None and len(choice.data) <= budget
    assert choice.decoded.shape == image.pixels.shape
    for side in sides:  # no side's largest fitting quality scores better
        small = resample(image.pixels, *scaled_shape(image.pixels.shape, side))
        fit = fit_budget(codec, small, budget)
        if fit is not None:
            decoded = resample(codec.decode(fit.data), *image.pixels.shape[:2])
            assert score(decoded) <= choice.score + 1e-9
    full = fit_budget(codec, image.pixels, budget)
    assert full is None or choice.score >= score(resample(codec.decode(full.data), 96, 128))


def test_best_resolution_shrinks_until_it_fits_and_says_none_below(image):
    codec = CODECS["jpeg"]
    smallest_full = len(codec.encode(image.pixels, 1))
    search = ResolutionSearch(codec, image.pixels, box_score(image.pixels, image.boxes),
                              sides=(128, 64, 32))
    choice = search.best(smallest_full - 1)
    assert choice is not None and choice.side < 128 and len(choice.data) < smallest_full
    tiny = len(codec.encode(resample(image.pixels, *scaled_shape(image.pixels.shape, 32)), 1))
    assert search.best(tiny - 1) is None


def test_avif_search_tries_its_variants_and_the_coder_decodes_to_capture_size(image):
    coder = BestResolutionCoder(CODECS["avif"], sides=(128, 64))
    setting, data = coder.fit_budget(image, image.pixels, 1500)
    assert setting in (128.0, 64.0) and len(data) <= 1500
    assert coder.decode(data, image).shape == image.pixels.shape
    search = coder._search(image, image.pixels)
    assert [v.extra for v in search.variants] == list(VARIANTS["avif"])
    with pytest.raises(UserError, match="budgets only"):
        coder.encode(image, image.pixels, 50)


# --- two-part: crop, feather, compose, pack -------------------------------------------------


def test_crop_rect_is_the_box_union_plus_margin_clipped_to_the_frame():
    union = box_union(BOXES, (96, 128))
    assert union == Rect(48, 24, 80, 60)
    rect = crop_rect(BOXES, (96, 128))
    assert rect == Rect(40, 16, 88, 68)  # the 8 px minimum margin on a small animal
    edge = crop_rect(((0.0, 0.5, 0.5, 0.5),), (96, 128))
    assert (edge.x0, edge.y1) == (0, 96)
    assert feather_width(union, rect) == 4
    with pytest.raises(UserError):
        crop_rect((), (96, 128))


def test_compose_is_capture_sized_and_the_seam_is_feathered():
    shape, rect, feather = (60, 80), Rect(20, 10, 60, 50), 5
    context = np.zeros((15, 20, 3), np.uint8)  # low resolution: upsampled by compose
    crop = np.full((80, 80, 3), 200, np.uint8)  # larger than the rectangle: scaled to it
    out = compose(context, crop, rect, shape, feather)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert (out[:10] == 0).all() and (out[:, :20] == 0).all()  # outside: the context
    assert (out[10 + feather:50 - feather, 20 + feather:60 - feather] == 200).all()
    row = out[30, 20:40, 0].astype(int)
    assert row[0] < 200 / feather  # the outer edge is almost the context: no hard seam
    assert (np.diff(row) >= 0).all() and row[feather] == 200
    assert np.abs(np.diff(row)).max() <= 200 / feather + 1  # a ramp, not a step


def test_feather_is_off_along_the_frame_border():
    alpha = feather_alpha(Rect(0, 0, 30, 20), (40, 60), 4)
    assert alpha.shape == (20, 30)
    assert alpha[0, 0] == 1.0 and alpha[10, 0] == 1.0  # frame edges: the crop as is
    assert alpha[10, -1] < 0.2 and alpha[-1, 10] < 0.2  # inner edges ramp down


def test_pack_round_trip_and_bad_headers():
    rect = Rect(3, 4, 50, 60)
    data = pack((96, 128), rect, 6, b"crop", b"context")
    assert len(data) == PACK.size + 11
    assert unpack(data) == ((96, 128), rect, 6, b"crop", b"context")
    with pytest.raises(UserError, match="shorter"):
        unpack(data[:5])
    with pytest.raises(UserError, match="bad header"):
        unpack(pack((40, 40), rect, 6, b"crop", b""))


def test_two_part_coder_keeps_the_budget_and_decodes_at_capture_size(image):
    coder = TwoPartCoder(shares=(0.35, 0.5), context_sides=(64, 32), crop_scales=(1.5, 1.0))
    fit = coder.fit_budget(image, image.pixels, 2000)
    assert fit is not None
    share, data = fit
    assert share in (0.35, 0.5) and len(data) <= 2000
    decoded = coder.decode(data, image)
    assert decoded.shape == image.pixels.shape
    assert coder.fit_budget(image, image.pixels, 100) is None  # two AVIF files never fit
    assert coder.fit_budget(EvalImage("empty", image.pixels), image.pixels, 2000) is None


# --- the slot for whole schemes, and the row cache ------------------------------------------


def test_scheme_coder_rows_and_checks(image, tmp_path):
    calls = []

    def blur_scheme(pixels, boxes, budget):
        calls.append(budget)
        return np.full_like(pixels, 128), budget // 2

    coder = SchemeCoder("fake", "fake scheme", blur_scheme)
    cache = tmp_path / "rows.jsonl"
    result = run_evaluation([image], [coder], budgets=(1000, 2000), progress=False,
                            with_ms_ssim=False, cache=cache)
    assert [r.bytes for r in result.rows] == [500.0, 1000.0]
    assert all(np.isfinite(r.box_psnr) and np.isfinite(r.bg_psnr) for r in result.rows)
    again = run_evaluation([image], [coder], budgets=(1000, 2000), progress=False,
                           with_ms_ssim=False, cache=cache)
    assert calls == [1000, 2000]  # the cache answered the second run
    assert [(r.bytes, r.box_psnr) for r in again.rows] == [(r.bytes, r.box_psnr)
                                                           for r in result.rows]
    greedy = SchemeCoder("greedy", "greedy", lambda p, b, n: (p, n + 1))
    with pytest.raises(UserError, match="over the 1000 B budget"):
        greedy.fit_budget(image, image.pixels, 1000)
    small = SchemeCoder("small", "small", lambda p, b, n: (p[::2, ::2], 10))
    with pytest.raises(UserError, match="capture size"):
        small.fit_budget(image, image.pixels, 1000)


def test_eval_command_budget_only_codecs_need_budgets(tmp_path, capsys):
    from pathlib import Path

    samples = Path(__file__).resolve().parent / "data" / "camtrap"
    code = cli.main(["eval", "--images", str(samples), "--codecs", "avif-best",
                     "--out", str(tmp_path)])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "need --budgets" in err[0]

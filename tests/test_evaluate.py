"""Evaluation engine, baselines, BD-rate, seed 001 and `wildlink bench` (smoke test included)."""

from __future__ import annotations

import csv
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tools import bench, cli
from tools.baselines import CODECS, fit_budget, get_codecs
from tools.errors import UserError
from tools.evaluate import (
    ClassicalCoder,
    EvalImage,
    load_images,
    load_megadetector,
    run_evaluation,
    saliency_prefilter,
)
from tools.rd import bd_rate
from tools.report import budget_table, sweep_curves, write_outputs

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "camtrap"


@pytest.fixture(scope="module")
def small_images() -> list[EvalImage]:
    return load_images(SAMPLES, SAMPLES / "megadetector.json", 256)


# --- BD-rate ------------------------------------------------------------------------------------


def test_bd_rate_of_identical_curves_is_zero():
    rate, quality = [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0]
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_of_half_the_bytes_is_minus_fifty():
    rate, quality = [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0]
    half = [r / 2 for r in rate]
    assert bd_rate(rate, quality, half, quality) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(half, quality, rate, quality) == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_without_overlap_or_points_is_nan():
    assert math.isnan(bd_rate([0.1, 0.2], [20, 22], [0.3, 0.4], [30, 32]))
    assert math.isnan(bd_rate([0.1], [20], [0.3, 0.4], [30, 32]))


# --- baselines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CODECS))
def test_every_codec_round_trips_and_shrinks_with_lower_settings(name, small_images):
    codec = CODECS[name]
    pixels = small_images[1].pixels
    small = codec.encode(pixels, codec.sweep[0])
    large = codec.encode(pixels, codec.sweep[-1])
    assert len(small) < len(large)
    decoded = codec.decode(large)
    assert decoded.shape == pixels.shape and decoded.dtype == np.uint8


@pytest.mark.parametrize("name", list(CODECS))
def test_budget_fit_is_within_budget_and_the_next_setting_is_not(name, small_images):
    codec = CODECS[name]
    pixels = small_images[1].pixels
    budget = 3000
    fit = fit_budget(codec, pixels, budget)
    assert fit is not None and len(fit.data) <= budget
    index = codec.search_space.index(fit.setting)
    if index + 1 < len(codec.search_space):
        assert len(codec.encode(pixels, codec.search_space[index + 1])) > budget
    assert fit_budget(codec, pixels, 50) is None  # not even the smallest setting fits


def test_unknown_codec_is_a_user_error():
    with pytest.raises(UserError, match="unknown codec"):
        get_codecs(["jpeg", "bpg"])


# --- inputs ----------------------------------------------------------------------------------------


def test_megadetector_boxes_filtered_by_confidence_and_category(tmp_path):
    path = tmp_path / "md.json"
    path.write_text(json.dumps({
        "detection_categories": {"1": "animal", "2": "person"},
        "images": [{"file": "dir/a.jpg", "detections": [
            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]},
            {"category": "1", "conf": 0.1, "bbox": [0.5, 0.5, 0.2, 0.2]},
            {"category": "2", "conf": 0.9, "bbox": [0.5, 0.5, 0.2, 0.2]},
        ]}, {"file": "b.jpg", "detections": None}],
    }))
    boxes = load_megadetector(path, 0.2)
    assert boxes == {"a.jpg": ((0.1, 0.1, 0.2, 0.2),), "b.jpg": ()}
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="MegaDetector"):
        load_megadetector(path)


def test_load_images_resizes_long_side_and_attaches_boxes(small_images):
    assert [im.name for im in small_images] == sorted(p.name for p in SAMPLES.glob("*.jpg"))
    assert all(max(im.pixels.shape[:2]) == 256 for im in small_images)
    by_name = {im.name: im for im in small_images}
    assert len(by_name["camdeboo.jpg"].boxes) == 4  # conf >= 0.2, animals only
    assert by_name["caltech.jpg"].boxes == ()
    with pytest.raises(UserError, match="not found"):
        load_images(SAMPLES / "nope")


# --- engine ----------------------------------------------------------------------------------------


def test_saliency_prefilter_keeps_boxes_and_blurs_the_rest(small_images):
    image = next(im for im in small_images if im.name == "camdeboo.jpg")
    out = saliency_prefilter(image)
    x, y, w, h = image.boxes[-1]
    height, width = image.pixels.shape[:2]
    inside = (slice(int(y * height) + 1, int((y + h) * height) - 1),
              slice(int(x * width) + 1, int((x + w) * width) - 1))
    assert np.array_equal(out[inside], image.pixels[inside])
    assert np.abs(out.astype(int) - image.pixels).mean() > 1.0
    bare = next(im for im in small_images if not im.boxes)
    assert saliency_prefilter(bare) is bare.pixels


def test_run_evaluation_rows_curves_budgets_and_outputs(small_images, tmp_path):
    coders = [ClassicalCoder(CODECS["jpeg"], (5, 50)), ClassicalCoder(CODECS["jp2"], (200, 20))]
    result = run_evaluation(
        small_images[:2], coders,
        prefilters={"none": None, "saliency": saliency_prefilter},
        budgets=(60, 4000), progress=False, size=256,
    )
    # 2 images x 2 pre-filters x 2 coders x (2 settings + 2 budgets)
    assert len(result.rows) == 2 * 2 * 2 * 4
    for row in result.rows:
        if row.mode == "sweep":
            assert row.bpp == pytest.approx(8 * row.bytes / (256 * 256 * 0.75), rel=0.1)
            assert row.ratio == pytest.approx(24 / row.bpp)
            assert 10 < row.psnr < 60
        elif row.budget == 60:
            assert math.isnan(row.bytes) and math.isnan(row.psnr)
        else:
            assert row.bytes <= 4000
    # caltech has no boxes: its saliency rows are its unfiltered rows, renamed.
    plain = [r for r in result.rows if r.image == "caltech.jpg" and r.prefilter == "none"]
    salient = [r for r in result.rows if r.image == "caltech.jpg" and r.prefilter == "saliency"]
    assert [r.bytes for r in plain] == [r.bytes for r in salient]
    curves = sweep_curves(result.rows)
    assert set(curves) == {"jpeg", "jp2", "jpeg+saliency", "jp2+saliency"}
    assert [p["setting"] for p in curves["jpeg"]] == [5, 50]  # sorted by rate
    table = budget_table(result.rows)
    assert table[("jpeg", 60)]["fit"] == 0 and table[("jp2", 4000)]["fit"] == 2
    written = write_outputs(result, tmp_path, "test")
    with open(written["rows"]) as handle:
        assert len(list(csv.DictReader(handle))) == len(result.rows)
    for key in ("rd_psnr", "rd_box_psnr", "budget"):
        assert written[key].stat().st_size > 1000
    report = written["report"].read_text()
    assert "BD-rate" in report and "byte budgets" in report and "JPEG 2000 + saliency" in report


def test_eval_command_writes_report(tmp_path, capsys):
    code = cli.main([
        "eval", "--images", str(SAMPLES), "--boxes", str(SAMPLES / "megadetector.json"),
        "--codecs", "jpeg,avif", "--size", "192", "--budgets", "3000", "--limit", "2",
        "--no-ms-ssim", "--quiet", "--out", str(tmp_path),
    ])
    assert code == 0
    assert (tmp_path / "rows.csv").exists() and (tmp_path / "report.md").exists()
    assert "| AVIF | 3000 |" in capsys.readouterr().out


def test_eval_command_boxed_only_keeps_images_with_boxes(tmp_path, capsys):
    code = cli.main([
        "eval", "--images", str(SAMPLES), "--boxes", str(SAMPLES / "megadetector.json"),
        "--boxed-only", "--codecs", "jpeg", "--size", "192", "--no-ms-ssim", "--quiet",
        "--out", str(tmp_path),
    ])
    assert code == 0
    with open(tmp_path / "rows.csv") as handle:
        names = {row["image"] for row in csv.DictReader(handle)}
    assert names == {"camdeboo.jpg", "missouri.jpg", "wellington.jpg"}
    assert cli.main(["eval", "--images", str(SAMPLES), "--boxed-only"]) == 2


def test_eval_command_bad_input_is_one_line(tmp_path, capsys):
    assert cli.main(["eval", "--images", str(tmp_path / "none")]) == 2
    assert cli.main(["eval", "--images", str(SAMPLES), "--codecs", "bpg"]) == 2
    err = capsys.readouterr().err
    assert "image folder not found" in err and "unknown codec bpg" in err
    assert "Traceback" not in err


# --- seed 001 --------------------------------------------------------------------------------------


def test_seed001_mask_table_matches_the_paper():
    from tools.seed001 import mask_table

    rows = {r["mask"]: r for r in mask_table()}
    assert rows["half"]["widths"] == [1, 17] and rows["half"]["k_e"] == pytest.approx(9.0)
    assert rows["grid"]["widths"] == [1, 5, 11, 17]
    assert rows["grid"]["shares"] == pytest.approx([0.25] * 4)
    assert rows["perlin"]["widths"] == [1, 5, 9, 13]


def test_seed001_storage_saliency_saves_less_than_uniform_at_same_k(small_images):
    from device.prefilter import kernel_size
    from tools.seed001 import storage_experiment, summarize_storage, uniform_level

    assert [kernel_size(uniform_level(k)) for k in (1, 3, 9, 17)] == [1, 3, 9, 17]
    summary = summarize_storage(storage_experiment(small_images[:2], "t", progress=False))
    curve = summary["t"]["curve"]
    assert curve[0][1] == 0.0 and all(a[1] < b[1] for a, b in zip(curve[:-1], curve[1:], strict=True))
    half = summary["t"]["masks"]["half"]
    assert 0 < half["reduction"] < half["uniform_reduction"]  # the seed's fig. 5a finding
    assert half["mse"] < half["uniform_mse"]


# --- bench -----------------------------------------------------------------------------------------


def _fake_sections(tmp_path: Path, monkeypatch) -> str:
    package = tmp_path / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text("def run(quick):\n    return '## good\\n\\nquick=%s\\n' % quick\n")
    (package / "broken.py").write_text("def run(quick):\n    raise RuntimeError('sensor on fire')\n")
    (package / "crash.py").write_text(textwrap.dedent("""
        import os
        def run(quick):
            os._exit(3)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "fakebench"


def test_failing_sections_do_not_stop_the_others(tmp_path, monkeypatch):
    package = _fake_sections(tmp_path, monkeypatch)
    modules = bench.discover_sections(package)
    assert set(modules) == {f"{package}.{n}" for n in ("good", "broken", "crash")}
    out = tmp_path / "B.md"
    results = bench.run_bench(out, quick=True, sections=modules, timeout=60, log=lambda m: None)
    assert [r.ok for r in results] == [m.endswith("good") for m in modules]
    text = out.read_text()
    assert "## good" in text and "quick=True" in text
    assert "sensor on fire" in text and "exit code 3" in text
    assert "| CPU |" in text and "| RAM |" in text and "| date (UTC) |" in text


def test_a_hanging_section_is_stopped_and_reported(tmp_path, monkeypatch):
    package = _fake_sections(tmp_path, monkeypatch)
    (tmp_path / package / "hang.py").write_text("import time\ndef run(quick):\n    time.sleep(60)\n")
    result = bench.run_section(f"{package}.hang", True, timeout=2)
    assert not result.ok and "timed out after 2 s" in result.text


def test_machine_summary_names_cpu_cores_and_ram():
    info = bench.machine_summary()
    assert info["cpu"] and info["cores"][0].isdigit() and info["ram"].endswith("GiB")


@pytest.mark.slow  # a `wildlink bench --quick` subprocess, ~70-100 s
def test_bench_quick_smoke(tmp_path):
    """CI smoke test: `wildlink bench --quick` on the shipped samples writes the file."""
    import subprocess

    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.cli", "bench", "--quick", "--sections", "evaluation",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "# wildlink benchmarks" in text and "QUICK mode" in text
    assert "BD-rate" in text and "Seed 001" in text and "FAILED" not in text


def test_bench_unknown_section_is_a_user_error(capsys):
    assert cli.main(["bench", "--quick", "--sections", "nope"]) == 2
    assert "unknown section nope" in capsys.readouterr().err


# --- wildlink in the engine ------------------------------------------------------------------------

TINY_BUNDLE = ROOT / "tests" / "data" / "tiny_bundle"


def test_wildlink_coder_round_trips_with_roi_and_budgets(small_images):
    from tools.wildlink_coder import WildlinkCoder

    coder = WildlinkCoder.from_bundle(TINY_BUNDLE)
    image = next(im for im in small_images if im.name == "camdeboo.jpg")
    fine = coder.encode(image, image.pixels, 0)
    coarse = coder.encode(image, image.pixels, 16)
    assert len(coarse) < len(fine)
    assert coder.decode(fine, image).shape == image.pixels.shape
    budget = (len(fine) + len(coarse)) // 2
    setting, data = coder.fit_budget(image, image.pixels, budget)
    assert len(data) <= budget and 0 < setting <= 16
    assert coder.fit_budget(image, image.pixels, 30) is None
    plain = WildlinkCoder.from_bundle(TINY_BUNDLE, roi=False)
    assert plain.name == "wildlink-noroi"
    # Without ROI steps the background is not coarsened, so the file is larger.
    assert len(plain.encode(image, image.pixels, 0)) > len(fine)


def test_eval_command_runs_wildlink_beside_jpeg(tmp_path, capsys):
    code = cli.main([
        "eval", "--images", str(SAMPLES), "--boxes", str(SAMPLES / "megadetector.json"),
        "--boxed-only", "--limit", "1", "--codecs", "wildlink,jpeg", "--bundle", str(TINY_BUNDLE),
        "--wildlink-steps", "0,16", "--size", "256", "--budgets", "4000", "--no-ms-ssim",
        "--quiet", "--out", str(tmp_path),
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "| wildlink | 0 |" in out and "| wildlink | 4000 |" in out


def test_eval_command_runs_the_trap_schemes(tmp_path, capsys):
    """Every `SCHEMES` slot is filled (the CLI's old "not built yet" branch was dead), and
    `wildlink eval` measures them at a budget."""
    from tools.evaluate import SchemeCoder
    from tools.wildlink_coder import SCHEMES, scheme_coder

    assert all(isinstance(scheme_coder(n, TINY_BUNDLE), SchemeCoder) for n in SCHEMES)
    code = cli.main([
        "eval", "--images", str(SAMPLES), "--boxes", str(SAMPLES / "megadetector.json"),
        "--boxed-only", "--limit", "1", "--codecs", ",".join(SCHEMES), "--bundle",
        str(TINY_BUNDLE), "--size", "256", "--budgets", "4000", "--no-sweep", "--no-ms-ssim",
        "--quiet", "--out", str(tmp_path),
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert all(f"| {label} | 4000 | 1/1 |" in out for label, _ in SCHEMES.values()), out


def test_seed000_harness_runs_on_the_site_samples(tmp_path):
    """Seed 000's ratio-vs-SSIM harness end to end on the 8 shipped site frames (tiny bundle)."""
    from tools.seed000 import run_seed000

    text = run_seed000(ROOT / "tests" / "data" / "site", {"tiny": TINY_BUNDLE}, tmp_path,
                       size=128, steps=(0, 10), progress=False)
    assert "without guidance" in text and "with guidance" in text
    assert "| without guidance | JPEG | 1 |" in text and "| with guidance | tiny + saliency |" in text
    assert (tmp_path / "seed000.png").stat().st_size > 1000


def test_seed000_bench_pairs_guided_site_bundles_with_their_plain_twins(tmp_path):
    from tools.benchmarks.evaluation import seed000_bundles

    assert seed000_bundles(tmp_path, "s") == ({}, {})  # no default bundle: nothing to run
    for name in ("default", "sites/s/full", "sites/s/full-guided", "sites/s/lora"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "manifest.json").write_text("{}")
    plain, guided = seed000_bundles(tmp_path, "s")
    site = tmp_path / "sites" / "s"
    assert plain == {"baseline": tmp_path / "default", "full": site / "full", "lora": site / "lora"}
    assert guided == {"baseline": tmp_path / "default", "full": site / "full-guided",
                      "lora": site / "lora"}

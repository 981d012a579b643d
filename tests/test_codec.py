"""The trap codec end to end with a real (tiny) model bundle.

Round trips on the camera-trap samples, the byte budget, the estimate vs the coded size,
missing and corrupt bands, the determinism rule (h_s indexes across interpreters and
processes) and every bad input through the `wildlink` CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from device.codec import latents
from device.codec.bundle import HYPER_SYNTHESIS, Bundle
from device.codec.container import pack, unpack
from device.codec.decoder import Decoder
from device.codec.encoder import BudgetError, Encoder
from device.codec.tflite import TFLiteModel
from device.errors import ConfigError, ContainerError, WildlinkError
from device.imageio import load_image
from device.saliency import boxes_for, load_megadetector
from tools import cli

CAMTRAP = sorted((SAMPLES / "camtrap").glob("*.jpg"))
TINY = SAMPLES / "tiny_bundle"


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """The committed tiny bundle (training/export.py output), or $WILDLINK_TEST_BUNDLE."""
    path = Path(os.environ.get("WILDLINK_TEST_BUNDLE", TINY))
    assert (path / "manifest.json").is_file(), f"no model bundle at {path}"
    return path


@pytest.fixture(scope="session")
def encoder(bundle_dir) -> Encoder:
    return Encoder(bundle_dir, size=512)


@pytest.fixture(scope="session")
def decoder(bundle_dir) -> Decoder:
    return Decoder(bundle_dir)


@pytest.fixture(scope="session")
def detections():
    return load_megadetector(SAMPLES / "camtrap" / "megadetector.json")


@pytest.fixture(scope="session")
def coded(encoder, detections):
    """Each camtrap sample encoded once at long side 512 with its MegaDetector boxes."""
    out = {}
    for path in CAMTRAP:
        image = load_image(path)
        result = encoder.encode(image, boxes=boxes_for(detections, path.name), capture_time=7)
        out[path.name] = (image, result)
    return out


def test_round_trip_keeps_size_and_is_repeatable(coded, decoder):
    for name, (image, result) in coded.items():
        first = decoder.decode(result.data)
        second = decoder.decode(result.data)
        assert first.image.shape == image.shape, name
        assert first.image.dtype == np.uint8
        np.testing.assert_array_equal(first.image, second.image)
        assert first.missing_bands == ()
        assert first.header.capture_time == 7
        assert first.header.coded_width == 512 or first.header.coded_height == 512
        # Not a blank image: the decoded frame follows the original's brightness.
        assert abs(float(first.image.mean()) - float(image.mean())) < 40


def test_full_size_round_trip_and_decoded_boxes(bundle_dir, decoder, detections):
    path = SAMPLES / "camtrap" / "camdeboo.jpg"
    image = load_image(path)
    boxes = boxes_for(detections, path.name)
    result = Encoder(bundle_dir).encode(image, boxes=boxes)
    assert result.header.coded_width == 1024 and result.header.prefiltered
    assert result.saliency_source == "boxes"
    decoded = decoder.decode(result.data)
    assert decoded.image.shape == image.shape
    sent = [b.to_box() for b in decoded.header.boxes]
    for box, original in zip(sent, boxes, strict=True):  # MegaDetector order, covering each box
        assert box.x <= original.x + 1e-9 and box.x + box.w >= original.x + original.w - 1e-9


def test_coded_size_within_half_percent_of_estimate(coded):
    for name, (_, result) in coded.items():
        estimated = sum(p["z"] + sum(p["bands"]) for p in result.estimated_bits) / 8
        actual = sum(p["z"] + sum(p["bands"]) for p in result.actual_bytes)
        assert abs(actual - estimated) <= 0.005 * estimated, (name, actual, estimated)


@pytest.mark.parametrize("budget", [600, 1500])
def test_budget_is_respected_with_the_finest_step_that_fits(encoder, decoder, detections, budget):
    path = SAMPLES / "camtrap" / "wellington.jpg"
    image = load_image(path)
    boxes = boxes_for(detections, path.name)
    result = encoder.encode(image, boxes=boxes, budget=budget)
    assert len(result.data) <= budget
    step = result.header.step
    if step > 0:  # one step finer would not have fitted
        finer = encoder.encode(image, boxes=boxes, step=step - 1)
        assert len(finer.data) > budget
    assert decoder.decode(result.data).image.shape == image.shape


def test_budget_below_the_coarsest_step_shrinks_the_transmit_size(encoder, decoder):
    image = load_image(SAMPLES / "camtrap" / "caltech.jpg")
    at_512 = encoder.encode(image, step=encoder.max_step)
    budget = len(at_512.data) * 2 // 3
    result = encoder.encode(image, budget=budget)
    assert len(result.data) <= budget
    assert 256 <= max(result.header.coded_width, result.header.coded_height) < 512
    assert decoder.decode(result.data).image.shape == image.shape


def test_impossible_budget_raises(encoder):
    image = load_image(CAMTRAP[0])
    with pytest.raises(BudgetError, match="cannot fit") as caught:
        encoder.encode(image, budget=40)
    coarsest = caught.value.result
    assert coarsest.header.step == encoder.max_step and len(coarsest.data) > 40
    with pytest.raises(ConfigError):
        encoder.encode(image, step=encoder.max_step + 1)


def test_steps_lower_rate_and_roi_bands_come_first(encoder, detections):
    path = SAMPLES / "camtrap" / "camdeboo.jpg"
    image = load_image(path)
    boxes = boxes_for(detections, path.name)
    fine = encoder.encode(image, boxes=boxes, step=0)
    coarse = encoder.encode(image, boxes=boxes, step=8)
    assert len(coarse.data) < len(fine.data)
    c = unpack(fine.data)
    (part,) = c.parts
    plan = encoder.plan(c, part)
    hot = [b for b, (r0, r1) in enumerate(plan.ranges) if plan.roi[r0:r1].any()]
    indexes = [b.index for b in part.bands]
    assert indexes[: len(hot)] == hot and len(hot) < len(part.bands)


def test_missing_and_corrupt_bands_decode_as_prior_mean(coded, decoder):
    _, result = coded["camdeboo.jpg"]
    whole = decoder.decode(result.data)
    c = unpack(result.data)
    (part,) = c.parts
    lost = part.bands[-1]  # a background band
    without = pack(replace(c, parts=(replace(part, bands=part.bands[:-1]),)))  # never received
    partial = decoder.decode(without)
    assert partial.missing_bands == (lost.index,)
    r0, r1 = decoder.plan(c, part).ranges[lost.index]
    assert not partial.y_hat[r0:r1].any()
    np.testing.assert_array_equal(np.delete(partial.y_hat, np.s_[r0:r1], 0),
                                  np.delete(whole.y_hat, np.s_[r0:r1], 0))
    flipped = bytearray(result.data)
    flipped[-2] ^= 0x40  # inside the last band: its CRC fails
    damaged = decoder.decode(bytes(flipped))
    assert damaged.missing_bands == (lost.index,)
    cut = decoder.decode(result.data[: len(result.data) - len(lost.data) // 2])
    assert cut.missing_bands == (lost.index,)


def test_corrupt_header_truncated_z_and_foreign_model_refused(coded, decoder, bundle_dir):
    _, result = coded["caltech.jpg"]
    for bad in (result.data[:10], result.data[:40], b"JUNK" * 20):
        with pytest.raises(ContainerError):
            decoder.decode(bad)
    flipped = bytearray(result.data)
    flipped[8] ^= 0x01  # a header byte: the header CRC fails
    with pytest.raises(ContainerError, match="CRC"):
        decoder.decode(bytes(flipped))
    c = unpack(result.data)
    foreign = pack(replace(c, model_id="0badf00d"))
    with pytest.raises(ContainerError, match="0badf00d"):
        decoder.decode(foreign)


def test_saliency_modes_all_decode(encoder, decoder):
    image = load_image(SAMPLES / "site" / "EK000004.jpg")
    for mode in ("auto", "spectral", "none"):
        result = encoder.encode(image, saliency=mode)
        assert decoder.decode(result.data).image.shape == image.shape
    none = encoder.encode(image, saliency="none")
    assert none.header.boxes == () and not none.header.prefiltered


def _z_hat_sample(bundle: Bundle) -> np.ndarray:
    rng = np.random.default_rng(0)
    symbols = rng.integers(-6, 7, (4, 6, bundle.hyper_channels)).astype(np.int32)
    return latents.z_hat(symbols, bundle.entropy["z_offset"])


def test_determinism_rule_indexes_match_across_interpreters(bundle_dir):
    """tflite-runtime and TensorFlow's interpreter, both with the reference kernels."""
    import tensorflow as tf

    bundle = Bundle.load(bundle_dir)
    z_hat = _z_hat_sample(bundle)
    lut = bundle.entropy["hs_index_lut"]
    path = bundle.file(HYPER_SYNTHESIS)
    ours = latents.hyper_indexes(TFLiteModel(path, reference=True), z_hat, lut)

    class TFModule:  # tf.lite's Interpreter has the same API as tflite_runtime's
        Interpreter = tf.lite.Interpreter
        OpResolverType = tf.lite.experimental.OpResolverType

    theirs = latents.hyper_indexes(
        TFLiteModel(path, reference=True, interpreter_module=TFModule), z_hat, lut
    )
    np.testing.assert_array_equal(ours, theirs)
    assert ours.shape == (16, 24, bundle.latent_channels)


_CHILD = """
import hashlib, sys
import numpy as np
from device.codec import latents
from device.codec.bundle import Bundle, HYPER_SYNTHESIS
from device.codec.tflite import TFLiteModel
bundle = Bundle.load(sys.argv[1])
rng = np.random.default_rng(0)
symbols = rng.integers(-6, 7, (4, 6, bundle.hyper_channels)).astype(np.int32)
z_hat = latents.z_hat(symbols, bundle.entropy["z_offset"])
model = TFLiteModel(bundle.file(HYPER_SYNTHESIS), reference=True)
idx = latents.hyper_indexes(model, z_hat, bundle.entropy["hs_index_lut"])
print(hashlib.sha256(np.ascontiguousarray(idx, np.int32).tobytes()).hexdigest())
"""


def test_determinism_rule_indexes_match_across_processes(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    here = latents.hyper_indexes(
        TFLiteModel(bundle.file(HYPER_SYNTHESIS), reference=True),
        _z_hat_sample(bundle),
        bundle.entropy["hs_index_lut"],
    )
    digest = hashlib.sha256(np.ascontiguousarray(here, np.int32).tobytes()).hexdigest()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(bundle_dir)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == digest


# ------------------------------------------------------------------------------------------
# the CLI: every bad input is one line on stderr and exit code 2


def _wildlink(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _fails_cleanly(capsys, *argv, match: str = "") -> str:
    code, _, err = _wildlink(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match.lower() in err.lower(), err
    return err


def test_cli_encode_inspect_decode(capsys, tmp_path, bundle_dir):
    image = SAMPLES / "camtrap" / "missouri.jpg"
    out = tmp_path / "m.wl"
    code, text, _ = _wildlink(
        capsys, "encode", image, "-o", out, "--boxes", SAMPLES / "camtrap" / "megadetector.json",
        "--budget", 1200, "--size", 384, "--bundle", bundle_dir,
    )
    assert code == 0 and out.stat().st_size <= 1200 and "1 boxes" in text
    code, text, _ = _wildlink(capsys, "inspect", out, "--bundle", bundle_dir, "--json")
    info = json.loads(text)
    assert code == 0 and info["bytes"] == out.stat().st_size and len(info["boxes"]) == 1
    streams = sum(p["z_bytes"] + sum(b["bytes"] for b in p["bands"]) for p in info["parts"])
    assert info["actual_stream_bytes"] == streams
    assert abs(info["actual_stream_bytes"] / info["estimated_stream_bytes"] - 1) < 0.02
    png = tmp_path / "m.png"
    code, _, _ = _wildlink(capsys, "decode", out, "-o", png, "--bundle", bundle_dir)
    assert code == 0
    assert Image.open(png).size == Image.open(image).size


def test_cli_odd_images_are_handled(capsys, tmp_path, bundle_dir):
    rgb = np.asarray(Image.open(SAMPLES / "site" / "EK000001.jpg").convert("RGB"))[:200, :300]
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # stored sideways: rotate 90 degrees to display
    Image.fromarray(rgb).save(tmp_path / "turned.jpg", exif=exif)
    for name, size in [("grey.png", (300, 200)), ("rgba.png", (300, 200)),
                       ("deep.png", (300, 200)), ("turned.jpg", (200, 300))]:
        out = tmp_path / (name + ".wl")
        code, _, err = _wildlink(
            capsys, "encode", tmp_path / name, "-o", out, "--bundle", bundle_dir
        )
        assert code == 0, err
        png = tmp_path / (name + ".out.png")
        assert _wildlink(capsys, "decode", out, "-o", png, "--bundle", bundle_dir)[0] == 0
        assert Image.open(png).size == size, name


def test_cli_bad_inputs_fail_cleanly(capsys, tmp_path, bundle_dir, coded):
    b = ("--bundle", bundle_dir)
    out = tmp_path / "x.wl"
    _fails_cleanly(capsys, "encode", tmp_path / "nope.jpg", "-o", out, *b, match="nope.jpg")
    _fails_cleanly(capsys, "encode", tmp_path, "-o", out, *b)
    (tmp_path / "text.jpg").write_text("hello")
    _fails_cleanly(capsys, "encode", tmp_path / "text.jpg", "-o", out, *b, match="cannot read")
    Image.new("RGB", (10, 300)).save(tmp_path / "tiny.png")
    _fails_cleanly(capsys, "encode", tmp_path / "tiny.png", "-o", out, *b, match="at least")
    Image.new("1", (12000, 9000)).save(tmp_path / "huge.png")
    _fails_cleanly(capsys, "encode", tmp_path / "huge.png", "-o", out, *b, match="megapixels")
    good = SAMPLES / "camtrap" / "caltech.jpg"
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:2000])
    _fails_cleanly(capsys, "encode", tmp_path / "cut.jpg", "-o", out, *b)
    _fails_cleanly(capsys, "encode", good, "-o", out, "--budget", 30, *b, match="cannot fit")
    _fails_cleanly(capsys, "encode", good, "-o", out, "--saliency", "boxes", *b, match="--boxes")
    _fails_cleanly(capsys, "encode", good, "-o", out, "--boxes", tmp_path / "text.jpg", *b)
    _fails_cleanly(capsys, "encode", good, "-o", out, "--bundle", tmp_path, match="bundle")
    _fails_cleanly(capsys, "encode", good, "-o", tmp_path / "no" / "x.wl", *b)

    _, result = coded["caltech.jpg"]
    data = result.data
    cases = {
        "truncated.wl": data[:25],
        "empty.wl": b"",
        "junk.wl": bytes(range(256)) * 3,
        "header.wl": data[:6] + bytes([data[6] ^ 0xFF]) + data[7:],
        "zcut.wl": data[: len(data) - sum(len(x.data) for x in unpack(data).parts[0].bands) - 3],
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        _fails_cleanly(capsys, "decode", tmp_path / name, "-o", tmp_path / "o.png", *b)
        if name == "zcut.wl":  # inspect describes the damage instead
            code, text, _ = _wildlink(capsys, "inspect", tmp_path / name, *b)
            assert code == 0 and "z stream" in text
            continue
        _fails_cleanly(capsys, "inspect", tmp_path / name, *b)
    c = unpack(data)
    (tmp_path / "foreign.wl").write_bytes(pack(replace(c, model_id="0badf00d")))
    _fails_cleanly(capsys, "decode", tmp_path / "foreign.wl", "-o", tmp_path / "o.png", *b,
                   match="0badf00d")
    _fails_cleanly(capsys, "decode", tmp_path / "missing.wl", "-o", tmp_path / "o.png", *b)
    (tmp_path / "ok.wl").write_bytes(data)
    _fails_cleanly(capsys, "decode", tmp_path / "ok.wl", "-o", tmp_path / "o.tiff", *b)


def test_cli_runs_as_a_process(tmp_path, bundle_dir):
    """One real process: the console entry point, exit code and stderr of a bad file."""
    bad = tmp_path / "bad.wl"
    bad.write_bytes(b"WL\x01" + bytes(10))
    out = subprocess.run(
        [sys.executable, "-m", "tools.cli", "decode", str(bad), "-o", str(tmp_path / "o.png"),
         "--bundle", str(bundle_dir)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_crafted_headers_with_valid_crc_are_refused(coded, decoder):
    c = unpack(coded["caltech.jpg"][1].data)
    (part,) = c.parts
    for change in ({"step": -100}, {"background_step": 100}, {"level": 1}):  # a step >= -63 is valid
        crafted = pack(replace(c, parts=(replace(part, **change),)))
        with pytest.raises(ContainerError):
            decoder.decode(crafted)


@pytest.fixture(scope="session")
def small_container(encoder) -> bytes:
    image = load_image(SAMPLES / "site" / "EK000002.jpg")[:128, :192]
    return encoder.encode(image, saliency="spectral", capture_time=1).data


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_containers_decode_or_fail_with_a_wildlink_error(small_container, decoder, data):
    """Flipped, cut or inserted bytes: a decoded image or a WildlinkError, nothing else."""
    raw = bytearray(small_container)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = bytes([data.draw(st.integers(0, 255))])
    try:
        result = decoder.decode(bytes(raw))
    except WildlinkError:
        return
    assert result.image.shape == (128, 192, 3)

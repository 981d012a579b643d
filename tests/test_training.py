"""Training and export: data, masks, loss, train -> export end to end, bundle determinism."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main as _cli
from PIL import Image

from device.boxes import Box
from training.data import DataError, PatchSource, find_images
from training.masks import MaskError, load_boxes

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data"
TINY_BUNDLE = SAMPLES / "tiny_bundle"
TINY = ["--analysis", "16", "--synthesis", "16", "--latent", "16", "--hyper", "8"]


def _write_images(folder: Path, sizes, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        sub = folder / ("nested" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


# -- data -----------------------------------------------------------------------------------
def test_find_images_is_recursive_and_reports_empty_folders(tmp_path):
    paths = _write_images(tmp_path, [(80, 80), (90, 70), (100, 100)])
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images([tmp_path]) == sorted(paths)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images under"):
        find_images([tmp_path / "empty"])


def test_small_images_are_padded_or_skipped_and_unreadable_counted(tmp_path):
    big, mid, tiny = _write_images(tmp_path, [(96, 80), (40, 70), (20, 20)])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    source = PatchSource([big, mid, tiny, bad], patch=64, small="pad")
    assert source.check() == 2  # mid (>= half the patch) is padded, tiny is not
    assert source.skipped == {"unreadable": 1, "small": 1}
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, w = source.sample(rng)
        assert x.shape == (64, 64, 3) and w.shape == (64, 64, 1)
        assert 0 <= x.min() and x.max() <= 1 and np.all(w == 1)
    skip = PatchSource([big, mid, tiny], patch=64, small="skip")
    assert skip.check() == 1


def test_boxes_weight_animals_and_prefilter_blurs_background(tmp_path):
    (path,) = _write_images(tmp_path, [(128, 128)])
    boxes = {path: (Box(0.0, 0.0, 0.5, 1.0),)}  # left half is the animal
    source = PatchSource([path], patch=128, boxes=boxes, w_bg=0.01, prefilter=True)
    x, w = source.sample(np.random.default_rng(1))
    left = w[:, :64] if w[0, 0, 0] == 1 else w[:, 64:]
    assert np.all(left == 1) and np.isclose(w.min(), 0.01)
    raw = np.asarray(Image.open(path), np.float32) / 255
    raw = raw if w[0, 0, 0] == 1 else raw[:, ::-1]  # the sample may be flipped
    sharp = w[..., 0] == 1
    assert np.allclose(x[sharp], raw[sharp], atol=1e-6)
    assert np.abs(x[~sharp] - raw[~sharp]).mean() > 0.05  # noise is blurred away


# -- masks ----------------------------------------------------------------------------------
def test_megadetector_and_coco_masks(tmp_path):
    images = sorted((SAMPLES / "camtrap").glob("*.jpg"))
    table = load_boxes("megadetector", images, SAMPLES / "camtrap" / "megadetector.json")
    md = json.loads((SAMPLES / "camtrap" / "megadetector.json").read_text())
    for entry in md["images"]:
        kept = [d for d in entry["detections"] or [] if d["category"] == "1" and d["conf"] >= 0.2]
        assert len(table[SAMPLES / "camtrap" / entry["file"]]) == min(len(kept), 16)
    coco = {
        "images": [{"id": 7, "file_name": "a/img0.png", "width": 200, "height": 100}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "bbox": [50, 25, 100, 50]},
            {"image_id": 7, "category_id": 2, "bbox": [0, 0, 10, 10]},
        ],
        "categories": [{"id": 1, "name": "deer"}, {"id": 2, "name": "human"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    image = tmp_path / "data" / "a" / "img0.png"
    other = tmp_path / "data" / "b.png"
    table = load_boxes("coco", [image, other], tmp_path / "coco.json")
    assert table[image] == (Box(0.25, 0.25, 0.5, 0.5),) and table[other] is None
    with pytest.raises(MaskError, match="needs a JSON"):
        load_boxes("coco", [image])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MaskError, match="cannot read"):
        load_boxes("megadetector", [image], tmp_path / "bad.json")


def test_background_masks_follow_the_trap_model_over_a_sequence():
    from device.background import BackgroundModel

    frames = sorted((SAMPLES / "site").glob("*.jpg"))
    table = load_boxes("background", frames)
    assert set(table) == set(frames)
    model = BackgroundModel()
    for path in frames:  # the same frames through the trap's own model give the same boxes
        result = model.observe(np.asarray(Image.open(path).convert("RGB")))
        assert table[path] == (None if result is None else tuple(result.boxes))
    assert table[frames[0]] is None  # nothing learnt yet


# -- model and loss -------------------------------------------------------------------------
@pytest.mark.slow  # ~22 s of TensorFlow
def test_weighted_loss_is_mse_at_w_1_and_ignores_zero_weight_pixels():
    import tensorflow as tf

    from training.model import ModelConfig, build_model

    model = build_model(ModelConfig(analysis=8, synthesis=8, latent=8, hyper=4, lmbda=0.01))
    x = tf.random.stateless_uniform([1, 64, 64, 3], seed=[3, 4])
    out = model(x, training=False)
    _, _, wmse = model.rd_loss(x, tf.ones([1, 64, 64, 1]), out)
    mse = 255.0**2 * tf.reduce_mean(tf.square(x - out["x_hat"]))
    assert np.isclose(float(wmse), float(mse), rtol=1e-5)
    w = np.zeros([1, 64, 64, 1], np.float32)
    w[:, :, :32] = 1
    _, _, left = model.rd_loss(x, tf.constant(w), out)
    sq = tf.reduce_mean(tf.square(x - out["x_hat"]), axis=-1)[:, :, :32]
    assert np.isclose(float(left), 255.0**2 * float(tf.reduce_mean(sq)), rtol=1e-5)
    names = [layer.name for layer in model.g_a.layers + model.h_a.layers]
    assert names[:2] == ["g_a_conv0", "g_a_gdn0"] and "h_a_conv2" in names


def test_gradient_clipping_caps_the_step_of_an_outlier_batch():
    import tensorflow as tf

    from training.model import ModelConfig, build_model

    model = build_model(ModelConfig(analysis=8, synthesis=8, latent=8, hyper=4, lmbda=0.01))
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=1.0))
    model.clip_norm = 1e-3  # far below the gradient norm of a fresh model
    before = [v.numpy().copy() for v in model.trainable_variables]
    x = tf.random.stateless_uniform([2, 64, 64, 3], seed=[5, 6])
    model.train_step((x, tf.ones([2, 64, 64, 1])))
    step = [v.numpy() - b for v, b in zip(model.trainable_variables, before, strict=True)]
    norm = float(np.sqrt(sum(float(np.sum(np.square(d))) for d in step)))
    assert 0 < norm <= 1e-3 * 1.001


# -- train and export end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One tiny run (resumed once) and its bundle, shared by the slow tests."""
    from tools.cli import main

    base = tmp_path_factory.mktemp("train")
    run, bundle = base / "run", base / "bundle"
    common = ["train", "--data", str(SAMPLES / "site"), "--run", str(run), *TINY,
              "--patch", "64", "--batch", "2", "--steps-per-epoch", "2", "--quiet"]
    assert main([*common, "--steps", "2"]) == 0
    assert main([*common, "--steps", "4", "--strategy", "mirrored"]) == 0  # resumes at step 2
    assert main(["export", str(run), "--out", str(bundle), "--calibration", "4",
                 "--calibration-size", "64", "--eval", str(SAMPLES / "site" / "EK000001.jpg")]) == 0
    return run, bundle


@pytest.mark.slow
def test_train_resumes_and_export_writes_a_valid_bundle(exported):
    import tensorflow as tf

    from device.codec.bundle import HASHED_FILES, Bundle

    run, bundle_dir = exported
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 4
    bundle = Bundle.load(bundle_dir)
    assert all((bundle_dir / name).stat().st_size > 0 for name in HASHED_FILES)
    m = bundle.manifest
    assert m["widths"] == {"analysis": 16, "synthesis": 16, "latent": 16, "hyper": 8}
    assert m["training"]["steps"] == 4 and "DIV" in m["float_ops"]
    # y comes out of a float conv, not an int8 one: an int8 y is coarser than fine levels' steps
    interp = tf.lite.Interpreter(model_path=str(bundle_dir / "analysis.tflite"))
    tensors = interp.get_tensor_details()
    y_out = next(o for o in interp.get_output_details() if o["shape"][-1] == 16)
    (maker,) = [op for op in interp._get_ops_details() if y_out["index"] in op["outputs"]]
    assert maker["op_name"] == "CONV_2D"
    assert tensors[maker["inputs"][1]]["dtype"] == np.float32  # its weights
    e = bundle.entropy
    s = m["scale_table"]["count"]
    assert e["y_cdf"].shape[0] == s and e["z_cdf"].shape[0] == bundle.hyper_channels
    assert e["hs_index_lut"].min() >= 0 and e["hs_index_lut"].max() < s
    assert np.all(np.diff(e["hs_index_lut"]) >= 0)
    for cdf, length in ((e["y_cdf"], e["y_cdf_length"]), (e["z_cdf"], e["z_cdf_length"])):
        for row, n in zip(cdf, length, strict=True):
            assert row[0] == 0 and row[n - 1] == 1 << 16 and np.all(np.diff(row[:n]) > 0)
    cost = m["metrics"]["int8_rate_cost"]
    assert cost["images"] == 1 and [r["level"] for r in cost["levels"]] == [0]
    assert cost["levels"][0]["bpp_int8"] > 0


@pytest.mark.slow
def test_measure_builds_the_float_coders_once(exported, monkeypatch):
    """The range coder's tables are built once per measurement, not per image and level."""
    from training.measure import measure
    from training.model import HyperpriorCodec, load_checkpoint

    run, bundle_dir = exported
    model = load_checkpoint(run)
    built = []
    real = HyperpriorCodec.entropy_models

    def counted(self, *args, **kwargs):
        built.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HyperpriorCodec, "entropy_models", counted)
    images = [SAMPLES / "site" / "EK000001.jpg", SAMPLES / "site" / "EK000002.jpg"]
    cost = measure(model, bundle_dir, images)
    assert cost["images"] == 2 and len(built) == 1


RUNTIME_ONLY = textwrap.dedent(
    """
    import sys, hashlib, numpy as np
    from tflite_runtime.interpreter import Interpreter, OpResolverType
    from device.codec.bundle import Bundle
    bundle = Bundle.load(sys.argv[1])
    lut = bundle.entropy["hs_index_lut"]
    rng = np.random.default_rng(int(sys.argv[2]))
    h, w = 3, 5
    x = rng.random((1, 64 * h, 64 * w, 3), dtype=np.float32)
    ga = Interpreter(model_path=str(bundle.file("analysis.tflite")))
    ga.resize_tensor_input(ga.get_input_details()[0]["index"], list(x.shape))
    ga.allocate_tensors()
    ga.set_tensor(ga.get_input_details()[0]["index"], x)
    ga.invoke()
    outs = {tuple(o["shape"]): ga.get_tensor(o["index"]) for o in ga.get_output_details()}
    z = outs[(1, h, w, bundle.hyper_channels)]
    y = outs[(1, 4 * h, 4 * w, bundle.latent_channels)]
    off = bundle.entropy["z_offset"]
    z_hat = np.round(z - off) + off
    hs = Interpreter(model_path=str(bundle.file("hyper_synthesis.tflite")),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    inp = hs.get_input_details()[0]
    hs.resize_tensor_input(inp["index"], list(z_hat.shape))
    hs.allocate_tensors()
    scale, zero = inp["quantization"]
    q = np.clip(np.round(z_hat.astype(np.float32) / np.float32(scale)) + zero, -128, 127)
    hs.set_tensor(inp["index"], q.astype(np.int8))
    hs.invoke()
    idx = lut[hs.get_tensor(hs.get_output_details()[0]["index"]).astype(np.int32) + 128]
    assert idx.shape == y.shape, (idx.shape, y.shape)
    gs = Interpreter(model_path=str(bundle.file("synthesis.tflite")))
    gs.resize_tensor_input(gs.get_input_details()[0]["index"], list(y.shape))
    gs.allocate_tensors()
    gs.set_tensor(gs.get_input_details()[0]["index"], np.round(y).astype(np.float32))
    gs.invoke()
    x_hat = gs.get_tensor(gs.get_output_details()[0]["index"])
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert "tensorflow" not in sys.modules
    print(hashlib.sha256(idx.astype(np.int32).tobytes()).hexdigest())
    """
)


def _runtime_only(bundle: Path, seed: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, str(bundle), str(seed)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_committed_tiny_bundle_runs_with_tflite_runtime_alone_and_is_deterministic():
    first, second = _runtime_only(TINY_BUNDLE, 5), _runtime_only(TINY_BUNDLE, 5)
    assert first == second and len(first) == 64


@pytest.mark.slow
def test_exported_bundle_runs_with_tflite_runtime_alone_in_two_fresh_interpreters(exported):
    _, bundle = exported
    assert _runtime_only(bundle, 11) == _runtime_only(bundle, 11)


# -- one-line errors through the CLI --------------------------------------------------------
def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(["train", "--data", str(tmp_path / "empty"), "--run", str(tmp_path / "r")], capsys)
    assert code == 2 and "no images under" in err and len(err.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.jpg").write_bytes(b"not a jpeg at all")
    code, _, err = _cli(["train", "--data", str(corrupt), "--run", str(tmp_path / "r")], capsys)
    assert code == 2 and "1 unreadable" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(["export", str(TINY_BUNDLE), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "not a training run" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(["train", "--run", str(tmp_path / "r"), "--masks", "coco"], capsys)
    assert code == 2 and "--masks-json" in err
    with pytest.raises(SystemExit):
        _cli(["train", "--run", str(tmp_path / "r"), "--steps", "0"], capsys)
    assert "expected an integer >= 1" in capsys.readouterr().err
    code, _, err = _cli(["train", "--data", str(SAMPLES / "site"), "--run", str(tmp_path / "r"),
                         "--clip-norm", "-1"], capsys)
    assert code == 2 and "--clip-norm" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_training_skips_a_corrupt_image_among_good_ones(tmp_path, capsys):
    data = tmp_path / "data"
    _write_images(data, [(64, 64), (80, 64)])
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, _ = _cli(["train", "--data", str(data), "--run", str(tmp_path / "run"), *TINY,
                         "--patch", "64", "--batch", "1", "--steps", "1", "--quiet"], capsys)
    assert code == 0 and "skipped 1 unreadable" in out


def test_progress_bar_counts_to_steps_not_per_epoch(capsys):
    """A 20-step run shows 20/20 (Keras's own bar counted to --steps-per-epoch, 100)."""
    from types import SimpleNamespace

    from training.train import StepProgress

    class Counter:
        def __init__(self, value):
            self.value = value

        def numpy(self):
            return self.value

    optimizer = SimpleNamespace(iterations=Counter(0))
    bar = StepProgress(optimizer, done=0, total_steps=20, every=100, verbose=1)
    for step in range(1, 21):
        optimizer.iterations.value = step
        bar.on_train_batch_end(step - 1, {"loss": 1.0, "bpp": 0.5, "psnr": 20.0})
    out = capsys.readouterr().out
    assert "20/20" in out and "/100" not in out
    resumed = StepProgress(optimizer, done=15, total_steps=20, every=2, verbose=2)
    for step in range(16, 21):
        optimizer.iterations.value = step
        resumed.on_train_batch_end(0, {"loss": 1.0})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["16/20", "18/20", "20/20"]


@pytest.mark.slow
def test_a_variable_rate_mean_scale_run_exports_a_bundle_the_device_codes_with(tmp_path):
    from device.codec.bundle import Bundle
    from device.codec.decoder import Decoder
    from device.codec.encoder import Encoder
    from device.imageio import load_image
    from tools.cli import main

    run, out = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--data", str(SAMPLES / "site"), "--run", str(run), *TINY,
                 "--lambdas", "0.001", "0.004", "0.016", "--mean", "--mixed", "--patch", "64",
                 "--batch", "2", "--steps", "1", "--steps-per-epoch", "1", "--quiet"]) == 0
    assert main(["export", str(run), "--out", str(out), "--calibration", "2", "--weights",
                 "--calibration-size", "64", "--eval", str(SAMPLES / "site" / "EK000001.jpg")]) == 0
    bundle = Bundle.load(out)
    m = bundle.manifest
    assert m["mean_scale"] and sorted(m["hyper_outputs"]) == ["indexes", "means"]
    assert m["rate_levels"] == {"lambdas": [0.001, 0.004, 0.016], "reference": 1}
    assert bundle.entropy["level_steps"].shape == (3, 16)
    cost = m["metrics"]["int8_rate_cost"]
    assert [r["level"] for r in cost["levels"]] == [0, 1, 2]
    image = load_image(SAMPLES / "site" / "EK000001.jpg")
    data = Encoder(out).encode(image, saliency="none", use_prefilter=False).data
    assert Decoder(out).decode(data).image.shape == image.shape

    # The bundle carries its float weights: fine-tuning takes the bundle itself (issue 14
    # item 4), and the weights restore the very model (float16 only for large kernels).
    from training.model import load_checkpoint

    restored, original = load_checkpoint(out / "checkpoint"), load_checkpoint(run)
    for a, b in zip(restored.variables, original.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(restored.rate_steps.numpy(), original.rate_steps.numpy())
    assert main(["finetune", str(out), "--out", str(tmp_path / "site"), "--data",
                 str(SAMPLES / "site"), "--steps", "1", "--batch", "2", "--patch", "64",
                 "--holdout", "0.25", "--eval-limit", "1", "--quiet"]) == 0
    summary = json.loads((tmp_path / "site" / "train_config.json").read_text())
    assert summary["base"]["run"] == str(out / "checkpoint")


def test_patches_must_fit_the_models_downsampling(tmp_path):
    """A 32- or 48-px patch leaves z no whole grid cell: Keras failed with a traceback inside
    fit; the patch source refuses it by name first."""
    paths = _write_images(tmp_path, [(96, 96)])
    for patch in (32, 48, 80):
        with pytest.raises(DataError, match="multiple of 64"):
            PatchSource(paths, patch=patch)
    assert PatchSource(paths, patch=64).check() == 1


@pytest.mark.slow
def test_sigterm_stops_training_with_a_checkpoint_and_the_process_exits(tmp_path):
    """`kill -TERM` is how a campaign is paused: the step is saved and the process is gone."""
    import signal

    run = tmp_path / "run"
    argv = [sys.executable, "-m", "tools.cli", "train", "--data", str(SAMPLES / "site"),
            "--run", str(run), *TINY, "--patch", "64", "--batch", "2", "--steps", "100000",
            "--steps-per-epoch", "1", "--quiet"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:  # wait until steps are being taken
            if line.startswith("step "):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)  # a hang guard, not a speed check
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; checkpoint in" in err
    assert (run / "checkpoints" / "checkpoint").is_file()

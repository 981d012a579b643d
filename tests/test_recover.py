"""Float weights recovered from a bundle's files (training/recover.py), warm starts from them,
and the shipped default's weights: finetune, prune and export take it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main as _cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data"
PICTURE = SAMPLES / "site" / "EK000001.jpg"


@pytest.mark.parametrize("name", ["tiny_bundle", "tiny_vr_bundle"])
def test_recovered_model_codes_like_its_bundle(name):
    import tensorflow as tf

    from training.measure import measure
    from training.recover import recover

    bundle = SAMPLES / name
    model, report = recover(bundle)
    assert report["z_prior_kl_bits"] < 0.01
    # g_s is float16 in the bundle: it comes back exactly.
    synthesis = tf.lite.Interpreter(model_path=str(bundle / "synthesis.tflite"))
    y = np.random.default_rng(0).normal(0, 3, (1, 4, 4, model.config.latent)).astype(np.float32)
    synthesis.resize_tensor_input(synthesis.get_input_details()[0]["index"], y.shape)
    synthesis.allocate_tensors()
    synthesis.set_tensor(synthesis.get_input_details()[0]["index"], y)
    synthesis.invoke()
    stored = synthesis.get_tensor(synthesis.get_output_details()[0]["index"])
    np.testing.assert_allclose(np.clip(model.g_s(y).numpy(), 0, 1), stored, atol=1e-5)
    # The int8 parts dequantised: the float model codes within a few percent of the bundle.
    cost = measure(model, bundle, [PICTURE])
    assert len(cost["levels"]) == len(model.config.levels)
    for row in cost["levels"]:
        assert abs(row["percent"]) < 5.0, row
        assert abs(row["psnr_int8"] - row["psnr_float"]) < 0.1, row
    if model.rate_steps is not None:
        with np.load(bundle / "entropy.npz") as tables:
            np.testing.assert_array_equal(model.rate_steps.numpy(), tables["level_steps"])


@pytest.fixture(scope="module")
def tiny_with_weights(tmp_path_factory):
    """A copy of the one-rate tiny bundle after `wildlink recover` wrote its weights."""
    from tools.cli import main

    bundle = tmp_path_factory.mktemp("recover") / "bundle"
    shutil.copytree(SAMPLES / "tiny_bundle", bundle)
    assert main(["recover", str(bundle)]) == 0
    return bundle


def test_recover_command_writes_weights_once_and_refuses_non_bundles(tiny_with_weights, tmp_path,
                                                                     capsys):
    bundle = tiny_with_weights
    saved = json.loads((bundle / "checkpoint" / "train_config.json").read_text())
    assert saved["weights_step"] == 400 and saved["recovered_from"]
    code, _, err = _cli(["recover", str(bundle)], capsys)
    assert code != 0 and "already holds float weights" in err and "Traceback" not in err
    code, _, err = _cli(["recover", str(tmp_path)], capsys)
    assert code != 0 and "not a model bundle" in err
    # The bundle is now a source for finetune, prune and export (training/runs.resolve).
    from training.model import load_checkpoint, named_variables
    from training.recover import recover

    loaded, (recovered, _) = load_checkpoint(bundle), recover(bundle)
    for name, v in named_variables(recovered).items():  # the z prior's refit included
        np.testing.assert_allclose(named_variables(loaded)[name].numpy(), v.numpy(),
                                   rtol=1e-3, atol=1e-4, err_msg=name)


def test_warm_start_puts_a_one_rate_source_at_its_own_level(tiny_with_weights, tmp_path, capsys):
    from training.model import ModelConfig, build_model, named_variables, warm_start

    tiny = dict(analysis=16, synthesis=16, latent=16, hyper=8)
    model = build_model(ModelConfig(**tiny, lambdas=(0.0025, 0.01, 0.04)))
    report = warm_start(model, tiny_with_weights)
    assert len(report["copied"]) == len(named_variables(model)) and not report["fresh"]
    steps = np.round(model.rate_steps.numpy())
    assert (steps[1] == 0).all() and (steps[0] > 0).all() and (steps[2] < 0).all()
    # A source of other widths: nothing but the 3-channel output bias fits; nothing breaks.
    other = build_model(ModelConfig(analysis=8, synthesis=8, latent=8, hyper=4))
    report = warm_start(other, tiny_with_weights)
    assert "g_a/g_a_conv0/kernel:0" in report["fresh"] and len(report["copied"]) <= 1
    # Through the CLI: a new run starts from the weights (and says so).
    code, out, _ = _cli(["train", "--run", str(tmp_path / "vr"), "--init", str(tiny_with_weights),
                         "--data", str(SAMPLES / "site"), *sum((["--" + k, str(v)] for k, v in
                                                                tiny.items()), []),
                         "--lambdas", "0.0025", "0.01", "0.04", "--steps", "1", "--batch", "1",
                         "--patch", "64", "--quiet"], capsys)
    assert code == 0 and "copied, 0 fresh" in out, out
    code, _, err = _cli(["train", "--run", str(tmp_path / "x"), "--init", str(tmp_path / "no"),
                         "--data", str(SAMPLES / "site"), "--steps", "1"], capsys)
    assert code != 0 and "--init" in err and "Traceback" not in err


def test_the_shipped_default_fine_tunes(tmp_path, capsys):
    """Issue 14 item 4: `wildlink finetune device/models/default` runs from the weights beside
    the shipped bundle, and the decoder side stays the shipped one."""
    default = ROOT / "device" / "models" / "default"
    assert (default / "checkpoint" / "weights.npz").is_file()
    code, out, _ = _cli(["finetune", str(default), "--out", str(tmp_path / "site"), "--data",
                         str(SAMPLES / "site"), "--steps", "1", "--batch", "2", "--patch", "64",
                         "--holdout", "0.25", "--eval-limit", "1", "--quiet"], capsys)
    assert code == 0, out
    assert "decoder weights unchanged" in out

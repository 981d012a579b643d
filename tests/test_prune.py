"""Structured channel pruning of the encoder: exact slicing, MACs, end to end with export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # TensorFlow pruning and fine-tuning: the fixture ~66-110 s

from tools import cli  # noqa: E402
from training.finetune import decoder_weights  # noqa: E402
from training.model import ModelConfig, build_model, checkpoint_for, load_checkpoint  # noqa: E402
from training.prune import (  # noqa: E402
    PruneError,
    encoder_macs,
    keep_indexes,
    layer_macs,
    prune_encoder,
)

SITE = Path(__file__).resolve().parent / "data" / "site"
TINY = ModelConfig(analysis=16, synthesis=16, latent=16, hyper=8)


def gdns(model):
    return [layer for layer in model.g_a.layers if "gdn" in layer.name]


def convs(model):
    return [layer for layer in model.g_a.layers if "conv" in layer.name]


def random_model(seed: int = 0):
    """A tiny model whose GDNs couple channels (identity-like gamma would hide slicing bugs).

    Seeded throughout (kernels too), so the comparisons below see the same weights every run.
    """
    tf.keras.utils.set_random_seed(seed)
    model = build_model(TINY)
    rng = np.random.default_rng(seed)
    for gdn in gdns(model):
        gamma, beta = gdn.gamma_parameter.variable, gdn.beta_parameter.variable
        gamma.assign(rng.uniform(0.05, 0.5, gamma.shape).astype(np.float32))
        beta.assign(rng.uniform(0.5, 1.5, beta.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    base = root / "base"
    base.mkdir()
    TINY.save(base)
    (base / "train_config.json").write_text(json.dumps({"data": [str(SITE)], "patch": 64, "steps": 7}))
    tf.train.CheckpointManager(checkpoint_for(random_model()), str(base / "checkpoints"), 1).save(0)
    argv = ["prune", str(base), "--out", str(root / "pruned"), "--width", "10", "--data", str(SITE)]
    argv += ["--steps", "2", "--batch", "2", "--patch", "64", "--quiet", "--eval-limit", "1"]
    assert cli.main([*argv, "--holdout", "0.25"]) == 0
    return root


def test_pruned_encoder_equals_the_masked_original():
    """Slicing K_i, bias, GDN beta/gamma and K_{i+1} is the same as zeroing the dropped channels'
    influence: their weights into the next layer and their terms in the GDN pools."""
    model = random_model()
    x = tf.random.stateless_uniform([1, 64, 64, 3], seed=[5, 6])
    same = prune_encoder(model, 16)
    assert np.array_equal(same(x)["y"].numpy(), model(x)["y"].numpy())
    keep = keep_indexes(model, 10)
    pruned = prune_encoder(model, 10)
    for i, kept in enumerate(keep):
        drop = np.setdiff1d(np.arange(16), kept)
        nxt = convs(model)[i + 1].kernel
        kernel = nxt.numpy()
        kernel[:, :, drop, :] = 0
        nxt.assign(kernel)
        gamma = gdns(model)[i].gamma_parameter.variable
        value = gamma.numpy()
        value[drop, :] = 2.0**-18  # reparameterised zero (sqrt of the pedestal)
        gamma.assign(value)
    np.testing.assert_allclose(pruned(x)["y"].numpy(), model(x)["y"].numpy(), atol=1e-6)


def test_calibrated_pruning_keeps_the_encoder_closer():
    """Folding the dropped channels' mean contributions into beta and the next bias brings y
    closer to the unpruned encoder's than plain slicing does."""
    model = random_model(1)
    x = tf.random.stateless_uniform([4, 64, 64, 3], seed=[7, 8])
    y = model(x)["y"].numpy()
    plain = prune_encoder(model, 8)(x)["y"].numpy()
    calibrated = prune_encoder(model, 8, x)(x)["y"].numpy()
    assert np.mean((calibrated - y) ** 2) < np.mean((plain - y) ** 2)


def test_channels_are_ranked_by_norm():
    model = random_model()
    conv0 = convs(model)[0].kernel
    kernel = conv0.numpy()
    kernel[..., 3] *= 100.0  # a strong channel survives any cut
    kernel[..., 7] = 0.0  # a dead channel is the first to go
    conv0.assign(kernel)
    keep = keep_indexes(model, 15)[0]
    assert 3 in keep and 7 not in keep
    with pytest.raises(PruneError):
        keep_indexes(model, 17)


def test_macs_formula_and_reduction():
    model = build_model(TINY)
    rows = dict(layer_macs(model, 768, 1024))
    assert rows["g_a_conv0"] == 384 * 512 * 5 * 5 * 3 * 16
    assert rows["g_a_gdn0"] == 384 * 512 * 16 * 16
    assert rows["h_a_conv0"] == 48 * 64 * 3 * 3 * 16 * 8
    pruned = prune_encoder(model, 8)
    assert encoder_macs(pruned) < encoder_macs(model)
    assert dict(layer_macs(pruned))["g_a_conv1"] == 192 * 256 * 25 * 8 * 8


def test_prune_end_to_end(pruned_run):
    summary = json.loads((pruned_run / "pruned" / "finetune_summary.json").read_text())
    assert summary["macs"]["after"] < summary["macs"]["before"]
    assert summary["width"] == {"before": 16, "after": 10}
    assert set(summary["eval"]["held-out"]) == {"before", "pruned", "after"}
    base, pruned = load_checkpoint(pruned_run / "base"), load_checkpoint(pruned_run / "pruned")
    assert pruned.config.analysis == 10
    for key, value in decoder_weights(base).items():
        assert np.array_equal(value, decoder_weights(pruned)[key]), key
    out = pruned(tf.zeros([1, 64, 64, 3]))
    assert out["x_hat"].shape == (1, 64, 64, 3)


@pytest.mark.slow  # the three TFLite conversions take about a minute of CPU
@pytest.mark.skipif(
    importlib.util.find_spec("training.export") is None, reason="training/export.py not built"
)
def test_pruned_model_exports(pruned_run, tmp_path):
    from training.export import export_bundle

    bundle = tmp_path / "bundle"
    report = export_bundle(
        pruned_run / "pruned", bundle, data=[str(SITE)], calibration=2, calibration_size=64,
        eval_images=[str(SITE / "EK000008.jpg")],
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["widths"]["analysis"] == 10
    assert manifest["training"]["steps"] == 9  # the base run's 7 and the prune's 2
    assert manifest["training"]["adapted_from"]["adaptation_steps"] == 2
    assert manifest["model_id"] == report["model_id"]


def test_bad_prune_inputs_give_one_line_errors(pruned_run, tmp_path, capsys):
    base = str(pruned_run / "base")
    argv = ["prune", base, "--out", str(tmp_path / "o"), "--data", str(SITE), "--width", "99"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "wider than the encoder" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):  # --width and --keep exclude each other
        cli.main(["prune", base, "--out", "o", "--width", "4", "--keep", "0.5"])

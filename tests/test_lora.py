"""LoRA adapters and site fine-tuning (full and LoRA) on a tiny model, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # TensorFlow models and fine-tuning runs: the runs fixture ~98 s

from tools import cli  # noqa: E402
from training.finetune import decoder_weights, encoder_variables  # noqa: E402
from training.lora import LoRAError, apply_adapter_file, attach  # noqa: E402
from training.model import ModelConfig, build_model, checkpoint_for, load_checkpoint  # noqa: E402

SITE = Path(__file__).resolve().parent / "data" / "site"
TINY = ModelConfig(analysis=16, synthesis=16, latent=16, hyper=8)


def make_run(folder: Path, config: ModelConfig = TINY) -> Path:
    """A run folder with a freshly initialised model, as `wildlink train` lays it out."""
    folder.mkdir(parents=True)
    config.save(folder)
    (folder / "train_config.json").write_text(json.dumps({"data": [str(SITE)], "patch": 64}))
    model = build_model(config)
    tf.train.CheckpointManager(checkpoint_for(model), str(folder / "checkpoints"), 1).save(0)
    return folder


def randomise(variables, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(rng.normal(0, 0.05, v.shape).astype(np.float32))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A base run and its full and LoRA fine-tunes, run through the CLI once for the module."""
    root = tmp_path_factory.mktemp("finetune")
    base = make_run(root / "base")
    common = ["--data", str(SITE), "--steps", "3", "--batch", "2", "--patch", "64", "--quiet"]
    common += ["--holdout", "0.25", "--eval-limit", "1"]
    assert (
        cli.main(["finetune", str(base), "--out", str(root / "full"), "--mode", "full", *common])
        == 0
    )
    args = ["--mode", "lora", "--rank", "2", "--lr", "1e-2"]
    assert cli.main(["finetune", str(base), "--out", str(root / "lora"), *args, *common]) == 0
    return root


def test_adapters_start_at_the_base_model():
    model = build_model(TINY)
    x = tf.random.stateless_uniform([1, 64, 64, 3], seed=[1, 2])
    before = model(x)["y"].numpy()
    attach(model, rank=2)
    assert np.array_equal(model(x)["y"].numpy(), before)


def test_merged_adapters_equal_the_unmerged_model():
    model = build_model(TINY)
    x = tf.random.stateless_uniform([1, 64, 64, 3], seed=[3, 4])
    base = model(x)
    adapters = attach(model, rank=3)
    randomise(adapters.trainable_variables)
    unmerged = model(x)
    adapters.merge()
    assert model.g_a.name == "g_a" and model.h_a.name == "h_a"
    merged = model(x)
    for key in ("y", "z"):
        # the adapters do something (compared with the base model, not with zero: the
        # randomly initialised model's own output scale varies from run to run)
        assert not np.allclose(unmerged[key].numpy(), base[key].numpy(), atol=1e-5)
        np.testing.assert_allclose(merged[key].numpy(), unmerged[key].numpy(), atol=1e-5)


def test_adapters_touch_only_encoder_convolutions():
    model = build_model(TINY)
    adapters = attach(model, rank=2)
    names = [layer.base.name for layer in adapters.layers]
    assert names == [f"g_a_conv{i}" for i in range(4)] + [f"h_a_conv{i}" for i in range(3)]
    assert adapters.parameter_count() < sum(int(np.prod(v.shape)) for v in encoder_variables(model))
    with pytest.raises(LoRAError):
        attach(build_model(TINY), rank=0)


def test_finetune_leaves_the_decoder_bit_identical(runs):
    base = load_checkpoint(runs / "base")
    frozen = decoder_weights(base)
    for mode in ("full", "lora"):
        tuned = load_checkpoint(runs / mode)
        now = decoder_weights(tuned)
        assert frozen.keys() == now.keys()
        for key, value in frozen.items():
            assert np.array_equal(value, now[key]), f"{mode}: {key} changed"
        # ... while the encoder did move.
        moved = [
            not np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(encoder_variables(base), encoder_variables(tuned), strict=True)
        ]
        assert any(moved), mode


def test_finetune_summary_reports_parameters_and_memory(runs):
    full = json.loads((runs / "full" / "finetune_summary.json").read_text())
    lora = json.loads((runs / "lora" / "finetune_summary.json").read_text())
    assert lora["trainable_parameters"] < full["trainable_parameters"]
    assert lora["trainable_parameters"] == lora["parameters"]["lora"]
    for summary in (full, lora):
        assert summary["fit"]["steps"] == 3
        assert summary["fit"]["peak_rss_mib"] > 0
        assert summary["eval"]["held-out"]["before"]["images"] == 1
    # LoRA keeps the base kernels' biases and GDN: only the kernels differ.
    base, tuned = load_checkpoint(runs / "base"), load_checkpoint(runs / "lora")
    for a, b in zip(base.g_a.variables, tuned.g_a.variables, strict=True):
        if "kernel" not in a.name:
            assert np.array_equal(a.numpy(), b.numpy()), a.name


def test_saved_adapters_reproduce_the_merged_encoder(runs):
    model = load_checkpoint(runs / "base")
    assert apply_adapter_file(model, str(runs / "lora" / "lora_adapters.npz")) == 7
    tuned = load_checkpoint(runs / "lora")
    for a, b in zip(encoder_variables(model), encoder_variables(tuned), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    other = build_model(ModelConfig(analysis=8, synthesis=16, latent=16, hyper=8))
    with pytest.raises(LoRAError, match="another model"):
        apply_adapter_file(other, str(runs / "lora" / "lora_adapters.npz"))


def one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_give_one_line_errors(runs, tmp_path, capsys):
    base = str(runs / "base")
    out = str(tmp_path / "out")
    assert "--data" in one_line_error(capsys, ["finetune", base, "--out", out])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in one_line_error(
        capsys, ["finetune", base, "--out", out, "--data", str(empty)]
    )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    argv = ["finetune", base, "--out", out, "--data", str(corrupt)]
    assert "unreadable" in one_line_error(capsys, argv)
    missing = str(tmp_path / "nothing")
    assert "nothing" in one_line_error(
        capsys, ["finetune", missing, "--out", out, "--data", str(SITE)]
    )
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text('{"format": "wildlink-bundle"}')
    err = one_line_error(capsys, ["finetune", str(bundle), "--out", out, "--data", str(SITE)])
    assert "no checkpoint" in err
    err = one_line_error(
        capsys, ["finetune", base, "--out", str(runs / "full"), "--data", str(SITE)]
    )
    assert "--force" in err
    with pytest.raises(SystemExit):
        cli.main(["finetune", base, "--out", out, "--data", str(SITE), "--rank", "0"])


def fake_bundle(folder: Path, tag: bytes, latent: int = 16) -> dict:
    from device.codec import bundle as fmt

    folder.mkdir()
    for name in fmt.HASHED_FILES:
        (folder / name).write_bytes(tag + name.encode())
    fields = {"latent_channels": latent, "hyper_channels": 8, "widths": {"synthesis": 16}}
    return fmt.write_manifest(folder, fields)


def test_site_bundle_keeps_the_base_decoder_files(tmp_path):
    from device.codec import bundle as fmt
    from device.errors import BundleError
    from training.sitebundle import DECODER_FILES, reuse_decoder

    base = fake_bundle(tmp_path / "base", b"base")
    site = fake_bundle(tmp_path / "site", b"site")
    manifest = reuse_decoder(tmp_path / "site", tmp_path / "base", check=False)
    for name in DECODER_FILES:
        assert (tmp_path / "site" / name).read_bytes() == (tmp_path / "base" / name).read_bytes()
    assert (tmp_path / "site" / fmt.ANALYSIS).read_bytes() == b"site" + fmt.ANALYSIS.encode()
    assert manifest["model_id"] == fmt.compute_model_id(tmp_path / "site")
    assert manifest["model_id"] not in (base["model_id"], site["model_id"])
    assert manifest["decoder_from"]["model_id"] == base["model_id"]
    fake_bundle(tmp_path / "other", b"other", latent=32)
    with pytest.raises(BundleError, match="latent_channels"):
        reuse_decoder(tmp_path / "other", tmp_path / "base", check=False)


def test_finetune_trains_and_evaluates_a_variable_rate_model_at_its_levels(tmp_path):
    """The levels share g_a: a fine-tune draws a level per image (as training does), and its
    before/after figures are the reference level's, not the coarsest one's."""
    from training.evaluation import evaluate
    from training.finetune import fit

    model = build_model(ModelConfig(analysis=16, synthesis=16, latent=16, hyper=8,
                                    lambdas=(0.001, 0.004, 0.016)))
    drawn = []
    draw = model.random_levels
    model.random_levels = lambda batch: drawn.append(batch) or draw(batch)
    x = tf.random.uniform([2, 64, 64, 3], seed=1)
    dataset = tf.data.Dataset.from_tensors((x, tf.ones([2, 64, 64, 1]))).repeat()
    fit(model, encoder_variables(model), dataset, steps=2, lr=1e-4, verbose=0)
    assert drawn, "fit trained one level only"
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray((x[0].numpy() * 255).astype(np.uint8)).save(image)
    got = evaluate(model, [image])
    out = model(tf.constant(np.asarray(Image.open(image), np.float32)[None] / 255.0),
                level=model.config.reference_level)
    bits = float(tf.reduce_sum(out["bits_y"]) + tf.reduce_sum(out["bits_z"]))
    assert got["bpp"] == pytest.approx(bits / 64**2, rel=1e-4)

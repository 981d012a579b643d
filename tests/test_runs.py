"""training/runs.py: one resolution of a source (run, checkpoint, weights folder, bundle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from training.model import (  # noqa: E402
    ModelConfig,
    build_model,
    checkpoint_for,
    load_checkpoint,
    save_weights,
)
from training.runs import CheckpointError, RunSource, resolve  # noqa: E402

TINY = ModelConfig(analysis=8, synthesis=8, latent=8, hyper=4)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A run with checkpoints 3 and 5, a weights folder of it and bundles with and without."""
    root = tmp_path_factory.mktemp("runs")
    run = root / "run"
    run.mkdir()
    TINY.save(run)
    (run / "train_config.json").write_text(json.dumps({"steps": 5}))
    model = build_model(TINY)
    manager = tf.train.CheckpointManager(checkpoint_for(model), str(run / "checkpoints"), 2)
    manager.save(3)
    manager.save(5)
    bundle = root / "bundle"
    save_weights(model, bundle / "checkpoint")
    (bundle / "checkpoint" / "train_config.json").write_text(json.dumps({"weights_step": 5}))
    (bundle / "manifest.json").write_text('{"format": "wildlink-bundle"}')
    bare = root / "bare"
    bare.mkdir()
    (bare / "manifest.json").write_text('{"format": "wildlink-bundle"}')
    named = root / "named"
    named.mkdir()
    (named / "manifest.json").write_text(json.dumps({"training": {"checkpoint": "../run"}}))
    return {"root": root, "run": run, "bundle": bundle, "bare": bare, "named": named,
            "model": model}


def test_a_run_folder_names_its_latest_checkpoint(sources):
    run = sources["run"]
    assert resolve(run) == RunSource(run, run / "checkpoints" / "ckpt-5")
    assert resolve(str(run)).step == 5


def test_a_checkpoint_prefix_names_its_run(sources):
    run = sources["run"]
    src = resolve(run / "checkpoints" / "ckpt-3")
    assert src == RunSource(run, run / "checkpoints" / "ckpt-3") and src.step == 3


def test_a_bundle_names_its_weights_folder_or_its_manifests_checkpoint(sources):
    weights = sources["bundle"] / "checkpoint"
    assert resolve(sources["bundle"]) == resolve(weights) == RunSource(weights, None)
    assert resolve(weights).step == 5
    assert resolve(sources["named"]).prefix.name == "ckpt-5"


def test_load_checkpoint_takes_every_form_alike(sources):
    expected = [v.numpy() for v in sources["model"].variables]
    run = sources["run"]
    for source in (run, run / "checkpoints" / "ckpt-5", sources["bundle"], resolve(run)):
        restored = load_checkpoint(source)
        for a, b in zip(restored.variables, expected, strict=True):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-3, atol=1e-4)


def test_unusable_sources_get_one_line_errors(sources):
    root = sources["root"]
    with pytest.raises(CheckpointError, match="no checkpoint.*not a training run"):
        resolve(sources["bare"])
    with pytest.raises(CheckpointError, match="no run folder, checkpoint or bundle"):
        resolve(root / "nothing")
    (root / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model_config.json"):
        resolve(root / "empty")
    fresh = root / "fresh"
    fresh.mkdir()
    TINY.save(fresh)
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        resolve(fresh)
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        resolve(root / "broken")

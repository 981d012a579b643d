"""Export a trained model as a bundle (docs/bundle.md): what the trap and base station run.

The steps live in their own modules: training/convert.py (the three TFLite files),
training/entropy.py (``entropy.npz``), training/measure.py (float against the device's own
int8 pipeline). This module pins the checkpoint, runs them in order and writes
``manifest.json`` via device.codec.bundle.write_manifest (model id = sha256 prefix).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from device.codec import bundle as fmt
from training import convert as cv
from training.convert import ExportError
from training.data import find_images, representative_images
from training.entropy import OVERFLOW_WIDTH, PRECISION, entropy_tables
from training.measure import measure
from training.model import checkpoint_for, load_checkpoint, save_weights
from training.runs import (
    CHECKPOINTS,
    CONFIG_FILE,
    TRAIN_CONFIG,
    WEIGHTS_FOLDER,
    RunSource,
    read_train_config,
    resolve,
)

__all__ = ["ExportError", "export_bundle"]

log = logging.getLogger(__name__)


# -- the bundle -----------------------------------------------------------------------------
def export_bundle(
    source: str | Path,
    out: str | Path,
    data=None,
    calibration: int = 48,
    calibration_size: int = 256,
    eval_images=None,
    force: bool = False,
    weights: bool = False,
) -> dict:
    """Write the bundle of `source` (run folder, checkpoint, weights folder or a bundle with its
    weights: `training.runs.resolve`) into `out`; returns a report. With `weights`, the float
    weights go beside it in ``out/checkpoint/`` (`training.model.save_weights`), so
    `finetune`, `prune` and `export` accept the bundle itself."""
    with contextlib.ExitStack() as stack:
        return _export(source, out, data, calibration, calibration_size, eval_images, force,
                       weights, stack)


def _save_weights(source: RunSource, train_cfg: dict, out: Path) -> int:
    """The float weights of checkpoint `source` (`train_cfg` its run's) into out/checkpoint."""
    folder = out / WEIGHTS_FOLDER
    size = save_weights(load_checkpoint(source), folder)
    (folder / TRAIN_CONFIG).write_text(
        json.dumps({**train_cfg, "weights_step": source.step}, indent=2) + "\n"
    )
    return size + (folder / TRAIN_CONFIG).stat().st_size


def _pin_checkpoint(source: RunSource, stack: contextlib.ExitStack) -> RunSource:
    """Copy the checkpoint of `source` into a temporary run folder (a weights folder is
    written there as checkpoint ckpt-N, N its step)."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wildlink-export-")))
    (tmp / CHECKPOINTS).mkdir()
    shutil.copy(source.run / CONFIG_FILE, tmp / CONFIG_FILE)
    if source.prefix is None:
        prefix = tmp / CHECKPOINTS / f"ckpt-{source.step}"
        checkpoint_for(load_checkpoint(source)).write(str(prefix))
        return RunSource(tmp, prefix)
    for path in source.prefix.parent.glob(source.prefix.name + ".*"):
        shutil.copy(path, tmp / CHECKPOINTS / path.name)
    return RunSource(tmp, tmp / CHECKPOINTS / source.prefix.name)


def _export(source, out, data, calibration, calibration_size, eval_images, force, weights,
            stack) -> dict:
    out = Path(out)
    given = resolve(source)
    load_checkpoint(given)  # one-line errors naming the source itself
    # Pin the checkpoint now: a run that is still training rotates its checkpoints.
    source = _pin_checkpoint(given, stack)
    model = load_checkpoint(source)
    train_cfg = read_train_config(given.run)
    data = list(data or train_cfg.get("data") or [])
    if not data:
        raise ExportError("no calibration images: pass --data DIR")
    images = find_images(data)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out} is not empty (use --force to overwrite)")
        if not (out / fmt.MANIFEST).exists():
            raise ExportError(f"{out} is not empty and not a bundle: refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    c = model.config

    # The TFLite converter leaves TFC's GDN constants symbolic in the model it converted, so
    # every conversion and every eager computation gets its own freshly restored model.
    reps = [r[None] for r in representative_images(images, calibration, calibration_size)]
    _, z_model = model.entropy_models(compression=True, precision=PRECISION)
    def h_a_input(y):
        return y if c.mean else tf.abs(y)

    z_hats = [z_model.quantize(model.h_a(h_a_input(model.g_a(r)))).numpy() for r in reps]
    analysis = cv.convert(cv.analysis_fn(model), model, reps, float_outputs=("y",),
                          float_layers=cv.analysis_float_layers(model))
    (out / fmt.ANALYSIS).write_bytes(analysis)
    model = load_checkpoint(source)
    hyper_fused = cv.convert(cv.hyper_synthesis_fn(model), model, z_hats, int8_only=True)
    hyper = cv.unfuse_transpose_conv_relu(hyper_fused)
    cv.check_same_output(hyper_fused, hyper, z_hats[:2])
    (out / fmt.HYPER_SYNTHESIS).write_bytes(hyper)
    model = load_checkpoint(source)
    (out / fmt.SYNTHESIS).write_bytes(cv.convert(cv.synthesis_fn(model), model, float16=True))
    model = load_checkpoint(source)

    leftover = cv.float_ops(hyper)
    if leftover:
        raise ExportError(f"hyper_synthesis.tflite has float ops {leftover}: not deterministic")
    roles = cv.hyper_output_roles(out / fmt.HYPER_SYNTHESIS, model, z_hats[0])
    detail = tf.lite.Interpreter(model_content=hyper).get_output_details()[roles.index("indexes")]
    scale, zero_point = detail["quantization"]
    tables = entropy_tables(model, scale, zero_point)
    with open(out / fmt.ENTROPY, "wb") as f:
        np.savez_compressed(f, **tables)
    own_steps = source.step  # the checkpoint's ckpt-N
    base = train_cfg.get("base") or {}  # written by finetune and prune
    fields = {
        "widths": {
            "analysis": c.analysis, "synthesis": c.synthesis,
            "latent": c.latent, "hyper": c.hyper,
        },
        "latent_channels": c.latent,
        "hyper_channels": c.hyper,
        "downsample": 16,
        "pad_multiple": fmt.PAD_MULTIPLE,
        "scale_table": {"min": c.scale_min, "max": c.scale_max, "count": c.num_scales},
        "entropy": {"precision": PRECISION, "overflow_width": OVERFLOW_WIDTH},
        "normalisation": {"color": "rgb", "range": [0.0, 1.0]},
        "float_ops": cv.float_ops(analysis),
        "training": {
            "data": ", ".join(str(d) for d in train_cfg.get("data", [])),
            "steps": own_steps + (base["steps"] if isinstance(base.get("steps"), int) else 0),
            "lambda": c.lmbda,
            "w_bg": c.w_bg,
            "patch": train_cfg.get("patch"),
            "masks": train_cfg.get("masks", "none"),
        },
        "metrics": {},
    }
    if c.mean:
        fields["mean_scale"] = True
        fields["hyper_outputs"] = roles
    if c.lambdas:
        fields["rate_levels"] = {"lambdas": list(c.lambdas), "reference": c.reference_level}
        fields["training"]["lambda"] = list(c.lambdas)
    if base.get("run"):  # a fine-tuned or pruned run also counts its base run's steps
        fields["training"]["adapted_from"] = {**base, "adaptation_steps": own_steps}
    manifest = fmt.write_manifest(out, fields)
    # Measured with the device code on the bundle as written; the metrics are not hashed.
    eval_paths = [Path(p) for p in eval_images] if eval_images else [p for p in images[:4]]
    metrics = measure(model, out, eval_paths)
    if metrics:
        manifest = fmt.write_manifest(out, {**fields, "metrics": {"int8_rate_cost": metrics}})
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    weights_bytes = _save_weights(source, train_cfg, out) if weights else None
    return {
        "model_id": manifest["model_id"],
        "bytes": size,
        "float_ops": fields["float_ops"],
        "int8_rate_cost": metrics,
        "weights_bytes": weights_bytes,
    }


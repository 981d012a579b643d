"""Float weights rebuilt from a bundle's own files, for bundles exported without ``--weights``.

Fine-tuning, pruning and re-export need a float model (training/runs.py). A bundle exported
before ``export --weights`` existed (the shipped default 92738ee5 is one) holds only TFLite
files and tables, but they determine a float model closely:

- g_s is stored as float16 in ``synthesis.tflite``: its weights come back exactly (GDN's beta
  and gamma too, as the values the layer computes).
- g_a, h_a and h_s are int8 with per-channel scales: dequantised, they give the float model
  the int8 graphs approximate (within one quantisation step per weight).
- The hyperprior of z is only in ``entropy.npz`` as range-coder tables: its density is refit
  to those tables (cross-entropy over the tabled values). Site bundles keep the base bundle's
  tables (training/sitebundle.py), so the refit only shapes the z rate term while fine-tuning.
- A variable-rate bundle's level steps are stored as integers and come back exactly.

The layers are matched to the TFLite ops in execution order (the architecture of
training/model.py), and every shape is checked; a graph that does not fit is refused.

Example:
    >>> model = recover(Path("device/models/default"))                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from device.codec import bundle as fmt
from training.convert import ExportError
from training.model import HyperpriorCodec, ModelConfig, build_model, save_weights
from training.runs import TRAIN_CONFIG, WEIGHTS_FILE, WEIGHTS_FOLDER

log = logging.getLogger(__name__)

#: TFLite ops that carry a layer's weights, in the order the layers run.
WEIGHT_OPS = ("CONV_2D", "TRANSPOSE_CONV")


def config_of(manifest: dict) -> ModelConfig:
    """The model config a bundle's manifest describes (ModelConfig's defaults for what an
    older manifest leaves out)."""
    widths, scales = manifest["widths"], manifest["scale_table"]
    training = manifest.get("training") or {}
    levels = manifest.get("rate_levels") or {}
    optional = {}
    if isinstance(training.get("lambda"), float | int):
        optional["lmbda"] = float(training["lambda"])
    if "w_bg" in training:
        optional["w_bg"] = float(training["w_bg"])
    config = ModelConfig(
        analysis=widths["analysis"], synthesis=widths["synthesis"],
        latent=manifest["latent_channels"], hyper=manifest["hyper_channels"],
        num_scales=scales["count"], scale_min=scales["min"], scale_max=scales["max"],
        lambdas=tuple(levels.get("lambdas") or ()),
        mean=bool(manifest.get("mean_scale", False)), **optional,
    )
    # A variable-rate manifest lists every level's lambda: lmbda is the reference level's.
    return replace(config, lmbda=config.levels[config.reference_level])


def _layers(path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None, str]]:
    """[(op, float kernel as stored [out, kh, kw, in], float bias or None, kernel's tensor
    name)] in run order."""
    interpreter = tf.lite.Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 (the only op-level view in TF 2.14)
    # float16 weights reach the ops through DEQUANTIZE: map its output to the stored constant.
    source = {o["outputs"][0]: o["inputs"][0] for o in ops if o["op_name"] == "DEQUANTIZE"
              and tensors[o["inputs"][0]]["dtype"] == np.float16}

    def value(index: int) -> np.ndarray:
        t = tensors[source.get(index, index)]
        data = interpreter.get_tensor(t["index"]).astype(np.float64)
        q = t["quantization_parameters"]
        if t["dtype"] in (np.int8, np.int32) and len(q["scales"]):
            shape = [-1 if a == q["quantized_dimension"] else 1 for a in range(data.ndim)]
            scales = q["scales"].reshape(shape) if data.ndim else q["scales"][0]
            data = (data - q["zero_points"].reshape(shape if data.ndim else ())) * scales
        return data.astype(np.float32)

    found = []
    for o in ops:
        if o["op_name"] not in WEIGHT_OPS:
            continue
        ins = list(o["inputs"])
        kernel, bias = (ins[1], ins[3] if len(ins) > 3 else -1) if o["op_name"] == "TRANSPOSE_CONV" \
            else (ins[1], ins[2] if len(ins) > 2 else -1)
        found.append((o["op_name"], value(kernel), None if bias < 0 else value(bias),
                      tensors[source.get(kernel, kernel)]["name"]))
    return found


def _set_conv(layer, op: str, kernel: np.ndarray, bias) -> None:
    """Keras Conv2D [kh, kw, in, out] / Conv2DTranspose [kh, kw, out, in] from TFLite's
    [out, kh, kw, in]."""
    order = (1, 2, 3, 0) if op == "CONV_2D" else (1, 2, 0, 3)
    value = kernel.transpose(order)
    _assign(layer.kernel, value, layer.name)
    if layer.use_bias:
        _assign(layer.bias, np.zeros(value.shape[-1 if op == "CONV_2D" else -2], np.float32)
                if bias is None else bias, layer.name)


def _set_gdn(layer, kernel: np.ndarray, bias: np.ndarray) -> None:
    """GDN norm_i = beta_i + sum_j gamma_ji |x_j|: the 1x1 conv [out, 1, 1, in] is gamma^T."""
    for parameter, wanted in ((layer.beta_parameter, bias),
                              (layer.gamma_parameter, kernel[:, 0, 0, :].T)):
        pedestal = parameter.offset**2
        floor = max(parameter.minimum, 0.0)
        _assign(parameter.variable, np.sqrt(np.maximum(wanted, floor) + pedestal), layer.name)


def _assign(variable: tf.Variable, value: np.ndarray, name: str) -> None:
    if tuple(variable.shape) != value.shape:
        raise ExportError(f"{name}: the bundle holds {value.shape}, the model wants "
                          f"{tuple(variable.shape)}: the graph does not fit training/model.py")
    variable.assign(value.astype(np.float32))


def _fill(path: Path, layers: list, kinds: list[str], found: list | None = None) -> None:
    """Assign the weight ops of `path` (`found`: its `_layers`, if already read), in order, to
    `layers` ("conv" or "gdn" each)."""
    found = _layers(path) if found is None else found
    if len(found) != len(layers):
        raise ExportError(f"{path.name} has {len(found)} weight ops, the model has "
                          f"{len(layers)} layers: not a bundle of this architecture")
    for layer, kind, (op, kernel, bias, _name) in zip(layers, kinds, found, strict=True):
        if kind == "gdn":
            _set_gdn(layer, kernel, bias)
        else:
            _set_conv(layer, op, kernel, bias)


def _hyper_synthesis_layers(model: HyperpriorCodec, path: Path, found: list) -> list:
    """h_s's layers in the op order of `found` (`_layers(path)`; the two heads of a mean-scale
    model by name)."""
    h_s = model.h_s
    if not model.config.mean:
        return [*h_s.trunk, h_s.head]
    names = [name for *_, name in found][len(h_s.trunk):]
    heads = []
    for name in names:
        if "h_s_mean2" in name:
            heads.append(h_s.mean_head)
        elif "h_s_conv2" in name:
            heads.append(h_s.head)
    if len(heads) != 2 or heads[0] is heads[1]:
        raise ExportError(f"cannot tell the h_s heads of {path} apart (weights named {names})")
    return [*h_s.trunk, *heads]


def fit_hyperprior(model: HyperpriorCodec, tables: dict, steps: int = 1500) -> float:
    """Refit the z density to the bundle's z tables; returns the mean KL (bits per symbol)."""
    cdf, offset = tables["z_cdf"].astype(np.float64), tables["z_cdf_offset"]
    length, shift = tables["z_cdf_length"], tables["z_offset"]
    width = int(length.max()) - 1  # the last cdf entry closes the overflow bin
    pmf = np.zeros((width, cdf.shape[0]))
    values = np.zeros((width, cdf.shape[0]), np.float32)
    for c in range(cdf.shape[0]):
        n = int(length[c]) - 2  # symbols in range; the last one is the overflow escape
        pmf[:n, c] = np.diff(cdf[c, : n + 1]) / float(1 << 16)
        values[:, c] = offset[c] + np.arange(width) + shift[c]
    pmf /= pmf.sum(axis=0, keepdims=True)
    target = tf.constant(pmf, tf.float32)
    x = tf.constant(values)
    prior = model.hyperprior
    optimizer = tf.keras.optimizers.Adam(0.01)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            p = tf.maximum(prior.prob(x), 1e-9)
            loss = -tf.reduce_sum(target * tf.math.log(p)) / cdf.shape[0]
        grads = tape.gradient(loss, prior.trainable_variables)
        optimizer.apply_gradients(zip(grads, prior.trainable_variables, strict=True))
        return loss

    entropy = -float(np.sum(pmf * np.log(np.maximum(pmf, 1e-12)))) / cdf.shape[0]
    for _ in range(steps):
        loss = float(step())
    return (loss - entropy) / np.log(2.0)


def recover(bundle: Path) -> tuple[HyperpriorCodec, dict]:
    """(float model, report) rebuilt from the files of `bundle`."""
    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / fmt.MANIFEST).read_text())
        with np.load(bundle / fmt.ENTROPY) as stored:
            tables = {k: stored[k] for k in stored.files}
    except FileNotFoundError as exc:
        raise ExportError(f"{bundle} is not a model bundle: {exc.filename} is missing") from None
    except (json.JSONDecodeError, ValueError, OSError) as exc:
        raise ExportError(f"{bundle} is not a readable model bundle: {exc}") from None
    try:
        config = config_of(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{bundle / fmt.MANIFEST} does not describe a model: {exc}") from None
    tf.random.set_seed(0)  # the z prior's refit starts from its initial values: the same each time
    model = build_model(config)
    g_a, h_a = model.g_a.layers, model.h_a.layers
    _fill(bundle / fmt.ANALYSIS, [*g_a, *h_a],
          ["gdn" if "gdn" in layer.name else "conv" for layer in [*g_a, *h_a]])
    _fill(bundle / fmt.SYNTHESIS, model.g_s.layers,
          ["gdn" if "gdn" in layer.name else "conv" for layer in model.g_s.layers])
    hs_ops = _layers(bundle / fmt.HYPER_SYNTHESIS)
    hs_layers = _hyper_synthesis_layers(model, bundle / fmt.HYPER_SYNTHESIS, hs_ops)
    _fill(bundle / fmt.HYPER_SYNTHESIS, hs_layers, ["conv"] * len(hs_layers), hs_ops)
    if model.rate_steps is not None:
        if "level_steps" not in tables:
            raise ExportError(f"{bundle} has rate levels but no level_steps in {fmt.ENTROPY}")
        _assign(model.rate_steps, tables["level_steps"].astype(np.float32), "level_steps")
    kl = fit_hyperprior(model, tables)
    log.info("recovered %s: z prior refit to its tables within %.4f bits/symbol", bundle, kl)
    training = manifest.get("training")
    return model, {"model_id": manifest.get("model_id"), "z_prior_kl_bits": kl,
                   "steps": (training or {}).get("steps", 0), "training": training}


def write(bundle: Path, out: Path | None = None, force: bool = False,
          eval_images: tuple[Path, ...] = ()) -> dict:
    """Recover the float weights of `bundle` into `out` (default: the bundle's checkpoint/
    folder, where finetune, prune and export look); returns a report. With `eval_images`, the
    report compares the recovered float model with the bundle's int8 pipeline per level."""
    bundle = Path(bundle)
    out = Path(out) if out is not None else bundle / WEIGHTS_FOLDER
    if (out / WEIGHTS_FILE).exists() and not force:
        raise ExportError(f"{out} already holds float weights (use --force to replace them)")
    model, report = recover(bundle)
    size = save_weights(model, out)
    train_cfg = {"recovered_from": report["model_id"], "weights_step": int(report["steps"] or 0),
                 "bundle_training": report.pop("training")}
    (out / TRAIN_CONFIG).write_text(json.dumps(train_cfg, indent=2) + "\n")
    report.update(out=str(out), bytes=size + (out / TRAIN_CONFIG).stat().st_size)
    if eval_images:
        from training.measure import measure

        report["int8_rate_cost"] = measure(model, bundle, list(eval_images))
    return report

"""Export a trained model as a bundle (docs/bundle.md): what the trap and base station run.

- ``analysis.tflite``: g_a then h_a(|y|), full-integer int8 inside (float I/O), calibrated
  on crops of the training images. Ops without an int8 kernel (GDN's division) stay float;
  they are listed in the manifest (``float_ops``).
- ``hyper_synthesis.tflite``: h_s, int8 only (int8 in, int8 out, no float op), clipped to
  [0, S-1] so the int8 range covers only valid indexes. ``entropy.npz["hs_index_lut"]`` maps
  its output q to the scale index round(scale * (q - zero_point)), clipped to [0, S). Both
  ends run it with the reference kernels (DESIGN.md, determinism rule).
- ``synthesis.tflite``: g_s in float32 with float16-stored weights, output clipped to [0, 1].
- ``entropy.npz``: TFC's range-coder tables from the entropy models rebuilt with
  ``compression=True`` (precision 16), one zero-padded row per distribution.
- ``manifest.json``: via device.codec.bundle.write_manifest (model id = sha256 prefix).

All TFLite files have dynamic height and width (``resize_tensor_input``).
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
from device.codec.tflite import quantize
from device.errors import WildlinkError
from training.data import find_images, read_image, representative_images
from training.model import CONFIG_FILE, HyperpriorCodec, load_checkpoint

log = logging.getLogger(__name__)

PRECISION = 16
OVERFLOW_WIDTH = 4


class ExportError(WildlinkError, ValueError):
    """The model cannot be exported as asked (folder not empty, no calibration data)."""


# -- TFLite conversion ----------------------------------------------------------------------
def _analysis_fn(model: HyperpriorCodec):
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image")])
    def analysis(image):
        y = model.g_a(image)
        z = model.h_a(tf.abs(y))
        return {"y": y, "z": z}

    return analysis.get_concrete_function()


def _hyper_synthesis_fn(model: HyperpriorCodec):
    c = model.config

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, c.hyper], tf.float32, name="z_hat")])
    def hyper_synthesis(z_hat):
        return {"indexes": tf.clip_by_value(model.h_s(z_hat), 0.0, float(c.num_scales - 1))}

    return hyper_synthesis.get_concrete_function()


def _synthesis_fn(model: HyperpriorCodec):
    c = model.config

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, c.latent], tf.float32, name="y_hat")])
    def synthesis(y_hat):
        return {"x_hat": tf.clip_by_value(model.g_s(y_hat), 0.0, 1.0)}

    return synthesis.get_concrete_function()


def _convert(fn, model, representative=None, int8_only=False, float16=False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if float16:  # weights stored as float16, computed in float32: half the file
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([r] for r in representative)
        if int8_only:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
    return converter.convert()


def unfuse_transpose_conv_relu(tflite: bytes) -> bytes:
    """Make int8 TRANSPOSE_CONV ops loadable by tflite-runtime 2.14's reference kernels.

    The converter fuses ReLU into TRANSPOSE_CONV (op version 4), which the 2.14 reference
    resolver does not register (it stops at version 3). For an int8 output whose zero point is
    -128 the fused ReLU is a no-op: the kernel's saturation at -128 already clamps at real
    zero. So the activation is dropped and the version set to 3, bit-identical by construction
    (and checked against the unpatched model in tests/test_training.py).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    codes = [
        i for i, c in enumerate(model.operatorCodes)
        if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.TRANSPOSE_CONV
    ]  # fmt: skip
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.opcodeIndex not in codes:
                continue
            options = op.builtinOptions
            act = getattr(options, "fusedActivationFunction", schema.ActivationFunctionType.NONE)
            if act == schema.ActivationFunctionType.NONE:
                continue
            out = graph.tensors[op.outputs[0]]
            zero = out.quantization.zeroPoint if out.quantization is not None else None
            if act != schema.ActivationFunctionType.RELU or zero is None or list(zero) != [-128]:
                raise ExportError("cannot unfuse a TRANSPOSE_CONV activation exactly")
            options.fusedActivationFunction = schema.ActivationFunctionType.NONE
    for i in codes:
        model.operatorCodes[i].version = min(model.operatorCodes[i].version, 3)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _check_same_output(original: bytes, patched: bytes, inputs) -> None:
    """The patched hyper-synthesis must give the very integers of the converter's model."""
    for z_hat in inputs:
        outs = []
        for content in (original, patched):
            interp = tf.lite.Interpreter(model_content=content)
            inp = interp.get_input_details()[0]
            interp.resize_tensor_input(inp["index"], list(z_hat.shape))
            interp.allocate_tensors()
            scale, zero = inp["quantization"]
            q = np.clip(np.round(z_hat / np.float32(scale)) + zero, -128, 127).astype(np.int8)
            interp.set_tensor(inp["index"], q)
            interp.invoke()
            outs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
        if not np.array_equal(*outs):
            raise ExportError("unfusing TRANSPOSE_CONV's ReLU changed the hyper-synthesis output")


def float_ops(tflite: bytes) -> list[str]:
    """Names of ops that compute in float (other than the float I/O's QUANTIZE/DEQUANTIZE)."""
    interp = tf.lite.Interpreter(model_content=tflite)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    names = set()
    for op in interp._get_ops_details():  # noqa: SLF001 (the only op-level view in TF 2.14)
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        dtypes = [details[i]["dtype"] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(d == np.float32 for d in dtypes):
            names.add(op["op_name"])
    return sorted(names)


# -- entropy tables -------------------------------------------------------------------------
def _split_tfc_cdf(flat: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """TFC 2.14 stores all CDFs in one vector, each row led by -precision: split and pad."""
    flat = np.asarray(flat, np.int64)
    starts = np.flatnonzero(flat == -PRECISION)
    if len(starts) != count:
        raise ExportError(f"expected {count} CDFs in the TFC table, found {len(starts)}")
    ends = list(starts[1:]) + [len(flat)]
    rows = [flat[s + 1 : e] for s, e in zip(starts, ends, strict=True)]
    lengths = np.array([len(r) for r in rows], np.int32)
    table = np.zeros((count, lengths.max()), np.int32)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    return table, lengths


def entropy_tables(model: HyperpriorCodec, hs_scale: float, hs_zero_point: int) -> dict:
    """The arrays of entropy.npz (docs/bundle.md)."""
    c = model.config
    y_model, z_model = model.entropy_models(compression=True, precision=PRECISION)
    y_cdf, y_len = _split_tfc_cdf(y_model.cdf.numpy(), c.num_scales)
    z_cdf, z_len = _split_tfc_cdf(z_model.cdf.numpy(), c.hyper)
    offset = z_model.quantization_offset
    z_offset = np.zeros(c.hyper, np.float32) if offset is None else offset.numpy()
    return {
        "y_cdf": y_cdf,
        "y_cdf_offset": y_model.cdf_offset.numpy().astype(np.int32),
        "y_cdf_length": y_len,
        "z_cdf": z_cdf,
        "z_cdf_offset": z_model.cdf_offset.numpy().astype(np.int32),
        "z_cdf_length": z_len,
        "z_offset": np.asarray(z_offset, np.float32).reshape(c.hyper),
        "hs_index_lut": index_lut(hs_scale, hs_zero_point, c.num_scales),
        "scale_table": np.exp(np.log(c.scale_min) + c.scale_step * np.arange(c.num_scales)),
    }


def index_lut(scale: float, zero_point: int, num_scales: int) -> np.ndarray:
    """int8 output q of h_s -> scale index: floor(scale * (q - zp) + 1/2) clipped to [0, S)."""
    q = np.arange(-128, 128, dtype=np.float64)
    index = np.floor(np.float64(scale) * (q - zero_point) + 0.5)
    return np.clip(index, 0, num_scales - 1).astype(np.int32)


# -- running the exported files -------------------------------------------------------------
def reference_interpreter(tflite: bytes | str | Path):
    """An interpreter with the reference kernels (tflite-runtime if present, else tf.lite)."""
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - the train extra may lack tflite-runtime
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF}
    if isinstance(tflite, bytes):
        return Interpreter(model_content=tflite, **kwargs)
    return Interpreter(model_path=str(tflite), **kwargs)


def run_hyper_synthesis(interp, z_hat: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Scale indexes [1, 4h, 4w, M] int32 from z_hat [1, h, w, Cz], as docs/bundle.md says."""
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(z_hat.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], quantize(z_hat, inp))  # the trap's own quantisation
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    return lut[out.astype(np.int32) + 128]


def run_analysis(interp, image: np.ndarray, latent: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, z) float from analysis.tflite for image [1, H, W, 3] in [0, 1]."""
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(image.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], image.astype(np.float32))
    interp.invoke()
    outs = [interp.get_tensor(o["index"]) for o in interp.get_output_details()]
    y = next(o for o in outs if o.shape[-1] == latent and o.shape[1] * 16 == image.shape[1])
    z = next(o for o in outs if o is not y)
    return y.astype(np.float32), z.astype(np.float32)


def _pad64(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    ph, pw = -h % 64, -w % 64
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def measure(model: HyperpriorCodec, folder: Path, images: list[Path]) -> dict:
    """Bytes with float vs int8 h_s (same y, z), and end-to-end int8-encoder bpp and PSNR."""
    c = model.config
    y_model, z_model = model.entropy_models(compression=True, precision=PRECISION)
    tables = dict(np.load(folder / fmt.ENTROPY))
    hs = reference_interpreter(folder / fmt.HYPER_SYNTHESIS)
    ga = tf.lite.Interpreter(model_path=str(folder / fmt.ANALYSIS))
    totals = {"bytes_float": 0, "bytes_int8": 0, "bytes_e2e": 0, "pixels": 0, "sse": 0.0}
    totals["sse_float"] = 0.0
    used = 0
    for path in images:
        try:
            image = read_image(path)
        except (OSError, ValueError, SyntaxError):
            continue
        used += 1
        x = _pad64(image.astype(np.float32) / 255.0)[None]
        y = model.g_a(x)
        z = model.h_a(tf.abs(y))
        z_hat = z_model.quantize(z)
        z_bytes = len(z_model.compress(z).numpy()[0])
        idx_float = tf.round(tf.clip_by_value(model.h_s(z_hat), 0.0, c.num_scales - 1.0))
        idx_int8 = run_hyper_synthesis(hs, z_hat.numpy(), tables["hs_index_lut"])
        totals["bytes_float"] += z_bytes + len(y_model.compress(y, idx_float).numpy()[0])
        totals["bytes_int8"] += z_bytes + len(y_model.compress(y, idx_int8).numpy()[0])
        # What the trap sends: int8 analysis, int8 h_s; decoded by float g_s.
        y8, z8 = run_analysis(ga, x, c.latent)
        z8_hat = z_model.quantize(z8)
        idx8 = run_hyper_synthesis(hs, z8_hat.numpy(), tables["hs_index_lut"])
        totals["bytes_e2e"] += len(z_model.compress(z8).numpy()[0])
        totals["bytes_e2e"] += len(y_model.compress(y8, idx8).numpy()[0])
        x_hat = np.clip(model.g_s(tf.round(y8)).numpy(), 0, 1)[0, : image.shape[0], : image.shape[1]]
        totals["sse"] += float(np.sum((x_hat * 255.0 - image.astype(np.float32)) ** 2))
        x_float = np.clip(model.g_s(tf.round(y)).numpy(), 0, 1)[0, : image.shape[0], : image.shape[1]]
        totals["sse_float"] += float(np.sum((x_float * 255.0 - image.astype(np.float32)) ** 2))
        totals["pixels"] += image.shape[0] * image.shape[1]
    if not used:
        return {}
    mse = totals["sse"] / (3 * totals["pixels"])
    mse_float = totals["sse_float"] / (3 * totals["pixels"])
    return {
        "images": used,
        "bytes_float": totals["bytes_float"],
        "bytes_int8": totals["bytes_int8"],
        "percent": 100.0 * (totals["bytes_int8"] / totals["bytes_float"] - 1.0),
        "bpp_float_pipeline": 8.0 * totals["bytes_float"] / totals["pixels"],
        "psnr_float_pipeline": float(10 * np.log10(255.0**2 / max(mse_float, 1e-12))),
        "bpp_int8_pipeline": 8.0 * totals["bytes_e2e"] / totals["pixels"],
        "psnr_int8_pipeline": float(10 * np.log10(255.0**2 / max(mse, 1e-12))),
    }


# -- the bundle -----------------------------------------------------------------------------
def export_bundle(
    source: str | Path,
    out: str | Path,
    data=None,
    calibration: int = 48,
    calibration_size: int = 256,
    eval_images=None,
    force: bool = False,
) -> dict:
    """Write the bundle of `source` (run folder or checkpoint) into `out`; returns a report."""
    with contextlib.ExitStack() as stack:
        return _export(source, out, data, calibration, calibration_size, eval_images, force, stack)


def _pin_checkpoint(source: Path, stack: contextlib.ExitStack) -> Path:
    """Copy the checkpoint `source` resolves to into a temporary run folder."""
    run = source if source.is_dir() else source.parent.parent
    prefix = tf.train.latest_checkpoint(str(run / "checkpoints")) if source.is_dir() else str(source)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wildlink-export-")))
    (tmp / "checkpoints").mkdir()
    shutil.copy(run / CONFIG_FILE, tmp / CONFIG_FILE)
    for path in Path(prefix).parent.glob(Path(prefix).name + ".*"):
        shutil.copy(path, tmp / "checkpoints" / path.name)
    return tmp / "checkpoints" / Path(prefix).name


def _export(source, out, data, calibration, calibration_size, eval_images, force, stack) -> dict:
    source, out = Path(source), Path(out)
    load_checkpoint(source)  # one-line errors for a bad source
    run = source if source.is_dir() else source.parent.parent
    # Pin the checkpoint now: a run that is still training rotates its checkpoints.
    source = _pin_checkpoint(source, stack)
    model = load_checkpoint(source)
    train_cfg = _read_json(run / "train_config.json")
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
    z_hats = [z_model.quantize(model.h_a(tf.abs(model.g_a(r)))).numpy() for r in reps]
    analysis = _convert(_analysis_fn(model), model, reps)
    (out / fmt.ANALYSIS).write_bytes(analysis)
    model = load_checkpoint(source)
    hyper_fused = _convert(_hyper_synthesis_fn(model), model, z_hats, int8_only=True)
    hyper = unfuse_transpose_conv_relu(hyper_fused)
    _check_same_output(hyper_fused, hyper, z_hats[:2])
    (out / fmt.HYPER_SYNTHESIS).write_bytes(hyper)
    model = load_checkpoint(source)
    (out / fmt.SYNTHESIS).write_bytes(_convert(_synthesis_fn(model), model, float16=True))
    model = load_checkpoint(source)

    detail = tf.lite.Interpreter(model_content=hyper).get_output_details()[0]
    scale, zero_point = detail["quantization"]
    tables = entropy_tables(model, scale, zero_point)
    with open(out / fmt.ENTROPY, "wb") as f:
        np.savez_compressed(f, **tables)

    leftover = float_ops(hyper)
    if leftover:
        raise ExportError(f"hyper_synthesis.tflite has float ops {leftover}: not deterministic")
    eval_paths = [Path(p) for p in eval_images] if eval_images else [p for p in images[:4]]
    metrics = measure(model, out, eval_paths)
    own_steps = int(source.name.rsplit("-", 1)[1])  # the checkpoint's ckpt-N
    base = train_cfg.get("base") or {}  # written by finetune and prune
    fields = {
        "widths": {
            "analysis": c.analysis, "synthesis": c.synthesis,
            "latent": c.latent, "hyper": c.hyper,
        },
        "latent_channels": c.latent,
        "hyper_channels": c.hyper,
        "downsample": 16,
        "pad_multiple": 64,
        "scale_table": {"min": c.scale_min, "max": c.scale_max, "count": c.num_scales},
        "entropy": {"precision": PRECISION, "overflow_width": OVERFLOW_WIDTH},
        "normalisation": {"color": "rgb", "range": [0.0, 1.0]},
        "float_ops": float_ops(analysis),
        "training": {
            "data": ", ".join(str(d) for d in train_cfg.get("data", [])),
            "steps": own_steps + (base["steps"] if isinstance(base.get("steps"), int) else 0),
            "lambda": c.lmbda,
            "w_bg": c.w_bg,
            "patch": train_cfg.get("patch"),
            "masks": train_cfg.get("masks", "none"),
        },
        "metrics": {"int8_rate_cost": metrics} if metrics else {},
    }  # fmt: skip
    if base.get("run"):  # a fine-tuned or pruned run also counts its base run's steps
        fields["training"]["adapted_from"] = {**base, "adaptation_steps": own_steps}
    manifest = fmt.write_manifest(out, fields)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return {
        "model_id": manifest["model_id"],
        "bytes": size,
        "float_ops": fields["float_ops"],
        "int8_rate_cost": metrics,
    }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}

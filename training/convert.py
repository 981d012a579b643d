"""TFLite conversion of the trained transforms: the three model files of a bundle.

- ``analysis.tflite``: g_a then h_a (h_a sees |y|, or y for a mean-scale model), full-integer
  int8 inside with float I/O, calibrated on crops of the training images. Ops without an
  int8 kernel (GDN's division) stay float; `float_ops` lists them for the manifest. g_a's
  last layer, the one that makes y, stays float too: an int8 y (scale ~0.13) is coarser than
  the fine levels' quantisation steps (~0.12) and moved their rate by up to 21 %. So does the
  block before it (`analysis_float_layers`): each int8 activation adds rounding noise of about
  0.29 of its scale, and at the finest level that noise reached 0.17 of a step in y (11 % of
  the symbols flipped, -0.13 dB); a float last block cuts it to 0.13 (-27 %) for 15 % of g_a's
  MACs. y need not be bit-exact across machines (only h_s's indexes must be), so float layers
  there are safe.
- ``hyper_synthesis.tflite``: h_s, int8 only (int8 in, int8 out, no float op), the index head
  clipped to [0, S-1] so its int8 range covers only valid indexes. A mean-scale model has a
  second int8 head, the mean of y; `hyper_output_roles` tells the heads apart for the
  manifest. Both ends run it in exact integers (device/codec/exact_int8.py).
- ``synthesis.tflite``: g_s in float32 with float16-stored weights, output clipped to [0, 1].

All files have dynamic height and width (the device calls ``resize_tensor_input``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from device.codec.tflite import TFLiteModel, dequantize, quantize
from device.errors import WildlinkError
from training.model import HyperpriorCodec


class ExportError(WildlinkError, ValueError):
    """The model cannot be exported as asked (folder not empty, no calibration data)."""


def analysis_fn(model: HyperpriorCodec):
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image")])
    def analysis(image):
        y = model.g_a(image)
        z = model.h_a(y if model.config.mean else tf.abs(y))
        return {"y": y, "z": z}

    return analysis.get_concrete_function()


def hyper_heads(model: HyperpriorCodec, z_hat) -> dict:
    """{"indexes": clipped scale indexes[, "means": mean of y]}: what hyper_synthesis.tflite
    computes, in float."""
    c = model.config
    out = model.h_s(z_hat)
    indexes, means = out if c.mean else (out, None)
    heads = {"indexes": tf.clip_by_value(indexes, 0.0, float(c.num_scales - 1))}
    if means is not None:
        heads["means"] = means
    return heads


def hyper_synthesis_fn(model: HyperpriorCodec):
    c = model.config

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, c.hyper], tf.float32, name="z_hat")])
    def hyper_synthesis(z_hat):
        return hyper_heads(model, z_hat)

    return hyper_synthesis.get_concrete_function()


def synthesis_fn(model: HyperpriorCodec):
    c = model.config

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, c.latent], tf.float32, name="y_hat")])
    def synthesis(y_hat):
        return {"x_hat": tf.clip_by_value(model.g_s(y_hat), 0.0, 1.0)}

    return synthesis.get_concrete_function()


def analysis_float_layers(model: HyperpriorCodec) -> tuple[str, ...]:
    """The layers of g_a's last block (conv, GDN) before the conv that makes y: they stay
    float in analysis.tflite (see the module doc)."""
    return tuple(f"{model.g_a.name}/{layer.name}" for layer in model.g_a.layers[-3:-1])


def convert(fn, model, representative=None, int8_only=False, float16=False,
            float_outputs: tuple[str, ...] = (), float_layers: tuple[str, ...] = ()) -> bytes:
    """One concrete function -> TFLite bytes (int8 with a representative set, else float).

    float_outputs: names of outputs whose producing op stays float in an int8 conversion;
    float_layers: Keras layer paths ("g_a/g_a_gdn2") all of whose ops stay float (TFLite's
    selective quantisation, through its QuantizationDebugger).
    """
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
    if float_outputs or float_layers:
        return _keep_float(converter, representative, sorted(fn.structured_outputs),
                           float_outputs, float_layers)
    return converter.convert()


def _keep_float(converter, representative, names: list[str], keep: tuple[str, ...],
                layers: tuple[str, ...]) -> bytes:
    """Quantise all but the ops that produce the outputs `keep` (`names`: all outputs, in
    the file's order, which is tf.nest's sorted keys) and the ops of `layers` (an op's tensor
    is named after the layer path first, then the constants fused into it)."""
    missing = [o for o in keep if o not in names]
    if missing:
        raise ExportError(f"no output {missing} to keep float (outputs: {names})")
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([r] for r in representative[:1]),
    )
    calibrated = tf.lite.Interpreter(model_content=debugger.calibrated_model)
    outputs = calibrated.get_output_details()
    deny = [outputs[names.index(o)]["name"] for o in keep]
    tensors = [t["name"] for t in calibrated.get_tensor_details()]
    for layer in layers:
        found = [t for t in tensors if t.startswith(f"{layer}/")]
        if not found:
            raise ExportError(f"no op of layer {layer} to keep float")
        deny += [t for t in found if t not in deny]
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny)
    return debugger.get_nondebug_quantized_model()


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
    ]
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


def _run_reference(path, z_hat: np.ndarray) -> tuple[list[np.ndarray], list[dict]]:
    """(outputs as stored, their details) of the exported int8 h_s, run by the device's own
    reference-kernel interpreter."""
    hs = TFLiteModel(path, reference=True)
    return hs.run_raw(quantize(z_hat, hs.inputs[0])), hs.outputs


def check_same_output(original: bytes, patched: bytes, inputs) -> None:
    """The patched hyper-synthesis must give the very integers of the converter's model
    (TensorFlow's interpreter: only it has the fused op that tflite-runtime lacks)."""
    for z_hat in inputs:
        outs = []
        for content in (original, patched):
            interp = tf.lite.Interpreter(model_content=content)
            inp = interp.get_input_details()[0]
            interp.resize_tensor_input(inp["index"], list(z_hat.shape))
            interp.allocate_tensors()
            interp.set_tensor(inp["index"], quantize(z_hat, inp))
            interp.invoke()
            outs.append([interp.get_tensor(d["index"]) for d in interp.get_output_details()])
        if any(not np.array_equal(a, b) for a, b in zip(*outs, strict=True)):
            raise ExportError("unfusing TRANSPOSE_CONV's ReLU changed the hyper-synthesis output")


def hyper_output_roles(path, model: HyperpriorCodec, z_hat: np.ndarray) -> list[str]:
    """The role ("indexes" or "means") of each output of hyper_synthesis.tflite, in the
    file's order: each int8 head is matched to the float head it is closest to (the
    converter's output order is not part of its contract)."""
    outs, details = _run_reference(path, z_hat)
    heads = {k: v.numpy() for k, v in hyper_heads(model, tf.constant(z_hat)).items()}
    if len(outs) != len(heads):
        raise ExportError(f"hyper_synthesis.tflite has {len(outs)} outputs, not {len(heads)}")
    if len(heads) == 1:
        return ["indexes"]
    err = [[float(np.mean(np.abs(dequantize(o, d) - h))) for h in heads.values()]
           for o, d in zip(outs, details, strict=True)]
    first = int(np.argmin(err[0]))
    roles = [list(heads)[first], list(heads)[1 - first]]
    if err[0][first] >= err[0][1 - first] or err[1][1 - first] >= err[1][first]:
        raise ExportError("cannot tell the int8 h_s heads apart (indexes vs means)")
    return roles


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

"""The int8 hyper-synthesis h_s in exact integer arithmetic (numpy), on any CPU and any build.

Scale indexes must be bit-identical on the trap and the base (DESIGN.md, determinism rule).
TFLite's optimized kernels disagree with its reference kernels on x86, the reference kernels
cost ~1 s per frame on the trap, and TFLite's requantisation rounding is a compile-time choice
(`TFLITE_SINGLE_ROUNDING`). This module runs the same `hyper_synthesis.tflite` without TFLite:

- weights, biases, scales and zero points come from the file (device/codec/tflite_flatbuffer.py);
- a convolution's sum of int8 products (q - zero point) * w is an integer below 2^31 (checked
  when the model loads, from the weights), so a float64 matrix product gives it exactly
  (BLAS, any summation order, any CPU: every partial sum is an integer below 2^53);
- requantisation is integer arithmetic under ONE rule, `multiply_by_quantized_multiplier`:
  TFLite 2.14's `MultiplyByQuantizedMultiplier` as its default build compiles it (gemmlowp
  double rounding, TFLITE_SINGLE_ROUNDING off), which is what tflite-runtime 2.14's reference
  kernels computed for every container sent so far (tests/test_exact_int8.py checks it).

Ops: TRANSPOSE_CONV, CONV_2D (fused ReLU/ReLU6 or none), RELU, RELU6, MINIMUM, MAXIMUM,
QUANTIZE, DEQUANTIZE, and the int32 shape ops the converter emits for dynamic sizes (SHAPE,
STRIDED_SLICE, MUL, ADD, PACK). The graph runs in file order, every tensor kept by index, so
any number of output heads work: `run_raw` returns all graph outputs in the file's order
(int8 heads as int8, a DEQUANTIZE head as float32), e.g. a mean-scale h_s's `h_s_mean2`.

Example:
    >>> h_s = ExactInt8Model("device/models/default/hyper_synthesis.tflite")  # doctest: +SKIP
    >>> (q,) = h_s.run_raw(z_int8)          # int8 [1, 4h, 4w, M], as the reference kernels
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from device.codec.tflite_flatbuffer import Graph, Op, Tensor, read_graph
from device.errors import BundleError

__all__ = ["ExactInt8Model", "multiply_by_quantized_multiplier", "quantize_multiplier"]

INT32_MAX = 2**31 - 1
#: Integers below this are exact in float32 (24-bit significand); float64 holds 2^53.
FLOAT32_EXACT = 2**24
#: schema.fbs ActivationFunctionType -> real-valued clamp range (None: none).
ACTIVATIONS = {0: (None, None), 1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
#: Int32 shape arithmetic the converter emits around TRANSPOSE_CONV's output shape.
SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "MUL", "ADD", "PACK")
SUPPORTED = SHAPE_OPS + ("TRANSPOSE_CONV", "CONV_2D", "RELU", "RELU6", "MINIMUM", "MAXIMUM",
                         "QUANTIZE", "DEQUANTIZE")


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real multiplier -> (q, shift), real ~ q * 2^(shift - 31), q in [2^30, 2^31).

    TFLite's QuantizeMultiplier (quantization_util.cc): frexp, q = round(f * 2^31) half away
    from zero, q = 2^31 renormalised, shifts below -31 flush to zero.
    """
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    q = int(math.floor(fraction * 2**31 + 0.5))  # exact: fraction * 2^31 < 2^31, ulp 2^-22
    if q == 2**31:
        q, shift = q // 2, shift + 1
    if shift < -31:
        return 0, 0
    return q, shift


def multiply_by_quantized_multiplier(x: np.ndarray, q, shift) -> np.ndarray:
    """x * q * 2^(shift - 31) rounded in integers: THE requantisation rule of the format.

    TFLite 2.14 `MultiplyByQuantizedMultiplier` as its default build compiles it (gemmlowp
    double rounding; TFLITE_SINGLE_ROUNDING off), common.cc:
        left = max(shift, 0), right = max(-shift, 0)
        h = SaturatingRoundingDoublingHighMul(x * 2^left, q)
          = trunc((p + nudge) / 2^31), p = x 2^left q, nudge = 2^30 if p >= 0 else 1 - 2^30
          = floor((p + 2^30) / 2^31)                       (both signs: round half up)
        out = RoundingDivideByPOT(h, right)
            = (h >> right) + (h & m > (m >> 1) + [h < 0]),  m = 2^right - 1
            = (h + 2^(right-1) - [h < 0]) >> right  if right > 0, else h  (half away from 0)
    x: int64 values in int32 range (the caller proves it); q, shift broadcast against x.
    Returns int64; every step is int64 arithmetic (|p| < 2^62), exact on every CPU.
    tests/test_exact_int8.py checks the two closed forms against the literal definitions.
    """
    shift = np.asarray(shift, np.int64)
    x = np.asarray(x, np.int64)
    if np.any(shift > 0):
        x = x << np.maximum(shift, 0)
    h = x * np.asarray(q, np.int64)
    h += 1 << 30
    h >>= 31
    right = np.maximum(-shift, 0)
    half = np.where(right > 0, (np.int64(1) << right) >> 1, 0)
    h += half
    h -= (h < half) & (right > 0)  # h < 0 before adding half
    h >>= right
    return h


def _round_half_away(x) -> np.ndarray:
    """std::round / TfLiteRound: halves away from zero (np.round rounds halves to even)."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


class ExactInt8Model:
    """An int8 TFLite graph run in exact integer arithmetic, with TFLiteModel's interface.

    `inputs` / `outputs` give each tensor's name, shape, dtype and (scale, zero point) the way
    `TFLiteModel` does, so `device.codec.tflite.quantize` and `latents.hyper_indexes` take
    either; a TFLiteModel with `reference=True` stays the test oracle.

    Raises BundleError when the file has an op outside `SUPPORTED`, a float op, or weights
    whose int32 accumulator could overflow (then no integer rule could match TFLite).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.graph: Graph = read_graph(self.path)
        unsupported = sorted({op.name for op in self.graph.ops} - set(SUPPORTED))
        if unsupported:
            raise BundleError(
                f"{self.path.name} has ops {', '.join(unsupported)}: the exact integer "
                f"h_s runs only {', '.join(SUPPORTED)}"
            )
        for op in self.graph.ops:  # float only where DEQUANTIZE leaves int8 or QUANTIZE enters
            floats = [i for i in op.inputs + op.outputs if i >= 0
                      and self.graph.tensors[i].dtype in (np.float32, np.float16)]
            allowed = {"DEQUANTIZE": op.outputs, "QUANTIZE": op.inputs}.get(op.name, ())
            if any(i not in allowed for i in floats):
                raise BundleError(f"{self.path.name} has a float {op.name}: not an int8 graph")
        self._layers = {id(op): self._prepare_conv(op) for op in self.graph.ops
                        if op.name in ("TRANSPOSE_CONV", "CONV_2D")}
        self._tables: dict[int, np.ndarray] = {}

    @property
    def inputs(self) -> list[dict]:
        return [self._detail(i) for i in self.graph.inputs]

    @property
    def outputs(self) -> list[dict]:
        return [self._detail(i) for i in self.graph.outputs]

    def _detail(self, index: int) -> dict:
        t = self.graph.tensors[index]
        quant = (float(t.scale[0]), int(t.zero_point[0])) if len(t.scale) else (0.0, 0)
        return {"name": t.name, "index": index, "shape": np.array(t.shape), "dtype": t.dtype,
                "quantization": quant}

    def run_raw(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Feed arrays in each input's dtype; all graph outputs, in the file's order."""
        if len(arrays) != len(self.graph.inputs):
            raise BundleError(
                f"{self.path.name} takes {len(self.graph.inputs)} inputs, not {len(arrays)}"
            )
        values: dict[int, np.ndarray] = {}
        for index, array in zip(self.graph.inputs, arrays, strict=True):
            t = self.graph.tensors[index]
            array = np.asarray(array)
            if array.dtype != t.dtype or len(array.shape) != len(t.shape):
                raise BundleError(
                    f"{self.path.name} input {t.name} takes {np.dtype(t.dtype).name} of rank "
                    f"{len(t.shape)}, not {array.dtype} {array.shape}"
                )
            values[index] = array
        for op in self.graph.ops:
            args = [None if i < 0 else self._value(values, i) for i in op.inputs]
            values[op.outputs[0]] = self._run_op(op, args)
        return [values[i].copy() for i in self.graph.outputs]

    def _value(self, values: dict, index: int) -> np.ndarray:
        if index in values:
            return values[index]
        data = self.graph.tensors[index].data
        if data is None:
            raise BundleError(f"{self.path.name}: tensor {index} is read before it is computed")
        return data

    # -- ops ------------------------------------------------------------------------------
    def _run_op(self, op: Op, args: list) -> np.ndarray:
        out = self.graph.tensors[op.outputs[0]]
        if op.name in SHAPE_OPS:
            return _shape_op(op, args)
        if op.name in ("TRANSPOSE_CONV", "CONV_2D"):
            return self._conv(op, args)
        first = self.graph.tensors[op.inputs[0]]
        if op.name in ("MINIMUM", "MAXIMUM"):
            others = [self.graph.tensors[i] for i in op.inputs] + [out]
            if any(not _same_quant(first, t) for t in others):
                raise BundleError(f"{self.path.name}: {op.name} with mixed quantisation")
            fn = np.minimum if op.name == "MINIMUM" else np.maximum
            return fn(args[0], args[1]).astype(out.dtype)
        if op.name in ("RELU", "RELU6"):
            return self._relu(op, args[0], first, out)
        if op.name == "DEQUANTIZE":  # reference Dequantize: float(double(scale) * (q - zp))
            scale, zero = float(first.scale[0]), int(first.zero_point[0])
            return (np.float64(scale) * (args[0].astype(np.int64) - zero)).astype(np.float32)
        if op.name == "QUANTIZE":
            return self._quantize(args[0], first, out)
        raise BundleError(f"{self.path.name}: op {op.name} is not supported")  # pragma: no cover

    def _relu(self, op: Op, x: np.ndarray, first: Tensor, out: Tensor) -> np.ndarray:
        """QuantizedReluX (activations.cc): requantise to the output's scale, then clamp.

        The int8 input has 256 values: the op is a table, built once per op.
        """
        table = self._tables.get(id(op))
        if table is None:
            in_scale, out_scale = np.float32(first.scale[0]), np.float32(out.scale[0])
            q, shift = quantize_multiplier(float(in_scale / out_scale))  # float32 division there
            zero = int(out.zero_point[0])
            high = 127
            if op.name == "RELU6":
                high = min(127, zero + int(_round_half_away(np.float32(6.0) / out_scale)))
            levels = np.arange(-128, 128, dtype=np.int64) - int(first.zero_point[0])
            value = zero + multiply_by_quantized_multiplier(levels, q, shift)
            table = self._tables[id(op)] = np.clip(value, max(-128, zero), high).astype(np.int8)
        return table[x.astype(np.int16) + 128]

    def _quantize(self, x: np.ndarray, first: Tensor, out: Tensor) -> np.ndarray:
        """QUANTIZE: float -> int8 (AffineQuantize), or int8 -> int8 (Requantize)."""
        zero = int(out.zero_point[0])
        if first.dtype == np.float32:
            q = _round_half_away(x.astype(np.float64) / np.float64(out.scale[0])) + zero
        else:
            ratio = np.float64(first.scale[0]) / np.float64(out.scale[0])
            m, shift = quantize_multiplier(float(ratio))
            q = zero + multiply_by_quantized_multiplier(
                x.astype(np.int64) - int(first.zero_point[0]), m, shift)
        info = np.iinfo(out.dtype)
        return np.clip(q, info.min, info.max).astype(out.dtype)

    def _prepare_conv(self, op: Op) -> dict:
        """Per-channel multipliers, the activation clamp, and the int32 overflow proof."""
        tensors = self.graph.tensors
        if op.name == "TRANSPOSE_CONV":
            w_index, x_index = op.inputs[1], op.inputs[2]
            b_index = op.inputs[3] if len(op.inputs) > 3 else -1
        else:
            x_index, w_index = op.inputs[0], op.inputs[1]
            b_index = op.inputs[2] if len(op.inputs) > 2 else -1
        x, w, out = tensors[x_index], tensors[w_index], tensors[op.outputs[0]]
        if x.dtype != np.int8 or w.dtype != np.int8 or out.dtype != np.int8 or w.data is None:
            raise BundleError(f"{self.path.name}: {op.name} must be int8 with constant weights")
        if np.any(w.zero_point != 0) or w.quantized_dimension != 0:
            raise BundleError(f"{self.path.name}: {op.name} weights must be symmetric per channel")
        channels = w.data.shape[0]
        bias = np.zeros(channels, np.int64)
        if b_index >= 0:
            if tensors[b_index].data is None or tensors[b_index].dtype != np.int32:
                raise BundleError(f"{self.path.name}: {op.name} bias must be constant int32")
            bias = tensors[b_index].data.astype(np.int64)
        scales = np.broadcast_to(w.scale, (channels,))
        # PopulateConvolutionQuantizationParams: double(s_in) * double(s_w) / double(s_out).
        s_in, s_out = np.float64(x.scale[0]), np.float64(out.scale[0])
        pairs = [quantize_multiplier(float(s_in * np.float64(s) / s_out)) for s in scales]
        q = np.array([p[0] for p in pairs], np.int64)
        shift = np.array([p[1] for p in pairs], np.int64)
        # |(q_in - zp) * w| <= 255 |w|: the largest accumulator any int8 input can produce.
        bound = 255 * np.abs(w.data.astype(np.int64)).reshape(channels, -1).sum(1) + np.abs(bias)
        if np.any(bound << np.maximum(shift, 0) > INT32_MAX):
            raise BundleError(f"{self.path.name}: {op.name} {out.name} could overflow int32")
        act = op.options.get("activation", 0)
        if act not in ACTIVATIONS:
            raise BundleError(f"{self.path.name}: {op.name} has fused activation {act}")
        low, high = -128, 127  # CalculateActivationRangeQuantized, float32 math as there
        lo, hi = ACTIVATIONS[act]
        zero, scale = int(out.zero_point[0]), np.float32(out.scale[0])
        if lo is not None:
            low = max(low, zero + int(_round_half_away(np.float32(lo) / scale)))
        if hi is not None:
            high = min(high, zero + int(_round_half_away(np.float32(hi) / scale)))
        if op.options.get("padding", 0) not in (0, 1):
            raise BundleError(f"{self.path.name}: {op.name} has unknown padding")
        # Products of int8 values in a float matrix product: exact while every partial sum is
        # an integer the float type holds exactly. A transposed conv sums Ci products per tap
        # in the matrix product (its taps are added afterwards in int32), a conv all of them.
        per_sum = 255 * np.abs(w.data.astype(np.int64))
        if op.name == "TRANSPOSE_CONV":
            per_sum = per_sum.sum(3)
        else:
            per_sum = per_sum.reshape(channels, -1).sum(1)
        dtype = np.float32 if per_sum.max() < FLOAT32_EXACT else np.float64
        # TRANSPOSE_CONV: [Ci, kh * kw * Co]; CONV_2D: [kh * kw * Ci, Co].
        kh, kw, ci = w.data.shape[1:]
        if op.name == "TRANSPOSE_CONV":
            matrix = w.data.transpose(3, 1, 2, 0).reshape(ci, kh * kw * channels)
        else:
            matrix = w.data.transpose(1, 2, 3, 0).reshape(kh * kw * ci, channels)
        return {"x_zero": int(x.zero_point[0]), "matrix": np.ascontiguousarray(matrix, dtype),
                "kernel": (kh, kw, ci, channels), "bias": bias, "q": q, "shift": shift,
                "low": low, "high": high, "out_zero": zero}

    def _conv(self, op: Op, args: list) -> np.ndarray:
        layer = self._layers[id(op)]
        o = op.options
        stride = (o["stride_h"], o["stride_w"])
        if op.name == "TRANSPOSE_CONV":
            x, out_shape = args[2], tuple(int(d) for d in args[0])
            acc = _transpose_conv(x, layer, stride, o["padding"], out_shape)
        else:
            acc = _conv2d(args[0], layer, stride, (o["dilation_h"], o["dilation_w"]), o["padding"])
        acc = acc + layer["bias"]
        value = multiply_by_quantized_multiplier(acc, layer["q"], layer["shift"])
        value += layer["out_zero"]
        return np.clip(value, layer["low"], layer["high"]).astype(np.int8)


def _same_quant(a: Tensor, b: Tensor) -> bool:
    return np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)


def _padding(size: int, out: int, stride: int, kernel: int, same: bool) -> int:
    """ComputePaddingWithOffset (padding.h): the top/left padding TFLite's kernels use."""
    if not same:
        return 0
    return max((out - 1) * stride + kernel - size, 0) // 2


def _transpose_conv(x, layer, stride, padding, out_shape) -> np.ndarray:
    """Exact int64 accumulators [n, H, W, Co] of reference_integer_ops::TransposeConv.

    One matrix product gives every (input pixel, tap, output channel) product sum; the taps are
    then scattered to their output pixels (oy = iy * stride - pad + ky) in int32.
    """
    n, h, w, ci = x.shape
    kh, kw, _, co = layer["kernel"]
    if out_shape[0] != n or out_shape[3] != co:
        raise BundleError(f"TRANSPOSE_CONV output shape {out_shape} does not match its input")
    oh, ow = out_shape[1], out_shape[2]
    same = padding == 0
    # The kernel's padding comes from the output size seen as a convolution's input.
    ph = _padding(oh, -(-oh // stride[0]), stride[0], kh, same)
    pw = _padding(ow, -(-ow // stride[1]), stride[1], kw, same)
    matrix = layer["matrix"]
    cols = x.reshape(n * h * w, ci).astype(matrix.dtype) - matrix.dtype.type(layer["x_zero"])
    parts = (cols @ matrix).astype(np.int32).reshape(n, h, w, kh, kw, co)
    full = np.zeros((n, max((h - 1) * stride[0] + kh, ph + oh),
                     max((w - 1) * stride[1] + kw, pw + ow), co), np.int32)
    for ky in range(kh):
        for kx in range(kw):
            rows = slice(ky, ky + (h - 1) * stride[0] + 1, stride[0])
            cols_ = slice(kx, kx + (w - 1) * stride[1] + 1, stride[1])
            full[:, rows, cols_] += parts[:, :, :, ky, kx]
    return full[:, ph : ph + oh, pw : pw + ow].astype(np.int64)


def _conv2d(x, layer, stride, dilation, padding) -> np.ndarray:
    """Exact int64 accumulators [n, OH, OW, Co] of reference_integer_ops::ConvPerChannel."""
    n, h, w, ci = x.shape
    kh, kw, _, co = layer["kernel"]
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    same = padding == 0
    if same:
        oh, ow = -(-h // stride[0]), -(-w // stride[1])
    else:
        oh, ow = (h - eh) // stride[0] + 1, (w - ew) // stride[1] + 1
    ph, pw = _padding(h, oh, stride[0], eh, same), _padding(w, ow, stride[1], ew, same)
    matrix = layer["matrix"]
    # Out-of-image taps contribute nothing: (q - zp) padded with zeros.
    padded = np.zeros((n, max((oh - 1) * stride[0] + eh, ph + h),
                       max((ow - 1) * stride[1] + ew, pw + w), ci), matrix.dtype)
    zero = matrix.dtype.type(layer["x_zero"])
    padded[:, ph : ph + h, pw : pw + w] = x.astype(matrix.dtype) - zero
    windows = [padded[:, ky * dilation[0] : ky * dilation[0] + (oh - 1) * stride[0] + 1 : stride[0],
                      kx * dilation[1] : kx * dilation[1] + (ow - 1) * stride[1] + 1 : stride[1]]
               for ky in range(kh) for kx in range(kw)]
    cols = np.concatenate(windows, axis=-1).reshape(n * oh * ow, kh * kw * ci)
    return (cols @ matrix).astype(np.int64).reshape(n, oh, ow, co)


def _shape_op(op: Op, args: list) -> np.ndarray:
    """The int32 arithmetic on shapes that feeds TRANSPOSE_CONV its dynamic output size."""
    if op.name == "SHAPE":
        return np.array(args[0].shape, np.int32)
    if op.name == "PACK":
        return np.stack([np.asarray(a) for a in args], axis=op.options.get("axis", 0))
    if op.name in ("MUL", "ADD"):
        a, b = (np.asarray(v) for v in args)
        if a.dtype != np.int32 or b.dtype != np.int32 or op.options.get("activation", 0):
            raise BundleError(f"{op.name} is supported on int32 shapes only")
        return (a * b if op.name == "MUL" else a + b).astype(np.int32)
    # STRIDED_SLICE with begin/end masks and shrink_axis (no ellipsis or new axes).
    data, begin, end, strides = (np.asarray(a) for a in args)
    o = op.options
    if o.get("ellipsis_mask") or o.get("new_axis_mask"):
        raise BundleError("STRIDED_SLICE with ellipsis or new axes is not supported")
    index = []
    for axis in range(len(begin)):
        if o.get("shrink_axis_mask", 0) >> axis & 1:
            index.append(int(begin[axis]))
            continue
        b = None if o.get("begin_mask", 0) >> axis & 1 else int(begin[axis])
        e = None if o.get("end_mask", 0) >> axis & 1 else int(end[axis])
        index.append(slice(b, e, int(strides[axis])))
    return np.asarray(data[tuple(index)])

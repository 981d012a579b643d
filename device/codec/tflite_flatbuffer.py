"""Read a .tflite file's graph without any TFLite build: tensors, constants, ops and options.

The exact integer hyper-synthesis (device/codec/exact_int8.py) needs the int8 weights, int32
biases, scales and zero points of every tensor, and each op's options (stride, padding, fused
activation), which no public tflite-runtime API reports. A .tflite file is a FlatBuffer with the
schema `tensorflow/lite/schema/schema.fbs`; the few tables used here are read with `struct`
(field numbers below are the schema's field order). tflite-runtime ships no generated schema
code, and the `flatbuffers` package would only save the dozen lines of offset arithmetic in
`_Table` while adding a dependency to the Pi's wheelhouse.

Example:
    >>> graph = read_graph("device/models/default/hyper_synthesis.tflite")   # doctest: +SKIP
    >>> [op.name for op in graph.ops][:2], graph.tensors[graph.inputs[0]].scale
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.errors import BundleError

#: schema.fbs `TensorType` -> numpy dtype (the types an int8 graph and its shape ops use).
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                6: np.bool_, 7: np.int16, 9: np.int8}
#: schema.fbs `BuiltinOperator` codes of the ops this reader names.
BUILTIN_OPS = {0: "ADD", 2: "CONCATENATION", 3: "CONV_2D", 6: "DEQUANTIZE", 18: "MUL",
               19: "RELU", 21: "RELU6", 22: "RESHAPE", 45: "STRIDED_SLICE", 55: "MAXIMUM",
               57: "MINIMUM", 67: "TRANSPOSE_CONV", 77: "SHAPE", 83: "PACK",
               114: "QUANTIZE"}
#: The options tables read, as {op name: ((option name, field number, struct format), ...)}.
#: schema.fbs: Conv2DOptions, TransposeConvOptions, StridedSliceOptions, PackOptions, ...
OPTION_FIELDS = {
    "CONV_2D": (("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
                ("activation", 3, "b"), ("dilation_w", 4, "i"), ("dilation_h", 5, "i")),
    "TRANSPOSE_CONV": (("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
                       ("activation", 3, "b")),
    "STRIDED_SLICE": (("begin_mask", 0, "i"), ("end_mask", 1, "i"), ("ellipsis_mask", 2, "i"),
                      ("new_axis_mask", 3, "i"), ("shrink_axis_mask", 4, "i")),
    "PACK": (("values_count", 0, "i"), ("axis", 1, "i")),
    "MUL": (("activation", 0, "b"),),
    "ADD": (("activation", 0, "b"),),
    "CONCATENATION": (("axis", 0, "i"), ("activation", 1, "b")),
}
#: Defaults schema.fbs gives fields that a writer may omit.
OPTION_DEFAULTS = {"dilation_w": 1, "dilation_h": 1}


@dataclass(frozen=True, eq=False)
class Tensor:
    """One tensor: shape (-1 for dynamic dims), dtype, quantisation, constant data or None."""

    name: str
    shape: tuple[int, ...]
    dtype: type
    scale: np.ndarray  # float32 [n] (empty when not quantised)
    zero_point: np.ndarray  # int64 [n]
    quantized_dimension: int
    data: np.ndarray | None = field(repr=False)


@dataclass(frozen=True, eq=False)
class Op:
    """One operator in execution order: its builtin name, tensor indexes and options."""

    name: str
    version: int
    inputs: tuple[int, ...]  # -1 = optional input left out
    outputs: tuple[int, ...]
    options: dict


@dataclass(frozen=True, eq=False)
class Graph:
    """The first subgraph of a .tflite model."""

    tensors: list[Tensor]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    ops: list[Op]


class _Table:
    """A FlatBuffer table at `pos` in `buf` (flatbuffers' binary format, little endian)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        size = struct.unpack_from("<H", buf, vtable)[0]
        self._fields = struct.unpack_from(f"<{(size - 4) // 2}H", buf, vtable + 4)

    def _offset(self, index: int) -> int:
        return self._fields[index] if index < len(self._fields) else 0

    def scalar(self, index: int, fmt: str, default=0):
        off = self._offset(index)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, index: int) -> int | None:
        off = self._offset(index)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, index: int) -> _Table | None:
        at = self._target(index)
        return None if at is None else _Table(self.buf, at)

    def vector(self, index: int, dtype) -> np.ndarray:
        at = self._target(index)
        if at is None:
            return np.zeros(0, dtype)
        n = struct.unpack_from("<I", self.buf, at)[0]
        return np.frombuffer(self.buf, np.dtype(dtype).newbyteorder("<"), n, at + 4)

    def tables(self, index: int) -> list[_Table]:
        at = self._target(index)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        slots = [at + 4 + 4 * i for i in range(n)]
        return [_Table(self.buf, s + struct.unpack_from("<I", self.buf, s)[0]) for s in slots]

    def string(self, index: int) -> str:
        return bytes(self.vector(index, np.uint8)).decode("utf-8", "replace")


def read_graph(path: str | Path) -> Graph:
    """Parse `path`'s first subgraph (tensors with constant data, ops in execution order)."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise BundleError(f"{path} is not a TFLite model (no TFL3 identifier)")
    try:
        return _graph(buf)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is a damaged TFLite model: {exc}") from None


def _graph(buf: bytes) -> Graph:
    # schema.fbs Model: operator_codes 1, subgraphs 2, buffers 4.
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    codes = []
    for code in model.tables(1):  # OperatorCode: deprecated_builtin_code 0, version 2, builtin 3
        number = max(code.scalar(0, "b"), code.scalar(3, "i"))
        codes.append((BUILTIN_OPS.get(number, f"builtin {number}"), code.scalar(2, "i", 1)))
    buffers = []
    for buffer in model.tables(4):  # Buffer: data 0, offset 1, size 2 (data outside the tree)
        offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")
        inline = bytes(buffer.vector(0, np.uint8))
        buffers.append(buf[offset : offset + size] if offset > 1 else inline)
    graphs = model.tables(2)
    if not graphs:
        raise ValueError("no subgraph")
    graph = graphs[0]  # SubGraph: tensors 0, inputs 1, outputs 2, operators 3
    tensors = [_tensor(t, buffers) for t in graph.tables(0)]
    ops = []
    for op in graph.tables(3):  # Operator: opcode_index 0, inputs 1, outputs 2, options 4
        name, version = codes[op.scalar(0, "I")]
        table = op.table(4)
        options = {}
        if table is not None:
            for key, number, fmt in OPTION_FIELDS.get(name, ()):
                options[key] = table.scalar(number, fmt, OPTION_DEFAULTS.get(key, 0))
        ops.append(Op(name, version, tuple(int(i) for i in op.vector(1, np.int32)),
                      tuple(int(i) for i in op.vector(2, np.int32)), options))
    return Graph(tensors, tuple(int(i) for i in graph.vector(1, np.int32)),
                 tuple(int(i) for i in graph.vector(2, np.int32)), ops)


def _tensor(t: _Table, buffers: list[bytes]) -> Tensor:
    # Tensor: shape 0, type 1, buffer 2, name 3, quantization 4, shape_signature 7.
    code = t.scalar(1, "b")
    if code not in TENSOR_TYPES:
        raise ValueError(f"tensor type {code} is not supported")
    dtype = TENSOR_TYPES[code]
    signature = t.vector(7, np.int32)
    shape = tuple(int(d) for d in (signature if len(signature) else t.vector(0, np.int32)))
    quant = t.table(4)  # QuantizationParameters: scale 2, zero_point 3, quantized_dimension 6
    scale = quant.vector(2, np.float32).copy() if quant else np.zeros(0, np.float32)
    zero = quant.vector(3, np.int64).astype(np.int64) if quant else np.zeros(0, np.int64)
    raw = buffers[t.scalar(2, "I")] if buffers else b""
    data = None
    if raw:
        data = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype)
        data = data.reshape(tuple(int(d) for d in t.vector(0, np.int32)))
    axis = quant.scalar(6, "i") if quant else 0
    return Tensor(t.string(3), shape, dtype, scale, zero, axis, data)

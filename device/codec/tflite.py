"""TFLite interpreters for the bundle's models, without TensorFlow.

tflite-runtime is tried first, then ai-edge-litert (its successor, same API). Two ways to run:

- fast (default op resolver, XNNPACK where it applies): the trap's analysis transform, whose
  output only matters after quantisation on the trap itself;
- reference (`BUILTIN_REF`): the hyper-synthesis h_s on *both* ends. DESIGN.md's determinism
  rule: the optimized int8 kernels of tflite-runtime 2.14 on x86 give other bytes than the
  reference kernels, and the scale indexes must agree bit for bit or the y stream decodes to
  garbage.

Quantisation of inputs and outputs follows each tensor's own (scale, zero point), with numpy
float32 basic ops only (docs/bundle.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.errors import BundleError


def _interpreter_module():
    """The first interpreter module found (tflite_runtime, then ai_edge_litert)."""
    try:
        from tflite_runtime import interpreter

        return interpreter
    except ImportError:
        pass
    try:
        from ai_edge_litert import interpreter

        return interpreter
    except ImportError:
        raise BundleError(
            "running the codec needs tflite-runtime (pip install 'wildlink[device]') "
            "or ai-edge-litert"
        ) from None


def backend_name() -> str:
    """Name of the interpreter package in use (for logs and benchmarks)."""
    return _interpreter_module().__name__.split(".")[0]


class TFLiteModel:
    """One .tflite model with dynamic input shape, quantising I/O as its tensors ask.

    Example:
        >>> h_s = TFLiteModel("bundle/hyper_synthesis.tflite", reference=True)  # doctest: +SKIP
        >>> (q,) = h_s.run_raw(z_int8)
    """

    def __init__(
        self,
        path: str | Path,
        reference: bool = False,
        num_threads: int | None = 1,
        interpreter_module=None,
        delegates: bool = True,
    ):
        module = interpreter_module or _interpreter_module()
        self.path = Path(path)
        self.reference = reference
        kwargs = {"num_threads": num_threads}
        if reference:
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_REF
        elif not delegates:  # optimized kernels without the default XNNPACK delegate
            resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            kwargs["experimental_op_resolver_type"] = resolver
        try:
            self._interp = module.Interpreter(model_path=str(self.path), **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"cannot load {self.path}: {exc}") from None
        self._shapes: tuple | None = None
        self._allocated = False

    @property
    def inputs(self) -> list[dict]:
        return self._interp.get_input_details()

    @property
    def outputs(self) -> list[dict]:
        return self._interp.get_output_details()

    def _prepare(self, shapes: tuple) -> None:
        if shapes == self._shapes and self._allocated:
            return
        for detail, shape in zip(self.inputs, shapes, strict=True):
            if tuple(detail["shape"]) != shape:
                self._interp.resize_tensor_input(detail["index"], list(shape), strict=False)
        self._interp.allocate_tensors()
        self._shapes, self._allocated = shapes, True

    def run_raw(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Feed arrays already in each input tensor's dtype; outputs as stored (e.g. int8)."""
        if len(arrays) != len(self.inputs):
            raise BundleError(
                f"{self.path.name} takes {len(self.inputs)} inputs, not {len(arrays)}"
            )
        self._prepare(tuple(tuple(a.shape) for a in arrays))
        for detail, array in zip(self.inputs, arrays, strict=True):
            self._interp.set_tensor(detail["index"], np.ascontiguousarray(array, detail["dtype"]))
        self._interp.invoke()
        return [self._interp.get_tensor(d["index"]).copy() for d in self.outputs]

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Feed float arrays (quantised per tensor), get float32 outputs (dequantised)."""
        fed = [quantize(a, d) for a, d in zip(arrays, self.inputs, strict=True)]
        raw = self.run_raw(*fed)
        return [dequantize(r, d) for r, d in zip(raw, self.outputs, strict=True)]


def quantize(array: np.ndarray, detail: dict) -> np.ndarray:
    """Float -> the tensor's dtype: clip(round(x / scale) + zero_point) (float32 basic ops)."""
    dtype = np.dtype(detail["dtype"])
    array = np.asarray(array, np.float32)
    if not np.issubdtype(dtype, np.integer):
        return array.astype(dtype)
    scale, zero = detail["quantization"]
    if scale == 0:
        raise BundleError(f"integer input tensor {detail['name']} has no quantisation scale")
    info = np.iinfo(dtype)
    q = np.round(array / np.float32(scale)) + np.float32(zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(array: np.ndarray, detail: dict) -> np.ndarray:
    """The tensor's dtype -> float32: (q - zero_point) * scale."""
    if not np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32)
    scale, zero = detail["quantization"]
    if scale == 0:
        return array.astype(np.float32)
    return (array.astype(np.float32) - np.float32(zero)) * np.float32(scale)

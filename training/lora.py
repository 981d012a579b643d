"""LoRA adapters on the encoder's convolutions, for cheap per-site fine-tuning.

A LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3:
h = W0 x + B A x, B zero-initialised) adds a rank-r path beside a frozen convolution: a k x k
down-projection A with the base layer's stride and padding (Cin -> r), then a 1 x 1
up-projection B (r -> Cout) that starts at zero, so an adapted model starts exactly at the base
model. Because both are linear and B is 1 x 1, the path equals one k x k convolution with the
kernel ``dW[h, w, i, o] = sum_r A[h, w, i, r] * B[r, o]``; `merge` adds it into the base kernel,
so the exported encoder has no extra cost at inference.

Only the convolutions of g_a and h_a get adapters; GDN, biases, h_s, g_s and the entropy
models stay untouched.

Example:
    >>> adapters = attach(model, rank=4)                    # model.g_a, model.h_a now adapted
    >>> train on adapters.trainable_variables ...
    >>> adapters.merge()                                    # kernels += A @ B; plain model again
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from device.errors import WildlinkError

#: The encoder's transforms (attribute names on HyperpriorCodec) that adapters may touch.
ENCODER_PARTS = ("g_a", "h_a")


class LoRAError(WildlinkError, ValueError):
    """A LoRA option or adapter file does not fit the model."""


class LoRAConv2D(tf.keras.layers.Layer):
    """A frozen Keras `Conv2D` plus a trainable rank-r path (k x k down, 1 x 1 up).

    Computes ``act(conv(x, W) + b + scale * conv1x1(conv(x, A), B))``, where `act` is the base
    layer's activation, so adapters sit before a ReLU exactly as the kernel they modify.
    """

    def __init__(self, base: tf.keras.layers.Conv2D, rank: int, scale: float = 1.0, seed: int = 0):
        super().__init__(name=f"{base.name}_lora")
        if not isinstance(base, tf.keras.layers.Conv2D) or isinstance(
            base, tf.keras.layers.Conv2DTranspose
        ):
            raise LoRAError(f"LoRA needs a Keras Conv2D, got {type(base).__name__} {base.name}")
        if not base.built:
            raise LoRAError(f"layer {base.name} is not built; build the model first")
        self.base = base
        self.rank = int(rank)
        self.scale = float(scale)
        kh, kw, cin, cout = base.kernel.shape
        # A: small random (He-style, as in the LoRA reference code), B: zeros (start = base).
        init = tf.keras.initializers.HeUniform(seed=seed)
        self.down = self.add_weight(
            name="lora_down", shape=(kh, kw, cin, self.rank), initializer=init, trainable=True
        )
        self.up = self.add_weight(
            name="lora_up", shape=(1, 1, self.rank, cout), initializer="zeros", trainable=True
        )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        base = self.base
        outputs = base.convolution_op(x, base.kernel)
        if base.use_bias:
            outputs = tf.nn.bias_add(outputs, base.bias)
        low = base.convolution_op(x, self.down)  # same stride and padding as the base kernel
        outputs += self.scale * tf.nn.conv2d(low, self.up, strides=1, padding="VALID")
        return base.activation(outputs) if base.activation is not None else outputs

    def delta(self) -> np.ndarray:
        """The merged kernel update dW = scale * A @ B, shaped like the base kernel."""
        up = self.up.numpy()[0, 0]  # [r, Cout]
        return self.scale * np.einsum("hwir,ro->hwio", self.down.numpy(), up)


@dataclass
class Adapters:
    """Adapters attached to one model (returned by `attach`).

    Attributes:
        model: the HyperpriorCodec whose g_a and h_a are temporarily replaced.
        layers: the LoRA wrappers, in encoder order.
        originals: the model's own g_a and h_a, restored by `merge` / `detach`.
    """

    model: tf.keras.Model
    layers: list[LoRAConv2D]
    originals: dict[str, tf.keras.Sequential]
    rank: int

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return [v for layer in self.layers for v in (layer.down, layer.up)]

    def parameter_count(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.trainable_variables))

    def merge(self) -> None:
        """Fold every adapter into its base kernel and give the model its plain encoder back."""
        for layer in self.layers:
            kernel = layer.base.kernel
            kernel.assign(kernel.numpy() + layer.delta().astype(kernel.dtype.as_numpy_dtype))
        self.detach()

    def detach(self) -> None:
        """Restore the plain g_a and h_a without merging (drops the adaptation)."""
        for part, original in self.originals.items():
            setattr(self.model, part, original)
        self.originals = {}

    def save(self, path: str) -> None:
        """The adapters alone (A and B per layer, a few tens of KB) as an .npz file."""
        arrays = {}
        for layer in self.layers:
            arrays[f"{layer.base.name}/down"] = layer.down.numpy()
            arrays[f"{layer.base.name}/up"] = layer.up.numpy()
        arrays["rank"] = np.array(self.rank)
        arrays["scale"] = np.array(self.layers[0].scale if self.layers else 1.0)
        np.savez(path, **arrays)


def attach(
    model: tf.keras.Model,
    rank: int,
    scale: float = 1.0,
    parts: tuple[str, ...] = ENCODER_PARTS,
    seed: int = 0,
) -> Adapters:
    """Wrap every Conv2D of `model.g_a` and `model.h_a` with a rank-`rank` adapter.

    The model's base weights are frozen by construction (only the adapters are returned as
    trainable); its g_a / h_a attributes are replaced by Sequentials that share the original
    layer objects, so `model(x)` runs through the adapters until `merge()` or `detach()`.
    """
    if rank < 1:
        raise LoRAError(f"LoRA rank must be >= 1, got {rank}")
    wrappers: list[LoRAConv2D] = []
    originals: dict[str, tf.keras.Sequential] = {}
    for part in parts:
        original = getattr(model, part)
        adapted = tf.keras.Sequential(name=f"{part}_lora")
        for layer in original.layers:
            if isinstance(layer, tf.keras.layers.Conv2D) and not isinstance(
                layer, tf.keras.layers.Conv2DTranspose
            ):
                layer = LoRAConv2D(layer, rank, scale, seed=seed + len(wrappers))
                wrappers.append(layer)
            adapted.add(layer)
        first = original.layers[0]
        adapted.build((None, None, None, int(first.kernel.shape[2])))
        originals[part] = original
        setattr(model, part, adapted)
    if not wrappers:
        raise LoRAError(f"no Conv2D layer in {', '.join(parts)} to adapt")
    return Adapters(model=model, layers=wrappers, originals=originals, rank=int(rank))


def apply_adapter_file(model: tf.keras.Model, path: str) -> int:
    """Merge adapters saved by `Adapters.save` into `model`'s kernels; returns layers merged."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise LoRAError(f"cannot read LoRA adapters {path}: {exc}") from None
    scale = float(data["scale"]) if "scale" in data else 1.0
    layers = {layer.name: layer for part in ENCODER_PARTS for layer in getattr(model, part).layers}
    merged = 0
    for key in data.files:
        if not key.endswith("/down"):
            continue
        name = key[: -len("/down")]
        if name not in layers:
            raise LoRAError(f"adapter {name} in {path} has no layer in this model")
        kernel = layers[name].kernel
        down, up = data[key], data[f"{name}/up"][0, 0]
        delta = scale * np.einsum("hwir,ro->hwio", down, up)
        if delta.shape != tuple(kernel.shape):
            raise LoRAError(
                f"adapter {name} in {path} has shape {delta.shape}, the model's kernel "
                f"{tuple(kernel.shape)}: adapters belong to another model"
            )
        kernel.assign(kernel.numpy() + delta.astype(np.float32))
        merged += 1
    return merged

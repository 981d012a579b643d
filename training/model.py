"""Scale-hyperprior image codec (Balle et al. 2018) with a saliency-weighted distortion.

Symbols as in the paper ("Variational image compression with a scale hyperprior", ICLR 2018):

    x    image, RGB in [0, 1]                     [B, H, W, 3]
    g_a  analysis transform      x -> y           [B, H/16, W/16, M]   (runs on the trap, int8)
    h_a  hyper-analysis          |y| -> z         [B, H/64, W/64, Cz]  (runs on the trap, int8)
    h_s  hyper-synthesis         z_hat -> scale indexes of y (int8 on both ends)
    g_s  synthesis transform     y_hat -> x_hat   (base station, float)

The layout follows tensorflow_compression's models/bmshj2018.py, with two changes that the
trap needs: every transform is built from plain Keras convolutions (`Conv2D` down,
`Conv2DTranspose` up) because TFC's `SignalConv2D(strides_up=...)` becomes a Flex op in
TFLite, and the encoder width (`analysis`) may be smaller than the decoder width
(`synthesis`), since the Pi runs the encoder and the base station the decoder.

Layers have stable names so that LoRA and pruning can address them:
``g_a_conv0..3``, ``g_a_gdn0..2``, ``h_a_conv0..2``, ``h_s_conv0..2``, ``g_s_conv0..3``,
``g_s_igdn0..2``; the z prior is ``model.hyperprior`` (`NoisyDeepFactorized`).

Loss (see docs/training.md): L = R + lambda * 255^2 * D, R in bits per pixel and
D = sum(w * (x - x_hat)^2) / sum(w) over pixels (mean over channels), w = 1 on animal pixels
and w_bg elsewhere. Seed 003 (Gorri Viudez, eq. 8) writes
L = R + lambda' * (alpha * D_ROI + (1 - alpha) * D_nonROI) with D_ROI = N_ROI/N * MSE_ROI;
that is the same weighted sum of squared errors with w_bg = (1 - alpha) / alpha, and with
lambda = lambda' * alpha * sum(w) / (255^2 * N), i.e. only the normalisation differs
(ours by the weight mass, theirs by the pixel count). alpha = 0.5 <=> w_bg = 1 (plain MSE).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from training.runs import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, RunSource, resolve

#: Variables with more elements than this are stored as float16 (half the bytes); smaller ones
#: (rate steps, GDN and prior parameters) stay float32 so rounding never moves a level step.
FLOAT16_ABOVE = 4096


@dataclass(frozen=True)
class ModelConfig:
    """Widths and rate-distortion settings of one model.

    Attributes:
        analysis: channels inside g_a (encoder; may be narrower than `synthesis`).
        synthesis: channels inside g_s (decoder).
        latent: M, channels of y.
        hyper: Cz, channels of z and inside h_a / h_s.
        num_scales, scale_min, scale_max: the log-spaced scale table of the y prior
            (s_i = exp(ln s_min + i d), d = ln(s_max/s_min)/(S-1)), as in bmshj2018.
        lmbda: rate-distortion trade-off lambda in R + lambda * 255^2 * D (one-rate model).
        w_bg: distortion weight of background pixels (animal pixels weigh 1).
        lambdas: rate levels of a variable-rate model (empty: one level at `lmbda`). Level q
            quantises channel c of y with the learned step exp(j[q, c] * d), j an integer, so
            a level only shifts scale indexes (the ROI-step rule, per channel): gain units
            (Cui et al. 2021) on the scale table's grid.
        mean: mean-scale hyperprior (Minnen et al. 2018): h_s also predicts the mean of y, and
            y is coded as round((y - mu) / step); h_a then sees y, not |y|.
        mixed: train g_s on rounded latents (straight-through) while the rate sees noise, the
            "mixed quantisation" of Minnen & Singh 2020; the decoder then trains on what it
            will receive.
    """

    analysis: int = 96
    synthesis: int = 96
    latent: int = 128
    hyper: int = 64
    num_scales: int = 64
    scale_min: float = 0.11
    scale_max: float = 256.0
    lmbda: float = 0.0015
    w_bg: float = 1.0
    lambdas: tuple[float, ...] = ()
    mean: bool = False
    mixed: bool = False

    def __post_init__(self) -> None:
        for name in ("analysis", "synthesis", "latent", "hyper", "num_scales"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model width {name} must be >= 1, got {getattr(self, name)}")
        if not self.lmbda > 0:
            raise ValueError(f"lambda must be > 0, got {self.lmbda}")
        if not 0 <= self.w_bg <= 1:
            raise ValueError(f"w_bg must be in [0, 1], got {self.w_bg}")
        object.__setattr__(self, "lambdas", tuple(float(v) for v in self.lambdas))
        if any(not v > 0 for v in self.lambdas) or list(self.lambdas) != sorted(set(self.lambdas)):
            raise ValueError(f"lambdas must be positive and increasing, got {list(self.lambdas)}")

    @property
    def levels(self) -> tuple[float, ...]:
        """The lambda of each rate level (one level for a one-rate model)."""
        return self.lambdas or (self.lmbda,)

    @property
    def reference_level(self) -> int:
        """The middle level: the rate steps start around it, its loss term is unscaled, and
        the bundle's t = 0 (manifest `rate_levels.reference`) and evaluations sit there."""
        return len(self.levels) // 2

    @property
    def scale_step(self) -> float:
        """d = ln(s_max / s_min) / (S - 1)."""
        import math

        return math.log(self.scale_max / self.scale_min) / (self.num_scales - 1)

    def save(self, folder: str | Path) -> None:
        Path(folder, CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> ModelConfig:
        path = Path(folder, CONFIG_FILE)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{folder} is not a training run: it has no {CONFIG_FILE}") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _down(filters: int, kernel: int, name: str, activation=None, use_bias=True):
    return tf.keras.layers.Conv2D(
        filters, kernel, strides=1 if kernel == 3 else 2, padding="same",
        activation=activation, use_bias=use_bias, name=name,
    )


def _up(filters: int, kernel: int, name: str, activation=None, use_bias=True, stride=2):
    return tf.keras.layers.Conv2DTranspose(
        filters, kernel, strides=stride, padding="same",
        activation=activation, use_bias=use_bias, name=name,
    )


class AnalysisTransform(tf.keras.Sequential):
    """g_a: four 5x5 stride-2 convolutions with GDN between them (x -> y, /16)."""

    def __init__(self, width: int, latent: int):
        super().__init__(name="g_a")
        for i in range(3):
            self.add(_down(width, 5, f"g_a_conv{i}"))
            self.add(tfc.GDN(name=f"g_a_gdn{i}"))
        self.add(_down(latent, 5, "g_a_conv3", use_bias=False))


class SynthesisTransform(tf.keras.Sequential):
    """g_s: the mirror of g_a, transposed convolutions with inverse GDN (y_hat -> x_hat)."""

    def __init__(self, width: int):
        super().__init__(name="g_s")
        for i in range(3):
            self.add(_up(width, 5, f"g_s_conv{i}"))
            self.add(tfc.GDN(inverse=True, name=f"g_s_igdn{i}"))
        self.add(_up(3, 5, "g_s_conv3"))


class HyperAnalysisTransform(tf.keras.Sequential):
    """h_a: |y| -> z (3x3 stride 1, then two 5x5 stride 2; ReLU between)."""

    def __init__(self, width: int):
        super().__init__(name="h_a")
        self.add(_down(width, 3, "h_a_conv0", activation="relu"))
        self.add(_down(width, 5, "h_a_conv1", activation="relu"))
        self.add(_down(width, 5, "h_a_conv2", use_bias=False))


class HyperSynthesisTransform(tf.keras.layers.Layer):
    """h_s: z_hat -> continuous scale indexes of y (the entropy model clips to [0, S-1]).

    With `mean`, a second head ``h_s_mean2`` beside ``h_s_conv2`` predicts the mean of y;
    `call` then returns (indexes, means). Only the indexes must match bit for bit on the trap
    and the base; a mean that differs in the last bit only moves the reconstruction.
    """

    def __init__(self, width: int, latent: int, mean: bool = False):
        super().__init__(name="h_s")
        self.mean = mean
        self.trunk = [
            _up(width, 5, "h_s_conv0", activation="relu"),
            _up(width, 5, "h_s_conv1", activation="relu"),
        ]
        self.head = _up(latent, 3, "h_s_conv2", stride=1)
        self.mean_head = _up(latent, 3, "h_s_mean2", stride=1) if mean else None

    @property
    def layers(self) -> list[tf.keras.layers.Layer]:
        return [*self.trunk, self.head] + ([self.mean_head] if self.mean else [])

    def build(self, input_shape) -> None:
        shape = tf.TensorShape(input_shape)
        for layer in self.trunk:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.head.build(shape)
        if self.mean:
            self.mean_head.build(shape)
        super().build(input_shape)

    def call(self, z_hat):
        h = z_hat
        for layer in self.trunk:
            h = layer(h)
        if self.mean:
            return self.head(h), self.mean_head(h)
        return self.head(h)

    def get_layer(self, name: str) -> tf.keras.layers.Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"h_s has no layer {name}")


class HyperpriorCodec(tf.keras.Model):
    """The trainable codec. `train_step` takes batches `(x, w)`: images and pixel weights.

    Example:
        >>> model = HyperpriorCodec(ModelConfig(analysis=16, synthesis=16, latent=16, hyper=8))
        >>> out = model(tf.zeros([1, 64, 64, 3]), training=False)   # dict of tensors
    """

    def __init__(self, config: ModelConfig):
        super().__init__(name="wildlink_codec")
        self.config = config
        # Cap on the global gradient norm (0: none). A rare huge step from the rate term
        # once sent the default run from 22 dB to 3 dB; clipping outliers prevents that.
        self.clip_norm = 0.0
        self.g_a = AnalysisTransform(config.analysis, config.latent)
        self.h_a = HyperAnalysisTransform(config.hyper)
        self.h_s = HyperSynthesisTransform(config.hyper, config.latent, config.mean)
        if config.lambdas:
            # Level q's log-step of channel c in units of d (rounded in the forward pass).
            # Start from step ~ lambda^-1/2 around the middle level, the high-rate optimum.
            mid = math.log(config.levels[config.reference_level])
            init = [[-0.5 * (math.log(v) - mid) / config.scale_step] * config.latent
                    for v in config.levels]
            self.rate_steps = tf.Variable(init, dtype=tf.float32, name="rate_steps")
        else:
            self.rate_steps = None
        self.g_s = SynthesisTransform(config.synthesis)
        self.hyperprior = tfc.NoisyDeepFactorized(batch_shape=(config.hyper,))
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.bpp_tracker = tf.keras.metrics.Mean(name="bpp")
        self.mse_tracker = tf.keras.metrics.Mean(name="wmse")
        self.psnr_tracker = tf.keras.metrics.Mean(name="psnr")
        self.build_transforms()

    def build_transforms(self) -> None:
        """Create every variable (so checkpoints restore and layers are addressable at once)."""
        c = self.config
        self.g_a.build((None, None, None, 3))
        self.h_a.build((None, None, None, c.latent))
        self.h_s.build((None, None, None, c.hyper))
        self.g_s.build((None, None, None, c.latent))

    # -- entropy models -------------------------------------------------------------------
    def scale_fn(self, indexes: tf.Tensor) -> tf.Tensor:
        """s_i = exp(ln s_min + i d): the scale table of bmshj2018."""
        c = self.config
        return tf.math.exp(tf.math.log(c.scale_min) + c.scale_step * indexes)

    def level_steps(self) -> tf.Tensor:
        """[K, M] integer log-steps j of each level (straight-through rounding)."""
        if self.rate_steps is None:
            return tf.zeros([1, self.config.latent])
        v = self.rate_steps
        return v + tf.stop_gradient(tf.round(v) - v)

    def entropy_models(self, compression: bool = False, precision: int = 16):
        """(y model, z model). With compression=True TFC builds the range-coder tables."""
        kwargs = {"coding_rank": 3, "compression": compression}
        if compression:
            kwargs["range_coder_precision"] = precision
        y_model = tfc.LocationScaleIndexedEntropyModel(
            tfc.NoisyNormal, self.config.num_scales, self.scale_fn, **kwargs
        )
        z_model = tfc.ContinuousBatchedEntropyModel(self.hyperprior, **kwargs)
        return y_model, z_model

    # -- forward --------------------------------------------------------------------------
    def call(self, x: tf.Tensor, training: bool = False, level=None) -> dict[str, tf.Tensor]:
        """Noisy (training) or quantised (eval) pass. Returns x_hat, bits_y, bits_z, y, z.

        bits_* are per image [B]; x is RGB in [0, 1]; `level` is the rate level of each image
        ([B] int, or one int; default 0).
        """
        c = self.config
        y_model, z_model = self.entropy_models(compression=False)
        y = self.g_a(x)
        z = self.h_a(y if c.mean else tf.abs(y))
        z_hat, bits_z = z_model(z, training=training)
        if c.mean:
            indexes, mu = self.h_s(z_hat)
        else:
            indexes, mu = self.h_s(z_hat), None
        if level is None:
            level = 0
        level = tf.broadcast_to(tf.cast(level, tf.int32), tf.shape(x)[:1])
        j = tf.gather(self.level_steps(), level)[:, None, None, :]  # [B,1,1,M]
        step = tf.math.exp(c.scale_step * j)
        u, loc = y / step, (None if mu is None else mu / step)
        u_hat, bits_y = y_model(u, indexes - j, loc=loc, training=training)
        if training and c.mixed:
            centre = 0.0 if loc is None else loc
            u_hat = u + tf.stop_gradient(tf.round(u - centre) + centre - u)
        x_hat = self.g_s(u_hat * step)
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z, "y": y, "z": z,
                "level": level}

    def rd_loss(self, x: tf.Tensor, w: tf.Tensor, out: dict[str, tf.Tensor]):
        """(loss, bpp, weighted mse on the 0..255 scale) for images x and weights w [B,H,W,1].

        Each image pays R + lambda_q * 255^2 * D at its own level q. With several levels the
        terms are scaled by sqrt(lambda_mid / lambda_q) so that the high-rate levels, whose
        losses are ~30x larger, do not drown the gradient of the low ones (a per-level
        constant, so each level's optimum is unchanged).
        """
        num_pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), tf.float32)
        bpp_i = (out["bits_y"] + out["bits_z"]) / num_pixels
        sq = tf.reduce_mean(tf.math.squared_difference(x, out["x_hat"]), axis=-1, keepdims=True)
        d_i = tf.reduce_sum(w * sq, axis=[1, 2, 3]) / tf.maximum(
            tf.reduce_sum(w, axis=[1, 2, 3]), 1e-6)
        wmse_i = 255.0**2 * d_i
        lambdas = tf.constant(self.config.levels, tf.float32)
        lam = tf.gather(lambdas, out["level"])
        mid = self.config.levels[self.config.reference_level]
        weight = tf.sqrt(mid / lam)
        loss = tf.reduce_mean(weight * (bpp_i + lam * wmse_i))
        return loss, tf.reduce_mean(bpp_i), tf.reduce_mean(wmse_i)

    def random_levels(self, batch) -> tf.Tensor:
        """A uniformly drawn rate level for each image of a batch."""
        return tf.random.uniform([batch], 0, len(self.config.levels), dtype=tf.int32)

    def _update(self, loss, bpp, wmse):
        self.loss_tracker.update_state(loss)
        self.bpp_tracker.update_state(bpp)
        self.mse_tracker.update_state(wmse)
        self.psnr_tracker.update_state(10.0 * tf.math.log(255.0**2 / wmse) / tf.math.log(10.0))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, w = data
        with tf.GradientTape() as tape:
            out = self(x, training=True, level=self.random_levels(tf.shape(x)[0]))
            loss, bpp, wmse = self.rd_loss(x, w, out)
            # Replicas' gradients are summed by the optimizer: scale each replica's share.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if self.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return self._update(loss, bpp, wmse)

    def test_step(self, data):
        x, w = data
        out = self(x, training=False, level=self.random_levels(tf.shape(x)[0]))
        out["x_hat"] = tf.clip_by_value(out["x_hat"], 0.0, 1.0)
        return self._update(*self.rd_loss(x, w, out))

    @property
    def metrics(self):
        return [self.loss_tracker, self.bpp_tracker, self.mse_tracker, self.psnr_tracker]


def build_model(config: ModelConfig) -> HyperpriorCodec:
    """A fresh model with all variables created."""
    return HyperpriorCodec(config)


def checkpoint_for(model: HyperpriorCodec, optimizer=None) -> tf.train.Checkpoint:
    """The checkpoint object train.py writes; restore a model with `load_checkpoint`."""
    if optimizer is None:
        return tf.train.Checkpoint(model=model)
    return tf.train.Checkpoint(model=model, optimizer=optimizer)


def load_checkpoint(source: str | Path | RunSource) -> HyperpriorCodec:
    """Rebuild the model of a source: a run folder (latest checkpoint), a checkpoint prefix
    such as run/checkpoints/ckpt-12, a weights folder or a bundle with its weights
    (`training.runs.resolve` decides which)."""
    src = resolve(source)
    if src.prefix is None:
        return load_weights(src.run)
    model = build_model(ModelConfig.load(src.run))
    status = checkpoint_for(model).read(str(src.prefix))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as exc:
        raise CheckpointError(
            f"checkpoint {src.prefix} does not match its model config: {exc}"
        ) from None
    status.expect_partial()
    return model


def warm_start(model: HyperpriorCodec, source: str | Path | RunSource) -> dict[str, list[str]]:
    """Copy the weights of `source` (anything `load_checkpoint` takes) into a fresh `model`.

    Variables of the same name and shape are copied; the rest keep their initial values (a
    mean head, other widths). A one-rate source seeding a variable-rate model puts its own
    operating point at step 1: level q starts at step (lambda_q / lambda_source)^-1/2, the
    high-rate optimum, so the level whose lambda is the source's starts as the source.
    Returns {"copied": names, "fresh": names}.
    """
    src = load_checkpoint(source)
    stored = named_variables(src)
    report = {"copied": [], "fresh": []}
    names = named_variables(model)
    if len(names) != len(model.trainable_variables):
        raise CheckpointError(f"named_variables found {len(names)} of "
                              f"{len(model.trainable_variables)} weights: a layer is missing")
    for name, v in names.items():
        other = stored.get(name)
        if other is not None and tuple(other.shape) == tuple(v.shape):
            v.assign(other)
            report["copied"].append(name)
        else:
            report["fresh"].append(name)
    if model.rate_steps is not None and src.rate_steps is None:
        c = model.config
        model.rate_steps.assign([[-0.5 * math.log(v / src.config.lmbda) / c.scale_step] * c.latent
                                 for v in c.levels])
        report["fresh"].remove(RATE_STEPS)
        report["copied"].append(f"{RATE_STEPS} (from lambda {src.config.lmbda})")
    return report


#: Key of the variable-rate level steps in `named_variables`.
RATE_STEPS = "rate_steps"


def named_variables(model: HyperpriorCodec) -> dict[str, tf.Variable]:
    """Every variable under a key that names its part and layer ("g_a/g_a_conv0/kernel:0"):
    Keras names alone repeat ("kernel:0") when layers are built outside a call."""
    out = {}
    for part in ("g_a", "h_a", "h_s", "g_s"):
        for layer in getattr(model, part).layers:
            for v in layer.weights:
                out[f"{part}/{layer.name}/{v.name.split('/')[-1]}"] = v
    for i, v in enumerate(model.hyperprior.variables):
        out[f"hyperprior/{i}/{v.name}"] = v
    if model.rate_steps is not None:
        out[RATE_STEPS] = model.rate_steps
    return out


def save_weights(model: HyperpriorCodec, folder: str | Path) -> int:
    """Write the model's config and float weights (no optimizer state) into `folder`, a run
    folder `load_checkpoint` reads; returns the bytes written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder)
    arrays = {}
    for i, v in enumerate(model.variables):
        value = v.numpy()
        if value.size > FLOAT16_ABOVE and value.dtype == "float32":
            value = value.astype("float16")
        arrays[f"{i:04d}"] = value
    with open(folder / WEIGHTS_FILE, "wb") as f:
        np.savez_compressed(f, **arrays)
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def load_weights(folder: str | Path) -> HyperpriorCodec:
    """The model of a folder written by `save_weights`."""
    folder = Path(folder)
    model = build_model(ModelConfig.load(folder))
    try:
        with np.load(folder / WEIGHTS_FILE) as stored:
            arrays = [stored[k] for k in sorted(stored.files)]
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} is not readable: {exc}") from None
    variables = model.variables
    if len(arrays) != len(variables) or any(
            a.shape != tuple(v.shape) for a, v in zip(arrays, variables, strict=False)):
        raise CheckpointError(f"{folder / WEIGHTS_FILE} does not match its model config")
    for v, a in zip(variables, arrays, strict=True):
        v.assign(a.astype(v.dtype.as_numpy_dtype))
    return model

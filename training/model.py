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
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tensorflow as tf
import tensorflow_compression as tfc

from device.errors import WildlinkError

#: File beside each checkpoint that records the widths (so export can rebuild the model).
CONFIG_FILE = "model_config.json"


class CheckpointError(WildlinkError, ValueError):
    """A run folder or checkpoint cannot be read as a wildlink model."""


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
        lmbda: rate-distortion trade-off lambda in R + lambda * 255^2 * D.
        w_bg: distortion weight of background pixels (animal pixels weigh 1).
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

    def __post_init__(self) -> None:
        for name in ("analysis", "synthesis", "latent", "hyper", "num_scales"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model width {name} must be >= 1, got {getattr(self, name)}")
        if not self.lmbda > 0:
            raise ValueError(f"lambda must be > 0, got {self.lmbda}")
        if not 0 <= self.w_bg <= 1:
            raise ValueError(f"w_bg must be in [0, 1], got {self.w_bg}")

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
    )  # fmt: skip


def _up(filters: int, kernel: int, name: str, activation=None, use_bias=True, stride=2):
    return tf.keras.layers.Conv2DTranspose(
        filters, kernel, strides=stride, padding="same",
        activation=activation, use_bias=use_bias, name=name,
    )  # fmt: skip


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


class HyperSynthesisTransform(tf.keras.Sequential):
    """h_s: z_hat -> continuous scale indexes of y (the entropy model clips to [0, S-1])."""

    def __init__(self, width: int, latent: int):
        super().__init__(name="h_s")
        self.add(_up(width, 5, "h_s_conv0", activation="relu"))
        self.add(_up(width, 5, "h_s_conv1", activation="relu"))
        self.add(_up(latent, 3, "h_s_conv2", stride=1))


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
        self.h_s = HyperSynthesisTransform(config.hyper, config.latent)
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
    def call(self, x: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """Noisy (training) or quantised (eval) pass. Returns x_hat, bits_y, bits_z, y, z.

        bits_* are per image [B]; x is RGB in [0, 1].
        """
        y_model, z_model = self.entropy_models(compression=False)
        y = self.g_a(x)
        z = self.h_a(tf.abs(y))
        z_hat, bits_z = z_model(z, training=training)
        indexes = self.h_s(z_hat)
        y_hat, bits_y = y_model(y, indexes, training=training)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z, "y": y, "z": z}

    def rd_loss(self, x: tf.Tensor, w: tf.Tensor, out: dict[str, tf.Tensor]):
        """(loss, bpp, weighted mse on the 0..255 scale) for images x and weights w [B,H,W,1]."""
        num_pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        bpp = (tf.reduce_sum(out["bits_y"]) + tf.reduce_sum(out["bits_z"])) / num_pixels
        sq = tf.reduce_mean(tf.math.squared_difference(x, out["x_hat"]), axis=-1, keepdims=True)
        d = tf.reduce_sum(w * sq) / tf.maximum(tf.reduce_sum(w), 1e-6)
        wmse = 255.0**2 * d
        return bpp + self.config.lmbda * wmse, bpp, wmse

    def _update(self, loss, bpp, wmse):
        self.loss_tracker.update_state(loss)
        self.bpp_tracker.update_state(bpp)
        self.mse_tracker.update_state(wmse)
        self.psnr_tracker.update_state(10.0 * tf.math.log(255.0**2 / wmse) / tf.math.log(10.0))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, w = data
        with tf.GradientTape() as tape:
            out = self(x, training=True)
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
        out = self(x, training=False)
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


def load_checkpoint(path: str | Path) -> HyperpriorCodec:
    """Rebuild the model of a run folder (latest checkpoint) or of a checkpoint prefix.

    `path` is a run folder written by `wildlink train` (holding model_config.json and
    checkpoints/) or a checkpoint prefix such as run/checkpoints/ckpt-12.
    """
    path = Path(path)
    if path.is_dir():
        run = path
        if (run / "manifest.json").exists() and not (run / CONFIG_FILE).exists():
            raise CheckpointError(
                f"{run} is a model bundle, not a training run (pass the run folder "
                "that `wildlink train --run` wrote)"
            )
        config = ModelConfig.load(run)
        prefix = tf.train.latest_checkpoint(str(run / "checkpoints"))
        if prefix is None:
            raise CheckpointError(f"{run} has no checkpoint yet (expected {run}/checkpoints)")
    else:
        prefix = str(path)
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        if not tf.io.gfile.exists(prefix + ".index"):
            raise CheckpointError(f"no checkpoint at {prefix}")
        config = ModelConfig.load(run)
    model = build_model(config)
    status = checkpoint_for(model).read(prefix)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as exc:
        raise CheckpointError(f"checkpoint {prefix} does not match its model config: {exc}") from None
    status.expect_partial()
    return model

"""Structured channel pruning of the encoder, then a short fine-tune with the decoder frozen.

Only whole channels count on the trap: TFLite's ARM kernels do not skip zeros, so unstructured
sparsity costs the same time. The internal channels of g_a (the outputs of g_a_conv0..2, each
followed by a GDN) are the encoder's cost; y (M channels) and z (Cz) are the interface to the
decoder and stay. For each internal layer i the channels are ranked by

    score_c = ||K_i[:, :, :, c]||_2 * ||K_{i+1}[:, :, c, :]||_2

(what the channel receives times what the next layer takes from it; the GDN between them
normalises amplitudes, so neither norm alone ranks well), and the top `width` are kept:
K_i's output columns and bias, the GDN's beta[c] and gamma[c, c'] (both indexes, since gamma
couples channels: y_i = x_i / sqrt(beta_i + sum_j gamma[j, i] x_j^2), Balle et al. 2016 eq. 3)
and K_{i+1}'s input rows. All three layers keep the same count, so the pruned model is an
ordinary model with ``analysis = width`` that ``wildlink export`` rebuilds from its config.

Example:
    >>> pruned = prune_encoder(model, width=48)
    >>> encoder_macs(pruned) < encoder_macs(model)
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from training.evaluation import eval_sets, evaluate, split_images
from training.finetune import (
    FinetuneError,
    check_frozen,
    count,
    decoder_weights,
    encoder_variables,
    fit,
    patch_dataset,
)
from training.model import HyperpriorCodec, build_model, load_checkpoint
from training.runs import adapted_train_config, prepare_output, resolve, save_run

#: The image size MACs are quoted for (the trap's transmit size, long side 1024).
MACS_HEIGHT, MACS_WIDTH = 768, 1024


class PruneError(FinetuneError):
    """A pruning option does not fit the model."""


@dataclass(frozen=True)
class PruneConfig:
    """One pruning run: keep `width` channels per internal g_a layer, then fine-tune."""

    source: str
    out: str
    data: tuple[str, ...]
    width: int
    steps: int = 300
    batch: int = 8
    patch: int = 128
    lr: float = 5e-5
    holdout: float = 0.0
    eval_data: tuple[str, ...] = ()
    eval_limit: int = 0
    masks: str = "none"
    masks_json: str | None = None
    md_threshold: float = 0.2
    prefilter: bool = True
    seed: int = 0
    force: bool = False

    def __post_init__(self) -> None:
        if self.width < 1 or self.steps < 0 or self.batch < 1:
            raise PruneError("--width and --batch must be >= 1, --steps >= 0")
        if not self.lr > 0:
            raise PruneError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.holdout < 1:
            raise PruneError(f"--holdout must be in [0, 1), got {self.holdout}")

    @property
    def learning_rate(self) -> float:
        return self.lr


# -- cost ---------------------------------------------------------------------------------
def layer_macs(
    model: HyperpriorCodec, height: int = MACS_HEIGHT, width: int = MACS_WIDTH
) -> list[tuple[str, int]]:
    """Multiply-accumulates per layer of the encoder (g_a then h_a) for one height x width image.

    Conv2D: H_out * W_out * k_h * k_w * C_in * C_out. GDN: its normalisation pool is a 1 x 1
    convolution of x^2 with gamma, H * W * C^2 (the square root and division are per element
    and not counted). ReLU and biases are not counted.
    """
    rows = []
    h, w = height, width
    for part in ("g_a", "h_a"):
        for layer in getattr(model, part).layers:
            if isinstance(layer, tf.keras.layers.Conv2D):
                kh, kw, cin, cout = layer.kernel.shape
                sh, sw = layer.strides
                h, w = math.ceil(h / sh), math.ceil(w / sw)
                rows.append((layer.name, int(h * w * kh * kw * cin * cout)))
            elif isinstance(layer, tfc.GDN):
                c = int(layer.gamma.shape[0])
                rows.append((layer.name, int(h * w * c * c)))
    return rows


def encoder_macs(model: HyperpriorCodec, height: int = MACS_HEIGHT, width: int = MACS_WIDTH) -> int:
    """Total encoder MACs (g_a + h_a) for one image; the trap's cost per capture."""
    return sum(m for _, m in layer_macs(model, height, width))


# -- pruning ------------------------------------------------------------------------------
def _g_a_layers(model: HyperpriorCodec):
    convs = [layer for layer in model.g_a.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    gdns = [layer for layer in model.g_a.layers if isinstance(layer, tfc.GDN)]
    if len(convs) != len(gdns) + 1:
        raise PruneError("g_a is not conv/GDN pairs followed by one conv: cannot prune it")
    return convs, gdns


def channel_scores(model: HyperpriorCodec) -> list[np.ndarray]:
    """score_c of every internal channel of g_a, one array per GDN layer (see module doc)."""
    convs, gdns = _g_a_layers(model)
    scores = []
    for i in range(len(gdns)):
        out_norm = np.sqrt(np.sum(convs[i].kernel.numpy() ** 2, axis=(0, 1, 2)))
        in_norm = np.sqrt(np.sum(convs[i + 1].kernel.numpy() ** 2, axis=(0, 1, 3)))
        scores.append(out_norm * in_norm)
    return scores


def keep_indexes(model: HyperpriorCodec, width: int) -> list[np.ndarray]:
    """The sorted channel indexes to keep in each internal g_a layer (highest scores)."""
    kept = []
    for score in channel_scores(model):
        if width > len(score):
            raise PruneError(f"--width {width} is wider than the encoder ({len(score)} channels)")
        kept.append(np.sort(np.argsort(-score, kind="stable")[:width]))
    return kept


def channel_stats(model: HyperpriorCodec, images) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per internal g_a layer, over `images` [N, H, W, 3]: (E[x_c^2] entering the GDN, E[GDN_c])."""
    convs, gdns = _g_a_layers(model)
    h = tf.convert_to_tensor(images, tf.float32)
    stats = []
    for conv, gdn in zip(convs, gdns, strict=False):  # the last conv has no GDN after it
        pre = conv(h)
        h = gdn(pre)
        stats.append(
            (
                tf.reduce_mean(tf.square(pre), axis=(0, 1, 2)).numpy(),
                tf.reduce_mean(h, axis=(0, 1, 2)).numpy(),
            )
        )
    return stats


def prune_encoder(model: HyperpriorCodec, width: int, calibration=None) -> HyperpriorCodec:
    """A new model whose g_a keeps `width` channels per internal layer; the rest is copied.

    h_a, h_s, g_s and the entropy models are copied bit for bit. With `calibration` images
    [N, H, W, 3], the dropped channels' average contributions are folded into what stays: into
    each kept GDN's beta, beta_i += sum_{j dropped} gamma[j, i] E[x_j^2] (their share of the
    normalisation pool), and into the next convolution's bias, b += sum_{c dropped} sum_hw
    K[h, w, c, :] E[GDN_c] (where that layer has a bias).
    """
    keep = keep_indexes(model, width)
    stats = channel_stats(model, calibration) if calibration is not None else None
    pruned = build_model(replace(model.config, analysis=int(width)))
    for part in ("h_a", "h_s", "g_s"):
        getattr(pruned, part).set_weights(getattr(model, part).get_weights())
    for dst, src in zip(pruned.hyperprior.variables, model.hyperprior.variables, strict=True):
        dst.assign(src)
    src_convs, src_gdns = _g_a_layers(model)
    dst_convs, dst_gdns = _g_a_layers(pruned)
    for i, (src, dst) in enumerate(zip(src_convs, dst_convs, strict=True)):
        full = src.kernel.numpy()
        kernel = full[:, :, keep[i - 1], :] if i > 0 else full  # the next layer's inputs
        if i < len(keep):
            kernel = kernel[..., keep[i]]
        dst.kernel.assign(kernel)
        if src.use_bias:
            bias = src.bias.numpy()
            bias = bias[keep[i]] if i < len(keep) else bias
            if stats is not None and i > 0:
                drop = np.setdiff1d(np.arange(full.shape[2]), keep[i - 1])
                mean = stats[i - 1][1][drop]
                extra = np.einsum("hwco,c->o", full[:, :, drop, :], mean)
                bias = bias + (extra[keep[i]] if i < len(keep) else extra)
            dst.bias.assign(bias)
    for i, (src, dst) in enumerate(zip(src_gdns, dst_gdns, strict=True)):
        # The variables hold a reparameterisation (sqrt of value + pedestal) that is
        # elementwise, so slicing the variables slices beta and gamma.
        k = keep[i]
        dst.gamma_parameter.variable.assign(src.gamma_parameter.variable.numpy()[np.ix_(k, k)])
        if stats is None:
            dst.beta_parameter.variable.assign(src.beta_parameter.variable.numpy()[k])
            continue
        drop = np.setdiff1d(np.arange(len(src.beta.numpy())), k)
        gamma = src.gamma.numpy()  # gamma[j, i]: weight of x_j^2 in the pool of channel i
        beta = src.beta.numpy()[k] + stats[i][0][drop] @ gamma[np.ix_(drop, k)]
        pedestal = src.beta_parameter.offset**2
        dst.beta_parameter.variable.assign(np.sqrt(beta + pedestal).astype(np.float32))
    return pruned


# -- the command --------------------------------------------------------------------------
def prune(cfg: PruneConfig, verbose: int = 1) -> dict:
    """Prune `cfg.source` to `cfg.width`, fine-tune the encoder, save a run folder."""
    out = Path(cfg.out)
    source = resolve(cfg.source)
    model, base_run = load_checkpoint(source), source.run
    train_images, held_out = split_images(cfg.data, cfg.holdout)
    dataset, usable = patch_dataset(cfg, train_images, model.config.w_bg)
    sets = eval_sets(cfg, held_out)
    prepare_output(out, cfg.force)

    macs_before = encoder_macs(model)
    params_before = count(encoder_variables(model))
    before = {name: evaluate(model, imgs, cfg.eval_limit) for name, imgs in sets.items()}
    frozen = decoder_weights(model)
    calibration = next(iter(dataset))[0]  # one batch of training patches
    pruned = prune_encoder(model, cfg.width, calibration)
    check_frozen(pruned, frozen)
    macs_after = encoder_macs(pruned)
    print(
        f"pruned g_a from {model.config.analysis} to {cfg.width} channels per layer: encoder "
        f"MACs per {MACS_WIDTH}x{MACS_HEIGHT} image {macs_before / 1e9:.3f} G -> "
        f"{macs_after / 1e9:.3f} G ({100 * (macs_after / macs_before - 1):+.1f} %); "
        f"fine-tuning {cfg.steps} steps on {usable} images, decoder frozen"
    )
    pruned_only = {name: evaluate(pruned, imgs, cfg.eval_limit) for name, imgs in sets.items()}
    variables = encoder_variables(pruned)
    stats = fit(pruned, variables, dataset, cfg.steps, cfg.lr, verbose)
    check_frozen(pruned, frozen)
    after = {name: evaluate(pruned, imgs, cfg.eval_limit) for name, imgs in sets.items()}
    summary = {
        "mode": "prune",
        "source": str(cfg.source),
        "width": {"before": model.config.analysis, "after": cfg.width},
        "macs": {
            "image": [MACS_WIDTH, MACS_HEIGHT],
            "before": macs_before,
            "after": macs_after,
            "layers_after": dict(layer_macs(pruned)),
        },
        "parameters": {"before": params_before, "after": count(variables)},
        "trainable_parameters": count(variables),
        "fit": stats,
        "eval": {
            name: {"before": before[name], "pruned": pruned_only[name], "after": after[name]}
            for name in sets
        },
        "decoder_unchanged": True,
        "config": asdict(cfg),
    }
    train_cfg = adapted_train_config(cfg, base_run, train_images)
    save_run(pruned, out, train_cfg, summary, stats["steps"])
    return summary


def describe(summary: dict) -> str:
    """Human-readable lines for the CLI."""
    m, fit_ = summary["macs"], summary["fit"]
    lines = [
        f"encoder MACs per {m['image'][0]}x{m['image'][1]} image: {m['before'] / 1e9:.3f} G -> "
        f"{m['after'] / 1e9:.3f} G ({100 * (m['after'] / m['before'] - 1):+.1f} %); encoder "
        f"parameters {summary['parameters']['before']:,} -> {summary['parameters']['after']:,}",
        f"fine-tune: {fit_['steps']} steps in {fit_['seconds']:.0f} s, peak memory "
        f"{fit_['peak_rss_mib']:.0f} MiB",
    ]
    for name, e in summary["eval"].items():
        b, p, a = e["before"], e["pruned"], e["after"]
        lines.append(
            f"{name} ({a['images']} images): bpp/PSNR {b['bpp']:.4f}/{b['psnr']:.2f} dB -> "
            f"pruned {p['bpp']:.4f}/{p['psnr']:.2f} dB -> fine-tuned {a['bpp']:.4f}/"
            f"{a['psnr']:.2f} dB; RD loss {b['loss']:.4f} -> {a['loss']:.4f} "
            f"({100 * (a['loss'] / b['loss'] - 1):+.1f} %)"
        )
    lines.append(f"decoder weights unchanged; checkpoint {summary['checkpoint']}")
    return "\n".join(lines)

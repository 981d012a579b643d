"""Site fine-tuning: retrain the trap's encoder (g_a, h_a) while the base station keeps its decoder.

The decoder side (h_s, g_s and the entropy models) is frozen, so every bundle adapted from one
base model decodes with that model's decoder weights; only ``analysis.tflite`` changes. Two modes:

- ``full``: every variable of g_a and h_a (kernels, biases, GDN) is trained.
- ``lora``: rank-r adapters on the encoder convolutions only (training/lora.py); merged into the
  kernels before saving, so the exported encoder costs the same as the base one.

The output is a run folder that ``wildlink export`` reads like a training run::

    out/model_config.json  out/train_config.json  out/checkpoints/ckpt-N
    out/finetune_summary.json  (before/after metrics, trainable parameters, peak memory)
    out/lora_adapters.npz      (lora mode: the adapters alone, before merging)

The source and the output folder are training/runs.py's (`resolve`, `save_run`), the
before/after figures training/evaluation.py's; this module trains.

Example:
    >>> cfg = FinetuneConfig(source="runs/default", out="runs/site1", data=("sites/peru-sdzg1",))
    >>> summary = finetune(cfg)                                       # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data import PatchSource
from training.evaluation import eval_sets, evaluate, split_images
from training.lora import Adapters, attach
from training.masks import load_boxes
from training.model import HyperpriorCodec, ModelConfig, load_checkpoint, named_variables
from training.runs import (
    FinetuneError,
    adapted_train_config,
    prepare_output,
    resolve,
    save_run,
)

MODES = ("full", "lora")
#: Parts of HyperpriorCodec that stay frozen (the base station's side).
DECODER_PARTS = ("h_s", "g_s", "hyperprior")
DEFAULT_LR = {"full": 1e-4, "lora": 1e-3}



@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. `holdout` is the fraction of the (sorted) images kept for evaluation."""

    source: str
    out: str
    data: tuple[str, ...]
    mode: str = "lora"
    rank: int = 4
    steps: int = 300
    batch: int = 8
    patch: int = 128
    lr: float | None = None
    holdout: float = 0.0
    eval_data: tuple[str, ...] = ()
    eval_limit: int = 0
    masks: str = "none"
    masks_json: str | None = None
    md_threshold: float = 0.2
    prefilter: bool = True
    lmbda: float | None = None
    w_bg: float | None = None
    seed: int = 0
    force: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FinetuneError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.rank < 1 or self.steps < 0 or self.batch < 1:
            raise FinetuneError("--rank and --batch must be >= 1, --steps >= 0")
        if not 0 <= self.holdout < 1:
            raise FinetuneError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.lr is not None and not self.lr > 0:
            raise FinetuneError(f"--lr must be > 0, got {self.lr}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]


# -- parameters, memory -----------------------------------------------------------------
def encoder_variables(model: HyperpriorCodec) -> list[tf.Variable]:
    """Everything the full mode trains: the variables of g_a and h_a."""
    return list(model.g_a.trainable_variables) + list(model.h_a.trainable_variables)


def decoder_weights(model: HyperpriorCodec) -> dict[str, np.ndarray]:
    """Copies of the frozen side's variables (h_s, g_s, entropy models), keyed by name."""
    return {name: v.numpy().copy() for name, v in named_variables(model).items()
            if name.split("/")[0] in DECODER_PARTS}


def count(variables) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def lora_parameter_count(model: HyperpriorCodec, rank: int) -> int:
    """Adapter parameters for `rank` without attaching them: sum over convs of k*k*Cin*r + r*Cout."""
    total = 0
    for part in ("g_a", "h_a"):
        for layer in getattr(model, part).layers:
            if isinstance(layer, tf.keras.layers.Conv2D):
                kh, kw, cin, cout = layer.kernel.shape
                total += kh * kw * cin * rank + rank * cout
    return int(total)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory of this process during a block (Linux: VmHWM after a reset).

    Writing 5 to /proc/self/clear_refs resets the high-water mark (proc(5)), so the peak is
    the block's own, not the import's. Elsewhere it falls back to `resource.ru_maxrss`.
    """

    def __enter__(self) -> PeakMemory:
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.start_kib = _status_kib("VmRSS") or 0
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_kib("VmHWM") if self.reset else None
        if peak is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_kib = int(peak)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def growth_mib(self) -> float:
        return max(self.peak_kib - self.start_kib, 0) / 1024


# -- training -----------------------------------------------------------------------------
def fit(
    model: HyperpriorCodec,
    variables: list[tf.Variable],
    dataset,
    steps: int,
    lr: float,
    verbose: int = 1,
) -> dict:
    """Minimise the model's own RD loss over `variables` only, for `steps` batches of `dataset`.

    Returns the mean loss/bpp/psnr of the last 10 % of steps, steps/s, and peak memory.
    """
    optimizer = tf.keras.optimizers.Adam(learning_rate=lr)
    optimizer.build(variables)

    @tf.function
    def step(x, w):
        with tf.GradientTape() as tape:
            # every level: the levels share g_a, so training one would move the others
            out = model(x, training=True, level=model.random_levels(tf.shape(x)[0]))
            loss, bpp, wmse = model.rd_loss(x, w, out)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss, bpp, wmse

    history = []
    bar = tf.keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss", "bpp", "psnr"])
    start = time.monotonic()
    with PeakMemory() as memory:
        for i, (x, w) in enumerate(dataset.take(steps)):
            loss, bpp, wmse = (float(t) for t in step(x, w))
            psnr = 10 * np.log10(255.0**2 / max(wmse, 1e-9))
            history.append((loss, bpp, psnr))
            bar.update(i + 1, [("loss", loss), ("bpp", bpp), ("psnr", psnr)])
    seconds = time.monotonic() - start
    tail = np.array(history[-max(len(history) // 10, 1) :]) if history else np.zeros((1, 3))
    return {
        "steps": len(history),
        "seconds": seconds,
        "steps_per_second": len(history) / max(seconds, 1e-9),
        "loss": float(tail[:, 0].mean()),
        "bpp": float(tail[:, 1].mean()),
        "psnr": float(tail[:, 2].mean()),
        "peak_rss_mib": memory.peak_mib,
        "peak_growth_mib": memory.growth_mib,
    }


def patch_dataset(cfg, images: list[Path], w_bg: float):
    """(dataset, usable count): random patches of `images` with the run's mask settings."""
    boxes = load_boxes(cfg.masks, images, cfg.masks_json, cfg.md_threshold)
    source = PatchSource(
        images, cfg.patch, "pad", None if cfg.masks == "none" else boxes, w_bg,
        cfg.prefilter, cfg.seed,
    )
    usable = source.check()
    return source.dataset(cfg.batch, seed=cfg.seed), usable


def finetune(cfg: FinetuneConfig, verbose: int = 1) -> dict:
    """Fine-tune the encoder of `cfg.source` on `cfg.data`; returns the summary (also saved)."""
    out = Path(cfg.out)
    source = resolve(cfg.source)
    model, base_run = load_checkpoint(source), source.run
    train_images, held_out = split_images(cfg.data, cfg.holdout)
    overrides = {k: v for k, v in (("lmbda", cfg.lmbda), ("w_bg", cfg.w_bg)) if v is not None}
    if overrides:
        try:
            model.config = replace(model.config, **overrides)
        except ValueError as exc:
            raise FinetuneError(str(exc)) from None
    dataset, usable = patch_dataset(cfg, train_images, model.config.w_bg)
    prepare_output(out, cfg.force)
    sets = eval_sets(cfg, held_out)

    full_params = count(encoder_variables(model))
    lora_params = lora_parameter_count(model, cfg.rank)
    print(
        f"fine-tuning {cfg.mode} on {usable} images ({len(held_out)} held out); trainable "
        f"parameters: full {full_params:,}, LoRA rank {cfg.rank} {lora_params:,} "
        f"({100 * lora_params / max(full_params, 1):.1f} % of full); decoder frozen"
    )
    before = {name: evaluate(model, imgs, cfg.eval_limit) for name, imgs in sets.items()}
    frozen = decoder_weights(model)

    adapters: Adapters | None = None
    if cfg.mode == "lora":
        adapters = attach(model, cfg.rank, seed=cfg.seed)
        variables = adapters.trainable_variables
    else:
        variables = encoder_variables(model)
    stats = fit(model, variables, dataset, cfg.steps, cfg.learning_rate, verbose)
    if adapters is not None:
        adapters.save(str(out / "lora_adapters.npz"))
        adapters.merge()
    check_frozen(model, frozen)
    after = {name: evaluate(model, imgs, cfg.eval_limit) for name, imgs in sets.items()}

    summary = {
        "mode": cfg.mode,
        "rank": cfg.rank if cfg.mode == "lora" else None,
        "source": str(cfg.source),
        "trainable_parameters": count(variables),
        "parameters": {"full": full_params, "lora": lora_params},
        "train_images": usable,
        "fit": stats,
        "eval": {name: {"before": before[name], "after": after[name]} for name in sets},
        "decoder_unchanged": True,
        "config": asdict(cfg),
    }
    train_cfg = adapted_train_config(cfg, base_run, train_images)
    save_run(model, out, train_cfg, summary, int(stats["steps"]))
    return summary


def check_frozen(model: HyperpriorCodec, frozen: dict[str, np.ndarray]) -> None:
    """Refuse to save a model whose decoder moved (the base station could not decode it)."""
    now = decoder_weights(model)
    changed = [k for k, v in frozen.items() if k not in now or not np.array_equal(v, now[k])]
    if changed:
        raise FinetuneError(f"internal error: decoder weights changed ({changed[0]} ...)")


def describe(summary: dict) -> str:
    """Human-readable lines for the CLI."""
    fit_ = summary["fit"]
    lines = [
        f"{summary['mode']}: {summary['trainable_parameters']:,} trainable parameters, "
        f"{fit_['steps']} steps in {fit_['seconds']:.0f} s ({fit_['steps_per_second']:.2f} steps/s), "
        f"peak memory {fit_['peak_rss_mib']:.0f} MiB (+{fit_['peak_growth_mib']:.0f} MiB during training)",
        f"training patches (last 10 %): loss {fit_['loss']:.4f}, bpp {fit_['bpp']:.4f}, "
        f"PSNR {fit_['psnr']:.2f} dB",
    ]
    for name, ba in summary["eval"].items():
        b, a = ba["before"], ba["after"]
        rate = 100 * (a["bpp"] / b["bpp"] - 1) if b["bpp"] > 0 else float("nan")
        lines.append(
            f"{name} ({a['images']} images): bpp {b['bpp']:.4f} -> {a['bpp']:.4f} ({rate:+.1f} %), "
            f"PSNR {b['psnr']:.2f} -> {a['psnr']:.2f} dB, RD loss {b['loss']:.4f} -> {a['loss']:.4f} "
            f"({100 * (a['loss'] / b['loss'] - 1):+.1f} %)"
        )
    lines.append(f"decoder weights unchanged; checkpoint {summary['checkpoint']}")
    return "\n".join(lines)


__all__ = [
    "FinetuneConfig", "FinetuneError", "finetune", "fit", "encoder_variables",
    "decoder_weights", "check_frozen", "PeakMemory", "describe", "ModelConfig",
]

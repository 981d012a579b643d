"""Train the codec: Keras fit with progress bars, TensorBoard, timed checkpoints and resume.

A run folder holds everything about one training run::

    run/model_config.json      widths and lambda (training/model.py)
    run/train_config.json      data, patch, batch, steps, ... of the run
    run/checkpoints/ckpt-N     model + optimizer every --checkpoint-minutes, kept 3 deep
    run/logs/                  TensorBoard (`tensorboard --logdir run/logs`)

Running the same command again resumes from the newest checkpoint (after a kill, too): the
step counter is the optimizer's, so the learning-rate schedule and the remaining steps
continue where they stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tensorflow as tf

from device.errors import WildlinkError
from training.data import DataError, PatchSource, find_images
from training.masks import load_boxes
from training.model import ModelConfig, build_model, checkpoint_for, warm_start

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")


class TrainError(WildlinkError, ValueError):
    """A training option or run folder is unusable."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a run except the model's widths (those are in ModelConfig)."""

    run: str
    data: tuple[str, ...]
    steps: int = 20000
    batch: int = 8
    patch: int = 128
    lr: float = 1e-4
    lr_final_fraction: float = 0.1  # the last 10 % of steps use lr / 10
    clip_norm: float = 2.0  # global gradient norm cap; 0 disables (see docs/training.md)
    steps_per_epoch: int = 100
    checkpoint_minutes: float = 5.0
    strategy: str = "default"
    masks: str = "none"
    masks_json: str | None = None
    md_threshold: float = 0.2
    prefilter: bool = True
    small: str = "pad"
    seed: int = 0
    init: str | None = None  # warm start: weights of another run or bundle (model.warm_start)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.steps_per_epoch < 1:
            raise TrainError("--steps, --batch and --steps-per-epoch must be >= 1")
        if not self.lr > 0:
            raise TrainError(f"--lr must be > 0, got {self.lr}")
        if not self.clip_norm >= 0:
            raise TrainError(f"--clip-norm must be >= 0, got {self.clip_norm}")
        if self.strategy not in STRATEGIES:
            raise TrainError(f"--strategy must be one of {', '.join(STRATEGIES)}")
        if self.checkpoint_minutes <= 0:
            raise TrainError("--checkpoint-minutes must be > 0")


def make_strategy(name: str):
    """tf.distribute strategy for `name` (multiworker reads TF_CONFIG, see docs/training.md)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise TrainError("--strategy multiworker needs TF_CONFIG (see docs/training.md)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise TrainError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _step(optimizer) -> int:
    """The optimizer's step counter (a plain or a distributed variable)."""
    return int(optimizer.iterations.numpy())


def _schedule(cfg: TrainConfig):
    boundary = max(int(cfg.steps * (1 - cfg.lr_final_fraction)), 1)
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay([boundary], [cfg.lr, cfg.lr / 10])


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def _prepare_run(run: Path, model_cfg: ModelConfig, cfg: TrainConfig) -> ModelConfig:
    """Create the run folder, or check that a resumed run asks for the same model."""
    run.mkdir(parents=True, exist_ok=True)
    config_path = run / "model_config.json"
    if config_path.exists():
        saved = ModelConfig.load(run)
        if saved != model_cfg:
            diff = {
                k: (v, getattr(model_cfg, k))
                for k, v in asdict(saved).items()
                if v != getattr(model_cfg, k)
            }
            raise TrainError(
                f"{run} holds a run with other model settings {diff} (saved, asked); "
                "use another --run folder or the same flags"
            )
    else:
        model_cfg.save(run)
    (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return model_cfg


def train(model_cfg: ModelConfig, cfg: TrainConfig, verbose: int = 1) -> dict:
    """Run (or resume) training; returns a summary dict (steps done, last metrics, seconds)."""
    run = Path(cfg.run)
    images = find_images(cfg.data)
    boxes = load_boxes(cfg.masks, images, cfg.masks_json, cfg.md_threshold)
    source = PatchSource(
        images, cfg.patch, cfg.small, None if cfg.masks == "none" else boxes,
        model_cfg.w_bg, cfg.prefilter, cfg.seed,
    )
    usable = source.check()
    print(
        f"training data: {usable} images under {', '.join(cfg.data)} "
        f"(skipped {source.skipped['unreadable']} unreadable, {source.skipped['small']} too small)"
    )
    strategy = make_strategy(cfg.strategy)
    chief = _is_chief(strategy)
    model_cfg = _prepare_run(run, model_cfg, cfg) if chief else model_cfg

    with strategy.scope():
        model = build_model(model_cfg)
        model.clip_norm = cfg.clip_norm
        optimizer = tf.keras.optimizers.Adam(learning_rate=_schedule(cfg))
        model.compile(optimizer=optimizer)
        # Create the optimizer's slots now, so a checkpoint restores them too.
        optimizer.build(model.trainable_variables)
    ckpt = checkpoint_for(model, optimizer)
    ckpt_dir = run / "checkpoints" if chief else run / f"worker-tmp-{os.getpid()}"
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=3)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resuming from {manager.latest_checkpoint} (step {_step(optimizer)})")
    elif cfg.init:
        seeded = warm_start(model, cfg.init)
        print(f"starting from the weights of {cfg.init}: {len(seeded['copied'])} variables "
              f"copied, {len(seeded['fresh'])} fresh ({', '.join(seeded['fresh']) or 'none'})")
    done = _step(optimizer)
    if done >= cfg.steps:
        print(f"{run} already trained {done} of {cfg.steps} steps; nothing to do")
        return {"steps": done, "seconds": 0.0, "metrics": {}}

    epochs = math.ceil(cfg.steps / cfg.steps_per_epoch)
    initial_epoch = done // cfg.steps_per_epoch
    seed = cfg.seed + done  # a resumed run draws new patches
    if getattr(strategy.extended, "_num_workers", 1) > 1 and not chief:
        seed += 1_000_003 * (strategy.cluster_resolver.task_id + 1)
    dataset = source.dataset(cfg.batch, seed=seed)
    saver = TimedCheckpoint(manager, optimizer, cfg.checkpoint_minutes, cfg.steps)
    callbacks = [
        saver,
        StepProgress(optimizer, done, cfg.steps, cfg.steps_per_epoch, verbose),
        tf.keras.callbacks.TensorBoard(log_dir=str(run / "logs"), update_freq=cfg.steps_per_epoch),
        tf.keras.callbacks.TerminateOnNaN(),
    ]
    start = time.monotonic()
    _stop_on_signals()
    try:
        history = model.fit(
            dataset, epochs=epochs, initial_epoch=initial_epoch,
            steps_per_epoch=cfg.steps_per_epoch, callbacks=callbacks, verbose=0,
        )  # verbose=0: Keras's own bar counts per epoch; StepProgress counts to cfg.steps
    except KeyboardInterrupt:
        saver.save("interrupted")
        raise
    saver.save("finished")
    seconds = time.monotonic() - start
    metrics = {k: float(v[-1]) for k, v in history.history.items() if v}
    summary = {
        "steps": _step(optimizer),
        "seconds": seconds,
        "steps_per_second": (_step(optimizer) - done) / max(seconds, 1e-9),
        "metrics": metrics,
        "skipped": dict(source.skipped),
    }
    if chief:
        (run / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT (even where nohup/& ignore it) stop training with a checkpoint."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


class TimedCheckpoint(tf.keras.callbacks.Callback):
    """Keras callback: save every `minutes`, stop at `total_steps`; `save` on demand."""

    def __init__(self, manager, optimizer, minutes: float, total_steps: int):
        super().__init__()
        self.manager, self.optimizer = manager, optimizer
        self.seconds, self.total_steps = minutes * 60.0, total_steps
        self.last = time.monotonic()

    def save(self, why: str = "timer") -> None:
        step = _step(self.optimizer)
        path = self.manager.save(checkpoint_number=step)
        self.last = time.monotonic()
        log.info("checkpoint %s at step %d (%s)", path, step, why)

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.optimizer)
        if step >= self.total_steps:
            self.model.stop_training = True
        elif time.monotonic() - self.last >= self.seconds:
            self.save()


class StepProgress(tf.keras.callbacks.Callback):
    """One progress bar over the steps still to do, ending at --steps (Keras's counts per epoch).

    verbose=1: a live bar with ETA; verbose=2: one line every `every` steps; 0: nothing.
    """

    METRICS = ("loss", "bpp", "psnr")

    def __init__(self, optimizer, done: int, total_steps: int, every: int, verbose: int = 1):
        super().__init__()
        self.optimizer, self.done, self.total, self.every = optimizer, done, total_steps, every
        self.verbose = verbose
        self.bar = None
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if not self.verbose:
            return
        step = min(_step(self.optimizer), self.total)
        values = [(k, float(v)) for k, v in (logs or {}).items() if k in self.METRICS]
        if self.verbose == 1:
            if self.bar is None:
                if self.done:
                    print(f"steps {self.done} -> {self.total}")
                self.bar = tf.keras.utils.Progbar(
                    self.total - self.done, stateful_metrics=self.METRICS, unit_name="step")
            self.bar.update(step - self.done, values=values)
        elif step % self.every == 0 or step == self.total:
            rate = (step - self.done) / max(time.monotonic() - self.start, 1e-9)
            shown = " ".join(f"{k} {v:.4g}" for k, v in values)
            print(f"step {step}/{self.total} {shown} ({rate:.2f} steps/s)", flush=True)


def steps_per_second(model_cfg: ModelConfig, patch: int, batch: int, steps: int) -> float:
    """Measure training speed on random data (benchmarks): steps per second after warm-up."""
    model = build_model(model_cfg)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
    x = tf.random.stateless_uniform([batch, patch, patch, 3], seed=[1, 2])
    ds = tf.data.Dataset.from_tensors((x, tf.ones([batch, patch, patch, 1]))).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace + warm up
    start = time.monotonic()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps / (time.monotonic() - start)


__all__ = ["TrainConfig", "TrainError", "DataError", "train", "make_strategy", "steps_per_second"]

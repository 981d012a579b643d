"""Run folders: what a model source names, and the run folders fine-tune and prune write.

A *source* (the argument of ``wildlink export``, ``finetune`` and ``prune``) is one of

- a run folder written by ``wildlink train`` (``model_config.json``, ``checkpoints/ckpt-N``;
  the latest checkpoint counts),
- a checkpoint prefix such as ``run/checkpoints/ckpt-12``,
- a weights folder written by `training.model.save_weights` (``model_config.json``,
  ``weights.npz``, ``train_config.json`` with ``weights_step``, no ``checkpoints/``),
- a bundle carrying its float weights in ``<bundle>/checkpoint/`` (``export --weights``), or
  naming them in its manifest (``training.checkpoint``).

`resolve` is the one place that decides which; everything that loads a source goes through it.

Example:
    >>> src = resolve("runs/default")                                  # doctest: +SKIP
    >>> src.run, src.prefix, src.step                                  # doctest: +SKIP
    (PosixPath('runs/default'), PosixPath('runs/default/checkpoints/ckpt-300'), 300)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from device.codec.bundle import MANIFEST, WEIGHTS_FOLDER
from device.errors import WildlinkError

#: File beside each checkpoint that records the widths (so export can rebuild the model).
CONFIG_FILE = "model_config.json"
#: Float weights shipped beside a bundle (`save_weights`): what finetune, prune and export need.
WEIGHTS_FILE = "weights.npz"
#: Training settings of a run (data, steps, base run); export reads it.
TRAIN_CONFIG = "train_config.json"
#: Where a run keeps its checkpoints.
CHECKPOINTS = "checkpoints"


class CheckpointError(WildlinkError, ValueError):
    """A run folder or checkpoint cannot be read as a wildlink model."""


class FinetuneError(WildlinkError, ValueError):
    """A fine-tuning (or pruning) option, source or output folder is unusable."""


@dataclass(frozen=True)
class RunSource:
    """What a source names: `run` holds model_config.json (and train_config.json); `prefix` is
    the checkpoint to restore, or None for a weights folder (`run`/weights.npz)."""

    run: Path
    prefix: Path | None

    @property
    def step(self) -> int:
        """The training step of the weights: N of ckpt-N, or a weights folder's weights_step."""
        if self.prefix is None:
            return int(read_train_config(self.run).get("weights_step", 0))
        return int(self.prefix.name.rsplit("-", 1)[1])


def resolve(source: str | Path | RunSource) -> RunSource:
    """The run folder and checkpoint (or weights folder) behind `source` (see module doc)."""
    if isinstance(source, RunSource):
        return source
    path = Path(source)
    if path.is_dir() and (path / MANIFEST).exists() and not (path / CONFIG_FILE).exists():
        path = _bundle_weights(path)
    return _resolve_run(path)


def _resolve_run(path: Path) -> RunSource:
    if path.is_dir():
        if (path / WEIGHTS_FILE).exists() and not (path / CHECKPOINTS).exists():
            return RunSource(path, None)
        if not (path / CONFIG_FILE).exists():
            raise CheckpointError(f"{path} is not a training run: it has no {CONFIG_FILE}")
        prefix = tf.train.latest_checkpoint(str(path / CHECKPOINTS))
        if prefix is None:
            raise CheckpointError(f"{path} has no checkpoint yet (expected {path}/{CHECKPOINTS})")
        return RunSource(path, Path(prefix))
    if tf.io.gfile.exists(str(path) + ".index"):
        run = path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
        return RunSource(run, path)
    if path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    raise CheckpointError(f"no run folder, checkpoint or bundle at {path}")


def _bundle_weights(bundle: Path) -> Path:
    """The float weights of a bundle: its checkpoint/ folder, or what its manifest names."""
    inside = bundle / WEIGHTS_FOLDER
    if (inside / CONFIG_FILE).exists():
        return inside
    manifest = bundle / MANIFEST
    try:
        training = json.loads(manifest.read_text()).get("training") or {}
    except (json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{manifest} is not valid JSON: not a wildlink bundle") from None
    named = training.get("checkpoint") if isinstance(training, dict) else None
    if named:
        named_path = Path(named) if Path(named).is_absolute() else bundle / named
        if named_path.exists() or Path(str(named_path) + ".index").exists():
            return named_path
    raise CheckpointError(
        f"bundle {bundle} holds only TFLite files and no checkpoint, so it is not a training run: "
        "pass the run folder it was exported from (fine-tuning and export need the float "
        "weights; `wildlink export --weights` ships them in the bundle)"
    )


def read_train_config(run: Path) -> dict:
    """A run's train_config.json, or {} when it has none (or it is unreadable)."""
    try:
        return json.loads((Path(run) / TRAIN_CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# -- the run folders finetune and prune write ------------------------------------------------
def prepare_output(out: Path, force: bool) -> None:
    """Make `out` an empty folder; only a run folder is overwritten, and only with `force`."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FinetuneError(f"{out} is not empty (use --force to overwrite it)")
        if not (out / CONFIG_FILE).exists():
            raise FinetuneError(f"{out} is not empty and not a run folder: refusing to overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def save_run(model, out: Path, train_cfg: dict, summary: dict, step: int) -> str:
    """Write the run folder `wildlink export` reads; returns the checkpoint path."""
    model.config.save(out)
    (out / TRAIN_CONFIG).write_text(json.dumps(train_cfg, indent=2) + "\n")
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(out / CHECKPOINTS), max_to_keep=1
    )
    path = manager.save(checkpoint_number=step)
    summary["checkpoint"] = path
    (out / "finetune_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return path


def adapted_train_config(cfg, base_run: Path, images: list[Path]) -> dict:
    """train_config.json of a fine-tuned or pruned run: export reads `data` (int8 calibration)
    and `base` (the base run's steps) from it."""
    base = read_train_config(base_run)
    return {
        "data": [str(p) for p in images] if cfg.holdout else list(cfg.data),
        "patch": cfg.patch,
        "batch": cfg.batch,
        "steps": cfg.steps,
        "masks": cfg.masks,
        "lr": cfg.learning_rate,
        "seed": cfg.seed,
        "base": {"run": str(base_run), "data": base.get("data"), "steps": base.get("steps")},
    }

"""argparse types shared by the subcommands: numbers in a range, with one-line messages."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(kind: type = float, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: `kind` (int or float) within [low, high], or open at either end."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value != value:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(
                f"expected {noun} {'>' if low_open else '>='} {low}, got {text}"
            )
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(
                f"expected {noun} {'<' if high_open else '<='} {high}, got {text}"
            )
        return value

    return parse


positive_int = number(int, 1)
positive_float = number(float, 0, low_open=True)
fraction = number(float, 0, 1)


def check_data(paths, flag: str) -> None:
    """Fail within a second, before TensorFlow loads (it takes 10-20 s and prints a screenful),
    when a data folder is missing or holds no images. Uses training.data's own search."""
    from training.data import DataError, find_images

    try:
        find_images(paths)
    except DataError as exc:
        raise DataError(f"{flag}: {exc}") from None


def check_file(path, flag: str) -> None:
    """A file option that must exist (checked before TensorFlow loads)."""
    from pathlib import Path

    from tools.errors import UserError

    if path is not None and not Path(path).is_file():
        raise UserError(f"{flag}: {path} does not exist")


def check_source(path, flag: str | None = None) -> None:
    """A model source that must exist (checked before TensorFlow loads): a run folder, a
    checkpoint prefix run/checkpoints/ckpt-N or a bundle (`training.runs.resolve` decides)."""
    from pathlib import Path

    from tools.errors import UserError

    if not Path(path).exists() and not Path(f"{path}.index").exists():
        raise UserError(f"{flag + ': ' if flag else ''}{path} does not exist (a training run "
                        "folder, run/checkpoints/ckpt-N or a bundle with its weights)")

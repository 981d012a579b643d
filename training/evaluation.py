"""Whole-image evaluation of a float model, and the image sets fine-tune and prune report on.

The rate is the model's own estimate with quantised latents (bits of y and z), not a coded
bitstream; `training/measure.py` measures the bundle with the device's coder instead.

Example:
    >>> train, held_out = split_images(["sites/peru-sdzg1"], holdout=0.5)   # doctest: +SKIP
    >>> evaluate(model, held_out)["bpp"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data import find_images, read_image
from training.model import HyperpriorCodec
from training.runs import FinetuneError

log = logging.getLogger(__name__)


def evaluate(model: HyperpriorCodec, images: list[Path], limit: int = 0) -> dict:
    """Whole-image rate-distortion with quantised latents (the model's estimate of the rate).

    Images are edge-padded to a multiple of 64; bpp and PSNR count the original pixels only.
    With `limit`, at most that many images, evenly spaced over the sorted list.
    A variable-rate model is measured at its reference level. Returns mean bpp, mean PSNR
    (dB, RGB, 0..255) and the mean RD loss at that level's lambda.
    """
    if limit and limit < len(images):  # evenly spaced: a sequence's frames are alike
        images = [
            images[i] for i in np.unique(np.linspace(0, len(images) - 1, limit).round().astype(int))
        ]
    paths = list(images)
    level = model.config.reference_level
    lmbda = model.config.levels[level]
    forward = _eval_function(model) if len(paths) > 2 else (
        lambda x: model(x, training=False, level=level))
    rows = []
    for path in paths:
        try:
            image = read_image(path)
        except (OSError, ValueError, SyntaxError):
            log.warning("skipping unreadable image %s", path)
            continue
        h, w = image.shape[:2]
        ph, pw = -h % 64, -w % 64
        x = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge").astype(np.float32) / 255.0
        out = forward(tf.constant(x[None]))
        x_hat = np.clip(out["x_hat"].numpy()[0, :h, :w], 0.0, 1.0)
        bits = float(tf.reduce_sum(out["bits_y"]) + tf.reduce_sum(out["bits_z"]))
        mse = float(np.mean((x[:h, :w] - x_hat) ** 2)) * 255.0**2
        bpp = bits / (h * w)
        rows.append((bpp, 10 * np.log10(255.0**2 / max(mse, 1e-9)), bpp + lmbda * mse))
    if not rows:
        raise FinetuneError("no readable evaluation image")
    bpp, psnr, loss = np.mean(np.array(rows), axis=0)
    return {"images": len(rows), "bpp": float(bpp), "psnr": float(psnr), "loss": float(loss)}


def _eval_function(model: HyperpriorCodec):
    """The quantised forward pass, traced once for any image size (cached per model)."""
    fn = _EVAL_FNS.get(model)
    if fn is None:
        spec = tf.TensorSpec([1, None, None, 3], tf.float32)
        level = model.config.reference_level
        fn = tf.function(lambda x: model(x, training=False, level=level), input_signature=[spec])
        _EVAL_FNS[model] = fn
    return fn


_EVAL_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def split_images(data, holdout: float) -> tuple[list[Path], list[Path]]:
    """(train, held out): the first 1 - holdout of the sorted images train, the rest evaluate."""
    images = find_images(data)
    if holdout <= 0:
        return images, []
    cut = int(round(len(images) * (1 - holdout)))
    if cut < 1 or cut >= len(images):
        raise FinetuneError(
            f"--holdout {holdout} leaves no image on one side of {len(images)} images"
        )
    return images[:cut], images[cut:]


def eval_sets(cfg, held_out: list[Path]) -> dict[str, list[Path]]:
    """The sets a run reports before and after: the held-out images, then each --eval-data."""
    sets = {"held-out": held_out} if held_out else {}
    for folder in cfg.eval_data:
        sets[str(folder)] = find_images([folder])
    return sets

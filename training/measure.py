"""What int8 costs: the float model against the trap's own pipeline, level by level.

The float pipeline is the trained model in TensorFlow, coded by TFC's range coder. The int8
pipeline is the exported bundle run by the device code itself (`device.codec.Encoder` with
the int8 analysis and the exact-integer h_s, `device.codec.Decoder` with the float16 g_s),
so the figure is what a trap and a base station will see, not a re-implementation of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from device.codec import bundle as fmt
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder, pad_image
from training.data import read_image
from training.entropy import PRECISION, level_steps
from training.model import HyperpriorCodec


def _psnr(sse: float, count: int) -> float:
    return float(10 * np.log10(255.0**2 / max(sse / max(count, 1), 1e-12)))


def float_pipeline(model: HyperpriorCodec, image: np.ndarray, j: np.ndarray,
                   coders: tuple) -> tuple[int, np.ndarray]:
    """(bytes of z and y from TFC's coder, uint8 reconstruction) of the float model.

    `j`: the level's channel steps, float32 [M] (zeros for a one-rate model); `coders`: the
    (y, z) entropy models of `model.entropy_models(compression=True)`, built once by the
    caller (they build the range coder's tables).
    """
    c = model.config
    y_model, z_model = coders
    h, w = image.shape[:2]
    x = pad_image(image, fmt.PAD_MULTIPLE)[None].astype(np.float32) / 255.0
    y = model.g_a(x)
    z = model.h_a(y if c.mean else tf.abs(y))
    z_hat = z_model.quantize(z)
    out = model.h_s(z_hat)
    indexes, mu = out if c.mean else (out, None)
    step = tf.constant(np.exp(c.scale_step * j).astype(np.float32))
    u, loc = y / step, (None if mu is None else mu / step)
    idx = tf.clip_by_value(tf.round(tf.clip_by_value(indexes, 0.0, c.num_scales - 1.0)) - j,
                           0.0, c.num_scales - 1.0)
    nbytes = len(z_model.compress(z).numpy()[0]) + len(y_model.compress(u, idx, loc=loc).numpy()[0])
    centre = 0.0 if loc is None else loc
    u_hat = tf.round(u - centre) + centre
    x_hat = np.clip(model.g_s(u_hat * step).numpy()[0, :h, :w], 0.0, 1.0)
    return nbytes, np.clip(np.rint(x_hat * 255.0), 0, 255).astype(np.uint8)


def measure(model: HyperpriorCodec, bundle: Path, images: list[Path]) -> dict:
    """Float vs int8 bytes and PSNR over `images` at every rate level of the model.

    Returns {"images", "levels": [{level, bpp_float, bpp_int8, percent, psnr_float,
    psnr_int8}], "percent", "psnr_loss_db"} (the last two: the worst level), or {} if no
    image could be read.
    """
    pictures = []
    for path in images:
        try:
            pictures.append(read_image(path))
        except (OSError, ValueError, SyntaxError):
            continue
    if not pictures:
        return {}
    side = max(max(p.shape[:2]) for p in pictures)
    encoder = Encoder(bundle, size=max(side, 16), two_part="off")
    decoder = Decoder(bundle)
    pixels = sum(p.shape[0] * p.shape[1] for p in pictures)
    coders = model.entropy_models(compression=True, precision=PRECISION)
    steps = level_steps(model)
    rows = []
    for level in range(len(model.config.levels)):
        t = encoder.ladder.at(level)
        j = (np.zeros(model.config.latent, np.float32) if steps is None
             else steps[level].astype(np.float32))
        totals = {"float": 0, "int8": 0, "sse_float": 0.0, "sse_int8": 0.0}
        for image in pictures:
            nbytes, x_float = float_pipeline(model, image, j, coders)
            totals["float"] += nbytes
            result = encoder.encode(image, saliency="none", step=t, use_prefilter=False)
            totals["int8"] += sum(p["z"] + sum(p["bands"]) for p in result.actual_bytes)
            x_int8 = decoder.decode(result.data).image
            ref = image.astype(np.float64)
            totals["sse_float"] += float(np.sum((x_float - ref) ** 2))
            totals["sse_int8"] += float(np.sum((x_int8.astype(np.float64) - ref) ** 2))
        psnr_f = _psnr(totals["sse_float"], 3 * pixels)
        psnr_8 = _psnr(totals["sse_int8"], 3 * pixels)
        rows.append({
            "level": level,
            "bpp_float": 8.0 * totals["float"] / pixels,
            "bpp_int8": 8.0 * totals["int8"] / pixels,
            "percent": 100.0 * (totals["int8"] / max(totals["float"], 1) - 1.0),
            "psnr_float": psnr_f,
            "psnr_int8": psnr_8,
        })
    return {
        "images": len(pictures),
        "levels": rows,
        "percent": max(r["percent"] for r in rows),
        "psnr_loss_db": max(r["psnr_float"] - r["psnr_int8"] for r in rows),
    }

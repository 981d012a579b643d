"""What is inside a container: header, boxes, bytes per part, estimated vs actual bits.

The estimate is the model's -log2 p of the decoded symbols (what rate control searched with);
the gap to the actual bytes is the range coder's overhead (termination, escapes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from device.codec import container as C
from device.codec import latents as L
from device.codec import rangecoder
from device.codec.bundle import Bundle
from device.codec.container_io import Header, stream_bytes, unpack_image
from device.errors import BundleError, ContainerError


def describe(data: bytes, bundle: Bundle | str | Path | None = None) -> dict:
    """A JSON-able description of container `data`; bits are estimated if the bundle matches."""
    header, z_data, bands, damaged = unpack_image(data, None)
    parts = stream_bytes(data)
    stream = [(b.index, b.data) for b in C.unpack(data).bands]  # stream order
    info = {
        "bytes": len(data),
        "model_id": header.model_id,
        "size": f"{header.width}x{header.height}",
        "coded_size": f"{header.coded_width}x{header.coded_height}",
        "capture_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(header.capture_time)),
        "trap_id": header.trap_id,
        "prefiltered": header.prefiltered,
        "step": header.step,
        "background_step": header.background_step,
        "boxes": [_box(c, conf) for c, conf in zip(header.boxes, header.box_conf, strict=True)],
        "header_bytes": parts["header"],
        "z_bytes": len(z_data),
        "band_rows": header.band_rows,
        "bands": [{"band": i, "bytes": len(payload)} for i, payload in stream],
    }
    if damaged:
        info["damaged_bands"] = [f"{i}: {why}" for i, why in sorted(damaged.items())]
    try:
        loaded = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    except BundleError as exc:
        info["estimate"] = f"not available: {exc}"
        return info
    if loaded.model_id != header.model_id:
        info["estimate"] = f"not available: the bundle is model {loaded.model_id}"
        return info
    _add_estimates(info, header, z_data, bands, loaded)
    return info


def _box(corners, conf: int) -> dict:
    x0, y0, x1, y1 = (int(c) for c in corners)
    return {"x0": round(x0 / 255, 3), "y0": round(y0 / 255, 3),
            "x1": round(x1 / 255, 3), "y1": round(y1 / 255, 3), "conf": round(conf / 255, 2)}  # fmt: skip


def _add_estimates(info: dict, header: Header, z_data, bands, bundle: Bundle) -> None:
    from device.codec.decoder import Decoder

    decoder = Decoder(bundle)
    tables = decoder.tables
    lh, lw, z_shape = decoder.latent_shape(header)
    try:
        z = rangecoder.decode_indexed(z_data, L.z_indexes(z_shape), *tables.z)
    except rangecoder.RangeCoderError as exc:
        raise ContainerError(f"the side information (z) is corrupt: {exc}") from None
    info["z_estimated_bytes"] = round(
        rangecoder.estimate_bits(z, L.z_indexes(z_shape), *tables.z) / 8, 1
    )
    indexes = L.hyper_indexes(decoder.hyper, L.z_hat(z, tables.z_offset), tables.lut)
    roi = L.roi_mask(header.boxes, header.coded_height, header.coded_width, lh, lw)
    steps = L.step_map(roi, header.step, header.background_step, bool(header.boxes))
    shifted = L.shift_indexes(indexes, steps)
    ranges = L.band_rows(lh, header.band_rows)
    total_est, total_act = info["z_estimated_bytes"], len(z_data)
    for item in info["bands"]:
        band = item["band"]
        if band >= len(ranges):
            item["error"] = "beyond the image"
            continue
        r0, r1 = ranges[band]
        item["rows"] = f"{r0}-{r1 - 1}"
        item["roi"] = bool(roi[r0:r1].any())
        try:
            values = rangecoder.decode_indexed(bands[band], shifted[r0:r1], *tables.y)
        except rangecoder.RangeCoderError:
            item["error"] = "does not decode"
            continue
        est = rangecoder.estimate_bits(values, shifted[r0:r1], *tables.y) / 8
        item["estimated_bytes"] = round(est, 1)
        item["nonzero"] = int(np.count_nonzero(values))
        total_est += est
        total_act += len(bands[band])
    info["estimated_stream_bytes"] = round(total_est, 1)
    info["actual_stream_bytes"] = total_act
    if total_est:
        info["coder_overhead"] = f"{100 * (total_act / total_est - 1):+.2f}%"

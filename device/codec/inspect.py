"""What is inside a container: header, boxes, bytes per part, estimated vs actual bits.

The estimate is the model's -log2 p of the decoded symbols (what rate control searched with);
the gap to the actual bytes is the range coder's overhead (termination, escapes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from device.codec import latents as L
from device.codec import rangecoder
from device.codec.bundle import Bundle
from device.codec.container_io import Header, split_parts, unpack_image
from device.errors import BundleError, ContainerError


def describe(data: bytes, bundle: Bundle | str | Path | None = None) -> dict:
    """A JSON-able description of container `data`; bits are estimated if the bundle matches."""
    header, z_data, bands = unpack_image(data, None)
    parts = split_parts(data)
    info = {
        "bytes": len(data),
        "model_id": header.model_id,
        "size": f"{header.width}x{header.height}",
        "coded_size": f"{header.coded_width}x{header.coded_height}",
        "capture_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(header.capture_time)),
        "trap_id": header.trap_id,
        "step": header.step,
        "background_step": header.background_step,
        "boxes": [_box(c) for c in header.boxes],
        "header_bytes": parts["header"],
        "z_bytes": len(z_data),
        "bands": [
            {"stream": i, "bytes": 0 if b is None else len(b), "received": b is not None}
            for i, b in enumerate(bands)
        ],
    }
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


def _box(corners) -> dict:
    x0, y0, x1, y1 = (int(c) for c in corners)
    return {"x0": round(x0 / 255, 3), "y0": round(y0 / 255, 3),
            "x1": round(x1 / 255, 3), "y1": round(y1 / 255, 3)}  # fmt: skip


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
    rows = L.band_rows(lh, len(bands))
    total_est, total_act = info["z_estimated_bytes"], len(z_data)
    for item, band, payload in zip(
        info["bands"], L.band_order(roi, len(bands), bool(header.boxes)), bands, strict=True
    ):
        r0, r1 = rows[band]
        item["rows"] = f"{r0}-{r1 - 1}"
        item["roi"] = bool(roi[r0:r1].any())
        if payload is None:
            continue
        try:
            values = rangecoder.decode_indexed(payload, shifted[r0:r1], *tables.y)
        except rangecoder.RangeCoderError:
            item["corrupt"] = True
            continue
        est = rangecoder.estimate_bits(values, shifted[r0:r1], *tables.y) / 8
        item["estimated_bytes"] = round(est, 1)
        item["nonzero"] = int(np.count_nonzero(values))
        total_est += est
        total_act += len(payload)
    info["estimated_stream_bytes"] = round(total_est, 1)
    info["actual_stream_bytes"] = total_act
    if total_est:
        info["coder_overhead"] = f"{100 * (total_act / total_est - 1):+.2f}%"

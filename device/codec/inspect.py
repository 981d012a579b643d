"""What is inside a container: header, boxes, bytes per part, estimated vs actual bits.

The estimate is the model's -log2 p of the decoded symbols (what rate control searched with);
the gap to the actual bytes is the range coder's overhead (termination, escapes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from device.codec import latents, rangecoder
from device.codec.bundle import Bundle
from device.codec.container import Container, Part, QuantBox, unpack
from device.errors import BundleError


def describe(data: bytes, bundle: Bundle | str | Path | None = None) -> dict:
    """A JSON-able description of container `data`; bits are estimated if the bundle matches."""
    c = unpack(data)
    streams = sum(len(p.z or b"") + sum(len(b.data) for b in p.bands) for p in c.parts)
    info = {
        "bytes": len(data),
        "version": c.version,
        "model_id": c.model_id,
        "size": f"{c.width}x{c.height}",
        "capture_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.capture_time)),
        "trap_id": c.trap_id,
        "boxes": [_box(b) for b in c.boxes],
        "header_bytes": len(data) - streams,
        "parts": [_part(p) for p in c.parts],
    }
    try:
        loaded = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    except BundleError as exc:
        info["estimate"] = f"not available: {exc}"
        return info
    if loaded.model_id != c.model_id:
        info["estimate"] = f"not available: the bundle is model {loaded.model_id}"
        return info
    _add_estimates(info, c, loaded)
    return info


def _box(b: QuantBox) -> dict:
    x, y, w, h = b.bbox
    return {"x0": round(x, 3), "y0": round(y, 3), "x1": round(x + w, 3), "y1": round(y + h, 3),
            "conf": round(b.conf / 255, 2)}


def _part(p: Part) -> dict:
    out = {
        "kind": p.name, "rect": list(p.rect), "coded_size": f"{p.coded_width}x{p.coded_height}",
        "level": p.level, "step": p.step, "background_step": p.background_step,
        "prefiltered": p.prefiltered, "z_bytes": len(p.z) if p.z is not None else None,
        "band_rows": p.band_rows,
        "bands": [{"band": b.index, "bytes": len(b.data)} for b in p.bands],
    }
    if p.damaged:
        out["damaged"] = [f"{d.index if d.index >= 0 else 'z'}: {d.reason}" for d in p.damaged]
    return out


def _add_estimates(info: dict, c: Container, bundle: Bundle) -> None:
    """Per band: rows, ROI, the model's estimate and non-zero symbols (the decoder's plan)."""
    from device.codec.decoder import Decoder

    decoder = Decoder(bundle)
    tables = decoder.tables
    total_est = total_act = 0.0
    for part, item in zip(c.parts, info["parts"], strict=True):
        if part.z is None:
            continue
        plan, z, shifted, _mean = decoder.side_information(c, part)
        z_est = rangecoder.estimate_bits(z, latents.z_indexes(plan.z_shape), *tables.z) / 8
        item["z_estimated_bytes"] = round(z_est, 1)
        total_est += z_est
        total_act += len(part.z)
        bands = {b.index: b.data for b in part.bands}
        for entry in item["bands"]:
            r0, r1 = plan.ranges[entry["band"]]
            entry["rows"] = f"{r0}-{r1 - 1}"
            entry["roi"] = bool(plan.roi[r0:r1].any())
            try:
                values = rangecoder.decode_indexed(bands[entry["band"]], shifted[r0:r1], *tables.y)
            except rangecoder.RangeCoderError:
                entry["error"] = "does not decode"
                continue
            est = rangecoder.estimate_bits(values, shifted[r0:r1], *tables.y) / 8
            entry["estimated_bytes"] = round(est, 1)
            entry["nonzero"] = int(np.count_nonzero(values))
            total_est += est
            total_act += len(bands[entry["band"]])
    info["estimated_stream_bytes"] = round(total_est, 1)
    info["actual_stream_bytes"] = int(total_act)
    if total_est:
        info["coder_overhead"] = f"{100 * (total_act / total_est - 1):+.2f}%"

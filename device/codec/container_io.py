"""The codec's view of a container (device/codec/container.py holds the byte format).

`Header` is what encoder, decoder, services and `inspect` read: sizes named for what they
are (`width`/`height` = the size to restore, `coded_*` = the size the codec ran at), boxes as
8-bit corner tuples (x0, y0, x1, y1) in MegaDetector order, the ROI steps and the band layout.
`pack_image` / `unpack_image` convert between it plus the streams and `container.Container`.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.codec import container as C
from device.regions import Box

__all__ = ["Header", "box_corners", "pack_image", "unpack_image", "stream_bytes"]


@dataclass(frozen=True)
class Header:
    """Everything about one coded image except its streams."""

    model_id: str
    width: int  # size to restore (the original capture size)
    height: int
    coded_width: int  # the transmit size the codec ran at
    coded_height: int
    capture_time: int  # unix seconds
    trap_id: int
    boxes: tuple  # ((x0, y0, x1, y1), ...) in 1/255 of the image, MegaDetector order
    step: int  # j_g
    background_step: int  # j_bg
    band_rows: int  # latent rows per band
    band_count: int  # bands listed in the container
    box_conf: tuple = ()  # confidence of each box in 1/255
    prefiltered: bool = False


def box_corners(box: Box) -> tuple[int, int, int, int]:
    """A normalised box as the container sends it: 8-bit corners rounded outwards."""
    q = C.QuantBox.from_box(box)
    return q.x0, q.y0, q.x1, q.y1


def pack_image(header: Header, z: bytes, bands: list[tuple[int, bytes]]) -> bytes:
    """Container bytes for a header, the z stream and (band index, bytes) in stream order."""
    original = (header.width, header.height) != (header.coded_width, header.coded_height)
    confs = header.box_conf or (255,) * len(header.boxes)
    return C.pack(
        C.Container(
            model_id=header.model_id,
            width=header.coded_width,
            height=header.coded_height,
            original_width=header.width if original else None,
            original_height=header.height if original else None,
            capture_time=header.capture_time,
            trap_id=header.trap_id,
            boxes=tuple(C.QuantBox(*c, conf) for c, conf in zip(header.boxes, confs, strict=True)),
            j_global=header.step,
            j_bg=header.background_step,
            band_rows=header.band_rows,
            z=z,
            bands=tuple(C.Band(i, data) for i, data in bands),
            prefiltered=header.prefiltered,
        )
    )


def unpack_image(data: bytes, model_id: str | None = None):
    """(header, z, {band index: bytes}, {band index: why unusable}) of container bytes.

    Raises:
        ContainerError: not a container, truncated or corrupt header or z, or (when
            `model_id` is given) made by another model.
    """
    c = C.unpack(data)
    if model_id is not None:
        C.check_model(c, model_id)
    width, height = c.restore_size
    header = Header(
        model_id=c.model_id,
        width=width,
        height=height,
        coded_width=c.width,
        coded_height=c.height,
        capture_time=c.capture_time,
        trap_id=c.trap_id,
        boxes=tuple((b.x0, b.y0, b.x1, b.y1) for b in c.boxes),
        step=c.j_global,
        background_step=c.j_bg,
        band_rows=c.band_rows,
        band_count=len(c.bands) + len(c.damaged),
        box_conf=tuple(b.conf for b in c.boxes),
        prefiltered=c.prefiltered,
    )
    bands = {band.index: band.data for band in c.bands}
    damaged = {d.index: d.reason for d in c.damaged}
    return header, c.z, bands, damaged


def stream_bytes(data: bytes) -> dict:
    """Bytes per part: header (with its CRC), z, and each band in stream order."""
    c = C.unpack(data)
    streams = len(c.z) + sum(len(b.data) for b in c.bands)
    return {"header": len(data) - streams, "z": len(c.z), "bands": [len(b.data) for b in c.bands]}

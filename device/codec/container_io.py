"""The codec's view of the container: one header dataclass, pack and unpack.

PROVISIONAL: a minimal stand-in until device/codec/container.py lands; this module will then
only adapt that one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from device.errors import ContainerError
from device.regions import Box

MAGIC = b"WLK0"


@dataclass(frozen=True)
class Header:
    """Everything the decoder needs besides the streams."""

    model_id: str
    width: int  # original image size (the decoder's output size)
    height: int
    coded_width: int  # transmit size the codec ran at
    coded_height: int
    capture_time: int
    trap_id: int
    boxes: tuple  # (x0, y0, x1, y1) in 1/255 of the image, MegaDetector order
    step: int  # j_g
    background_step: int  # j_bg
    band_count: int


def box_corners(box: Box) -> tuple[int, int, int, int]:
    """A normalised box as 8-bit corners, rounded outwards (the box never shrinks)."""
    b = box.clipped()
    x0, y0 = int(b.x * 255.0 + 1e-9), int(b.y * 255.0 + 1e-9)
    x1 = min(255, -int(-(b.x + b.w) * 255.0 + 1e-9))
    y1 = min(255, -int(-(b.y + b.h) * 255.0 + 1e-9))
    return x0, y0, max(x1, x0), max(y1, y0)


_FIXED = struct.Struct(">4s4sHHHHIHBBBB")


def pack_image(header: Header, z: bytes, bands: list[bytes]) -> bytes:
    head = _FIXED.pack(
        MAGIC, bytes.fromhex(header.model_id), header.width, header.height,
        header.coded_width, header.coded_height, header.capture_time, header.trap_id,
        header.step, header.background_step, len(header.boxes), len(bands),
    )  # fmt: skip
    head += b"".join(bytes(c) for c in header.boxes)
    head += struct.pack(">H", len(z)) + b"".join(struct.pack(">H", len(b)) for b in bands)
    head += struct.pack(">I", zlib.crc32(head))
    return head + z + b"".join(bands)


def unpack_image(data: bytes, model_id: str | None = None):
    if len(data) < _FIXED.size or data[:4] != MAGIC:
        raise ContainerError("not a wildlink container")
    (_, mid, w, h, cw, ch, t, trap, step, bstep, nbox, nband) = _FIXED.unpack_from(data)
    pos = _FIXED.size
    boxes = tuple(tuple(data[pos + 4 * i : pos + 4 * i + 4]) for i in range(nbox))
    pos += 4 * nbox
    lengths = struct.unpack_from(f">{nband + 1}H", data, pos)
    pos += 2 * (nband + 1)
    (crc,) = struct.unpack_from(">I", data, pos)
    if crc != zlib.crc32(data[:pos]):
        raise ContainerError("header CRC mismatch")
    pos += 4
    if model_id is not None and mid.hex() != model_id:
        raise ContainerError(f"made by model {mid.hex()}, this decoder has {model_id}")
    header = Header(mid.hex(), w, h, cw, ch, t, trap, boxes, step, bstep, nband)
    z = data[pos : pos + lengths[0]]
    pos += lengths[0]
    bands = []
    for n in lengths[1:]:
        bands.append(data[pos : pos + n] if pos + n <= len(data) else None)
        pos += n
    return header, z, bands


def split_parts(data: bytes) -> dict:
    """Bytes per part: header (with CRC), then the streams."""
    nbox, nband = data[_FIXED.size - 2], data[_FIXED.size - 1]
    return {"header": _FIXED.size + 4 * nbox + 2 * (nband + 1) + 4}

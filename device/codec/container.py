"""Container: one compressed image as bytes (byte layout in docs/container.md).

`pack(container) -> bytes` and `unpack(data) -> Container` are inverse: `unpack(pack(c)) == c`
for every valid `c`. The header is small (29 bytes + 5 per box + 5 per band, with 2-byte
lengths) because every byte is LoRa airtime. The header and each stream carry a CRC-16
(CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, crcmod's `crc-ccitt-false`), so that a
file whose tail was lost or damaged still yields its header, its z stream and every intact
band: `Container.damaged` names the others, and the decoder replaces them by the prior mean.

Example:
    >>> c = Container(model_id="1a2b3c4d", width=1024, height=768, z=b"..",
    ...               bands=(Band(0, b"..."),))                          # doctest: +SKIP
    >>> unpack(pack(c)) == c                                              # doctest: +SKIP
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import crcmod.predefined

from device.errors import ContainerError
from device.regions import Box

__all__ = [
    "Band", "Container", "DamagedBand", "QuantBox", "MAGIC", "VERSION", "MAX_BOXES",
    "check_model", "header_size", "pack", "unpack",
]  # fmt: skip

MAGIC = b"WL"
VERSION = 1
MAX_BOXES = 16  # DESIGN.md, container contract
MAX_BANDS = 255
MAX_STREAM = (1 << 21) - 1  # lengths are LEB128 varints of at most 3 bytes

# flags (one byte)
FLAG_PREFILTERED = 0x01  # the trap blurred the background before encoding (seed 001)
FLAG_ORIGINAL_SIZE = 0x02  # original width/height follow the coded size
_KNOWN_FLAGS = FLAG_PREFILTERED | FLAG_ORIGINAL_SIZE

# magic, version, flags, model id, coded width, coded height
_FIXED = struct.Struct(">2sBB4sHH")
# capture time, trap id, box count
_META = struct.Struct(">IHB")
# j_global, j_bg, band_rows, band count
_ROI = struct.Struct(">bbBB")

_crc16 = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of `data` (check value 0x29B1 for b"123456789")."""
    return _crc16(data)


@dataclass(frozen=True)
class QuantBox:
    """A box as sent: corners and confidence quantised to 0..255 of the image size / of 1.

    Corners are rounded outwards (x0, y0 down; x1, y1 up) so the sent box covers the detection.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    conf: int

    def __post_init__(self):
        for name in ("x0", "y0", "x1", "y1", "conf"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise ContainerError(f"box {name}={value!r} is not an integer in [0, 255]")

    @classmethod
    def from_box(cls, box: Box) -> QuantBox:
        """Quantise a normalised MegaDetector-style `[x, y, w, h]` box (clipped to the image)."""
        import math

        b = box.clipped()

        def down(v: float) -> int:
            return min(max(math.floor(v * 255), 0), 255)

        def up(v: float) -> int:
            return min(max(math.ceil(v * 255 - 1e-9), 0), 255)

        conf = min(max(round(float(box.conf) * 255), 0), 255)
        return cls(down(b.x), down(b.y), up(b.x + b.w), up(b.y + b.h), conf)

    def to_box(self) -> Box:
        """Back to a normalised box (category 1, animal)."""
        x0, y0, x1, y1 = (v / 255 for v in (self.x0, self.y0, self.x1, self.y1))
        return Box(x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0), self.conf / 255)


@dataclass(frozen=True)
class Band:
    """One independently range-coded band of y: latent rows [index*band_rows, +band_rows)."""

    index: int
    data: bytes


@dataclass(frozen=True)
class DamagedBand:
    """A band listed in the header whose bytes are missing, cut short or fail their CRC."""

    index: int
    reason: str


@dataclass(frozen=True)
class Container:
    """Everything the base station needs to decode one image.

    Attributes:
        model_id: the bundle's 8 hex digits (docs/bundle.md); checked by `check_model`.
        width, height: coded (transmitted) image size in pixels, before padding.
        original_width, original_height: capture size to restore (None: same as coded).
        capture_time: unix seconds (uint32). trap_id: uint16.
        boxes: at most 16, in MegaDetector order.
        j_global, j_bg: ROI steps (DESIGN.md "ROI steps"), int8.
        band_rows: latent rows per band (1..255).
        z: the hyper-latent stream. bands: intact bands in stored order (ROI bands first).
        prefiltered: the background was blurred before encoding.
        damaged: bands listed in the header but unusable (only ever set by `unpack`).
    """

    model_id: str
    width: int
    height: int
    z: bytes
    bands: tuple[Band, ...]
    band_rows: int = 1
    original_width: int | None = None
    original_height: int | None = None
    capture_time: int = 0
    trap_id: int = 0
    boxes: tuple[QuantBox, ...] = ()
    j_global: int = 0
    j_bg: int = 0
    prefiltered: bool = False
    damaged: tuple[DamagedBand, ...] = field(default=())

    @property
    def restore_size(self) -> tuple[int, int]:
        """(width, height) the decoder should output."""
        if self.original_width is None:
            return self.width, self.height
        return self.original_width, self.original_height

    @property
    def band_indexes(self) -> tuple[int, ...]:
        return tuple(band.index for band in self.bands)

    def missing_bands(self, total: int) -> tuple[int, ...]:
        """Band indexes in [0, total) with no intact data (damaged or never listed)."""
        present = set(self.band_indexes)
        return tuple(i for i in range(total) if i not in present)


def check_model(container: Container, bundle_model_id: str) -> None:
    """Refuse a container made with another model (names both ids)."""
    if container.model_id != bundle_model_id:
        raise ContainerError(
            f"file was encoded with model {container.model_id}, but the bundle is model "
            f"{bundle_model_id}: decode it with the matching bundle (--bundle)"
        )


# --------------------------------------------------------------------------------------------
# pack


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low first, high bit = more."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _model_bytes(model_id: str) -> bytes:
    try:
        raw = bytes.fromhex(model_id)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 4:
        raise ContainerError(f"model id must be 8 hex digits, got {model_id!r}")
    return raw


def _check_range(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ContainerError(f"{name}={value!r} is not an integer in [{low}, {high}]")


def _header(c: Container) -> bytes:
    """Header bytes without its CRC (validates every field)."""
    _check_range("width", c.width, 1, 0xFFFF)
    _check_range("height", c.height, 1, 0xFFFF)
    flags = FLAG_PREFILTERED if c.prefiltered else 0
    if (c.original_width is None) != (c.original_height is None):
        raise ContainerError("give both original_width and original_height, or neither")
    if c.original_width is not None:
        _check_range("original_width", c.original_width, 1, 0xFFFF)
        _check_range("original_height", c.original_height, 1, 0xFFFF)
        flags |= FLAG_ORIGINAL_SIZE
    _check_range("capture_time", c.capture_time, 0, 0xFFFFFFFF)
    _check_range("trap_id", c.trap_id, 0, 0xFFFF)
    if len(c.boxes) > MAX_BOXES:
        raise ContainerError(f"{len(c.boxes)} boxes; the container carries at most {MAX_BOXES}")
    _check_range("j_global", c.j_global, -128, 127)
    _check_range("j_bg", c.j_bg, -128, 127)
    _check_range("band_rows", c.band_rows, 1, 255)
    if len(c.bands) > MAX_BANDS:
        raise ContainerError(f"{len(c.bands)} bands; the container carries at most {MAX_BANDS}")
    indexes = [band.index for band in c.bands]
    for i in indexes:
        _check_range("band index", i, 0, MAX_BANDS - 1)
    if len(set(indexes)) != len(indexes):
        raise ContainerError(f"band indexes repeat: {indexes}")
    if c.damaged:
        raise ContainerError("cannot pack a container with damaged bands")

    out = bytearray(_FIXED.pack(MAGIC, VERSION, flags, _model_bytes(c.model_id), c.width, c.height))
    if flags & FLAG_ORIGINAL_SIZE:
        out += struct.pack(">HH", c.original_width, c.original_height)
    out += _META.pack(c.capture_time, c.trap_id, len(c.boxes))
    for box in c.boxes:
        if not isinstance(box, QuantBox):
            raise ContainerError(f"boxes must be QuantBox, got {type(box).__name__}")
        out += bytes((box.x0, box.y0, box.x1, box.y1, box.conf))
    out += _ROI.pack(c.j_global, c.j_bg, c.band_rows, len(c.bands))
    for data in (c.z, *(band.data for band in c.bands)):
        if len(data) > MAX_STREAM:
            raise ContainerError(f"stream of {len(data)} bytes exceeds {MAX_STREAM}")
    out += _varint(len(c.z)) + struct.pack(">H", crc16(c.z))
    for band in c.bands:
        out += bytes((band.index,)) + _varint(len(band.data)) + struct.pack(">H", crc16(band.data))
    return bytes(out)


def pack(container: Container) -> bytes:
    """Serialise: header, header CRC-16, z stream, band streams (in `bands` order)."""
    head = _header(container)
    parts = [head, struct.pack(">H", crc16(head)), bytes(container.z)]
    parts += [bytes(band.data) for band in container.bands]
    return b"".join(parts)


def header_size(n_boxes: int, n_bands: int, original_size: bool = False) -> int:
    """Bytes before the streams (header + CRC) with typical 2-byte lengths (for airtime)."""
    fixed = _FIXED.size + _META.size + _ROI.size + 2 + 2 + 2  # + z length, z CRC, header CRC
    return fixed + (4 if original_size else 0) + 5 * n_boxes + 5 * n_bands


# --------------------------------------------------------------------------------------------
# unpack


class _Reader:
    """Bounds-checked cursor over the header: every read names what it was reading."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ContainerError(
                f"file truncated in the header ({what}): {len(self.data)} bytes, need {end}"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, what))

    def varint(self, what: str) -> int:
        value = 0
        for shift in (0, 7, 14):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:
                    raise ContainerError(f"header corrupt: {what} is not a minimal varint")
                return value
        raise ContainerError(f"header corrupt: {what} longer than 3 bytes")


def unpack(data: bytes) -> Container:
    """Parse a container; damaged or missing bands are listed in `Container.damaged`.

    Raises:
        ContainerError: not a wildlink file, unknown version, header truncated or corrupt
            (CRC), z stream missing or corrupt, or bytes after the last band.
    """
    data = bytes(data)
    if len(data) < 3:
        raise ContainerError(f"file too short to be a wildlink container ({len(data)} bytes)")
    if data[:2] != MAGIC:
        raise ContainerError(f"not a wildlink container (magic {data[:2].hex()}, expected 574c)")
    if data[2] != VERSION:
        raise ContainerError(
            f"container version {data[2]} is not supported (this wildlink reads {VERSION})"
        )
    r = _Reader(data)
    _, _, flags, model, width, height = r.unpack(_FIXED, "fixed fields")
    original = (
        r.unpack(struct.Struct(">HH"), "original size") if flags & FLAG_ORIGINAL_SIZE else None
    )
    capture_time, trap_id, n_boxes = r.unpack(_META, "capture time, trap id, box count")
    if n_boxes > MAX_BOXES:
        raise ContainerError(f"header corrupt: {n_boxes} boxes (at most {MAX_BOXES})")
    raw_boxes = [r.take(5, f"box {i}") for i in range(n_boxes)]
    j_global, j_bg, band_rows, n_bands = r.unpack(_ROI, "ROI steps and band count")
    z_len = r.varint("z length")
    z_crc = r.unpack(struct.Struct(">H"), "z CRC")[0]
    table = []
    for i in range(n_bands):
        index = r.take(1, f"band {i} index")[0]
        length = r.varint(f"band {i} length")
        crc = r.unpack(struct.Struct(">H"), f"band {i} CRC")[0]
        table.append((index, length, crc))
    head_end = r.pos
    (head_crc,) = r.unpack(struct.Struct(">H"), "header CRC")
    if crc16(data[:head_end]) != head_crc:
        raise ContainerError("header corrupt: CRC mismatch")
    # The CRC passed: remaining checks are about a writer that broke the format.
    if flags & ~_KNOWN_FLAGS:
        raise ContainerError(f"unknown flags 0x{flags:02x} (a newer wildlink wrote this file?)")
    if width == 0 or height == 0 or (original is not None and 0 in original):
        raise ContainerError("header names a zero image size")
    if band_rows == 0:
        raise ContainerError("header names 0 latent rows per band")
    indexes = [index for index, _, _ in table]
    if len(set(indexes)) != len(indexes) or MAX_BANDS in indexes:
        raise ContainerError(f"header lists invalid or repeated band indexes: {indexes}")
    boxes = tuple(QuantBox(*raw) for raw in raw_boxes)

    pos = r.pos
    z = data[pos : pos + z_len]
    if len(z) < z_len:
        raise ContainerError(f"file truncated in the z stream ({len(z)} of {z_len} bytes)")
    if crc16(z) != z_crc:
        raise ContainerError("z stream corrupt: CRC mismatch (nothing can be decoded)")
    pos += z_len
    bands, damaged = [], []
    for index, length, crc in table:
        chunk = data[pos : pos + length]
        pos += length
        if len(chunk) < length:
            reason = "missing" if not chunk else f"truncated ({len(chunk)} of {length} bytes)"
            damaged.append(DamagedBand(index, reason))
        elif crc16(chunk) != crc:
            damaged.append(DamagedBand(index, "CRC mismatch"))
        else:
            bands.append(Band(index, chunk))
    if pos < len(data):
        raise ContainerError(f"{len(data) - pos} unexpected bytes after the last band")
    return Container(
        model_id=model.hex(),
        width=width,
        height=height,
        z=z,
        bands=tuple(bands),
        band_rows=band_rows,
        original_width=original[0] if original else None,
        original_height=original[1] if original else None,
        capture_time=capture_time,
        trap_id=trap_id,
        boxes=boxes,
        j_global=j_global,
        j_bg=j_bg,
        prefiltered=bool(flags & FLAG_PREFILTERED),
        damaged=tuple(damaged),
    )

"""Container: one compressed picture as bytes (byte layout in docs/container.md).

Version 2 holds one header and several independently decodable *parts*: a low-resolution
*context* of the whole frame and full-detail *regions* (animal crops, the camera's info bar),
each coded at its own size, rate level and step. Regions come first in the stream, so a file
cut short loses the context's detail first. Version 1 files (one image, one part) still
unpack, into the same `Container` with a single context part.

One vocabulary everywhere: `width`/`height` are the capture size the base restores;
`coded_width`/`coded_height` are the size one part was coded at; a region's `rect` is where
it sits in the capture, in capture pixels.

`pack(container) -> bytes` and `unpack(data) -> Container` are inverse for every valid
container. The header and every stream carry a CRC-16 (CCITT-FALSE: poly 0x1021, init 0xFFFF,
crcmod's `crc-ccitt-false`), so a file whose tail was lost or damaged still yields its header
and every intact stream: `Part.damaged` names the others and the decoder replaces them by the
prior mean. Every size is bounded by what a trap sends (`MAX_*` below) and checked before
anything is allocated.

Example:
    >>> part = Part(KIND_CONTEXT, (0, 0, 1024, 768), 256, 192, z=b"..", bands=(Band(0, b"."),))
    >>> c = Container(model_id="1a2b3c4d", width=1024, height=768, parts=(part,))
    >>> unpack(pack(c)) == c                                              # doctest: +SKIP
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

import crcmod.predefined

from device.boxes import Box
from device.errors import ContainerError
from device.trapid import check_trap_id

__all__ = [
    "Band", "Container", "DamagedBand", "Part", "QuantBox", "MAGIC", "VERSION", "MAX_BOXES",
    "MAX_PARTS", "KIND_CONTEXT", "KIND_REGION", "KIND_INFOBAR", "KIND_NAMES",
    "check_model", "header_size", "part_header_size", "pack", "unpack", "crc16",
]

MAGIC = b"WL"
VERSION = 2  # what `pack` writes; `unpack` also reads 1
MAX_BOXES = 16  # DESIGN.md, container contract
MAX_BANDS = 255  # per part
MAX_PARTS = 8
MAX_STREAM = (1 << 21) - 1  # lengths are LEB128 varints of at most 3 bytes
#: Largest coded side of one part, and coded pixels of all parts together. At LoRa budgets a
#: trap codes 1024 px or less (2048 at most, e.g. a large region); g_s time and memory grow
#: with the coded pixels, so this bounds what one file can cost the base (docs/reliability.md).
MAX_CODED_SIDE = 2048
MAX_CODED_PIXELS = 1 << 21  # 2.1 Mpx, e.g. 1672 x 1254
#: Largest capture size a base restores (a 24 Mpx camera; the picture alone is 72 MB).
MAX_CAPTURE_SIDE = 6144
MAX_CAPTURE_PIXELS = 24_000_000

KIND_CONTEXT, KIND_REGION, KIND_INFOBAR = 0, 1, 2
KIND_NAMES = {KIND_CONTEXT: "context", KIND_REGION: "region", KIND_INFOBAR: "infobar"}

# container flags (v1 and v2)
FLAG_PREFILTERED = 0x01  # v1 only: the background was blurred before encoding (seed 001)
FLAG_ORIGINAL_SIZE = 0x02  # v1 only: original width/height follow the coded size
_KNOWN_FLAGS_V1 = FLAG_PREFILTERED | FLAG_ORIGINAL_SIZE
FLAG_NAME = 0x01  # v2: the camera's file name follows the boxes (length byte + ASCII)
_KNOWN_FLAGS_V2 = FLAG_NAME
#: Longest camera file name carried (a DCF name such as IMAG0042.JPG is 12).
MAX_NAME = 63
# part byte: kind in bits 0-1, prefiltered in bit 2
_PART_PREFILTERED = 0x04
_KNOWN_PART_BITS = 0x03 | _PART_PREFILTERED

_U16 = struct.Struct(">H")
# v1: magic, version, flags, model id, coded width, coded height
_FIXED_V1 = struct.Struct(">2sBB4sHH")
# v2: magic, version, flags, model id, capture width, capture height
_FIXED = struct.Struct(">2sBB4sHH")
# capture time, trap id, box count
_META = struct.Struct(">IHB")
# j_global, j_bg, band_rows, band count (v1)
_ROI_V1 = struct.Struct(">bbBB")
# v2 part: coded width, coded height, level, step, background step, band_rows, band count
_PART = struct.Struct(">HHBbbBB")
_RECT = struct.Struct(">HHHH")

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

        return cls(down(b.x), down(b.y), up(b.x + b.w), up(b.y + b.h), quant_conf(box.conf))

    @property
    def corners(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    @property
    def bbox(self) -> list[float]:
        """MegaDetector's normalised [x, y, w, h]."""
        x0, y0, x1, y1 = (v / 255 for v in self.corners)
        return [x0, y0, x1 - x0, y1 - y0]

    def to_box(self) -> Box:
        """Back to a normalised box (category 1, animal)."""
        x0, y0, x1, y1 = (v / 255 for v in self.corners)
        return Box(x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0), self.conf / 255)


def quant_conf(conf: float) -> int:
    """A confidence in [0, 1] as the container's byte (the one 8-bit rule for confidences)."""
    return min(max(round(float(conf) * 255), 0), 255)


@dataclass(frozen=True)
class Band:
    """One independently range-coded band of a part's y: latent rows [index*band_rows, ...)."""

    index: int
    data: bytes


@dataclass(frozen=True)
class DamagedBand:
    """A band listed in the header whose bytes are missing, cut short or fail their CRC."""

    index: int
    reason: str


@dataclass(frozen=True)
class Part:
    """One independently decodable coded image inside a container.

    Attributes:
        kind: KIND_CONTEXT (the whole frame), KIND_REGION (an animal crop) or KIND_INFOBAR.
        rect: (x0, y0, x1, y1) in capture pixels: where the decoded part goes.
        coded_width, coded_height: the size the codec ran at (before padding to 64).
        z: the hyper-latent stream (None: the part's z was lost, only `unpack` sets it).
        bands: intact y bands in stored order.
        level: the model's rate level (0 for a one-rate model).
        step, background_step: ROI steps j_g and j_bg (DESIGN.md "ROI steps").
        band_rows: latent rows per band.
        prefiltered: the background inside this part was blurred before encoding.
        damaged: bands listed but unusable, or the z stream (index -1) (only `unpack`).
    """

    kind: int
    rect: tuple[int, int, int, int]
    coded_width: int
    coded_height: int
    z: bytes | None
    bands: tuple[Band, ...]
    level: int = 0
    step: int = 0
    background_step: int = 0
    band_rows: int = 1
    prefiltered: bool = False
    damaged: tuple[DamagedBand, ...] = field(default=())

    @property
    def name(self) -> str:
        return KIND_NAMES.get(self.kind, f"kind {self.kind}")

    @property
    def band_count(self) -> int:
        return len(self.bands) + sum(1 for d in self.damaged if d.index >= 0)

    @property
    def usable(self) -> bool:
        """The z stream arrived intact (without it no band of the part decodes)."""
        return self.z is not None

    def without_streams(self) -> Part:
        """The same part with its streams emptied (a lost z stays None)."""
        return replace(self, z=None if self.z is None else b"",
                       bands=tuple(Band(b.index, b"") for b in self.bands))

    def missing_bands(self, total: int) -> tuple[int, ...]:
        """Band indexes in [0, total) with no intact data (damaged or never listed)."""
        present = {band.index for band in self.bands}
        return tuple(i for i in range(total) if i not in present)


@dataclass(frozen=True)
class Container:
    """Everything the base station needs to decode one picture.

    Attributes:
        model_id: the bundle's 8 hex digits (docs/bundle.md); the decoder picks its bundle.
        width, height: the capture size to restore.
        parts: regions first, then the context (the stream order).
        capture_time: unix seconds (uint32). trap_id: 0..255 (`device.trapid`) in a uint16.
        boxes: at most 16 animal boxes, normalised to the capture, in MegaDetector order.
        version: 2 for what `pack` writes; 1 for a file of the first format.
        name: the camera's own file name (printable ASCII, at most 63 bytes; "" if none).
    """

    model_id: str
    width: int
    height: int
    parts: tuple[Part, ...]
    capture_time: int = 0
    trap_id: int = 0
    boxes: tuple[QuantBox, ...] = ()
    version: int = VERSION
    name: str = ""

    @property
    def context(self) -> Part | None:
        return next((p for p in self.parts if p.kind == KIND_CONTEXT), None)

    @property
    def main(self) -> Part:
        """The context part, or the first part if there is no context."""
        return self.context or self.parts[0]

    @property
    def prefiltered(self) -> bool:
        return any(p.prefiltered for p in self.parts)

    # The main part's coding, for readers of one-image files (version 1 had only that).
    @property
    def coded_width(self) -> int:
        return self.main.coded_width

    @property
    def coded_height(self) -> int:
        return self.main.coded_height

    @property
    def step(self) -> int:
        return self.main.step

    @property
    def background_step(self) -> int:
        return self.main.background_step

    def without_streams(self) -> Container:
        """The same header with every stream emptied (what `inspect` and services keep)."""
        return replace(self, parts=tuple(p.without_streams() for p in self.parts))


def check_model(container: Container, bundle_model_id: str) -> None:
    """Refuse a container made with another model (names both ids)."""
    if container.model_id != bundle_model_id:
        raise ContainerError(
            f"file was encoded with model {container.model_id}, but the bundle is model "
            f"{bundle_model_id}: decode it with the matching bundle (--bundle)"
        )


def check_sizes(width: int, height: int, parts) -> None:
    """Refuse sizes no trap sends (before anything the size of an image is allocated)."""
    if not (1 <= width <= MAX_CAPTURE_SIDE and 1 <= height <= MAX_CAPTURE_SIDE) or (
        width * height > MAX_CAPTURE_PIXELS
    ):
        raise ContainerError(
            f"capture size {width}x{height} is beyond what a trap sends "
            f"(at most {MAX_CAPTURE_SIDE} px a side and {MAX_CAPTURE_PIXELS / 1e6:.0f} Mpx)"
        )
    total = 0
    for i, p in enumerate(parts):
        w, h = p.coded_width, p.coded_height
        if not (1 <= w <= MAX_CODED_SIDE and 1 <= h <= MAX_CODED_SIDE):
            raise ContainerError(
                f"part {i} coded size {w}x{h}: a trap codes 1..{MAX_CODED_SIDE} px a side"
            )
        total += w * h
        x0, y0, x1, y1 = p.rect
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ContainerError(f"part {i} rect {p.rect} is not inside the {width}x{height} frame")
    if total > MAX_CODED_PIXELS:
        raise ContainerError(
            f"parts code {total / 1e6:.1f} Mpx in all; a trap codes at most "
            f"{MAX_CODED_PIXELS / 1e6:.1f} Mpx per picture"
        )


# --------------------------------------------------------------------------------------------
# pack (version 2)


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


def _stream_entry(data: bytes) -> bytes:
    if len(data) > MAX_STREAM:
        raise ContainerError(f"stream of {len(data)} bytes exceeds {MAX_STREAM}")
    return _varint(len(data)) + _U16.pack(crc16(data))


def _part_header(i: int, p: Part, width: int, height: int) -> bytes:
    if p.kind not in KIND_NAMES:
        raise ContainerError(f"part {i}: unknown kind {p.kind}")
    _check_range(f"part {i} level", p.level, 0, 255)
    _check_range(f"part {i} step", p.step, -128, 127)
    _check_range(f"part {i} background_step", p.background_step, -128, 127)
    _check_range(f"part {i} band_rows", p.band_rows, 1, 255)
    if len(p.bands) > MAX_BANDS:
        raise ContainerError(f"part {i}: {len(p.bands)} bands; at most {MAX_BANDS}")
    indexes = [band.index for band in p.bands]
    for index in indexes:
        _check_range(f"part {i} band index", index, 0, MAX_BANDS - 1)
    if len(set(indexes)) != len(indexes):
        raise ContainerError(f"part {i}: band indexes repeat: {indexes}")
    if p.damaged or p.z is None:
        raise ContainerError(f"part {i}: cannot pack a part with damaged streams")
    if p.kind == KIND_CONTEXT and tuple(p.rect) != (0, 0, width, height):
        raise ContainerError(f"part {i}: a context covers the whole frame, not {p.rect}")
    out = bytearray((p.kind | (_PART_PREFILTERED if p.prefiltered else 0),))
    if p.kind != KIND_CONTEXT:
        out += _RECT.pack(*p.rect)
    out += _PART.pack(p.coded_width, p.coded_height, p.level, p.step, p.background_step,
                      p.band_rows, len(p.bands))
    out += _stream_entry(p.z)
    for band in p.bands:
        out += bytes((band.index,)) + _stream_entry(band.data)
    return bytes(out)


def _name_bytes(name: str) -> bytes:
    if not isinstance(name, str) or len(name) > MAX_NAME or not all(32 <= ord(ch) < 127 for ch in name):
        raise ContainerError(f"camera file name {name!r}: printable ASCII, at most {MAX_NAME} bytes")
    return name.encode("ascii")


def compact_name(name: str) -> str:
    """A camera file name as the container carries it: the base name, printable ASCII only
    (others become '_'), the last MAX_NAME characters."""
    import os

    base = os.path.basename(str(name))
    return "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in base)[-MAX_NAME:]


def _header(c: Container) -> bytes:
    """Version-2 header bytes without its CRC (validates every field)."""
    if c.version != VERSION:
        raise ContainerError(f"this wildlink writes container version {VERSION}, not {c.version}")
    _check_range("width", c.width, 1, 0xFFFF)
    _check_range("height", c.height, 1, 0xFFFF)
    _check_range("capture_time", c.capture_time, 0, 0xFFFFFFFF)
    check_trap_id(c.trap_id, "trap_id", ContainerError)  # uint16 field, radio's 0..255 range
    if len(c.boxes) > MAX_BOXES:
        raise ContainerError(f"{len(c.boxes)} boxes; the container carries at most {MAX_BOXES}")
    if not 1 <= len(c.parts) <= MAX_PARTS:
        raise ContainerError(f"{len(c.parts)} parts; a container holds 1..{MAX_PARTS}")
    for p in c.parts:
        for name, v in zip(("rect x0", "rect y0", "rect x1", "rect y1"), p.rect, strict=True):
            _check_range(name, v, 0, 0xFFFF)
        _check_range("coded_width", p.coded_width, 1, 0xFFFF)
        _check_range("coded_height", p.coded_height, 1, 0xFFFF)
    check_sizes(c.width, c.height, c.parts)
    name = _name_bytes(c.name)
    flags = FLAG_NAME if name else 0
    out = bytearray(_FIXED.pack(MAGIC, VERSION, flags, _model_bytes(c.model_id), c.width, c.height))
    out += _META.pack(c.capture_time, c.trap_id, len(c.boxes))
    for box in c.boxes:
        if not isinstance(box, QuantBox):
            raise ContainerError(f"boxes must be QuantBox, got {type(box).__name__}")
        out += bytes((box.x0, box.y0, box.x1, box.y1, box.conf))
    if name:
        out += bytes((len(name),)) + name
    out += bytes((len(c.parts),))
    for i, part in enumerate(c.parts):
        out += _part_header(i, part, c.width, c.height)
    return bytes(out)


def pack(container: Container) -> bytes:
    """Serialise: header, header CRC-16, then each part's z and bands, in part order."""
    head = _header(container)
    out = [head, _U16.pack(crc16(head))]
    for part in container.parts:
        out.append(bytes(part.z))
        out += [bytes(band.data) for band in part.bands]
    return b"".join(out)


def part_header_size(kind: int, n_bands: int) -> int:
    """One part's entry in the header (kind, rect, fields, stream table), 2-byte lengths."""
    return 1 + (0 if kind == KIND_CONTEXT else _RECT.size) + _PART.size + 4 + 5 * n_bands


def header_size(n_boxes: int, parts: list[tuple[int, int]], name: str = "") -> int:
    """Bytes before the streams, for parts given as (kind, band count), with 2-byte lengths."""
    size = _FIXED.size + _META.size + 1 + 2 + 5 * n_boxes  # + part count, header CRC
    size += 1 + len(name) if name else 0
    return size + sum(part_header_size(kind, n_bands) for kind, n_bands in parts)


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

    def stream(self, what: str) -> tuple[int, int]:
        return self.varint(f"{what} length"), self.unpack(_U16, f"{what} CRC")[0]


def _read_boxes(r: _Reader, n_boxes: int) -> list[bytes]:
    if n_boxes > MAX_BOXES:
        raise ContainerError(f"header corrupt: {n_boxes} boxes (at most {MAX_BOXES})")
    return [r.take(5, f"box {i}") for i in range(n_boxes)]


def _read_streams(data: bytes, pos: int, table) -> tuple[list, int]:
    """[(z or None, bands, damaged)] per part from the stream table; the end position."""
    out = []
    for z_len, z_crc, bands in table:
        z = data[pos : pos + z_len]
        pos += z_len
        damaged = []
        if len(z) < z_len or crc16(z) != z_crc:
            why = "CRC mismatch" if len(z) == z_len else ("missing" if not z else "truncated")
            damaged.append(DamagedBand(-1, f"z stream {why}"))
            z = None
        good = []
        for index, length, crc in bands:
            chunk = data[pos : pos + length]
            pos += length
            if len(chunk) < length:
                reason = "missing" if not chunk else f"truncated ({len(chunk)} of {length} bytes)"
                damaged.append(DamagedBand(index, reason))
            elif crc16(chunk) != crc:
                damaged.append(DamagedBand(index, "CRC mismatch"))
            else:
                good.append(Band(index, chunk))
        out.append((z, tuple(good), tuple(damaged)))
    if pos < len(data):
        raise ContainerError(f"{len(data) - pos} unexpected bytes after the last stream")
    return out, pos


def _check_bands(where: str, band_rows: int, bands) -> None:
    if band_rows == 0:
        raise ContainerError(f"header names 0 latent rows per band ({where})")
    indexes = [index for index, _, _ in bands]
    if len(set(indexes)) != len(indexes) or MAX_BANDS in indexes:
        raise ContainerError(f"header lists invalid or repeated band indexes ({where}): {indexes}")


def unpack(data: bytes) -> Container:
    """Parse a version-1 or version-2 container; damaged streams are listed per part.

    Raises:
        ContainerError: not a wildlink file, unknown version, header truncated or corrupt,
            a size no trap sends, no usable part, or bytes after the last stream.
    """
    data = bytes(data)
    if len(data) < 3:
        raise ContainerError(f"file too short to be a wildlink container ({len(data)} bytes)")
    if data[:2] != MAGIC:
        raise ContainerError(f"not a wildlink container (magic {data[:2].hex()}, expected 574c)")
    if data[2] not in (1, VERSION):
        raise ContainerError(
            f"container version {data[2]} is not supported (this wildlink reads 1 and {VERSION})"
        )
    return _unpack_v1(data) if data[2] == 1 else _unpack_v2(data)


def _unpack_v2(data: bytes) -> Container:
    r = _Reader(data)
    _, _, flags, model, width, height = r.unpack(_FIXED, "fixed fields")
    capture_time, trap_id, n_boxes = r.unpack(_META, "capture time, trap id, box count")
    check_trap_id(trap_id, "trap_id", ContainerError)
    raw_boxes = _read_boxes(r, n_boxes)
    name = b""
    if flags & FLAG_NAME:
        name = r.take(r.take(1, "name length")[0], "camera file name")
    n_parts = r.take(1, "part count")[0]
    if not 1 <= n_parts <= MAX_PARTS:
        raise ContainerError(f"header corrupt: {n_parts} parts (1..{MAX_PARTS})")
    heads, table = [], []
    for i in range(n_parts):
        bits = r.take(1, f"part {i} kind")[0]
        kind = bits & 0x03
        rect = (0, 0, width, height) if kind == KIND_CONTEXT else r.unpack(_RECT, f"part {i} rect")
        cw, ch, level, step, bg, band_rows, n_bands = r.unpack(_PART, f"part {i} fields")
        z_len, z_crc = r.stream(f"part {i} z")
        bands = []
        for b in range(n_bands):
            index = r.take(1, f"part {i} band {b} index")[0]
            bands.append((index, *r.stream(f"part {i} band {b}")))
        heads.append((bits, kind, tuple(rect), cw, ch, level, step, bg, band_rows))
        table.append((z_len, z_crc, bands))
    head_end = r.pos
    (head_crc,) = r.unpack(_U16, "header CRC")
    if crc16(data[:head_end]) != head_crc:
        raise ContainerError("header corrupt: CRC mismatch")
    # The CRC passed: the remaining checks are about a writer that broke the format.
    if flags & ~_KNOWN_FLAGS_V2:
        raise ContainerError(f"unknown flags 0x{flags:02x} (a newer wildlink wrote this file?)")
    try:
        text = _name_bytes(name.decode("ascii")).decode("ascii") if name else ""
    except (UnicodeDecodeError, ContainerError):
        raise ContainerError("header corrupt: the camera file name is not printable ASCII") from None
    if flags & FLAG_NAME and not name:
        raise ContainerError("header corrupt: an empty camera file name is flagged")
    for i, (bits, kind, *_rest) in enumerate(heads):
        if bits & ~_KNOWN_PART_BITS or kind not in KIND_NAMES:
            raise ContainerError(f"part {i}: unknown kind or bits 0x{bits:02x}")
    for i, (head, (_, _, bands)) in enumerate(zip(heads, table, strict=True)):
        _check_bands(f"part {i}", head[8], bands)
    shells = [Part(kind, rect, cw, ch, b"", (), level, step, bg, band_rows)
              for _, kind, rect, cw, ch, level, step, bg, band_rows in heads]
    check_sizes(width, height, shells)
    streams, _ = _read_streams(data, r.pos, table)
    parts = []
    for (bits, *_), shell, (z, bands, damaged) in zip(heads, shells, streams, strict=True):
        parts.append(replace(shell, z=z, bands=bands, damaged=damaged,
                             prefiltered=bool(bits & _PART_PREFILTERED)))
    return Container(
        model_id=model.hex(), width=width, height=height, parts=tuple(parts),
        capture_time=capture_time, trap_id=trap_id,
        boxes=tuple(QuantBox(*raw) for raw in raw_boxes), version=VERSION, name=text,
    )


def _unpack_v1(data: bytes) -> Container:
    """A version-1 file (one image) as a container with one context part."""
    r = _Reader(data)
    _, _, flags, model, coded_w, coded_h = r.unpack(_FIXED_V1, "fixed fields")
    original = r.unpack(struct.Struct(">HH"), "original size") if flags & FLAG_ORIGINAL_SIZE else None
    capture_time, trap_id, n_boxes = r.unpack(_META, "capture time, trap id, box count")
    raw_boxes = _read_boxes(r, n_boxes)
    j_global, j_bg, band_rows, n_bands = r.unpack(_ROI_V1, "ROI steps and band count")
    z_len, z_crc = r.stream("z")
    bands = []
    for i in range(n_bands):
        index = r.take(1, f"band {i} index")[0]
        bands.append((index, *r.stream(f"band {i}")))
    head_end = r.pos
    (head_crc,) = r.unpack(_U16, "header CRC")
    if crc16(data[:head_end]) != head_crc:
        raise ContainerError("header corrupt: CRC mismatch")
    if flags & ~_KNOWN_FLAGS_V1:
        raise ContainerError(f"unknown flags 0x{flags:02x} (a newer wildlink wrote this file?)")
    _check_bands("v1", band_rows, bands)
    width, height = original if original else (coded_w, coded_h)
    if 0 in (width, height, coded_w, coded_h):
        raise ContainerError("header names a zero image size")
    shell = Part(KIND_CONTEXT, (0, 0, width, height), coded_w, coded_h, b"", (), 0, j_global,
                 j_bg, band_rows, bool(flags & FLAG_PREFILTERED))
    check_sizes(width, height, [shell])
    ((z, good, damaged),), _ = _read_streams(data, r.pos, [(z_len, z_crc, bands)])
    if z is None:
        raise ContainerError("z stream corrupt or missing (nothing can be decoded)")
    return Container(
        model_id=model.hex(), width=width, height=height,
        parts=(replace(shell, z=z, bands=good, damaged=damaged),),
        capture_time=capture_time, trap_id=trap_id,
        boxes=tuple(QuantBox(*raw) for raw in raw_boxes), version=1,
    )

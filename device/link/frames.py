"""Radio frames: one data frame per image fragment, one ack frame per ARQ round.

Every byte is airtime (about 4.6 ms per byte at SF9/125 kHz), so the header is packed to bits.
Multi-byte fields are big-endian. The CRC-16/CCITT-FALSE (crcmod) closes every frame; the
optional 4-byte MIC (device/link/auth.py) sits just before it and covers everything before it.

    byte 0      vv tt m e f r   version (1), type (0 data, 1 ack), MIC present, payload
                                encrypted, flag (data: ACK requested; ack: image complete), 0
    byte 1      trap id (0..255)
    bytes 2-3   image id (the trap's sequence number, wraps at 65536)
    bytes 4-5   frame counter, low 16 bits (LoRaWAN-style; the 32-bit value enters the MIC)
  data:
    bytes 6-8   fragment index (12 bits) | fragment count - 1 (12 bits)
    ...         payload (the fragment)
  ack:
    bytes 6-7   base: every fragment below it is held
    ...         bitmap: bit i (LSB first) = fragment base + i is held; trailing zeros dropped
  both:
    4 bytes     MIC (when the m bit is set)
    2 bytes     CRC-16 over everything before it

A data frame costs 11 bytes of header and CRC, 15 with the MIC; an ack 10 (14) plus its bitmap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import crcmod.predefined

from device.errors import LinkError
from device.trapid import check_trap_id

if TYPE_CHECKING:
    from device.link.dutycycle import DutyCycle
    from device.radio.airtime import Modulation

__all__ = [
    "ACK",
    "ACK_HEADER",
    "ACK_SIZE_CAP",
    "CRC_LEN",
    "DATA",
    "DATA_HEADER",
    "MAX_FRAGMENTS",
    "MIC_LEN",
    "VERSION",
    "AckFrame",
    "DataFrame",
    "FrameError",
    "ack_bitmap_len",
    "ack_from_held",
    "air_limit",
    "crc16",
    "data_overhead",
    "frame_limit",
    "held_from_ack",
    "pack",
    "unpack",
]

VERSION = 1
DATA, ACK = 0, 1
DATA_HEADER = 9  #: bytes before a data frame's payload
ACK_HEADER = 8  #: bytes before an ack's bitmap
MIC_LEN = 4
CRC_LEN = 2
MAX_FRAGMENTS = 4096  #: 12-bit index and count
ACK_SIZE_CAP = 64  #: bitmap bytes an ack carries at most (512 fragments beyond its base)

_MIC_BIT, _ENC_BIT, _FLAG_BIT = 0x08, 0x04, 0x02

# CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection (check value 0x29B1).
crc16 = crcmod.predefined.mkCrcFun("crc-ccitt-false")


class FrameError(LinkError, ValueError):
    """Bytes that are not a valid wildlink frame (bad CRC, version, type or lengths)."""


@dataclass(frozen=True)
class DataFrame:
    """One fragment of one image.

    `fcnt` is the full 32-bit frame counter; only its low 16 bits travel (unpack returns those,
    the receiver restores the rest from its last seen value). `mic` is empty when unsigned.
    """

    trap_id: int
    image_id: int
    index: int
    count: int
    payload: bytes
    fcnt: int = 0
    ack_req: bool = False
    encrypted: bool = False
    mic: bytes = b""


@dataclass(frozen=True)
class AckFrame:
    """The receiver's view of one image: fragments below `base` plus a bitmap after it."""

    trap_id: int
    image_id: int
    base: int
    bitmap: bytes = b""
    fcnt: int = 0
    complete: bool = False
    mic: bytes = b""


Frame = DataFrame | AckFrame


def data_overhead(signed: bool = True) -> int:
    """Bytes a data frame adds around its payload."""
    return DATA_HEADER + CRC_LEN + (MIC_LEN if signed else 0)


def air_limit(mtu: int, modulation: Modulation, dutycycle: DutyCycle | None) -> int:
    """Largest frame (bytes) the radio and the region's dwell rule allow at this modulation."""
    return mtu if dutycycle is None else min(mtu, dutycycle.max_payload(modulation))


def frame_limit(mtu: int, modulation: Modulation, dutycycle: DutyCycle | None,
                signed: bool) -> int:
    """Largest data frame (bytes) the radio, the dwell rule and the duty cycle all allow.

    Raises LinkError when not even one payload byte fits, or one full frame needs more airtime
    than an hour of the duty cycle: such a link could never send (checked at config load).
    """
    limit = air_limit(mtu, modulation, dutycycle)
    overhead = data_overhead(signed=signed)
    if limit - overhead < 1:
        raise LinkError(f"no room for a payload: frames may be {limit} bytes, the header "
                        f"takes {overhead}")
    if dutycycle is not None and dutycycle.duty is not None:
        full = modulation.time_on_air(limit)
        if full > dutycycle.budget:
            raise LinkError(f"one {limit}-byte frame ({full:.1f} s at SF{modulation.sf}) exceeds "
                            f"the {dutycycle.duty:.1%} duty cycle's {dutycycle.budget:.1f} s per "
                            "hour: use a lower SF or another sub-band")
    return limit


def ack_bitmap_len(limit: int, signed: bool) -> int:
    """Bitmap bytes an ack may carry in a frame of at most `limit` bytes (1..ACK_SIZE_CAP)."""
    room = limit - ACK_HEADER - CRC_LEN - (MIC_LEN if signed else 0)
    return max(1, min(ACK_SIZE_CAP, room))


def signed_part(frame: Frame) -> bytes:
    """The bytes the MIC covers: header and payload/bitmap, with the MIC bit set."""
    return _body(frame, signed=True)


def pack(frame: Frame) -> bytes:
    """Encode a frame (with its MIC if `frame.mic` is set) and append the CRC."""
    if frame.mic and len(frame.mic) != MIC_LEN:
        raise FrameError(f"MIC must be {MIC_LEN} bytes, got {len(frame.mic)}")
    raw = _body(frame, signed=bool(frame.mic)) + frame.mic
    return raw + crc16(raw).to_bytes(2, "big")


def unpack(raw: bytes) -> Frame:
    """Decode and CRC-check one frame. Raises FrameError on anything malformed."""
    raw = bytes(raw)
    if len(raw) < ACK_HEADER + CRC_LEN:
        raise FrameError(f"frame too short ({len(raw)} bytes)")
    if crc16(raw[:-CRC_LEN]) != int.from_bytes(raw[-CRC_LEN:], "big"):
        raise FrameError("CRC mismatch")
    b0 = raw[0]
    if b0 >> 6 != VERSION:
        raise FrameError(f"unknown frame version {b0 >> 6}")
    if b0 & 0x01:
        raise FrameError("reserved bit set")
    kind = (b0 >> 4) & 0x03
    signed = bool(b0 & _MIC_BIT)
    end = len(raw) - CRC_LEN - (MIC_LEN if signed else 0)
    mic = raw[end : len(raw) - CRC_LEN] if signed else b""
    trap_id, image_id, fcnt = raw[1], int.from_bytes(raw[2:4], "big"), int.from_bytes(raw[4:6], "big")
    flag = bool(b0 & _FLAG_BIT)
    if kind == DATA:
        if b0 & _ENC_BIT and not signed:
            raise FrameError("an encrypted frame must carry a MIC")
        if end < DATA_HEADER:
            raise FrameError("data frame too short")
        packed = int.from_bytes(raw[6:9], "big")
        index, count = packed >> 12, (packed & 0xFFF) + 1
        if index >= count:
            raise FrameError(f"fragment index {index} out of range for {count} fragments")
        return DataFrame(trap_id, image_id, index, count, raw[DATA_HEADER:end], fcnt, flag,
                         bool(b0 & _ENC_BIT), mic)
    if kind == ACK:
        if b0 & _ENC_BIT:
            raise FrameError("acks are never encrypted")
        if end < ACK_HEADER:
            raise FrameError("ack frame too short")
        base = int.from_bytes(raw[6:8], "big")
        if base > MAX_FRAGMENTS:
            raise FrameError(f"ack base {base} beyond {MAX_FRAGMENTS}")
        return AckFrame(trap_id, image_id, base, raw[ACK_HEADER:end], fcnt, flag, mic)
    raise FrameError(f"unknown frame type {kind}")


def ack_from_held(trap_id: int, image_id: int, held: set[int] | frozenset[int], count: int,
                  max_bitmap: int) -> AckFrame:
    """Build the ack for the fragments `held` of an image of `count` fragments.

    `max_bitmap` caps the bitmap bytes (the ack must fit the radio's mtu); fragments beyond it
    are simply reported later.
    """
    base = 0
    while base in held:
        base += 1
    if base >= count:
        return AckFrame(trap_id, image_id, count, b"", complete=True)
    bits = 0
    for index in held:
        offset = index - base
        if 0 < offset < 8 * max_bitmap:
            bits |= 1 << offset
    bitmap = bits.to_bytes(max_bitmap, "little").rstrip(b"\0")
    return AckFrame(trap_id, image_id, base, bitmap)


def held_from_ack(ack: AckFrame) -> set[int]:
    """Fragment indexes an ack reports as held (the inverse of `ack_from_held`)."""
    held = set(range(ack.base))
    bits = int.from_bytes(ack.bitmap, "little")
    offset = 0
    while bits:
        if bits & 1:
            held.add(ack.base + offset)
        bits >>= 1
        offset += 1
    return held


def _body(frame: Frame, signed: bool) -> bytes:
    check_trap_id(frame.trap_id, error=FrameError)
    _check_u(frame.image_id, 16, "image id")
    if frame.fcnt < 0:
        raise FrameError(f"frame counter must be >= 0, got {frame.fcnt}")
    fcnt16 = (frame.fcnt & 0xFFFF).to_bytes(2, "big")
    mic_bit = _MIC_BIT if signed else 0
    if isinstance(frame, DataFrame):
        if not 1 <= frame.count <= MAX_FRAGMENTS:
            raise FrameError(f"fragment count must be 1..{MAX_FRAGMENTS}, got {frame.count}")
        if not 0 <= frame.index < frame.count:
            raise FrameError(f"fragment index {frame.index} out of range for {frame.count}")
        b0 = (VERSION << 6) | (DATA << 4) | mic_bit
        b0 |= (_ENC_BIT if frame.encrypted else 0) | (_FLAG_BIT if frame.ack_req else 0)
        packed = (frame.index << 12) | (frame.count - 1)
        head = bytes([b0, frame.trap_id]) + frame.image_id.to_bytes(2, "big") + fcnt16
        return head + packed.to_bytes(3, "big") + bytes(frame.payload)
    if isinstance(frame, AckFrame):
        if not 0 <= frame.base <= MAX_FRAGMENTS:
            raise FrameError(f"ack base must be 0..{MAX_FRAGMENTS}, got {frame.base}")
        b0 = (VERSION << 6) | (ACK << 4) | mic_bit | (_FLAG_BIT if frame.complete else 0)
        head = bytes([b0, frame.trap_id]) + frame.image_id.to_bytes(2, "big") + fcnt16
        return head + frame.base.to_bytes(2, "big") + bytes(frame.bitmap)
    raise FrameError(f"not a frame: {type(frame).__name__}")


def _check_u(value: int, bits: int, name: str) -> None:
    if not 0 <= value < (1 << bits):
        raise FrameError(f"{name} must be 0..{(1 << bits) - 1}, got {value}")

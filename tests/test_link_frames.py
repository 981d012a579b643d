"""Frame format: round trips, CRC, and a 10k-case fuzz of the parser."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from device.link import frames
from device.link.frames import AckFrame, DataFrame, FrameError, pack, unpack


def test_data_frame_round_trip_and_size() -> None:
    frame = DataFrame(7, 65535, 4095, 4096, b"payload", fcnt=0x12345, ack_req=True)
    raw = pack(frame)
    assert len(raw) == len(b"payload") + frames.data_overhead(signed=False) == 7 + 11
    back = unpack(raw)
    assert back == DataFrame(7, 65535, 4095, 4096, b"payload", 0x2345, True, False, b"")


def test_signed_frame_carries_mic_before_crc() -> None:
    frame = DataFrame(1, 2, 0, 1, b"x", fcnt=3, mic=b"ABCD")
    raw = pack(frame)
    assert len(raw) == 1 + frames.data_overhead(signed=True)
    assert raw[-6:-2] == b"ABCD"
    assert unpack(raw).mic == b"ABCD"
    assert raw[:-6] == frames.signed_part(frame)


def test_ack_bitmap_round_trip() -> None:
    held = {0, 1, 2, 5, 9, 40}
    ack = frames.ack_from_held(3, 10, held, count=50, max_bitmap=16)
    assert ack.base == 3 and not ack.complete
    back = unpack(pack(ack))
    assert isinstance(back, AckFrame)
    assert frames.held_from_ack(back) == held
    done = frames.ack_from_held(3, 10, set(range(50)), count=50, max_bitmap=16)
    assert done.complete and unpack(pack(done)).complete


def test_ack_bitmap_is_capped_to_fit() -> None:
    ack = frames.ack_from_held(3, 10, {0, 3, 100}, count=200, max_bitmap=4)
    assert len(ack.bitmap) <= 4
    assert frames.held_from_ack(ack) == {0, 3}  # 100 is reported in a later ack


@pytest.mark.parametrize("position", [0, 1, 5, 9, -3, -1])
def test_any_flipped_bit_is_caught(position: int) -> None:
    raw = bytearray(pack(DataFrame(7, 1, 0, 3, b"hello world", fcnt=9)))
    raw[position] ^= 0x10
    with pytest.raises(FrameError):
        unpack(bytes(raw))


@pytest.mark.parametrize(
    "frame",
    [
        DataFrame(256, 0, 0, 1, b""),
        DataFrame(0, 65536, 0, 1, b""),
        DataFrame(0, 0, 1, 1, b""),
        DataFrame(0, 0, 0, 4097, b""),
        AckFrame(0, 0, 4097),
    ],
)
def test_pack_refuses_out_of_range_fields(frame) -> None:
    with pytest.raises(FrameError):
        pack(frame)


def test_unpack_refuses_short_and_wrong_version() -> None:
    with pytest.raises(FrameError):
        unpack(b"\x40\x00")
    body = bytes([0x80]) + bytes(9)  # version 2
    with pytest.raises(FrameError, match="version"):
        unpack(body + frames.crc16(body).to_bytes(2, "big"))


def _frame_from_seed(seed: int) -> DataFrame:
    rng = random.Random(seed)
    count = rng.randint(1, 4096)
    return DataFrame(rng.randrange(256), rng.randrange(65536), rng.randrange(count), count,
                     rng.randbytes(rng.randrange(241)), rng.randrange(65536),
                     rng.random() < 0.5, False, rng.choice([b"", b"\x01\x02\x03\x04"]))


# Cheap strategies (bytes and one seed) keep 10k cases fast on a loaded CI machine.
@pytest.mark.slow  # 10k cases, ~35-40 s
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True, database=None, phases=(Phase.generate, Phase.shrink))
@given(raw=st.binary(max_size=40), seed=st.integers(0, 2**32 - 1))
def test_fuzz_parser_never_crashes(raw: bytes, seed: int) -> None:
    """Random bytes, valid frames and bit-flipped frames: a frame or FrameError, nothing else."""
    for candidate in (raw, raw + frames.crc16(raw).to_bytes(2, "big")):
        try:
            parsed = unpack(candidate)
        except FrameError:
            continue
        assert pack(parsed) == candidate  # what parses re-encodes to the same bytes
    frame = _frame_from_seed(seed)
    packed = pack(frame)
    assert unpack(packed) == frame
    damaged = bytearray(packed)
    flip = seed % (8 * len(damaged))
    damaged[flip // 8] ^= 1 << (flip % 8)
    with pytest.raises(FrameError):  # CRC-16 catches every single-bit error
        unpack(bytes(damaged))

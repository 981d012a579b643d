"""Container: round trips, damaged tails, clear errors, and a fuzzed parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.codec.container import (
    MAX_BOXES,
    Band,
    Container,
    DamagedBand,
    QuantBox,
    check_model,
    crc16,
    header_size,
    pack,
    unpack,
)
from device.errors import ContainerError, WildlinkError
from device.regions import Box


def sample(**changes) -> Container:
    fields = dict(
        model_id="1a2b3c4d",
        width=1024,
        height=768,
        z=bytes(range(60)),
        bands=(Band(3, b"roi band" * 20), Band(0, b"a" * 300), Band(1, b""), Band(2, b"xyz")),
        band_rows=4,
        original_width=4000,
        original_height=3000,
        capture_time=1_790_000_000,
        trap_id=513,
        boxes=(QuantBox(10, 20, 200, 250, 230), QuantBox(0, 0, 255, 255, 51)),
        j_global=-2,
        j_bg=5,
        prefiltered=True,
    )
    fields.update(changes)
    return Container(**fields)


def test_round_trip():
    c = sample()
    assert unpack(pack(c)) == c
    minimal = Container(model_id="00000000", width=1, height=1, z=b"", bands=())
    assert unpack(pack(minimal)) == minimal
    assert minimal.restore_size == (1, 1) and c.restore_size == (4000, 3000)


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1


def test_header_sizes():
    for boxes in (0, 4, 16):
        c = sample(boxes=(QuantBox(1, 2, 3, 4, 5),) * boxes, original_width=None,
                   original_height=None, z=b"z" * 200,
                   bands=tuple(Band(i, b"b" * 500) for i in range(12)))  # fmt: skip
        head = len(pack(c)) - 200 - 12 * 500
        assert head == header_size(boxes, 12)
    assert header_size(0, 0) == 29 and header_size(4, 0) == 49


def test_bands_keep_their_order_and_missing_ones_are_named():
    c = sample()
    assert unpack(pack(c)).band_indexes == (3, 0, 1, 2)
    assert c.missing_bands(6) == (4, 5)


def test_truncated_tail_keeps_intact_bands():
    c = sample()
    data = pack(c)
    cut = unpack(data[:-2])  # last band (2, 3 bytes) cut to 1 byte
    assert cut.band_indexes == (3, 0, 1)
    assert cut.damaged == (DamagedBand(2, "truncated (1 of 3 bytes)"),)
    gone = unpack(data[: -3 - 300 - 0])  # bands 0 (truncated to 0), 1 (empty, ok), 2 missing
    assert [d.index for d in gone.damaged] == [0, 2]
    assert gone.damaged[0].reason == "missing" and gone.band_indexes == (3, 1)
    assert gone.missing_bands(4) == (0, 2)
    with pytest.raises(ContainerError, match="damaged"):
        pack(cut)


def test_corrupt_band_is_reported_not_fatal():
    c = sample()
    data = bytearray(pack(c))
    data[-3 - 10] ^= 0xFF  # inside band 0
    got = unpack(bytes(data))
    assert got.damaged == (DamagedBand(0, "CRC mismatch"),)
    assert got.band_indexes == (3, 1, 2)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "too short"),
        (lambda d: b"PK" + d[2:], "not a wildlink container"),
        (lambda d: d[:2] + b"\x09" + d[3:], "version 9"),
        (lambda d: d[:20], "truncated in the header"),
        (lambda d: d[:5] + bytes([d[5] ^ 1]) + d[6:], "header corrupt"),
        (lambda d: d + b"\x00", "unexpected bytes"),
    ],
)
def test_clear_errors(mutate, message):
    data = pack(sample())
    with pytest.raises(ContainerError, match=message):
        unpack(mutate(data))


def test_z_damage_is_fatal():
    c = sample(bands=())
    data = pack(c)
    with pytest.raises(ContainerError, match="z stream"):
        unpack(data[:-1])
    with pytest.raises(ContainerError, match="z stream corrupt"):
        unpack(data[:-1] + bytes([data[-1] ^ 1]))


def test_check_model_names_both_ids():
    check_model(sample(), "1a2b3c4d")
    with pytest.raises(ContainerError, match="1a2b3c4d.*deadbeef"):
        check_model(sample(), "deadbeef")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model_id="xyz"), "model id"),
        (dict(width=0), "width"),
        (dict(height=70000), "height"),
        (dict(original_width=5, original_height=None), "both"),
        (dict(trap_id=-1), "trap_id"),
        (dict(capture_time=2**32), "capture_time"),
        (dict(boxes=(QuantBox(0, 0, 1, 1, 1),) * (MAX_BOXES + 1)), "at most 16"),
        (dict(j_bg=200), "j_bg"),
        (dict(band_rows=0), "band_rows"),
        (dict(bands=(Band(1, b""), Band(1, b""))), "repeat"),
        (dict(bands=(Band(255, b""),)), "band index"),
        (dict(z=b"z" * (1 << 21)), "exceeds"),
    ],
)
def test_pack_refuses_bad_fields(changes, message):
    with pytest.raises(ContainerError, match=message):
        pack(sample(**changes))


def test_quantbox():
    with pytest.raises(ContainerError, match="x1"):
        QuantBox(0, 0, 256, 1, 1)
    q = QuantBox.from_box(Box(0.1, 0.2, 0.3, 0.4, conf=0.9))
    assert (q.x0, q.y0, q.x1, q.y1, q.conf) == (25, 51, 102, 153, 230)
    back = q.to_box()
    assert back.x <= 0.1 and back.x + back.w >= 0.4  # rounded outwards: still covers the box
    assert back.y <= 0.2 and back.y + back.h >= 0.6
    assert QuantBox.from_box(Box(-0.5, 0.9, 2.0, 0.5)) == QuantBox(0, 229, 255, 255, 255)


def test_errors_are_value_errors():
    assert issubclass(ContainerError, WildlinkError) and issubclass(ContainerError, ValueError)


# --------------------------------------------------------------------------------------------
# fuzz: unpack raises only ContainerError, never anything else, and returns quickly

VALID = pack(sample())


def _unpack_or_container_error(data: bytes) -> None:
    try:
        got = unpack(data)
    except ContainerError:
        return
    assert isinstance(got, Container)
    if not got.damaged:
        assert pack(got) == data  # whatever parses cleanly is canonical


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    _unpack_or_container_error(data)
    _unpack_or_container_error(b"WL\x01" + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4
    ),
    st.integers(0, len(VALID)),
    st.binary(max_size=8),
)
def test_fuzz_mutated_valid_container(edits, cut, tail):
    data = bytearray(VALID)
    for pos, value in edits:
        data[pos] = value
    _unpack_or_container_error(bytes(data[:cut]) + tail)
    _unpack_or_container_error(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.binary(min_size=1, max_size=4))
def test_fuzz_header_with_valid_crc(pos, junk):
    """Mutations that keep the header CRC valid exercise the checks after the CRC."""
    head_len = VALID.index(bytes(range(60))) - 2
    head = bytearray(VALID[:head_len])
    pos %= head_len
    head[pos : pos + len(junk)] = junk
    head = bytes(head[:head_len])
    data = head + struct.pack(">H", crc16(head)) + VALID[head_len + 2 :]
    _unpack_or_container_error(data)

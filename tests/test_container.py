"""Container v2: round trips, damaged tails, bounded sizes, clear errors, a fuzzed parser,
and version-1 files still read."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.boxes import Box
from device.codec.container import (
    KIND_CONTEXT,
    KIND_INFOBAR,
    KIND_REGION,
    MAX_BOXES,
    MAX_CODED_SIDE,
    Band,
    Container,
    DamagedBand,
    Part,
    QuantBox,
    check_model,
    crc16,
    header_size,
    pack,
    unpack,
)
from device.errors import ContainerError, WildlinkError

V1 = Path(__file__).parent / "data" / "v1"
CONTEXT_Z = bytes(range(60))


def region(**changes) -> Part:
    fields = dict(kind=KIND_REGION, rect=(100, 200, 900, 1000), coded_width=400,
                  coded_height=400, z=b"rz" * 30, bands=(Band(1, b"r1" * 50), Band(0, b"r0")),
                  level=3, step=-2, background_step=0, band_rows=13, prefiltered=True)
    fields.update(changes)
    return Part(**fields)


def context(**changes) -> Part:
    fields = dict(kind=KIND_CONTEXT, rect=(0, 0, 4000, 3000), coded_width=256, coded_height=192,
                  z=CONTEXT_Z, bands=(Band(3, b"roi band" * 20), Band(0, b"a" * 300),
                                      Band(1, b""), Band(2, b"xyz")),
                  step=4, background_step=5, band_rows=4)
    fields.update(changes)
    return Part(**fields)


def sample(**changes) -> Container:
    fields = dict(
        model_id="1a2b3c4d", width=4000, height=3000,
        parts=(region(), region(kind=KIND_INFOBAR, rect=(0, 2900, 4000, 3000), coded_width=1024,
                                coded_height=26, level=0, step=0), context()),
        capture_time=1_790_000_000, trap_id=213,
        boxes=(QuantBox(10, 20, 200, 250, 230), QuantBox(0, 0, 255, 255, 51)),
    )
    fields.update(changes)
    return Container(**fields)


def test_round_trip():
    c = sample()
    assert unpack(pack(c)) == c
    minimal = Container(model_id="00000000", width=1, height=1,
                        parts=(Part(KIND_CONTEXT, (0, 0, 1, 1), 1, 1, b"", ()),))
    assert unpack(pack(minimal)) == minimal
    assert c.context == c.parts[2] and c.main == c.parts[2] and c.prefiltered
    assert c.coded_width == 256 and c.step == 4  # the main part's coding


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1


def test_header_sizes():
    c = sample()
    streams = sum(len(p.z) + sum(len(b.data) for b in p.bands) for p in c.parts)
    kinds = [(p.kind, len(p.bands)) for p in c.parts]
    lengths = [len(p.z) for p in c.parts] + [len(b.data) for p in c.parts for b in p.bands]
    short = sum(n < 128 for n in lengths)  # header_size counts 2-byte lengths
    assert len(pack(c)) - streams == header_size(len(c.boxes), kinds) - short
    assert header_size(0, []) == 22  # magic .. part count, header CRC
    assert header_size(0, [(KIND_CONTEXT, 1)]) - header_size(0, []) == 1 + 9 + 4 + 5
    assert header_size(0, [(KIND_REGION, 1)]) - header_size(0, [(KIND_CONTEXT, 1)]) == 8


def test_regions_come_first_and_a_cut_tail_loses_the_context_first():
    data = pack(sample())
    got = unpack(data[:-150])  # the context's last bands
    assert got.parts[0] == sample().parts[0] and got.parts[1] == sample().parts[1]
    ctx = got.parts[2]
    assert ctx.z == CONTEXT_Z and ctx.damaged and {d.index for d in ctx.damaged} >= {2}


def test_a_part_whose_z_is_lost_is_unusable_but_the_others_survive():
    c = sample()
    data = bytearray(pack(c))
    start = data.index(b"rz" * 30)
    data[start] ^= 0xFF  # the first region's z
    got = unpack(bytes(data))
    assert not got.parts[0].usable and got.parts[0].damaged[0] == DamagedBand(-1, "z stream CRC mismatch")
    assert got.parts[1] == c.parts[1] and got.parts[2] == c.parts[2]


def test_corrupt_band_is_reported_not_fatal():
    c = sample()
    data = bytearray(pack(c))
    data[data.index(b"a" * 300) + 5] ^= 1
    got = unpack(bytes(data))
    assert got.parts[2].damaged == (DamagedBand(0, "CRC mismatch"),)
    assert [b.index for b in got.parts[2].bands] == [3, 1, 2]
    assert got.parts[2].missing_bands(5) == (0, 4)


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
    with pytest.raises(ContainerError, match=message):
        unpack(mutate(pack(sample())))


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
        (dict(trap_id=-1), "trap_id"),
        (dict(trap_id=256), "trap_id must be an integer 0..255"),
        (dict(capture_time=2**32), "capture_time"),
        (dict(boxes=(QuantBox(0, 0, 1, 1, 1),) * (MAX_BOXES + 1)), "at most 16"),
        (dict(parts=()), "parts"),
        (dict(parts=(context(),) * 9), "parts"),
        (dict(parts=(context(background_step=200),)), "background_step"),
        (dict(parts=(context(band_rows=0),)), "band_rows"),
        (dict(parts=(context(bands=(Band(1, b""), Band(1, b""))),)), "repeat"),
        (dict(parts=(context(bands=(Band(255, b""),)),)), "band index"),
        (dict(parts=(context(z=b"z" * (1 << 21)),)), "exceeds"),
        (dict(parts=(context(rect=(0, 0, 10, 10)),)), "whole frame"),
        (dict(parts=(region(rect=(0, 0, 4001, 10)),)), "not inside"),
        (dict(parts=(region(coded_width=MAX_CODED_SIDE + 1),)), "a trap codes"),
        (dict(parts=(region(coded_width=2000, coded_height=2000),)), "Mpx"),
        (dict(width=9000), "beyond what a trap sends"),
        (dict(parts=(region(level=256),)), "level"),
        (dict(parts=(region(kind=3),)), "kind"),
    ],
)
def test_pack_refuses_bad_fields(changes, message):
    with pytest.raises(ContainerError, match=message):
        pack(sample(**changes))


def test_sizes_beyond_a_trap_are_refused_before_decoding():
    """A header claiming a huge picture (valid CRC) fails at once, allocating nothing."""
    huge = sample(width=1024, height=768, parts=(context(rect=(0, 0, 1024, 768)),))
    head_end = pack(huge).index(CONTEXT_Z) - 2
    for offset, value in ((8, 32768), (10, 32768)):  # capture width, height
        data = bytearray(pack(huge))
        struct.pack_into(">H", data, offset, value)
        struct.pack_into(">H", data, head_end, crc16(bytes(data[:head_end])))
        with pytest.raises(ContainerError, match="beyond what a trap sends|not inside"):
            unpack(bytes(data))


def test_quantbox():
    with pytest.raises(ContainerError, match="x1"):
        QuantBox(0, 0, 256, 1, 1)
    q = QuantBox.from_box(Box(0.1, 0.2, 0.3, 0.4, conf=0.9))
    assert (q.x0, q.y0, q.x1, q.y1, q.conf) == (25, 51, 102, 153, 230)
    back = q.to_box()
    assert back.x <= 0.1 and back.x + back.w >= 0.4  # rounded outwards: still covers the box
    assert back.y <= 0.2 and back.y + back.h >= 0.6
    assert q.bbox == pytest.approx([25 / 255, 51 / 255, 77 / 255, 102 / 255])
    assert QuantBox.from_box(Box(-0.5, 0.9, 2.0, 0.5)) == QuantBox(0, 229, 255, 255, 255)


def test_errors_are_value_errors():
    assert issubclass(ContainerError, WildlinkError) and issubclass(ContainerError, ValueError)


def test_version_1_files_read_as_one_context_part():
    data = (V1 / "camdeboo.wl").read_bytes()
    c = unpack(data)
    assert c.version == 1 and len(c.parts) == 1
    part = c.parts[0]
    assert part.kind == KIND_CONTEXT and part.rect == (0, 0, c.width, c.height)
    assert (c.width, c.height) == (1024, 790) and part.coded_width == 1024
    assert c.capture_time == 1_700_000_000 and c.trap_id == 7 and c.boxes
    assert not part.damaged and part.z
    cut = unpack(data[:-40])
    assert cut.parts[0].damaged  # a lost tail still names the band
    with pytest.raises(ContainerError, match="z stream"):
        unpack(data[: len(data) - sum(len(b.data) for b in part.bands) - 1])


# --------------------------------------------------------------------------------------------
# fuzz: unpack raises only ContainerError, never anything else, and returns quickly

VALID = pack(sample())
VALID_V1 = (V1 / "missouri.wl").read_bytes()


def _unpack_or_container_error(data: bytes) -> None:
    try:
        got = unpack(data)
    except ContainerError:
        return
    assert isinstance(got, Container)
    if got.version == 2 and not any(p.damaged for p in got.parts):
        assert pack(got) == data  # whatever parses cleanly is canonical


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    _unpack_or_container_error(data)
    _unpack_or_container_error(b"WL\x02" + data)
    _unpack_or_container_error(b"WL\x01" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([VALID, VALID_V1]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10**6),
    st.binary(max_size=8),
)
def test_fuzz_mutated_valid_container(valid, edits, cut, tail):
    data = bytearray(valid)
    for pos, value in edits:
        data[pos % len(data)] = value
    _unpack_or_container_error(bytes(data[: cut % (len(data) + 1)]) + tail)
    _unpack_or_container_error(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 120), st.binary(min_size=1, max_size=4))
def test_fuzz_header_with_valid_crc(pos, junk):
    """Mutations that keep the header CRC valid exercise the checks after the CRC."""
    head_len = VALID.index(b"rz" * 30) - 2
    head = bytearray(VALID[:head_len])
    pos %= head_len
    head[pos : pos + len(junk)] = junk
    head = bytes(head[:head_len])
    data = head + struct.pack(">H", crc16(head)) + VALID[head_len + 2 :]
    _unpack_or_container_error(data)


def test_without_streams_keeps_the_header():
    c = sample()
    bare = c.without_streams()
    assert [p.rect for p in bare.parts] == [p.rect for p in c.parts]
    assert all(p.z == b"" for p in bare.parts) and replace(bare, parts=c.parts) == c


def test_camera_file_name_travels_compactly():
    from device.codec.container import compact_name

    c = sample(name="IMAG0042.JPG")
    data = pack(c)
    assert unpack(data).name == "IMAG0042.JPG" and len(data) == len(pack(sample())) + 13
    assert compact_name("/media/card/DCIM/100MEDIA/IMAG0042.JPG") == "IMAG0042.JPG"
    assert compact_name("é" + "x" * 80) == "x" * 63
    with pytest.raises(ContainerError, match="printable ASCII"):
        pack(sample(name="bad\nname"))

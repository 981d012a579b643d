"""The E22 UART driver: register values, framing under corruption, and emulated modules on a pty."""

from __future__ import annotations

import math
import random
import time

import pytest
from emulators.e22 import E22Air, EmulatedE22
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from device.errors import ConfigError
from device.radio.base import Radio
from device.radio.e22 import (
    E22,
    FRAME_OVERHEAD,
    Deframer,
    E22Config,
    channel_for,
    encode_frame,
)
from device.radio.errors import ConfigVerifyError, FrameSizeError, RadioNotFound

FAST = dict(air_rate=62500)  # SF5/500 kHz estimate: a 240-byte packet is ~20 ms


@pytest.fixture
def air():
    air = E22Air()
    yield air
    air.close()


def make(air, config=None, m0=22, m1=27, aux=None, **module_faults):
    factory = MockFactory()
    module = EmulatedE22(factory, air, aux=aux)
    for name, value in module_faults.items():
        setattr(module, name, value)
    radio = E22(config or E22Config(**FAST), module.port, m0=m0, m1=m1, aux=aux,
                pin_factory=factory, mode_delay=0.005)
    return radio, module


# --- registers (E22-900T22S manual, section 7) --------------------------------------------------


def test_register_bytes():
    assert E22Config().registers() == bytes.fromhex("00 00 00 62 00 12 80")
    c = E22Config(address=0x1234, netid=5, channel=50, air_rate=62500, sub_packet=32,
                  power_dbm=10, uart_baud=115200, rssi_byte=False, fixed=True, lbt=True,
                  ambient_rssi=True)
    assert c.registers() == bytes([0x12, 0x34, 0x05, 0xE7, 0xE3, 50, 0x50])
    assert E22Config(sub_packet=128, power_dbm=17, air_rate=300).registers()[3:5] == b"\x60\x41"
    assert E22Config(sub_packet=64, power_dbm=13).registers()[4] == 0x82


def test_sub_packet_sets_the_mtu():
    assert {s: E22Config(sub_packet=s).mtu for s in (240, 128, 64, 32)} == {
        240: 240 - FRAME_OVERHEAD, 128: 128 - FRAME_OVERHEAD, 64: 64 - FRAME_OVERHEAD,
        32: 32 - FRAME_OVERHEAD}
    assert E22Config(fixed=True).mtu == 240 - FRAME_OVERHEAD - 3


def test_channel_from_frequency_and_bad_values():
    assert channel_for(868.125e6) == 18 and channel_for(915.125e6) == 65
    assert channel_for(433.125e6, "400") == 23
    with pytest.raises(ConfigError):
        channel_for(800e6)
    for bad in (dict(channel=84), dict(air_rate=5000), dict(sub_packet=100), dict(power_dbm=20),
                dict(address=0x10000), dict(uart_baud=14400)):
        with pytest.raises(ConfigError):
            E22Config(**bad)


# --- framing -------------------------------------------------------------------------------------


def test_frame_layout():
    framed = encode_frame(b"hi")
    assert framed[:2] == b"\xa5\x5a" and framed[2] == 2 and framed[3] == 0xFD
    assert len(framed) == 2 + FRAME_OVERHEAD
    with pytest.raises(FrameSizeError):
        encode_frame(b"")


def test_corrupted_length_never_hangs_the_receiver():
    d = Deframer(gap=0.05)
    bad = bytearray(encode_frame(b"lost"))
    bad[2], bad[3] = 200, 200 ^ 0xFF  # a length that passes its check but is wrong
    assert d.feed(bytes(bad), now=0.0) == []
    assert d.feed(b"", now=0.1) == []  # the gap passed: the partial frame is abandoned
    assert d.stats.timeouts == 1
    assert [p for p, _ in d.feed(encode_frame(b"next"), now=0.2)] == [b"next"]


def test_rssi_byte_is_read_after_the_frame():
    d = Deframer(rssi_byte=True, gap=0.05)
    assert d.feed(encode_frame(b"x"), 0.0) == []  # waits for the RSSI byte
    assert d.feed(bytes([186]), 0.01) == [(b"x", -70.0)]
    got = d.feed(encode_frame(b"y"), 0.02) + d.feed(b"", 0.2)  # RSSI never came: emit anyway
    assert got[0][0] == b"y" and math.isnan(got[0][1])


def test_two_frames_in_one_air_packet_share_one_rssi_byte():
    """A module may pack two of our frames into one air packet: one RSSI byte at the end."""
    d = Deframer(rssi_byte=True, gap=0.05)
    got = d.feed(encode_frame(b"one") + encode_frame(b"two") + bytes([200]), 0.0)
    assert [(p, r) for p, r in got if p == b"two"] == [(b"two", -56.0)]
    assert [p for p, _ in got] == [b"one", b"two"] and math.isnan(got[0][1])
    d = Deframer(rssi_byte=True, gap=0.05)  # RSSI 0xA5 (-91 dBm) followed by the next frame
    stream = encode_frame(b"one") + b"\xa5" + encode_frame(b"two") + b"\xa5"
    got = d.feed(stream, 0.0) + d.feed(b"", 0.1)  # a lone A5 at the end waits for the gap
    assert got == [(b"one", -91.0), (b"two", -91.0)]


def test_buffer_is_bounded():
    d = Deframer(max_payload=32)
    d.feed(b"\xa5\x5a\x20\xdf" + bytes(10_000), 0.0)
    assert len(d._buf) <= 4 * (32 + FRAME_OVERHEAD + 1)


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=6),
       junk=st.lists(st.binary(max_size=12), min_size=7, max_size=7),
       rssi=st.lists(st.integers(0, 255), min_size=6, max_size=6) | st.none(),
       seed=st.integers(0, 1000))
def test_intact_frames_survive_junk_and_any_chunking(frames, junk, rssi, seed):
    """Noise between frames (even noise that starts like a frame) never costs an intact frame,
    with or without the module's RSSI byte after each packet."""
    tails = [bytes([r]) for r in rssi] if rssi else [b""] * 6
    stream = b"".join(j + encode_frame(f) + t
                      for j, f, t in zip(junk, frames, tails, strict=False)) + junk[-1]
    d = Deframer(rssi_byte=rssi is not None, gap=0.05)
    rng = random.Random(seed)
    got, t, i = [], 0.0, 0
    while i < len(stream):
        n = rng.randint(1, 40)
        got += d.feed(stream[i : i + n], t)
        i, t = i + n, t + 0.001
    got += d.feed(b"", t + 1.0) + d.feed(b"", t + 2.0)
    payloads = [p for p, _ in got]
    assert all(f in payloads for f in frames)


# --- driver on emulated modules -----------------------------------------------------------------


def test_no_channel_activity_detection_over_the_uart(air):
    """The E22 hides the SX1262's CAD: `channel_active` says free without touching the port."""
    radio, module = make(air)
    before = len(module.received_config)
    assert radio.channel_active() is False
    assert len(module.received_config) == before and module.normal_mode()
    radio.close()


def test_configuration_is_written_at_9600_and_verified(air):
    radio, module = make(air, E22Config(address=7, netid=3, channel=40, **FAST))
    assert isinstance(radio, Radio)
    assert module.received_config[0] == bytes([0xC2, 0x00, 0x07]) + radio.config.registers()
    assert module.received_config[1] == b"\xc1\x00\x07"
    assert module.received_config[2] == b"\xc1\x80\x07" and radio.product
    import termios

    assert set(module.speeds) == {termios.B9600}
    assert module.normal_mode()  # back in transmission mode
    assert bytes(module.registers) == radio.config.registers()
    assert module.saved != module.registers  # C2: not persisted
    assert radio.read_registers() == radio.config.registers()
    radio.close()


def test_persist_uses_c0(air):
    radio, module = make(air, E22Config(persist=True, **FAST))
    assert module.received_config[0][0] == 0xC0 and module.saved == module.registers
    radio.close()


def test_read_back_mismatch_is_an_error(air):
    with pytest.raises(ConfigVerifyError, match="05H"):
        make(air, E22Config(channel=40, **FAST), read_only={5})


def test_silent_module_points_at_the_wiring(air):
    with pytest.raises(RadioNotFound, match="M0/M1"):
        make(air, m1=5)  # M1 not where the module is: it never enters configuration mode


def test_missing_port():
    with pytest.raises(RadioNotFound, match="serial port"):
        E22(E22Config(), "/dev/does-not-exist", pin_factory=MockFactory(), mode_delay=0)


def test_two_modules_exchange_frames(air):
    a, _ = make(air)
    b, _ = make(air)
    for frame in (b"hello", bytes(range(a.mtu))):
        seconds = a.send(frame)
        assert seconds == pytest.approx(a.modulation.time_on_air(len(frame) + FRAME_OVERHEAD))
        got = b.receive(2.0)
        assert got.frame == frame and got.rssi == -70.0
    b.send(b"pong")
    assert a.receive(2.0).frame == b"pong"
    assert b.receive(0.05) is None
    with pytest.raises(FrameSizeError):
        a.send(bytes(a.mtu + 1))
    a.close()
    b.close()


def test_send_with_aux_blocks_until_the_module_has_sent(air):
    a, module_a = make(air, E22Config(air_rate=9600), aux=17)
    b, _ = make(air)
    # 9.6k estimate at 1/50 speed in the emulator; the driver must wait for AUX, not the estimate
    a.send(b"x" * 100)
    assert module_a.packets_sent and module_a.aux.state  # sent, and AUX back high
    assert [s.state for s in module_a.aux.states][-2:] == [False, True]
    a.close()
    b.close()


def test_fixed_point_addressing(air):
    fixed = E22Config(fixed=True, target_address=0x0002, **FAST)
    a, _ = make(air, fixed)
    b, _ = make(air, E22Config(address=2, **FAST))
    c, _ = make(air, E22Config(address=3, **FAST))
    a.send(b"for two")
    assert b.receive(1.0).frame == b"for two"
    assert c.receive(0.2) is None
    a.close()
    broadcast, _ = make(air, E22Config(fixed=True, target_address=0xFFFF, **FAST))
    broadcast.send(b"all")
    assert b.receive(1.0).frame == b"all" and c.receive(1.0).frame == b"all"
    for radio in (broadcast, b, c):
        radio.close()


def test_other_channel_netid_or_air_rate_is_not_heard(air):
    a, _ = make(air)
    others = [make(air, E22Config(**kw))[0] for kw in (dict(channel=19, **FAST),
                                                       dict(netid=9, **FAST),
                                                       dict(air_rate=19200))]
    a.send(b"x")
    assert all(r.receive(0.1) is None for r in others)
    for radio in [a, *others]:
        radio.close()


@pytest.mark.parametrize("fault", ["length", "byte", "truncate", "garbage", "drop"])
def test_uart_corruption_is_rejected_and_the_next_frame_arrives(air, fault):
    a, module_a = make(air)
    b, _ = make(air)
    air.faults.append(fault)
    a.send(b"damaged")
    for _ in range(400):  # keep the frames in separate air packets, so the fault hits the first
        if module_a.packets_sent:
            break
        time.sleep(0.005)
    a.send(b"intact")
    if fault == "garbage":  # noise before a frame costs nothing
        assert b.receive(2.0).frame == b"damaged"
    assert b.receive(2.0).frame == b"intact"
    assert b.receive(0.1) is None
    if fault in ("length", "byte", "truncate"):
        s = b.stats
        assert s.crc_errors + s.bad_lengths + s.timeouts >= 1
    a.close()
    b.close()

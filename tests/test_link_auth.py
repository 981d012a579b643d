"""Authentication: forged, corrupted and replayed frames are refused and counted."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.errors import ConfigError
from device.link import FragmentStore, OutboundStore, Receiver, Sender, frames, load_keys
from device.link.auth import DOWN, UP, FrameAuth, extend_fcnt, write_keys
from device.link.frames import AckFrame, DataFrame
from device.radio.base import Reception
from device.radio.clock import VirtualClock
from device.radio.sim import SimChannel

KEY = bytes(range(16))


def _signed(frame: DataFrame, key: bytes = KEY, encrypt: bool = False) -> bytes:
    auth = FrameAuth(key)
    if encrypt:
        frame = replace(frame, payload=auth.crypt(UP, frame.trap_id, frame.fcnt, frame.payload),
                        encrypted=True)
    mic = auth.mic(UP, frame.trap_id, frame.fcnt, frames.signed_part(frame))
    return frames.pack(replace(frame, mic=mic))


def _rx(raw: bytes) -> Reception:
    return Reception(raw, -90.0, 7.0)


@pytest.fixture
def receiver(tmp_path):
    clock = VirtualClock()
    radio = SimChannel(clock).radio("base")
    return Receiver(radio, FragmentStore(tmp_path / "base.sqlite"), {7: KEY}, clock)


def test_authentic_frame_is_accepted(receiver) -> None:
    done = receiver.handle(_rx(_signed(DataFrame(7, 1, 0, 1, b"hello", fcnt=1))))
    assert [d.data for d in done] == [b"hello"]


def test_forged_frame_is_refused(receiver) -> None:
    fake = _signed(DataFrame(7, 1, 0, 1, b"fake", fcnt=1), key=os.urandom(16))
    assert receiver.handle(_rx(fake)) == []
    unsigned = frames.pack(DataFrame(7, 1, 0, 1, b"fake", fcnt=2))
    assert receiver.handle(_rx(unsigned)) == []
    assert receiver.stats["forged"] == 1 and receiver.stats["unauthenticated"] == 1
    assert receiver.store.last_fcnt(7) is None  # a forgery does not move the counter


def test_tampered_payload_with_recomputed_crc_is_refused(receiver) -> None:
    raw = bytearray(_signed(DataFrame(7, 1, 0, 1, b"deer", fcnt=1)))
    raw[frames.DATA_HEADER] ^= 0xFF  # the attacker edits a byte and fixes the CRC
    body = bytes(raw[:-2])
    tampered = body + frames.crc16(body).to_bytes(2, "big")
    assert receiver.handle(_rx(tampered)) == []
    raw_noise = bytes(raw)  # line noise: CRC catches it first
    assert receiver.handle(_rx(raw_noise)) == []
    assert receiver.stats["forged"] == 1 and receiver.stats["corrupt"] == 1


def test_replayed_frame_is_refused_even_after_restart(tmp_path, receiver) -> None:
    first = _signed(DataFrame(7, 1, 0, 2, b"part0", fcnt=5))
    receiver.handle(_rx(first))
    receiver.handle(_rx(_signed(DataFrame(7, 1, 1, 2, b"part1", fcnt=6))))
    assert receiver.handle(_rx(first)) == []
    assert receiver.stats["replayed"] == 1
    receiver.store.close()
    clock = VirtualClock()
    again = Receiver(SimChannel(clock).radio("base"), FragmentStore(tmp_path / "base.sqlite"),
                     {7: KEY}, clock)
    assert again.handle(_rx(first)) == []
    assert again.stats["replayed"] == 1
    assert again.store.is_complete(7, 1)


def test_unknown_trap_is_refused(receiver) -> None:
    assert receiver.handle(_rx(_signed(DataFrame(8, 1, 0, 1, b"x", fcnt=1)))) == []
    assert receiver.stats["unknown_trap"] == 1


def test_encrypted_payload_is_hidden_on_air(receiver) -> None:
    secret = b"lynx at 46.1N 7.2E" * 3
    raw = _signed(DataFrame(7, 1, 0, 1, secret, fcnt=3), encrypt=True)
    assert secret[:8] not in raw
    assert [d.data for d in receiver.handle(_rx(raw))] == [secret]


def test_counter_survives_16_bit_wraps() -> None:
    assert extend_fcnt(None, 5) == 5
    assert extend_fcnt(0x1FFFE, 0x0003) == 0x20003
    assert extend_fcnt(0x10005, 0x0006) == 0x10006
    assert extend_fcnt(0x10005, 0x0005) == 0x20005  # a replay maps to the next wrap: MIC fails


def test_sender_refuses_forged_and_replayed_acks(tmp_path) -> None:
    clock = VirtualClock()
    channel = SimChannel(clock)
    trap, attacker = channel.radio("trap"), channel.radio("attacker")
    queue = OutboundStore(tmp_path / "q.sqlite")
    sender = Sender(trap, queue, 7, KEY, clock, max_idle_rounds=100)
    item = queue.put(os.urandom(400), now=0.0)  # two fragments

    def ack(fcnt: int, complete: bool, key: bytes = KEY) -> bytes:
        frame = AckFrame(7, item.image_id, 2 if complete else 1, b"", fcnt, complete)
        mic = FrameAuth(key).mic(DOWN, 7, fcnt, frames.signed_part(frame))
        return frames.pack(replace(frame, mic=mic))

    def answer(raw: bytes) -> None:
        def respond() -> None:  # like the base: answer frames that ask for an ack
            if frames.unpack(attacker.inbox.pop().frame).ack_req:
                attacker.send(raw)

        attacker.on_frame = respond

    # a poacher's forged "complete" ack must not make the trap drop the image
    answer(ack(1, True, key=os.urandom(16)))
    sender.pump()
    assert sender.stats["forged"] == 1 and len(queue) == 1
    # a genuine partial ack is recorded ...
    genuine = ack(10, False)
    answer(genuine)
    clock.sleep(100)
    assert sender.pump().acked and queue.pending()[0].acked == {0}
    # ... and replaying it is refused and counted
    clock.sleep(100)
    assert not sender.pump().acked
    assert sender.stats["replayed"] == 1
    answer(ack(11, True))
    clock.sleep(100)
    assert sender.pump().delivered and len(queue) == 0


def test_key_file_must_be_private(tmp_path, caplog) -> None:
    path = tmp_path / "keys.toml"
    write_keys(path, {7: KEY, 9: bytes(16)})
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_keys(path) == {7: KEY, 9: bytes(16)}
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keys(path)
    with caplog.at_level(logging.WARNING):
        assert load_keys(path, strict=False)[7] == KEY
    assert "chmod 600" in caplog.text


@pytest.mark.parametrize("text", ['[traps]\n7 = "abcd"\n', '[traps]\nx = "' + "00" * 16 + '"\n',
                                  "not toml [", "[other]\n"])
def test_bad_key_files_are_refused(tmp_path, text: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        load_keys(path)


def test_sender_counter_never_reused_across_restarts(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite")
    used = [queue.next_fcnt() for _ in range(5)]
    queue.close()  # like kill -9: the reserved block is abandoned
    queue = OutboundStore(tmp_path / "q.sqlite")
    assert queue.next_fcnt() > max(used)


@functools.cache
def _junk_receiver() -> Receiver:
    clock = VirtualClock()
    store = FragmentStore(Path(tempfile.mkdtemp(prefix="wildlink-junk-")) / "b.sqlite")
    return Receiver(SimChannel(clock).radio("base"), store, {7: KEY}, clock)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True, database=None)
@given(raw=st.binary(min_size=10, max_size=80))
def test_receiver_survives_any_bytes(raw: bytes) -> None:
    """Junk, with or without a valid CRC, is counted and dropped, never raised."""
    receiver = _junk_receiver()
    before = sum(receiver.stats.values())
    with_crc = raw[:-2] + frames.crc16(raw[:-2]).to_bytes(2, "big")
    for candidate in (raw, with_crc):
        assert receiver.handle(_rx(candidate)) == []
    assert sum(receiver.stats.values()) == before + 2

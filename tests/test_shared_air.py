"""The shared air: collisions, capture, half-duplex, carrier sense, and the real link over it.

Everything runs on the EventClock (device threads taking turns on virtual time): seeded and
deterministic, no wall-clock waits.
"""

from __future__ import annotations

import random

import pytest

from device.link import FragmentStore, OutboundStore, Receiver, Sender
from device.radio.airtime import Modulation
from device.radio.sim import SimChannel
from device.radio.simclock import EventClock

KEY = bytes(range(16))
FRAME = b"x" * 100  # 0.23 s at SF9


def _at(clock: EventClock, when: float, action, *args) -> None:
    clock.spawn(action, *args, at=when)


def test_overlapping_frames_are_both_lost() -> None:
    clock = EventClock()
    channel = SimChannel(clock)
    a, b, base = channel.radio("a"), channel.radio("b"), channel.radio("base")
    airtime = a.modulation.time_on_air(len(FRAME))
    _at(clock, 0.0, a.send, FRAME)
    _at(clock, airtime / 2, b.send, FRAME)  # starts while a's frame is in the air
    clock.run()
    assert len(base.inbox) == 0
    assert channel.stats["collided"] == 2 and channel.stats["collision"] >= 2


def test_frames_back_to_back_or_on_another_sf_do_not_collide() -> None:
    clock = EventClock()
    channel = SimChannel(clock)
    a, b, base = channel.radio("a"), channel.radio("b"), channel.radio("base")
    c = channel.radio("c", modulation=Modulation(sf=10))
    airtime = a.modulation.time_on_air(len(FRAME))
    _at(clock, 0.0, a.send, b"first")
    _at(clock, a.modulation.time_on_air(5), b.send, b"second")  # starts as a's ends
    _at(clock, 10.0, a.send, FRAME)
    _at(clock, 10.0 + airtime / 2, c.send, FRAME)  # SF10 beside SF9: no interference
    clock.run()
    assert [r.frame for r in base.inbox] == [b"first", b"second", FRAME]
    assert channel.stats["collided"] == 0


def test_capture_keeps_the_much_stronger_frame_only_when_enabled() -> None:
    for capture, expected in ((None, []), (6.0, [b"near"])):
        clock = EventClock()
        channel = SimChannel(clock, capture_db=capture)
        near, far, base = channel.radio("near"), channel.radio("far"), channel.radio("base")
        channel.link(near, base, rssi=-80.0)
        channel.link(far, base, rssi=-100.0)  # 20 dB weaker
        _at(clock, 0.0, near.send, b"near")
        _at(clock, 0.01, far.send, b"far")
        clock.run()
        assert [r.frame for r in base.inbox] == expected
        assert all(r.rssi < -77 for r in base.inbox)  # the link's RSSI, with its jitter


def test_a_radio_hears_nothing_while_it_sends() -> None:
    clock = EventClock()
    channel = SimChannel(clock)
    trap, base = channel.radio("trap"), channel.radio("base")
    long = trap.modulation.time_on_air(200)
    _at(clock, 0.0, base.send, b"y" * 200)  # the base talks...
    _at(clock, long / 3, trap.send, b"data")  # ...and the trap's frame overlaps it
    _at(clock, 10.0, trap.send, b"later")  # the base listens again once it is done
    clock.run()
    assert [r.frame for r in base.inbox] == [b"later"]  # deaf while it was transmitting
    assert len(trap.inbox) == 0  # the trap was transmitting during the base's frame's tail
    assert channel.stats["half_duplex"] == 2 and channel.stats["collision"] == 0


def test_channel_active_sees_other_transmissions_on_the_same_carrier_and_sf() -> None:
    clock = EventClock()
    channel = SimChannel(clock)
    a, b = channel.radio("a"), channel.radio("b")
    c = channel.radio("c", modulation=Modulation(sf=7))
    d = channel.radio("d", frequency_mhz=868.1)
    seen = {}

    def look(label: str) -> None:
        seen[label] = (b.channel_active(), c.channel_active(), d.channel_active(),
                       a.channel_active())

    airtime = a.modulation.time_on_air(len(FRAME))
    _at(clock, 0.0, a.send, FRAME)
    _at(clock, airtime / 2, look, "during")
    _at(clock, airtime + 0.01, look, "after")
    clock.run()
    assert seen["during"] == (True, False, False, False)  # a does not sense its own frame
    assert seen["after"] == (False, False, False, False)


def test_receive_returns_when_the_frame_lands_not_at_the_timeout() -> None:
    clock = EventClock()
    channel = SimChannel(clock)
    a, b = channel.radio("a"), channel.radio("b")
    got = []

    def listen() -> None:
        reception = b.receive(timeout=100.0)
        got.append((reception.frame, clock.now()))

    clock.spawn(listen)
    _at(clock, 5.0, a.send, b"hi")
    clock.run()
    assert got == [(b"hi", pytest.approx(5.0 + a.modulation.time_on_air(2)))]


class Network:
    """A base and traps, each the real link layer in its own device thread."""

    def __init__(self, tmp_path, traps=(1, 2), seed=0, **sender_kw) -> None:
        self.clock = EventClock()
        self.channel = SimChannel(self.clock, seed=seed)
        self.tmp, self.traps, self.seed, self.sender_kw = tmp_path, traps, seed, sender_kw
        self.base = self.channel.radio("base")
        self.radios = {t: self.channel.radio(f"trap{t}") for t in traps}
        self.got, self.senders, self.pending = [], {}, set(traps)

    def trap(self, t: int, images: list[bytes], at: list[float]) -> None:
        def run() -> None:
            queue = OutboundStore(self.tmp / f"trap{t}.sqlite")
            sender = Sender(self.radios[t], queue, t, KEY, self.clock, seed=self.seed + t,
                            **self.sender_kw)
            self.senders[t] = sender
            for when, data in zip(at, images, strict=True):
                self.clock.sleep(when - self.clock.now())
                queue.put(data, now=self.clock.now())
                sender.send_pending()
            self.pending.discard(t)

        self.clock.spawn(run, name=f"trap{t}")

    def serve(self, radio=None) -> None:
        def run() -> None:
            self.receiver = Receiver(radio or self.base, FragmentStore(self.tmp / "base.sqlite"),
                                     dict.fromkeys(self.traps, KEY), self.clock)
            while self.pending:
                self.got.extend(self.receiver.poll(timeout=60.0))

        self.clock.spawn(run, name="base")


def test_two_traps_with_interleaved_images_both_deliver_exactly_once(tmp_path) -> None:
    rng = random.Random(4)
    net = Network(tmp_path, traps=(1, 2), seed=4)
    sent = {t: [rng.randbytes(2500 + 100 * t) for _ in range(3)] for t in (1, 2)}
    net.serve()
    net.trap(1, sent[1], at=[0.0, 1.0, 30.0])
    net.trap(2, sent[2], at=[0.5, 2.0, 31.0])  # both mid-transfer at once, three times
    net.clock.run(until=86_400.0)
    assert sorted((g.trap_id, g.data) for g in net.got) == sorted(
        (t, d) for t, images in sent.items() for d in images)
    assert len(net.got) == 6  # nothing handed out twice
    assert net.channel.stats["collided"] > 0  # their frames really met in the air
    assert net.receiver.stats["duplicates"] == 0 or all(
        net.receiver.store.is_complete(g.trap_id, g.image_id) for g in net.got)


class _JamFirstAck:
    """The base's radio, with a jammer that starts transmitting together with its first ack."""

    def __init__(self, radio, jammer, clock) -> None:
        self.radio, self.jammer, self.clock, self.jammed = radio, jammer, clock, 0
        self.mtu, self.modulation = radio.mtu, radio.modulation

    def send(self, frame: bytes) -> float:
        if not self.jammed:
            self.jammed += 1
            self.clock.spawn(self.jammer.send, b"j" * 40, at=self.clock.now())
        return self.radio.send(frame)

    def receive(self, timeout: float):
        return self.radio.receive(timeout)

    def close(self) -> None:
        self.radio.close()


def test_an_ack_lost_in_a_collision_is_recovered_by_arq(tmp_path) -> None:
    net = Network(tmp_path, traps=(1,), seed=2, ack_timeout=2.0)
    jammer = net.channel.radio("jammer")
    net.serve(_JamFirstAck(net.base, jammer, net.clock))
    data = random.Random(1).randbytes(1500)
    net.trap(1, [data], at=[0.0])
    net.clock.run(until=3600.0)
    assert [g.data for g in net.got] == [data]  # delivered once
    sender = net.senders[1]
    assert sender.stats["ack_timeouts"] >= 1  # the first ack never arrived...
    assert net.channel.stats["collided"] >= 2  # ...because it collided with the jammer
    assert not net.receiver.stats["duplicates"]  # and the poll after it resent nothing held


def test_hidden_traps_neither_hear_nor_sense_each_other_but_collide_at_the_base() -> None:
    clock = EventClock()
    channel = SimChannel(clock)
    a, b, base = channel.radio("a"), channel.radio("b"), channel.radio("base")
    channel.link(a, b, hears=False)
    sensed = []
    airtime = a.modulation.time_on_air(len(FRAME))
    _at(clock, 0.0, a.send, FRAME)
    _at(clock, airtime / 2, lambda: sensed.append(b.channel_active()) or b.send(FRAME))
    clock.run()
    assert sensed == [False]  # b cannot sense a, so listen-before-talk does not save it
    assert len(b.inbox) == 0 and len(base.inbox) == 0  # both lost at the base
    assert channel.stats["collided"] == 2

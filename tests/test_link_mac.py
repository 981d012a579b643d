"""Medium access on a shared channel: listen before talk, seeded backoff, ack timing, fairness,
and the base's own duty cycle. All on virtual clocks (EventClock for device threads), seeded."""

from __future__ import annotations

import logging
import random

from device.errors import RadioError
from device.link import DutyCycle, FragmentStore, OutboundStore, Receiver, Sender, frames
from device.link.auth import UP, FrameAuth, seal
from device.link.frames import DataFrame
from device.radio.airtime import Modulation
from device.radio.base import Reception
from device.radio.clock import VirtualClock
from device.radio.sim import SimChannel
from device.radio.simclock import EventClock

KEY = bytes(range(16))


class Net:
    """One base and traps, each the real link layer in its own device thread (EventClock)."""

    def __init__(self, tmp_path, traps=(1, 2), seed=0, base_kw=None, **sender_kw) -> None:
        self.clock = EventClock()
        self.channel = SimChannel(self.clock, seed=seed)
        self.tmp, self.traps, self.seed, self.sender_kw = tmp_path, traps, seed, sender_kw
        self.base = self.channel.radio("base")
        self.radios = {t: self.channel.radio(f"trap{t}") for t in traps}
        self.got, self.senders, self.pending = [], {}, set(traps)
        self.base_kw = base_kw or {}
        self.done_at: dict[tuple[int, int], float] = {}

    def trap(self, t: int, images: list[bytes], at: float = 0.0) -> None:
        def run() -> None:
            queue = OutboundStore(self.tmp / f"trap{t}.sqlite")
            sender = Sender(self.radios[t], queue, t, KEY, self.clock, seed=self.seed + t,
                            **self.sender_kw)
            self.senders[t] = sender
            for data in images:
                queue.put(data, now=self.clock.now())
            sender.send_pending()
            self.pending.discard(t)

        self.clock.spawn(run, name=f"trap{t}", at=at)

    def serve(self) -> None:
        def run() -> None:
            self.receiver = Receiver(self.base, FragmentStore(self.tmp / "base.sqlite"),
                                     dict.fromkeys(self.traps, KEY), self.clock, **self.base_kw)
            while self.pending:
                for image in self.receiver.poll(timeout=60.0):
                    self.got.append(image)
                    self.done_at[image.trap_id, image.image_id] = self.clock.now()

        self.clock.spawn(run, name="base")


def _jam(net: Net, at: float, nbytes: int = 200) -> None:
    jammer = net.channel.radio("jammer")
    net.clock.spawn(jammer.send, b"j" * nbytes, at=at)


def test_listen_before_talk_waits_for_a_busy_channel(tmp_path) -> None:
    outcomes = {}
    for lbt in (False, True):
        net = Net(tmp_path / str(lbt), traps=(1,), lbt=lbt, seed=3)
        data = random.Random(1).randbytes(600)
        _jam(net, at=0.0)  # a neighbour's long frame is in the air when the picture comes
        net.serve()
        net.trap(1, [data], at=0.05)
        net.clock.run(until=3600.0)
        assert [g.data for g in net.got] == [data]
        outcomes[lbt] = net.channel.stats["collided"], net.senders[1].stats
    collided, stats = outcomes[True]
    assert collided == 0 and stats["lbt_busy"] >= 1  # it waited, nothing collided
    collided, stats = outcomes[False]
    assert collided >= 2 and stats["lbt_busy"] == 0  # without it, its first frame was lost


class _NoCad:
    """A radio without channel activity detection (an E22 through a wrapper, say)."""

    def __init__(self, radio) -> None:
        self.radio, self.mtu, self.modulation = radio, radio.mtu, radio.modulation

    def send(self, frame: bytes) -> float:
        return self.radio.send(frame)

    def receive(self, timeout: float):
        return self.radio.receive(timeout)

    def close(self) -> None:
        self.radio.close()


def test_a_radio_without_channel_activity_detection_is_never_asked(tmp_path) -> None:
    clock = VirtualClock()
    channel = SimChannel(clock)
    base = channel.radio("base")
    receiver = Receiver(_NoCad(base), FragmentStore(tmp_path / "b.sqlite"), {1: KEY}, clock)
    got = []
    base.on_frame = lambda: got.extend(receiver.poll(0))
    sender = Sender(_NoCad(channel.radio("trap")), OutboundStore(tmp_path / "t.sqlite"), 1, KEY,
                    clock, lbt=True)
    assert not sender.lbt and not receiver.lbt
    sender.queue.put(b"x" * 700, now=clock.now())
    assert sender.send_pending() == 1 and [g.data for g in got] == [b"x" * 700]


def _deaf_sender(tmp_path, name: str, seed: int | None, trap: int = 1) -> list[float]:
    """The waits of a sender that never hears an ack (no base): backoff and retry timing."""
    clock = VirtualClock()
    radio = SimChannel(clock).radio("trap")
    sender = Sender(radio, OutboundStore(tmp_path / f"{name}.sqlite"), trap, KEY, clock,
                    seed=seed, max_idle_rounds=4, retry_after=100.0)
    sender.queue.put(b"y" * 1000, now=clock.now())
    waits = []
    for _ in range(5):
        result = sender.pump()
        waits.append(result.wait)
        clock.sleep(result.wait)
    return waits


def test_backoff_and_jitter_are_seeded_and_differ_between_traps(tmp_path) -> None:
    first = _deaf_sender(tmp_path, "a", seed=5)
    assert first == _deaf_sender(tmp_path, "b", seed=5)  # the same seed: the same timing
    assert first != _deaf_sender(tmp_path, "c", seed=6)
    # the default seed is the trap id, so two traps never share a timing by default
    assert _deaf_sender(tmp_path, "d", None, trap=1) != _deaf_sender(tmp_path, "e", None, trap=2)
    # exponential backoff with jitter: each idle round waits 0.5x..1.5x of 2, 4, 8 s
    for n, wait in enumerate(first[:3]):
        assert 0.5 * 2.0 * 2**n <= wait <= 1.5 * 2.0 * 2**n


def test_a_trap_with_a_backlog_leaves_room_for_its_neighbour(tmp_path) -> None:
    rng = random.Random(2)
    backlog = [rng.randbytes(2500) for _ in range(6)]
    lone = rng.randbytes(2500)
    net = Net(tmp_path, traps=(1, 2), seed=2)  # the defaults: lbt, round_gap
    net.serve()
    net.trap(1, backlog, at=0.0)
    net.trap(2, [lone], at=1.0)  # comes while trap 1 is busy with its first picture
    net.clock.run(until=86_400.0)
    assert sorted(g.data for g in net.got) == sorted([*backlog, lone])  # each exactly once
    order = [g.trap_id for g in net.got]
    assert order.index(2) < 3  # not after trap 1's whole backlog
    assert net.senders[2].stats["lbt_gave_up"] == 0  # it always found the channel free in time
    assert net.channel.stats["collided"] == 0
    # the pause came between trap 1's pictures only; a lone picture never waits for it
    assert net.senders[1].stats["round_gaps"] == 5 and net.senders[2].stats["round_gaps"] == 0
    assert set(net.receiver.trap_stats) == {1, 2}
    assert all(s["acks"] > 0 and s["fragments"] > 0 for s in net.receiver.trap_stats.values())


class _FakeRadio:
    """A radio with a scripted channel activity detector; remembers what it sends."""

    def __init__(self, clock, busy: list[bool]) -> None:
        self.clock, self.busy, self.sent = clock, list(busy), []
        self.mtu, self.modulation = 255, Modulation()

    def send(self, frame: bytes) -> float:
        seconds = self.modulation.time_on_air(len(frame))
        self.clock.sleep(seconds)
        self.sent.append(frame)
        return seconds

    def receive(self, timeout: float):
        return None

    def channel_active(self) -> bool:
        return self.busy.pop(0) if self.busy else False

    def close(self) -> None:
        pass


def _frame(fcnt: int, index: int = 0, count: int = 2) -> Reception:
    frame = DataFrame(1, 9, index, count, b"z" * 50, fcnt, ack_req=True)
    return Reception(seal(frame, FrameAuth(KEY), UP), -90.0, 5.0)


def test_the_base_waits_for_a_busy_channel_within_the_ack_window_or_skips_the_ack(tmp_path):
    clock = VirtualClock()
    radio = _FakeRadio(clock, busy=[True, True, False])  # another frame ends soon
    receiver = Receiver(radio, FragmentStore(tmp_path / "b.sqlite"), {1: KEY}, clock)
    receiver.handle(_frame(1))
    assert len(radio.sent) == 1 and receiver.stats["acks"] == 1
    radio.busy = [True] * 100  # busy for longer than the trap listens
    receiver.handle(_frame(2, index=1))
    assert len(radio.sent) == 1 and receiver.stats["acks_busy"] == 1
    assert receiver.store.is_complete(1, 9)  # the fragment is stored all the same
    assert receiver.stats["acks"] == 1


def test_an_ack_the_trap_no_longer_listens_for_is_not_sent(tmp_path) -> None:
    """A base slower than the turnaround (a stalled disk) would send its ack into the trap's
    next frame: it skips it, and the trap's poll gets the answer instead."""
    clock = VirtualClock()
    channel = SimChannel(clock)
    base = channel.radio("base")
    store = FragmentStore(tmp_path / "b.sqlite")
    receiver = Receiver(base, store, {1: KEY}, clock)
    slow = {"left": 1}
    add = store.add_fragment

    def stalled(*args, **kw):
        if slow["left"]:
            slow["left"] -= 1
            clock.sleep(2.0)  # longer than TURNAROUND
        return add(*args, **kw)

    store.add_fragment = stalled
    got = []
    base.on_frame = lambda: got.extend(receiver.poll(0))
    sender = Sender(channel.radio("trap"), OutboundStore(tmp_path / "t.sqlite"), 1, KEY, clock)
    data = random.Random(3).randbytes(200)  # one fragment, flagged ACK requested
    sender.queue.put(data, now=clock.now())
    assert sender.send_pending() == 1
    assert [g.data for g in got] == [data]
    assert receiver.stats["acks_late"] == 1 and sender.stats["ack_timeouts"] == 1
    assert receiver.stats["duplicates"] == 0  # the poll, not a resend, recovered it


def test_the_base_keeps_its_duty_cycle_and_reports_its_ack_airtime(tmp_path, caplog) -> None:
    clock = VirtualClock()
    radio = _FakeRadio(clock, busy=[])
    ack_airtime = radio.modulation.time_on_air(frames.ACK_HEADER + 1 + frames.MIC_LEN
                                               + frames.CRC_LEN)
    duty = 2.5 * ack_airtime / 3600  # room for two acks an hour
    dc = DutyCycle("eu868", 869.525, clock, duty=duty)
    receiver = Receiver(radio, FragmentStore(tmp_path / "b.sqlite"), {1: KEY}, clock, dc)
    for n in range(4):
        receiver.handle(_frame(n + 1, index=0, count=8 + n))
    assert receiver.stats["acks"] == 2 and receiver.stats["acks_skipped"] == 2
    assert dc.used() <= dc.budget + 1e-9
    report = receiver.duty_report()
    assert report["acks"] == 2 and report["acks_skipped"] == 2
    assert report["ack_airtime_s"] > 0 and 0.5 < report["duty_used"] <= 1.0
    clock.sleep(3600.0)
    with caplog.at_level(logging.INFO, logger="device.link.receiver"):
        receiver.poll(0)  # an hour on: the base logs its own airtime
    assert "base acks" in caplog.text and "'acks': 2" in caplog.text


class _BrokenCad(_FakeRadio):
    def channel_active(self) -> bool:
        raise RadioError("CadDone never came")


def test_a_failed_channel_activity_detection_never_stops_a_frame(tmp_path) -> None:
    clock = VirtualClock()
    radio = _BrokenCad(clock, busy=[])
    sender = Sender(radio, OutboundStore(tmp_path / "t.sqlite"), 1, KEY, clock)
    sender.queue.put(b"w" * 100, now=clock.now())
    result = sender.pump()  # no base: the ack times out
    assert result.sent == 1 and len(radio.sent) == 1
    assert sender.stats["lbt_errors"] == 1

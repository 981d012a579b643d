"""Duty cycle and dwell: the scheduler never exceeds the legal airtime, over a simulated day."""

from __future__ import annotations

import os

import pytest

from device.errors import ConfigError
from device.link import DutyCycle, FragmentStore, OutboundStore, Receiver, Sender
from device.link.dutycycle import WINDOW, max_payload
from device.radio.airtime import Modulation
from device.radio.clock import VirtualClock
from device.radio.sim import SimChannel, loss_model

KEY = bytes(16)


@pytest.mark.parametrize(("freq", "name", "duty"), [
    (863.5, "h1.3", 0.001), (868.1, "h1.5", 0.01), (868.9, "h1.6", 0.001),
    (869.525, "h1.7", 0.10), (869.85, "h1.8", 0.01)])
def test_eu868_sub_bands(freq: float, name: str, duty: float) -> None:
    dc = DutyCycle("eu868", freq, VirtualClock())
    assert (dc.band.name, dc.duty) == (name, duty)


def test_outside_the_band_is_refused() -> None:
    with pytest.raises(ConfigError, match="outside"):
        DutyCycle("eu868", 915.0, VirtualClock())
    with pytest.raises(ConfigError, match="region"):
        DutyCycle("mars", 915.0, VirtualClock())


def test_us915_dwell_gives_lorawan_payload_limits() -> None:
    # LoRaWAN Regional Parameters, US902-928 DR3..DR0: M = 250, 133, 61, 19 (+5 bytes MHDR/MIC)
    limits = {sf: max_payload(Modulation(sf=sf), 0.4) for sf in (7, 8, 9, 10, 11)}
    assert limits == {7: 255, 8: 138, 9: 66, 10: 24, 11: 0}
    for sf, n in limits.items():
        if 0 < n < 255:
            assert Modulation(sf=sf).time_on_air(n) <= 0.4 < Modulation(sf=sf).time_on_air(n + 1)


def test_wait_time_follows_the_sliding_hour() -> None:
    clock = VirtualClock()
    dc = DutyCycle("eu868", 868.1, clock)  # 36 s per hour
    assert dc.wait_time(36.0) == 0.0
    clock.sleep(30.0)
    dc.record(30.0)  # sent 0..30 s
    assert dc.wait_time(6.0) == 0.0
    assert dc.wait_time(6.5) == pytest.approx(30.0 + WINDOW - 6.5 - 30.0, abs=1e-3)
    assert dc.allowed_now([2.0, 2.0, 2.0, 2.0]) == 3
    with pytest.raises(ConfigError):
        dc.wait_time(40.0)  # more than a whole hour's budget at once


def _hourly_windows_ok(log: list[tuple[float, float]], budget: float) -> float:
    """Largest airtime in any sliding hour ending at a transmission's end (two pointers)."""
    worst, used, first = 0.0, 0.0, 0
    for start, end in log:  # transmissions are sequential, so ends are sorted
        used += end - start
        while log[first][1] <= end - WINDOW:
            used -= log[first][1] - log[first][0]
            first += 1
        worst = max(worst, used)
    assert worst <= budget + 1e-6
    return worst


# SF12 in the 10% band keeps the frame count (and SQLite fsyncs) of a simulated day small.
@pytest.mark.parametrize(("freq", "budget", "sf"), [(868.1, 36.0, 9), (869.525, 360.0, 12)])
def test_a_simulated_day_never_exceeds_the_duty_cycle(tmp_path, freq: float, budget: float,
                                                      sf: int) -> None:
    clock = VirtualClock()
    channel = SimChannel(clock)
    modulation = Modulation(sf=sf)
    trap = channel.radio("trap", modulation=modulation, loss=loss_model(0.1, seed=1))
    base = channel.radio("base", modulation=modulation, loss=loss_model(0.1, seed=2))
    log: list[tuple[float, float]] = []
    send = trap.send

    def logged_send(frame: bytes) -> float:
        start = clock.now()
        seconds = send(frame)  # (the clock may also move by the base's ack, in the same call)
        log.append((start, start + seconds))
        return seconds

    trap.send = logged_send
    queue = OutboundStore(tmp_path / "q.sqlite")
    sender = Sender(trap, queue, 7, KEY, clock, DutyCycle("eu868", freq, clock))
    receiver = Receiver(base, FragmentStore(tmp_path / "b.sqlite"), {7: KEY}, clock,
                        DutyCycle("eu868", freq, clock))
    got = []
    base.on_frame = lambda: got.extend(receiver.poll(0))
    images = [os.urandom(6000) for _ in range(60)]
    for data in images:
        queue.put(data, now=0.0)
    sender.send_pending(deadline=24 * 3600.0)
    assert 23 * 3600 < clock.now() <= 24 * 3600.0 + 600  # the queue outlasts the day (a round
    # that starts before the deadline may end after it)
    worst = _hourly_windows_ok(log, budget)
    assert worst > 0.9 * budget  # and the budget is actually used
    day_airtime = sum(e - s for s, e in log)
    assert day_airtime <= 24 * budget + 1e-6
    assert sorted(g.data for g in got) == sorted(images[: len(got)])
    per_image = 25 * modulation.time_on_air(255)
    assert len(got) >= 0.8 * day_airtime / per_image  # most airtime delivers images


def test_us915_frames_respect_the_dwell_time(tmp_path) -> None:
    clock = VirtualClock()
    channel = SimChannel(clock)
    modulation = Modulation(sf=10)
    trap = channel.radio("trap", modulation=modulation, loss=loss_model(0.2, seed=3))
    base = channel.radio("base", modulation=modulation, loss=loss_model(0.2, seed=4))
    sizes = []
    send = trap.send
    trap.send = lambda frame: sizes.append(len(frame)) or send(frame)
    dc = DutyCycle("us915", 903.9, clock)
    sender = Sender(trap, OutboundStore(tmp_path / "q.sqlite"), 7, KEY, clock, dc)
    receiver = Receiver(base, FragmentStore(tmp_path / "b.sqlite"), {7: KEY}, clock,
                        DutyCycle("us915", 903.9, clock))
    ack_sizes = []
    base_send = base.send
    base.send = lambda frame: ack_sizes.append(len(frame)) or base_send(frame)
    got = []
    base.on_frame = lambda: got.extend(receiver.poll(0))
    data = os.urandom(1000)  # 112 fragments of 9 bytes: the acks must fit 24 bytes too
    sender.queue.put(data)
    sender.send_pending()
    assert got[0].data == data
    assert max(sizes) == 24 and all(modulation.time_on_air(n) <= 0.4 for n in sizes)
    assert ack_sizes and max(ack_sizes) <= 24


def test_sf12_is_not_usable_under_us915_dwell(tmp_path) -> None:
    from device.errors import LinkError

    clock = VirtualClock()
    radio = SimChannel(clock).radio("trap", modulation=Modulation(sf=11))
    with pytest.raises(LinkError, match="no room"):
        Sender(radio, OutboundStore(tmp_path / "q.sqlite"), 7, KEY, clock,
               DutyCycle("us915", 903.9, clock))


def test_airtime_history_survives_a_restart(tmp_path) -> None:
    clock = VirtualClock(1000.0)
    radio = SimChannel(clock).radio("trap")
    queue = OutboundStore(tmp_path / "q.sqlite")
    sender = Sender(radio, queue, 7, KEY, clock, DutyCycle("eu868", 868.1, clock))
    queue.put(os.urandom(5000), now=clock.now())
    sender.pump()  # nobody answers, but the frames went out
    used = sender.dutycycle.used()
    assert used > 20
    queue.close()
    # the trap reboots: a fresh accountant learns the last hour from the queue
    again = Sender(radio, OutboundStore(tmp_path / "q.sqlite"), 7, KEY, clock,
                   DutyCycle("eu868", 868.1, clock))
    assert again.dutycycle.used() == pytest.approx(used)
    clock.sleep(WINDOW + 10)
    third = Sender(radio, OutboundStore(tmp_path / "q.sqlite"), 7, KEY, clock,
                   DutyCycle("eu868", 868.1, clock))
    assert third.dutycycle.used() == 0.0


def test_sf12_fits_the_1_percent_band_but_not_0_1_percent(tmp_path) -> None:
    from device.errors import LinkError

    clock = VirtualClock()
    channel = SimChannel(clock)
    modulation = Modulation(sf=12)
    trap = channel.radio("trap", modulation=modulation)
    base = channel.radio("base", modulation=modulation)
    sender = Sender(trap, OutboundStore(tmp_path / "q.sqlite"), 7, KEY, clock,
                    DutyCycle("eu868", 868.1, clock))
    assert sender.min_burst == 3  # 3 full frames of 9.0 s fit in 36 s; 8 never would
    receiver = Receiver(base, FragmentStore(tmp_path / "b.sqlite"), {7: KEY}, clock,
                        DutyCycle("eu868", 868.1, clock))
    got = []
    base.on_frame = lambda: got.extend(receiver.poll(0))
    data = os.urandom(3000)
    sender.queue.put(data, now=0.0)
    sender.send_pending()
    assert got[0].data == data and clock.now() > 3600  # 13 frames x 9 s > 36 s per hour
    with pytest.raises(LinkError, match="duty cycle"):
        Sender(trap, OutboundStore(tmp_path / "q2.sqlite"), 7, KEY, clock,
               DutyCycle("eu868", 868.9, clock))  # 0.1%: 3.6 s per hour

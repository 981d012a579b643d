"""The simulated radio: airtime on the virtual clock, loss models, loopback UDP."""

from __future__ import annotations

import pytest

from device.errors import RadioError
from device.radio.airtime import Modulation
from device.radio.base import Radio
from device.radio.clock import ScaledClock, VirtualClock
from device.radio.sim import Bernoulli, GilbertElliott, SimChannel, UdpRadio, loss_model


def test_sim_radio_is_a_radio_and_costs_airtime() -> None:
    clock = VirtualClock()
    channel = SimChannel(clock)
    a, b = channel.radio("a"), channel.radio("b")
    assert isinstance(a, Radio)
    seconds = a.send(b"x" * 240)
    assert seconds == pytest.approx(1.1889, abs=1e-3) == clock.now()
    got = b.receive(timeout=5.0)
    assert got.frame == b"x" * 240 and clock.now() == seconds  # no waiting when a frame is there
    assert b.receive(timeout=5.0) is None and clock.now() == pytest.approx(seconds + 5.0)
    assert a.receive(timeout=0) is None  # a radio does not hear itself


def test_mtu_closed_and_other_spreading_factors() -> None:
    channel = SimChannel()
    a = channel.radio("a", mtu=32)
    b = channel.radio("b", modulation=Modulation(sf=10))
    with pytest.raises(RadioError, match="mtu"):
        a.send(bytes(33))
    a.send(bytes(32))
    assert b.receive(0) is None  # SF9 and SF10 do not demodulate each other
    a.close()
    with pytest.raises(RadioError, match="closed"):
        a.send(b"x")


def test_on_frame_hook_runs_the_receiver_in_line() -> None:
    channel = SimChannel()
    a, b = channel.radio("a"), channel.radio("b")
    b.on_frame = lambda: b.send(b"ack:" + b.receive(0).frame)
    a.send(b"ping")
    assert a.receive(0).frame == b"ack:ping"


def test_loss_models_are_seeded_and_have_their_rate() -> None:
    draws = [Bernoulli(0.3, seed=4).lost() for _ in range(3)]
    assert draws == [Bernoulli(0.3, seed=4).lost() for _ in range(3)]
    model = Bernoulli(0.3, seed=4)
    assert sum(model.lost() for _ in range(20_000)) / 20_000 == pytest.approx(0.3, abs=0.02)
    assert GilbertElliott.from_mean(0.25, 3).mean_loss == pytest.approx(0.25)
    assert not any(loss_model(0.0).lost() for _ in range(100))
    with pytest.raises(ValueError):
        Bernoulli(1.0)


def test_udp_radios_on_loopback() -> None:
    clock = ScaledClock(50.0)  # SF7 frames take ~8 ms real time
    a = UdpRadio(0, 0, modulation=Modulation(sf=7), clock=clock)
    b = UdpRadio(0, a.port, modulation=Modulation(sf=7), clock=clock)
    a.peer = (UdpRadio.HOST, b.port)
    try:
        assert a._sock.getsockname()[0] == "127.0.0.1"
        start = clock.now()
        seconds = a.send(b"hello")
        assert clock.now() - start >= seconds * 0.9  # send blocks for the time on air
        got = b.receive(timeout=5.0)
        assert got.frame == b"hello"
        b.send(b"back")
        assert a.receive(timeout=5.0).frame == b"back"
        assert a.receive(timeout=0.5) is None
    finally:
        a.close()
        b.close()


def test_udp_radio_with_nobody_listening_just_loses_frames() -> None:
    a = UdpRadio(0, 9, modulation=Modulation(sf=7), clock=ScaledClock(100.0))
    try:
        a.send(b"into the void")
        assert a.receive(timeout=0.2) is None
    finally:
        a.close()


def test_per_link_loss_and_rssi_override_the_receivers_own() -> None:
    channel = SimChannel()
    near, far, base = channel.radio("near"), channel.radio("far"), channel.radio("base")
    channel.link(far, base, loss=Bernoulli(0.5, seed=3), rssi=-118.0, snr=-9.0)
    for _ in range(40):
        near.send(b"n")
        far.send(b"f")
    got = list(base.inbox)
    assert sum(r.frame == b"n" for r in got) == 40  # the near trap: the base's own (no) loss
    assert 5 < sum(r.frame == b"f" for r in got) < 35  # the far one: its link's loss
    assert all(r.rssi < -115 and r.snr < -7 for r in got if r.frame == b"f")
    assert all(r.rssi > -98 for r in got if r.frame == b"n")
    assert channel.stats["lost"] == 80 - len(got) and channel.stats["collided"] == 0


def test_an_unread_inbox_keeps_only_the_newest_frames() -> None:
    channel = SimChannel(inbox_limit=4)
    a, b = channel.radio("a"), channel.radio("b")
    for n in range(10):
        a.send(bytes([n]))
    assert [r.frame[0] for r in b.inbox] == [6, 7, 8, 9]

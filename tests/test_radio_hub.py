"""The loopback radio hub: the shared-air rules between processes (here: threads and sockets)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from device.errors import RadioError
from device.link import FragmentStore, OutboundStore, Receiver, Sender
from device.radio.air import Tuning
from device.radio.airtime import Modulation
from device.radio.clock import ScaledClock
from device.radio.hub import Hub, pack_tx
from device.radio.sim import DEFAULT_FREQUENCY_MHZ, UdpRadio

SF7 = Modulation(sf=7)
TUNING = Tuning(DEFAULT_FREQUENCY_MHZ, 7, 125e3)
KEY = bytes(range(16))


@pytest.fixture
def hub():
    hub = Hub(port=0).start()
    yield hub
    hub.close()


def _announce(hub: Hub, seconds: float, frame: bytes) -> socket.socket:
    """A bare transmitter: tells the hub a frame of `seconds` (wall) starts now."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.sendto(pack_tx(seconds, TUNING, frame), ("127.0.0.1", hub.port))
    return sock


def test_frames_overlapping_at_the_hub_are_both_lost(hub) -> None:
    base = UdpRadio(0, hub=hub.port, modulation=SF7, name="base")
    try:
        a, b = _announce(hub, 0.3, b"one"), _announce(hub, 0.3, b"two")  # together: collide
        assert base.receive(timeout=1.0) is None
        c = _announce(hub, 0.01, b"alone")
        assert base.receive(timeout=2.0).frame == b"alone"
        assert hub.air.stats["collided"] == 2
        for sock in (a, b, c):
            sock.close()
    finally:
        base.close()


def test_channel_active_asks_the_hub(hub) -> None:
    listener = UdpRadio(0, hub=hub.port, modulation=SF7)
    other_sf = UdpRadio(0, hub=hub.port, modulation=Modulation(sf=9))
    try:
        assert not listener.channel_active()
        sock = _announce(hub, 1.0, b"long")
        assert listener.channel_active()
        assert not other_sf.channel_active()
        sock.close()
    finally:
        listener.close()
        other_sf.close()


def test_no_hub_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(UdpRadio, "JOIN_TIMEOUT", 0.2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]  # bound, silent: nobody answers the join
    try:
        with pytest.raises(RadioError, match=f"no radio hub answers on 127.0.0.1:{port}"):
            UdpRadio(0, hub=port)
    finally:
        sock.close()
    with pytest.raises(ValueError, match="either peer_port"):
        UdpRadio(0)


def test_two_traps_and_a_base_deliver_exactly_once_over_the_hub(hub, tmp_path) -> None:
    clock = ScaledClock(20.0)
    images = {t: [os.urandom(600 + 50 * t), os.urandom(400)] for t in (1, 2)}
    base = UdpRadio(0, hub=hub.port, modulation=SF7, clock=clock, name="base")
    traps = {t: UdpRadio(0, hub=hub.port, modulation=SF7, clock=clock, name=f"trap{t}")
             for t in images}
    got, stop, errors = [], threading.Event(), []

    def serve() -> None:
        receiver = Receiver(base, FragmentStore(tmp_path / "base.sqlite"),
                            dict.fromkeys(images, KEY), clock)
        for image in receiver.serve(stop=stop.is_set, timeout=1.0):
            got.append((image.trap_id, image.data))

    def send(t: int) -> None:
        try:
            queue = OutboundStore(tmp_path / f"trap{t}.sqlite")
            for data in images[t]:
                queue.put(data, now=clock.now())
            Sender(traps[t], queue, t, KEY, clock, seed=t, ack_timeout=2.0).send_pending()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    senders = [threading.Thread(target=send, args=(t,), daemon=True) for t in images]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(timeout=120)
    stop.set()
    server.join(timeout=10)
    for radio in (base, *traps.values()):
        radio.close()
    assert not errors
    assert sorted(got) == sorted((t, d) for t, ds in images.items() for d in ds)


def test_a_service_config_with_hub_port_joins_the_hub(hub, tmp_path) -> None:
    from device.errors import ConfigError
    from device.radio.factory import build_radio
    from device.service.config import load_trap_config

    text = (f'[trap]\nid = 3\n[radio]\ntype = "sim"\nfrequency_mhz = 868.1\nsf = 7\n'
            f"[radio.sim]\nlisten_port = 47311\nhub_port = {hub.port}\n"
            "[triggers]\ntimelapse_s = 5\n[keys]\nallow_unsigned = true\n")
    path = tmp_path / "trap.toml"
    path.write_text(text)
    settings, pins = load_trap_config(path).radio.settings
    radio = build_radio(settings, pins)
    try:
        assert radio.hub == hub.port and radio.frequency_mhz == 868.1
        assert hub.members[("127.0.0.1", radio.port)] == Tuning(868.1, 7, 125e3)
    finally:
        radio.close()
    path.write_text(text.replace(f"hub_port = {hub.port}", "hub_port = 70000"))
    with pytest.raises(ConfigError, match="radio.sim.hub_port"):
        load_trap_config(path)

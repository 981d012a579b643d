"""A simulated LoRa radio: the `Radio` interface over a shared, lossy air, in virtual or real time.

Two transports, one rule book (device/radio/air.py: collisions, optional capture, half-duplex,
carrier sense):

* `SimChannel` (one process): N radios on one clock. A transmission is an interval
  [start, start + time on air) on that clock (SX126x formula, device/radio/airtime.py); when it
  ends, every radio tuned like the sender receives it unless another transmission on the same
  carrier and SF overlapped it, or the receiver itself was sending meanwhile, or the per-link
  loss model drops it. With a `VirtualClock` (one thread) a day of traffic runs in seconds; a
  radio may carry an `on_frame` hook the channel calls when a frame reaches it, so a base
  station "runs" inside the traps' thread (event-driven). With an `EventClock`
  (device/radio/simclock.py) every trap and the base are threads taking turns on virtual
  time, so their transmissions really overlap; with a real clock (`ScaledClock`) threads
  run freely and the channel is thread-safe.
* `UdpRadio` (several processes): datagrams on 127.0.0.1 only, either straight to one peer
  (two processes) or through a `Hub` (device/radio/hub.py) that applies the same rules on a
  (sped-up) real clock to any number of processes.

Loss is decided at the receiving end, per radio (or per link, `SimChannel.link`), by a seeded
model: `Bernoulli` (independent) or `GilbertElliott` (two-state bursts). RSSI and SNR are the
receiver's (or the link's) figures with a little seeded jitter.

A radio listens whenever it is not transmitting and keeps up to `inbox_limit` unread frames
(the oldest are dropped first; a real SX1262 keeps one, in continuous receive).

Example:
    >>> clock = VirtualClock()
    >>> channel = SimChannel(clock)
    >>> trap, base = channel.radio("trap"), channel.radio("base", loss=Bernoulli(0.1, seed=1))
    >>> seconds = trap.send(b"x" * 240)       # 1.19 s at SF9: the clock moved by that much
    >>> base.receive(timeout=1.0).frame[:1]
    b'x'
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from device.errors import RadioError
from device.radio import hub as wire
from device.radio.air import Air, Transmission, Tuning
from device.radio.airtime import MAX_PAYLOAD, Modulation
from device.radio.base import Reception
from device.radio.clock import Clock, ScaledClock, SystemClock, VirtualClock
from device.radio.simclock import EventClock

__all__ = [
    "DEFAULT_FREQUENCY_MHZ",
    "Bernoulli",
    "EventClock",
    "GilbertElliott",
    "LossModel",
    "NoLoss",
    "SimChannel",
    "SimRadio",
    "UdpRadio",
    "VirtualClock",
    "loss_model",
]

#: The carrier a simulated radio uses unless told otherwise (EU868 h1.7, the services' default).
DEFAULT_FREQUENCY_MHZ = 869.525
INBOX_LIMIT = 64


class LossModel(Protocol):
    """Decides, frame by frame, whether a reception is lost."""

    def lost(self) -> bool: ...


class NoLoss:
    """A perfect channel."""

    def lost(self) -> bool:
        return False


class Bernoulli:
    """Each frame is lost independently with probability `p`."""

    def __init__(self, p: float, seed: int = 0) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"loss probability must be in [0, 1), got {p}")
        self.p = p
        self._rng = random.Random(seed)

    def lost(self) -> bool:
        return self._rng.random() < self.p


class GilbertElliott:
    """Two-state Markov loss: a good state and a bad (burst) state.

    Each frame first moves the state (good->bad with `p_gb`, bad->good with `p_bg`), then is
    lost with the state's loss probability. Mean burst length is 1/p_bg frames; the long-run
    loss rate is pi_b*loss_bad + (1-pi_b)*loss_good with pi_b = p_gb/(p_gb+p_bg).
    """

    def __init__(self, p_gb: float, p_bg: float, loss_good: float = 0.0, loss_bad: float = 1.0,
                 seed: int = 0) -> None:
        for name, value in (("p_gb", p_gb), ("p_bg", p_bg), ("loss_good", loss_good),
                            ("loss_bad", loss_bad)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if p_bg == 0.0:
            raise ValueError("p_bg must be > 0 (a channel that never recovers)")
        self.p_gb, self.p_bg, self.loss_good, self.loss_bad = p_gb, p_bg, loss_good, loss_bad
        self._rng = random.Random(seed)
        self.bad = False

    @classmethod
    def from_mean(cls, loss: float, burst: float = 4.0, seed: int = 0) -> GilbertElliott:
        """Bursts of mean length `burst` frames with long-run loss rate `loss` (0 <= loss < 1)."""
        if not 0.0 <= loss < 1.0 or burst < 1.0:
            raise ValueError(f"need 0 <= loss < 1 and burst >= 1, got {loss}, {burst}")
        p_bg = 1.0 / burst
        return cls(p_gb=loss * p_bg / (1.0 - loss), p_bg=p_bg, seed=seed)

    @property
    def mean_loss(self) -> float:
        pi_b = self.p_gb / (self.p_gb + self.p_bg)
        return pi_b * self.loss_bad + (1.0 - pi_b) * self.loss_good

    def lost(self) -> bool:
        flip = self._rng.random()
        self.bad = (flip >= self.p_bg) if self.bad else (flip < self.p_gb)
        return self._rng.random() < (self.loss_bad if self.bad else self.loss_good)


def loss_model(p: float, burst: bool = False, seed: int = 0, burst_len: float = 4.0) -> LossModel:
    """The loss model the CLI and config ask for: independent, or bursts of `burst_len`."""
    if p == 0.0:
        return NoLoss()
    return GilbertElliott.from_mean(p, burst_len, seed) if burst else Bernoulli(p, seed)


class SimRadio:
    """One simulated radio on a `SimChannel` (create it with `channel.radio(...)`)."""

    def __init__(self, channel: SimChannel, name: str, modulation: Modulation, mtu: int,
                 loss: LossModel, rssi: float, snr: float, frequency_mhz: float) -> None:
        if not 1 <= mtu <= MAX_PAYLOAD:
            raise ValueError(f"mtu must be 1..{MAX_PAYLOAD}, got {mtu}")
        self.channel, self.name, self.modulation, self.mtu = channel, name, modulation, mtu
        self.loss, self.rssi, self.snr = loss, rssi, snr
        self.frequency_mhz = frequency_mhz
        self.tuning = Tuning(frequency_mhz, modulation.sf, modulation.bw_hz)
        self.inbox: deque[Reception] = deque(maxlen=channel.inbox_limit)
        #: Called (no arguments) after a frame reached this radio's inbox.
        self.on_frame: Callable[[], object] | None = None
        self.frames_sent = 0
        self.airtime = 0.0  #: seconds this radio has transmitted
        self.closed = False

    def send(self, frame: bytes) -> float:
        """Transmit: on air from now for the time on air (the clock advances by it), then
        every radio that hears it gets it."""
        self._check_open()
        if len(frame) > self.mtu:
            raise RadioError(f"{self.name}: frame of {len(frame)} bytes exceeds mtu {self.mtu}")
        seconds = self.modulation.time_on_air(len(frame))
        tx = self.channel._begin(self, bytes(frame), seconds)
        self.channel.clock.sleep(seconds)
        self.frames_sent += 1
        self.airtime += seconds
        self.channel._finish(tx)
        return seconds

    def receive(self, timeout: float) -> Reception | None:
        """The next frame in the inbox, or None after `timeout` (clock) seconds."""
        self._check_open()
        if not self.inbox and timeout > 0:
            self.channel._wait(self, timeout)
        return self.inbox.popleft() if self.inbox else None

    def channel_active(self) -> bool:
        """True while another radio's transmission on this carrier and SF is in the air (what
        channel activity detection reports; for listen-before-talk)."""
        self._check_open()
        return self.channel._busy(self)

    def close(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RadioError(f"{self.name}: radio is closed")


class _Link:
    __slots__ = ("hears", "loss", "rssi", "snr")

    def __init__(self, loss: LossModel | None, rssi: float | None, snr: float | None,
                 hears: bool) -> None:
        self.loss, self.rssi, self.snr, self.hears = loss, rssi, snr, hears


class SimChannel:
    """The shared air of several `SimRadio`s, on one clock (virtual by default).

    Args:
        clock: `VirtualClock` (one thread, `on_frame` hooks), `EventClock` (device threads
            taking turns on virtual time) or a real clock (`ScaledClock`, free threads).
        seed: RSSI/SNR jitter.
        frequency_mhz: the carrier of radios that do not name their own.
        capture_db: the capture rule's margin (device/radio/air.py); None: no capture.
        inbox_limit: unread frames a radio keeps.

    `stats` counts transmissions, collided ones, and per-receiver outcomes (received,
    collision, captured, half_duplex, out_of_range, lost: dropped by the loss model).
    """

    def __init__(self, clock: Clock | None = None, seed: int = 0, *,
                 frequency_mhz: float = DEFAULT_FREQUENCY_MHZ, capture_db: float | None = None,
                 inbox_limit: int = INBOX_LIMIT) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        self.frequency_mhz, self.inbox_limit = frequency_mhz, inbox_limit
        self.radios: list[SimRadio] = []
        self.air = Air(capture_db)
        self.stats = self.air.stats
        self._links: dict[tuple[SimRadio, SimRadio], _Link] = {}
        self._rng = random.Random(seed)
        self._cond = threading.Condition()

    def radio(self, name: str, *, modulation: Modulation | None = None, mtu: int = MAX_PAYLOAD,
              loss: LossModel | None = None, rssi: float = -95.0, snr: float = 6.0,
              frequency_mhz: float | None = None) -> SimRadio:
        """Add a radio. `loss`, `rssi` and `snr` apply to the frames this radio receives."""
        radio = SimRadio(self, name, modulation or Modulation(), mtu, loss or NoLoss(), rssi, snr,
                         self.frequency_mhz if frequency_mhz is None else frequency_mhz)
        with self._cond:
            self.radios.append(radio)
        return radio

    def link(self, source: SimRadio, receiver: SimRadio, *, loss: LossModel | None = None,
             rssi: float | None = None, snr: float | None = None, hears: bool = True) -> None:
        """What `receiver` makes of `source`'s frames, where it differs from its own figures
        (a far trap: lower RSSI, more loss; the capture rule compares these RSSIs).

        `hears=False`: out of range, `receiver` neither receives nor senses `source` (two
        traps hidden from each other by a hill), though their frames still collide at the
        base."""
        self._links[source, receiver] = _Link(loss, rssi, snr, hears)

    # -- used by SimRadio -------------------------------------------------------------------

    def _begin(self, radio: SimRadio, frame: bytes, seconds: float) -> Transmission:
        with self._cond:
            now = self.clock.now()
            return self.air.begin(radio, radio.tuning, now, now + seconds, frame)

    def _busy(self, radio: SimRadio) -> bool:
        with self._cond:
            return self.air.busy(radio.tuning, self.clock.now(), exclude=radio,
                                 audible=lambda source: self._hears(source, radio))

    def _hears(self, source: SimRadio, receiver: SimRadio) -> bool:
        link = self._links.get((source, receiver))
        return link is None or link.hears

    def _level(self, source: SimRadio, receiver: SimRadio) -> float:
        link = self._links.get((source, receiver))
        return link.rssi if link is not None and link.rssi is not None else receiver.rssi

    def _finish(self, tx: Transmission) -> None:
        """The transmission ended: deliver it, then run the woken radios' hooks."""
        woken = []
        with self._cond:
            listeners = [(r, r.tuning) for r in self.radios if not r.closed]
            for radio in self.air.finish(tx, listeners, self._level):
                link = self._links.get((tx.source, radio))
                if link is not None and not link.hears:
                    self.stats["out_of_range"] += 1
                    continue
                loss = link.loss if link is not None and link.loss is not None else radio.loss
                if loss.lost():
                    self.stats["lost"] += 1
                    continue
                rssi = self._level(tx.source, radio) + self._rng.uniform(-2.0, 2.0)
                snr = (link.snr if link is not None and link.snr is not None else radio.snr)
                snr += self._rng.uniform(-1.0, 1.0)
                radio.inbox.append(Reception(tx.frame, round(rssi, 1), round(snr, 1)))
                if radio.on_frame is not None:
                    woken.append(radio)
            self._cond.notify_all()
        if isinstance(self.clock, EventClock):
            self.clock.notify()
        for radio in woken:
            radio.on_frame()

    def _wait(self, radio: SimRadio, timeout: float) -> None:
        """Until a frame is in `radio`'s inbox or `timeout` clock seconds have passed."""
        if isinstance(self.clock, EventClock):
            self.clock.wait_for(lambda: bool(radio.inbox), timeout)
        elif isinstance(self.clock, VirtualClock):  # one thread: nothing arrives meanwhile
            self.clock.sleep(timeout)
        else:
            speedup = float(getattr(self.clock, "speedup", 1.0))
            with self._cond:
                self._cond.wait_for(lambda: bool(radio.inbox), timeout / speedup)


class UdpRadio:
    """A simulated radio between processes: datagrams on 127.0.0.1 only.

    Two ways to meet other radios:

    * `UdpRadio(listen_port, peer_port)`: straight to one peer (two processes, no collisions).
    * `UdpRadio(listen_port, hub=port)`: through a `Hub` (device/radio/hub.py), which any
      number of radios join; it delivers each frame when its airtime ends, by the shared-air
      rules (collisions, half-duplex), to every radio tuned alike.

    `send` blocks for the time on air on `clock` (a `ScaledClock` runs faster than real time;
    all radios on one hub must share the speedup). `receive` drops frames by the loss model.
    """

    HOST = "127.0.0.1"
    JOIN_TIMEOUT = 2.0  #: real seconds to wait for the hub's welcome
    CAD_TIMEOUT = 0.5  #: real seconds to wait for the hub's carrier-sense answer

    def __init__(self, listen_port: int, peer_port: int | None = None, *,
                 hub: int | None = None, modulation: Modulation | None = None,
                 mtu: int = MAX_PAYLOAD, loss: LossModel | None = None,
                 clock: Clock | None = None, speedup: float = 1.0, rssi: float = -95.0,
                 snr: float = 6.0, frequency_mhz: float = DEFAULT_FREQUENCY_MHZ,
                 name: str = "") -> None:
        if not 1 <= mtu <= MAX_PAYLOAD:
            raise ValueError(f"mtu must be 1..{MAX_PAYLOAD}, got {mtu}")
        if (peer_port is None) == (hub is None):
            raise ValueError("give a UdpRadio either peer_port (two processes) or hub=port")
        self.modulation, self.mtu = modulation or Modulation(), mtu
        self.frequency_mhz = frequency_mhz
        self.tuning = Tuning(frequency_mhz, self.modulation.sf, self.modulation.bw_hz)
        self.loss = loss or NoLoss()
        if clock is None:
            clock = ScaledClock(speedup) if speedup != 1.0 else SystemClock()
        self.clock = clock
        self.hub = hub
        self.peer = (self.HOST, hub if hub is not None else peer_port)
        self.rssi, self.snr = rssi, snr
        self.frames_sent = 0
        self.airtime = 0.0
        self._pending: deque[bytes] = deque(maxlen=INBOX_LIMIT)  # hub frames read early
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((self.HOST, listen_port))
        except OSError as exc:
            self._sock.close()
            raise RadioError(f"cannot listen on {self.HOST}:{listen_port}: {exc.strerror}") from None
        self.port = self._sock.getsockname()[1]
        self._speedup = float(getattr(clock, "speedup", 1.0))
        if hub is not None:
            self._join(name)

    def send(self, frame: bytes) -> float:
        if len(frame) > self.mtu:
            raise RadioError(f"frame of {len(frame)} bytes exceeds mtu {self.mtu}")
        seconds = self.modulation.time_on_air(len(frame))
        if self.hub is not None:  # the hub needs the start: it times the frame on its clock
            self._sendto(wire.pack_tx(seconds / self._speedup, self.tuning, bytes(frame)))
            self.clock.sleep(seconds)
        else:
            self.clock.sleep(seconds)
            self._sendto(bytes(frame))
        self.frames_sent += 1
        self.airtime += seconds
        return seconds

    def receive(self, timeout: float) -> Reception | None:
        deadline = self.clock.now() + max(timeout, 0.0)
        while True:
            frame = self._next_frame(deadline)
            if frame is None:
                return None
            if not self.loss.lost():
                return Reception(frame, self.rssi, self.snr)
            if self.clock.now() >= deadline:
                return None

    def channel_active(self) -> bool:
        """Carrier sense: asks the hub whether another transmission on this carrier and SF is
        in the air (always False between two peers: there is nobody else to hear)."""
        if self.hub is None:
            return False
        self._sendto(wire.pack_cad(self.tuning))
        end = time.monotonic() + self.CAD_TIMEOUT
        while (left := end - time.monotonic()) > 0:
            kind, body = self._recv(left)
            if kind == wire.CAD_REPLY:
                return body == b"\x01"
        raise RadioError(f"the radio hub on {self.HOST}:{self.hub} did not answer")

    def close(self) -> None:
        if self.hub is not None:
            try:
                self._sendto(wire.LEAVE)
            except OSError:
                pass
        self._sock.close()

    # -- internals --------------------------------------------------------------------------

    def _join(self, name: str) -> None:
        hello = wire.JOIN + json.dumps({"name": name, "tuning": list(self.tuning)}).encode()
        self._sendto(hello)
        end = time.monotonic() + self.JOIN_TIMEOUT
        while (left := end - time.monotonic()) > 0:
            kind, _ = self._recv(left)
            if kind == wire.JOINED:
                return
        self._sock.close()
        raise RadioError(f"no radio hub answers on {self.HOST}:{self.hub}: start one with "
                         f"`python -m device.radio.hub --port {self.hub}`")

    def _sendto(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, self.peer)
        except ConnectionRefusedError:  # nobody listening: like a radio nobody hears
            pass

    def _recv(self, real_timeout: float) -> tuple[bytes | None, bytes]:
        """One datagram within `real_timeout` wall seconds: (kind, body), (None, b"") if none.

        Hub frames met while waiting for something else are kept for `receive`."""
        self._sock.settimeout(max(real_timeout, 1e-4))
        try:
            data, _ = self._sock.recvfrom(4096)
        except (TimeoutError, BlockingIOError):
            return None, b""
        except ConnectionRefusedError:  # ICMP from an earlier send to a closed port
            return b"", b""
        if self.hub is None:
            return wire.RX, data
        kind, body = data[:1], data[1:]
        if kind == wire.RX:
            self._pending.append(body)
        return kind, body

    def _next_frame(self, deadline: float) -> bytes | None:
        while not self._pending:
            remaining = deadline - self.clock.now()
            kind, body = self._recv(max(remaining / self._speedup, 0.0) or 1e-4)
            if kind is None:
                return None
            if kind == wire.RX and self.hub is None:
                return body
        return self._pending.popleft()

"""A simulated LoRa radio: the `Radio` interface over a lossy channel, in virtual or real time.

Two transports:

* `SimChannel` (one process): every radio on the channel hears every other radio on the same
  spreading factor. Sending advances the shared `VirtualClock` by the frame's time on air
  (SX126x formula, device/radio/airtime.py), so a day of traffic runs in seconds. A radio may
  carry an `on_frame` hook that the channel calls when a frame reaches it: that is how a
  base station "runs" in the same thread as the traps (event-driven, no threads).
* `UdpRadio` (two processes): frames travel as datagrams on 127.0.0.1 only; `send` blocks for
  the time on air on a (possibly sped-up) real clock.

Loss is decided at the receiving end, per radio, by a seeded model: `Bernoulli` (independent)
or `GilbertElliott` (two-state bursts).

Example:
    >>> clock = VirtualClock()
    >>> channel = SimChannel(clock)
    >>> trap, base = channel.radio("trap"), channel.radio("base", loss=Bernoulli(0.1, seed=1))
    >>> seconds = trap.send(b"x" * 240)       # 1.19 s at SF9: the clock moved by that much
    >>> base.receive(timeout=1.0).frame[:1]
    b'x'
"""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import Callable
from typing import Protocol

from device.errors import RadioError
from device.radio.airtime import MAX_PAYLOAD, Modulation
from device.radio.base import Reception
from device.radio.clock import Clock, ScaledClock, SystemClock, VirtualClock

__all__ = [
    "Bernoulli",
    "GilbertElliott",
    "LossModel",
    "NoLoss",
    "SimChannel",
    "SimRadio",
    "UdpRadio",
    "VirtualClock",
    "loss_model",
]


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
                 loss: LossModel, rssi: float, snr: float) -> None:
        if not 1 <= mtu <= MAX_PAYLOAD:
            raise ValueError(f"mtu must be 1..{MAX_PAYLOAD}, got {mtu}")
        self.channel, self.name, self.modulation, self.mtu = channel, name, modulation, mtu
        self.loss, self.rssi, self.snr = loss, rssi, snr
        self.inbox: deque[Reception] = deque()
        #: Called (no arguments) after a frame reached this radio's inbox.
        self.on_frame: Callable[[], object] | None = None
        self.frames_sent = 0
        self.airtime = 0.0  #: seconds this radio has transmitted
        self.closed = False

    def send(self, frame: bytes) -> float:
        """Transmit: the clock advances by the time on air, then every other radio hears it."""
        self._check_open()
        if len(frame) > self.mtu:
            raise RadioError(f"{self.name}: frame of {len(frame)} bytes exceeds mtu {self.mtu}")
        seconds = self.modulation.time_on_air(len(frame))
        self.channel.clock.sleep(seconds)
        self.frames_sent += 1
        self.airtime += seconds
        self.channel.transmit(self, bytes(frame))
        return seconds

    def receive(self, timeout: float) -> Reception | None:
        """The next frame in the inbox, or None after `timeout` (virtual) seconds."""
        self._check_open()
        if not self.inbox and timeout > 0:
            self.channel.clock.sleep(timeout)
        return self.inbox.popleft() if self.inbox else None

    def close(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RadioError(f"{self.name}: radio is closed")


class SimChannel:
    """The shared medium of several `SimRadio`s, on one clock (virtual by default)."""

    def __init__(self, clock: Clock | None = None, seed: int = 0) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        self.radios: list[SimRadio] = []
        self._rng = random.Random(seed)

    def radio(self, name: str, *, modulation: Modulation | None = None, mtu: int = MAX_PAYLOAD,
              loss: LossModel | None = None, rssi: float = -95.0, snr: float = 6.0) -> SimRadio:
        """Add a radio. `loss` applies to the frames this radio receives."""
        radio = SimRadio(self, name, modulation or Modulation(), mtu, loss or NoLoss(), rssi, snr)
        self.radios.append(radio)
        return radio

    def transmit(self, source: SimRadio, frame: bytes) -> None:
        """Deliver a frame that has just finished its airtime to every radio that hears it."""
        woken = []
        for radio in self.radios:
            if radio is source or radio.closed or radio.modulation.sf != source.modulation.sf:
                continue
            if radio.loss.lost():
                continue
            rssi = radio.rssi + self._rng.uniform(-2.0, 2.0)
            snr = radio.snr + self._rng.uniform(-1.0, 1.0)
            radio.inbox.append(Reception(frame, round(rssi, 1), round(snr, 1)))
            if radio.on_frame is not None:
                woken.append(radio)
        for radio in woken:
            radio.on_frame()


class UdpRadio:
    """A simulated radio between two processes: datagrams on 127.0.0.1 only.

    `send` blocks for the time on air on `clock` (a `ScaledClock` runs faster than real time),
    then sends the frame to `peer_port`. `receive` drops frames by the loss model.
    """

    HOST = "127.0.0.1"

    def __init__(self, listen_port: int, peer_port: int, *, modulation: Modulation | None = None,
                 mtu: int = MAX_PAYLOAD, loss: LossModel | None = None,
                 clock: Clock | None = None, speedup: float = 1.0, rssi: float = -95.0,
                 snr: float = 6.0) -> None:
        if not 1 <= mtu <= MAX_PAYLOAD:
            raise ValueError(f"mtu must be 1..{MAX_PAYLOAD}, got {mtu}")
        self.modulation, self.mtu = modulation or Modulation(), mtu
        self.loss = loss or NoLoss()
        if clock is None:
            clock = ScaledClock(speedup) if speedup != 1.0 else SystemClock()
        self.clock = clock
        self.peer = (self.HOST, peer_port)
        self.rssi, self.snr = rssi, snr
        self.frames_sent = 0
        self.airtime = 0.0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((self.HOST, listen_port))
        except OSError as exc:
            self._sock.close()
            raise RadioError(f"cannot listen on {self.HOST}:{listen_port}: {exc.strerror}") from None
        self.port = self._sock.getsockname()[1]
        self._speedup = getattr(clock, "speedup", 1.0)

    def send(self, frame: bytes) -> float:
        if len(frame) > self.mtu:
            raise RadioError(f"frame of {len(frame)} bytes exceeds mtu {self.mtu}")
        seconds = self.modulation.time_on_air(len(frame))
        self.clock.sleep(seconds)
        try:
            self._sock.sendto(bytes(frame), self.peer)
        except ConnectionRefusedError:  # nobody listening: like a radio nobody hears
            pass
        self.frames_sent += 1
        self.airtime += seconds
        return seconds

    def receive(self, timeout: float) -> Reception | None:
        deadline = self.clock.now() + max(timeout, 0.0)
        while True:
            remaining = deadline - self.clock.now()
            self._sock.settimeout(max(remaining / self._speedup, 0.0) or 1e-4)
            try:
                frame, _ = self._sock.recvfrom(4096)
            except (TimeoutError, BlockingIOError):
                return None
            except ConnectionRefusedError:  # ICMP from an earlier send to a closed port
                continue
            if not self.loss.lost():
                return Reception(frame, self.rssi, self.snr)
            if self.clock.now() >= deadline:
                return None

    def close(self) -> None:
        self._sock.close()

"""Link arithmetic and simulations shared by `wildlink airtime`, `wildlink simulate` and the bench.

Everything runs on the virtual clock with throw-away SQLite files: the real Sender, Receiver,
queue and store, over `device.radio.sim.SimChannel`.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from device.link import DutyCycle, FragmentStore, OutboundStore, Receiver, Sender, frames
from device.link.dutycycle import max_payload
from device.radio.airtime import MAX_PAYLOAD, Modulation
from device.radio.clock import VirtualClock
from device.radio.sim import SimChannel, loss_model
from device.service.config import DEFAULT_FREQUENCY_MHZ

__all__ = ["DEFAULT_FREQ", "AirtimePlan", "Transfer", "band_frequency", "plan_airtime",
           "simulate_transfer"]

#: Default frequency per region: the services' (the EU 10% sub-band h1.7), the first US915 channel.
DEFAULT_FREQ = {"eu868": DEFAULT_FREQUENCY_MHZ, "us915": 902.3}
KEY = bytes(range(16))


def band_frequency(region: str, band: str) -> float:
    """A frequency inside sub-band `band` of `region` (the default if it is there, else the
    middle), so a sub-band can be named instead of a frequency."""
    from device.link.dutycycle import REGIONS

    bands = {b.name: b for b in REGIONS[region].bands}
    if band not in bands:
        raise ValueError(f"{region} has no sub-band {band!r} (it has {', '.join(bands)})")
    chosen = bands[band]
    if chosen.lo_mhz <= DEFAULT_FREQ[region] <= chosen.hi_mhz:
        return DEFAULT_FREQ[region]
    return round((chosen.lo_mhz + chosen.hi_mhz) / 2, 3)


@dataclass(frozen=True)
class AirtimePlan:
    """How N bytes go on air: fragments, time on air, time to deliver under the duty cycle."""

    nbytes: int
    fragments: int
    fragment_size: int
    frame_size: int
    frame_airtime: float  #: seconds, a full frame
    data_airtime: float  #: seconds, all data frames once
    ack_airtime: float  #: seconds, one ack
    band: str
    duty: float | None
    dwell: float | None
    first_delivery: float  #: seconds from an idle hour (sliding-window scheduler)
    steady_delivery: float  #: seconds when the budget is the bottleneck (airtime / duty)

    @property
    def per_hour(self) -> float:
        """Pictures an hour when the trap sends nothing else (lossless, steady state)."""
        return 3600.0 / self.steady_delivery

    @property
    def per_day(self) -> float:
        return 24 * self.per_hour


def plan_airtime(nbytes: int, modulation: Modulation, region: str, freq_mhz: float,
                 mtu: int = MAX_PAYLOAD) -> AirtimePlan:
    """Fragments and times for one signed image of `nbytes` (lossless; 1 ack per 32 frames)."""
    signed = True
    dc = DutyCycle(region, freq_mhz, VirtualClock())
    limit = min(mtu, max_payload(modulation, dc.band.dwell))
    size = limit - frames.data_overhead(signed)
    if size < 1:
        raise ValueError(f"SF{modulation.sf} cannot carry a payload within the "
                         f"{region} dwell limit")
    count = max(1, math.ceil(nbytes / size))
    sizes = [size] * (count - 1) + [nbytes - size * (count - 1) or size]
    airtimes = [modulation.time_on_air(s + frames.data_overhead(signed)) for s in sizes]
    ack = modulation.time_on_air(frames.ACK_HEADER + min(64, (count + 7) // 8)
                                 + frames.CRC_LEN + (frames.MIC_LEN if signed else 0))
    rounds = math.ceil(count / 32)
    # the real sender and scheduler, lossless, on the virtual clock, from an idle hour
    first = simulate_transfer(bytes(nbytes), 0.0, modulation=modulation, mtu=mtu,
                              region=region, freq_mhz=freq_mhz).elapsed
    total = sum(airtimes)
    steady = total / dc.duty if dc.duty else total + rounds * ack
    return AirtimePlan(nbytes, count, size, limit, airtimes[0], total, ack, dc.band.name,
                       dc.duty, dc.band.dwell, first, steady)


@dataclass(frozen=True)
class Transfer:
    """The outcome of sending one buffer through the simulated link."""

    identical: bool
    fragments: int
    frames: int  #: data frames sent (first tries and resends)
    acks: int
    airtime_up: float  #: seconds, trap
    airtime_down: float  #: seconds, base station (acks)
    elapsed: float  #: simulated seconds until delivered
    stats: dict[str, int]
    delivered_at: tuple[float, ...] = ()  #: simulated time of each image's completion

    @property
    def airtime(self) -> float:
        return self.airtime_up + self.airtime_down


def simulate_transfer(data: bytes, loss: float, *, burst: bool = False, burst_len: float = 4.0,
                      modulation: Modulation | None = None, mtu: int = MAX_PAYLOAD,
                      region: str | None = None, freq_mhz: float | None = None,
                      encrypt: bool = False, seed: int = 0, workdir: Path | None = None,
                      images: int = 1, deadline: float | None = None) -> Transfer:
    """Send `data` (`images` times) trap -> base with `loss` in both directions.

    `deadline` (simulated seconds) stops a long backlog early.
    """
    modulation = modulation or Modulation()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        clock = VirtualClock()
        channel = SimChannel(clock, seed=seed)
        trap = channel.radio("trap", modulation=modulation, mtu=mtu,
                             loss=loss_model(loss, burst, seed=seed * 2 + 1, burst_len=burst_len))
        base = channel.radio("base", modulation=modulation, mtu=mtu,
                             loss=loss_model(loss, burst, seed=seed * 2 + 2, burst_len=burst_len))
        dc_up = dc_down = None
        if region is not None:
            freq = freq_mhz if freq_mhz is not None else DEFAULT_FREQ[region]
            dc_up, dc_down = DutyCycle(region, freq, clock), DutyCycle(region, freq, clock)
        queue = OutboundStore(Path(tmp) / "trap.sqlite")
        sender = Sender(trap, queue, 1, KEY, clock, dc_up, encrypt=encrypt, seed=seed)
        receiver = Receiver(base, FragmentStore(Path(tmp) / "base.sqlite"), {1: KEY}, clock,
                            dc_down)
        got = []
        base.on_frame = lambda: got.extend(receiver.poll(0))
        for _ in range(images):
            queue.put(data, now=clock.now())
        sender.send_pending(deadline)
        fragments = math.ceil(len(data) / sender.fragment_size)
        return Transfer(
            identical=len(got) == images and all(g.data == data for g in got),
            fragments=fragments * images, frames=sender.stats["frames"],
            acks=receiver.stats["acks"], airtime_up=trap.airtime, airtime_down=base.airtime,
            elapsed=clock.now(), stats=dict(sender.stats + receiver.stats),
            delivered_at=tuple(g.received_at for g in got))


def random_bytes(n: int, seed: int) -> bytes:
    """Reproducible random payload (os.urandom when seed < 0)."""
    if seed < 0:
        return os.urandom(n)
    import random

    return random.Random(seed).randbytes(n)

"""Legal airtime: per-region rules as data, and an accountant that never exceeds them.

EU868 (ETSI EN 300 220-2, ERC Recommendation 70-03 annex 1, bands h1.3-h1.8 as the LoRaWAN
Regional Parameters RP002 summarise them): each sub-band has its own duty cycle, measured over
one hour. We account it over a *sliding* hour (stricter than a fixed one, so always legal):
before a transmission of airtime a ending at t+a, the airtime already sent in (t+a-3600, t+a]
plus a must not exceed duty*3600 s.

US915 (FCC 47 CFR 15.247 as LoRaWAN applies it): no duty cycle, but at most 400 ms dwell time
per transmission at 125 kHz, which caps the payload per spreading factor (`max_payload`).

Example:
    >>> dc = DutyCycle("eu868", 869.525, clock)                  # doctest: +SKIP
    >>> dc.band.name, dc.band.duty
    ('h1.7', 0.1)
    >>> dc.wait_time(1.2)   # seconds before 1.2 s of airtime is legal (0 when it is now)
    0.0
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from device.errors import ConfigError
from device.radio.airtime import MAX_PAYLOAD, Modulation
from device.radio.clock import Clock

__all__ = ["REGIONS", "WINDOW", "DutyCycle", "Region", "SubBand", "max_payload"]

WINDOW = 3600.0  #: duty-cycle observation period, seconds (ETSI EN 300 220)


@dataclass(frozen=True)
class SubBand:
    """A frequency range with one duty-cycle limit and optional dwell-time limit."""

    name: str
    lo_mhz: float
    hi_mhz: float
    duty: float | None  #: fraction of WINDOW; None = no duty-cycle limit
    dwell: float | None = None  #: longest single transmission, seconds


@dataclass(frozen=True)
class Region:
    name: str
    bands: tuple[SubBand, ...]

    def band(self, freq_mhz: float) -> SubBand:
        for band in self.bands:
            if band.lo_mhz <= freq_mhz <= band.hi_mhz:
                return band
        ranges = ", ".join(f"{b.lo_mhz}-{b.hi_mhz}" for b in self.bands)
        raise ConfigError(f"{freq_mhz} MHz is outside every {self.name} sub-band ({ranges} MHz)")


REGIONS: dict[str, Region] = {
    "eu868": Region("eu868", (
        SubBand("h1.3", 863.0, 865.0, 0.001),
        SubBand("h1.4", 865.0, 868.0, 0.01),
        SubBand("h1.5", 868.0, 868.6, 0.01),
        SubBand("h1.6", 868.7, 869.2, 0.001),
        SubBand("h1.7", 869.4, 869.65, 0.10),
        SubBand("h1.8", 869.7, 870.0, 0.01),
    )),
    "us915": Region("us915", (SubBand("us915", 902.0, 928.0, None, dwell=0.4),)),
}


def max_payload(modulation: Modulation, dwell: float | None) -> int:
    """Largest payload whose time on air stays within `dwell` (0 when even 0 bytes is too long)."""
    if dwell is None:
        return MAX_PAYLOAD
    lo, hi = -1, MAX_PAYLOAD
    while lo < hi:  # largest n with toa(n) <= dwell (toa is monotonic in n)
        mid = (lo + hi + 1) // 2
        if modulation.time_on_air(mid) <= dwell:
            lo = mid
        else:
            hi = mid - 1
    return max(lo, 0)


class DutyCycle:
    """Tracks one transmitter's airtime in its sub-band and says when it may send.

    Args:
        region: "eu868" or "us915" (or a `Region`).
        freq_mhz: the transmit frequency; picks the sub-band.
        clock: shared with the sender (virtual in tests).
        duty: override the band's limit (e.g. a stricter self-imposed one).
    """

    def __init__(self, region: str | Region, freq_mhz: float, clock: Clock,
                 duty: float | None = None) -> None:
        if isinstance(region, str):
            if region not in REGIONS:
                raise ConfigError(f"unknown region {region!r} (expected one of "
                                  f"{', '.join(REGIONS)})")
            region = REGIONS[region]
        self.region, self.clock = region, clock
        self.band = region.band(freq_mhz)
        self.duty = self.band.duty if duty is None else duty
        if self.duty is not None and not 0 < self.duty <= 1:
            raise ConfigError(f"duty cycle must be in (0, 1], got {self.duty}")
        self._log: deque[tuple[float, float]] = deque()  # (end time, airtime), by end time
        self.total_airtime = 0.0

    @property
    def budget(self) -> float:
        """Airtime allowed per sliding window (inf without a duty-cycle limit)."""
        return float("inf") if self.duty is None else self.duty * WINDOW

    def max_payload(self, modulation: Modulation) -> int:
        """Largest payload the dwell rule allows at this modulation."""
        return max_payload(modulation, self.band.dwell)

    def check_dwell(self, airtime: float) -> None:
        if self.band.dwell is not None and airtime > self.band.dwell + 1e-9:
            raise ConfigError(f"{airtime * 1000:.0f} ms on air exceeds the {self.region.name} "
                              f"dwell limit of {self.band.dwell * 1000:.0f} ms")

    def used(self, at: float | None = None) -> float:
        """Airtime counted in the window ending at `at` (default now)."""
        at = self.clock.now() if at is None else at
        return sum(a for end, a in self._log if end > at - WINDOW)

    def wait_time(self, airtime: float) -> float:
        """Seconds from now until `airtime` seconds may start (0.0 when allowed now)."""
        self.check_dwell(airtime)
        if self.duty is None:
            return 0.0
        if airtime > self.budget:
            raise ConfigError(f"{airtime:.1f} s in one go exceeds the {self.duty:.1%} duty cycle "
                              f"({self.budget:.1f} s per hour)")
        now = self.clock.now()
        self._forget(now)
        entries = list(self._log)
        total = sum(a for _, a in entries)
        start = now
        # Drop the oldest transmissions from the window until the new one fits; it may start
        # once the last dropped one has ended more than WINDOW before the new one's end.
        for end, a in entries:
            if total + airtime <= self.budget + 1e-9:
                break
            total -= a
            start = max(start, end + WINDOW - airtime + 1e-6)
        return max(start - now, 0.0)

    def allowed_now(self, airtimes: list[float]) -> int:
        """How many of these back-to-back frames may start now without any waiting."""
        return self._fits(self.clock.now(), airtimes)

    def wait_for(self, airtimes: list[float]) -> float:
        """Seconds from now until all these back-to-back frames may go (0.0: now)."""
        now = self.clock.now()
        delay = self.wait_time(sum(airtimes))
        # Each frame must fit at its own end, too; if one does not, step to the next moment an
        # old transmission leaves the window (a finite number of steps).
        while self._fits(now + delay, airtimes) < len(airtimes):
            later = [end + WINDOW - now for end, _ in self._log if end + WINDOW - now > delay]
            if not later:
                break
            delay = min(later) + 1e-6
        return delay

    def _fits(self, start: float, airtimes: list[float]) -> int:
        sent = 0.0
        for n, a in enumerate(airtimes):
            self.check_dwell(a)
            sent += a
            if self.duty is not None and self.used(start + sent) + sent > self.budget + 1e-9:
                return n
        return len(airtimes)

    def record(self, airtime: float, end: float | None = None) -> None:
        """Account a transmission that ended at `end` (default now)."""
        end = self.clock.now() if end is None else end
        self._log.append((end, airtime))
        self.total_airtime += airtime

    def _forget(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - WINDOW:
            self._log.popleft()

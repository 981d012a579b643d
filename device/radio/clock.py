"""Clocks: the link layer never calls `time` directly, so tests can run a day in seconds.

`SystemClock` is the real one (wall time, so timestamps stored in SQLite survive a reboot).
`VirtualClock` only moves when someone sleeps on it: a simulated day of duty-cycle waits costs
nothing. `ScaledClock` runs real time faster by a factor, for two processes that cannot share
a virtual clock (the loopback-UDP simulator).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ScaledClock", "SystemClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Seconds since some epoch, and a way to wait."""

    #: How many times faster than wall time this clock runs (1.0 for real and virtual time): a
    #: process that waits on something outside the clock (a socket) divides by it.
    speedup: float

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time and real sleeping."""

    speedup = 1.0

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Simulated time that advances only by `sleep` (or `advance`).

    Example:
        >>> clock = VirtualClock()
        >>> clock.sleep(3600.0); clock.now()
        3600.0
    """

    speedup = 1.0  #: not tied to wall time at all; 1.0 so that callers need no special case

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    advance = sleep


class ScaledClock:
    """Real time sped up `speedup` times: `sleep(10)` takes 10/speedup real seconds."""

    def __init__(self, speedup: float = 1.0) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup must be positive, got {speedup}")
        self.speedup = float(speedup)
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.speedup

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speedup)

"""The shared air of the radio simulator: transmissions as time intervals, and who hears what.

One rule book for both simulated transports (`SimChannel` in one process on a virtual clock,
the UDP `Hub` between processes on a real clock):

* A radio hears a frame only if it is tuned like the sender: same carrier, spreading factor
  and bandwidth.
* Collision: a frame is lost at a receiver when any other transmission on the same carrier and
  spreading factor overlaps it in time, even partly (both frames of a collision are lost).
  Frames on another SF or carrier do not interfere (LoRa SFs are treated as orthogonal).
* Capture (optional, `capture_db`): a frame survives an overlap at a receiver if it arrives
  there at least `capture_db` dB stronger than every frame it overlaps (6 dB is the usual
  figure for LoRa co-SF capture). Off by default: with capture off the model is pure ALOHA.
  Simplification: real capture also depends on which preamble the receiver locked first.
* Half-duplex: a radio hears nothing that overlaps one of its own transmissions.
* Carrier sense (`busy`): is anything else on the same carrier and SF in the air now; what the
  SX1262's channel activity detection would report (here it sees the whole frame, not only
  the preamble: an optimistic CAD).

Intervals are half-open [start, end): a frame that starts exactly when another ends does not
collide with it (an ack sent at once after a frame).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Air", "Transmission", "Tuning"]


class Tuning(NamedTuple):
    """What a radio transmits and listens on."""

    frequency_mhz: float
    sf: int
    bw_hz: float

    def interferes(self, other: Tuning) -> bool:
        """Same carrier and SF: the two collide (bandwidth aside)."""
        return self.frequency_mhz == other.frequency_mhz and self.sf == other.sf


@dataclass(eq=False)
class Transmission:
    """One frame on air from `source` over [start, end) seconds."""

    source: Hashable
    tuning: Tuning
    start: float
    end: float
    frame: bytes
    collided: bool = False  #: another transmission on the same carrier and SF overlapped it

    def overlapping(self, other: Transmission) -> bool:
        return other.start < self.end and other.end > self.start


class Air:
    """Transmissions in flight and recently ended, and the reception verdicts.

    Args:
        capture_db: None (no capture: every overlap loses both frames) or the margin in dB by
            which a frame must be stronger than each frame it overlaps to survive.

    Example:
        >>> air = Air()
        >>> t = Tuning(869.525, 9, 125e3)
        >>> a, b = air.begin("a", t, 0.0, 1.0, b"1"), air.begin("b", t, 0.5, 1.5, b"2")
        >>> air.finish(a, [("base", t)]), air.finish(b, [("base", t)])
        ([], [])
    """

    def __init__(self, capture_db: float | None = None) -> None:
        self.capture_db = capture_db
        self._active: list[Transmission] = []
        self._ended: list[Transmission] = []
        #: transmissions, collided (air-level), and per-receiver outcomes: received, collision,
        #: captured, half_duplex
        self.stats: Counter[str] = Counter()
        self.airtime = 0.0  #: seconds of every transmission that ended

    def begin(self, source: Hashable, tuning: Tuning, start: float, end: float,
              frame: bytes) -> Transmission:
        """A transmission starts (its end is known: the time on air is fixed by its length)."""
        tx = Transmission(source, tuning, start, end, frame)
        self._active.append(tx)
        return tx

    def busy(self, tuning: Tuning, now: float, exclude: Hashable | None = None,
             audible: Callable[[Hashable], bool] | None = None) -> bool:
        """Is another radio's transmission on this carrier and SF in the air at `now`?

        `audible(source)` says whether the asking radio can hear that source at all (a trap
        out of range of another: the hidden-terminal case); default: everyone is heard."""
        return any(tx.source != exclude and tx.tuning.interferes(tuning) and tx.start <= now < tx.end
                   and (audible is None or audible(tx.source))
                   for tx in self._active)

    def finish(self, tx: Transmission, listeners: Iterable[tuple[Hashable, Tuning]],
               level: Callable[[Hashable, Hashable], float] | None = None) -> list[Hashable]:
        """`tx` has ended: the listeners that receive it (before any per-link loss).

        Args:
            listeners: (key, tuning) of every open radio; the source itself is skipped.
            level: (source, receiver) -> received power in dBm, for the capture rule.
        """
        others = [o for o in self._active + self._ended if o is not tx and tx.overlapping(o)]
        interferers = [o for o in others if o.tuning.interferes(tx.tuning)]
        tx.collided = bool(interferers)
        self.stats["transmissions"] += 1
        self.stats["collided"] += tx.collided
        self.airtime += tx.end - tx.start
        busy_sources = {o.source for o in others}  # half-duplex: whoever sent meanwhile
        heard = []
        for key, tuning in listeners:
            if key == tx.source or tuning != tx.tuning:
                continue
            if key in busy_sources:
                self.stats["half_duplex"] += 1
                continue
            rivals = [o for o in interferers if o.source != key]
            if rivals:
                if self.capture_db is None or level is None:
                    self.stats["collision"] += 1
                    continue
                mine = level(tx.source, key)
                if any(mine < level(o.source, key) + self.capture_db for o in rivals):
                    self.stats["collision"] += 1
                    continue
                self.stats["captured"] += 1
            self.stats["received"] += 1
            heard.append(key)
        self._active.remove(tx)
        self._ended.append(tx)
        self._prune()
        return heard

    def _prune(self) -> None:
        """Forget ended transmissions that no frame still in the air can overlap."""
        horizon = min((tx.start for tx in self._active), default=float("inf"))
        self._ended = [tx for tx in self._ended if tx.end > horizon]

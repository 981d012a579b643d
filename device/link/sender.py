"""The trap's side of the selective-repeat ARQ: `Sender`.

One round: the sender sends the fragments still missing (as many as the duty cycle allows now,
at most `max_burst`), the last one flagged "ACK requested". The receiver (device/link/receiver.py)
stores them durably and answers with a bitmap of what it holds (device/link/frames.py), and the
next round resends only the holes. When an ack does not come, the next round is a poll (an empty
data frame asking for the bitmap, a tenth of a full frame's airtime) after a backoff with
jitter, so a lost ack costs a poll, not a whole burst. A resumed image (after a restart or a
given-up window) starts with a poll too. After `max_idle_rounds` rounds without progress the
sender gives up for this window: the image stays queued (device/link/queue.py) and is retried
after `retry_after` seconds, doubling per failed window.

Medium access (several traps on one channel, one base):

* Timing of an ack. The base answers the frame flagged "ACK requested" within `TURNAROUND` of
  its end (device/link/receiver.py skips an ack it is too late for); the sender listens for
  `ack_timeout` = the longest ack's airtime plus that turnaround, and transmits nothing
  meanwhile, so an ack never meets its own trap's next fragment. After a timeout the next
  round waits a random backoff (0.5x..1.5x of `backoff` doubling per idle round), seeded per
  trap, so two traps whose frames collided drift apart instead of colliding again.
* Listen before talk (`lbt`): before each frame the sender asks the radio's channel activity
  detection (`channel_active()`, SX1262 SetCad, the simulator's shared air; only radios whose
  class defines it) and, while the channel is busy, waits a random 1..3 airtimes of that frame,
  at most `lbt_tries` times, then sends anyway (a detector stuck "busy" never silences a trap).
* Fairness (`round_gap`): after delivering a picture with more queued (or a full `max_burst`),
  a trap pauses a random 1..2 times `round_gap` full-frame airtimes before its next burst, so a
  trap with a large backlog leaves the channel free often enough for its neighbours'
  listen-before-talk (which backs off 1..3 airtimes) to find it idle.

Layers: frames are built by frames.py, sealed and checked by auth.py, stored by queue.py; this
module only decides what to send and when. Time comes from the injected clock, so the same code
runs on the Pi (SystemClock) and in a simulated day (VirtualClock).
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, replace

from device.errors import LinkError, RadioError
from device.link import frames
from device.link.auth import DOWN, UP, CounterWindow, FrameAuth, seal
from device.link.dutycycle import WINDOW, DutyCycle
from device.link.frames import AckFrame, DataFrame, FrameError
from device.link.queue import OutboundStore, QueuedImage
from device.radio.airtime import Modulation
from device.radio.base import Radio
from device.radio.clock import Clock, SystemClock
from device.trapid import check_trap_id

__all__ = ["POLL", "TURNAROUND", "RoundResult", "Sender"]

log = logging.getLogger(__name__)

TURNAROUND = 0.5  #: seconds the receiver may take to store a fragment and switch to transmit
#: A "poll": a data frame with an empty payload, flagged ACK requested. It asks the base for its
#: bitmap at a tenth of a full frame's airtime (after a lost ack, or when resuming an image).
POLL = -1
LBT_DEFAULT = True  #: listen before talk where the radio offers CAD (manytraps: it pays)
ROUND_GAP = 3.0  #: default pause between rounds, in full-frame airtimes (module docstring)


@dataclass(frozen=True)
class RoundResult:
    """What one `Sender.pump()` did."""

    image_id: int | None  #: None when nothing was sent
    sent: int = 0  #: frames sent this round
    airtime: float = 0.0  #: seconds on air this round
    acked: bool = False  #: an ack arrived
    delivered: bool = False  #: the image is now complete at the base
    deferred: bool = False  #: gave up for this window, image kept queued
    wait: float | None = None  #: seconds until there is work again (None: queue empty)


class Sender:
    """Sends a trap's queued images to the base station.

    Args:
        radio: any `device.radio.base.Radio` (its `mtu` fixes the fragment size).
        queue: the persistent outbound queue.
        trap_id: 0..255, as in the base station's key file.
        key: the trap's 16-byte key; None sends unsigned frames (tests, closed networks).
        clock: SystemClock on the Pi, VirtualClock in simulations.
        dutycycle: the region's limits; None means unlimited (bench tests only).
        modulation: overrides `radio.modulation` (what airtime is planned with).
        encrypt: AES-CTR the payloads (needs a key).
        max_burst: fragments per round at most.
        max_idle_rounds: rounds without progress before giving up for this window.
        retry_after: seconds before a given-up image is tried again (doubles per window, max x16).
        lbt: listen before talk on radios that offer `channel_active()` (module docstring).
        lbt_tries: busy senses before a frame goes anyway.
        round_gap: pause between rounds with more to send, in full-frame airtimes (x1..2).
        seed: the backoff and jitter generator's seed (default: the trap id), so that runs
            are repeatable and traps differ.

    Example (the trap service's loop):
        >>> sender = Sender(radio, queue, trap_id=7, key=key, clock=clock, dutycycle=dc)  # doctest: +SKIP
        >>> queue.put(container, Priority.ANIMAL, now=clock.now())
        >>> while True:
        ...     result = sender.pump()          # one round; blocks only for airtime and the ack
        ...     clock.sleep(min(result.wait if result.wait is not None else 60, 60))
    """

    def __init__(self, radio: Radio, queue: OutboundStore, trap_id: int, key: bytes | None,
                 clock: Clock | None = None, dutycycle: DutyCycle | None = None, *,
                 modulation: Modulation | None = None, encrypt: bool = False,
                 max_burst: int = 32, min_burst: int = 8, max_idle_rounds: int = 6,
                 backoff: float = 2.0, max_backoff: float = 60.0, retry_after: float = 900.0,
                 ack_timeout: float | None = None, lbt: bool = LBT_DEFAULT, lbt_tries: int = 8,
                 round_gap: float = ROUND_GAP, seed: int | None = None) -> None:
        check_trap_id(trap_id, error=LinkError)
        if encrypt and key is None:
            raise LinkError("payload encryption needs a trap key")
        self.radio, self.queue, self.trap_id = radio, queue, trap_id
        self.clock = clock or SystemClock()
        self.dutycycle = dutycycle
        self.modulation = modulation or radio.modulation
        self.auth = FrameAuth(key) if key is not None else None
        self.window = CounterWindow(DOWN)
        self.encrypt = encrypt
        self.max_burst, self.min_burst = max(1, max_burst), max(1, min_burst)
        self.max_idle_rounds = max_idle_rounds
        self.backoff, self.max_backoff, self.retry_after = backoff, max_backoff, retry_after
        self._rng = random.Random(seed if seed is not None else trap_id)
        # only radios whose class offers channel activity detection are asked (an E22 says no)
        self.lbt = lbt and callable(getattr(type(radio), "channel_active", None))
        self.lbt_tries = max(0, lbt_tries)
        signed = self.auth is not None
        limit = frames.frame_limit(radio.mtu, self.modulation, dutycycle, signed=signed)
        self.frame_limit = limit
        self.fragment_size = limit - frames.data_overhead(signed=signed)
        # only as far as an ack's bitmap can report (the ack obeys the same mtu and dwell)
        self.span = 8 * frames.ack_bitmap_len(limit, signed=True)
        if dutycycle is not None and dutycycle.duty is not None:
            full = self.modulation.time_on_air(limit)
            # a round waits for at least min_burst frames: never more than an hour's budget
            self.min_burst = max(1, min(self.min_burst, int(dutycycle.budget // full)))
        self.round_gap = max(0.0, round_gap) * self.modulation.time_on_air(limit)
        ack_len = (frames.ACK_HEADER + frames.ack_bitmap_len(radio.mtu, signed=True)
                   + frames.MIC_LEN + frames.CRC_LEN)
        # The base's turnaround is real time (SQLite fsync, SPI); on a sped-up clock it
        # lasts `speedup` times more clock seconds.
        turnaround = TURNAROUND * max(1.0, float(self.clock.speedup))
        self.ack_timeout = (ack_timeout if ack_timeout is not None
                            else self.modulation.time_on_air(ack_len) + turnaround)
        self.stats: Counter[str] = Counter()
        if dutycycle is not None:  # the last hour's airtime, from before a reboot
            for end, seconds in queue.recent_airtime(self.clock.now() - WINDOW):
                dutycycle.record(seconds, end)
        self._idle: dict[int, int] = {}  # row -> rounds without progress in this window
        self._poll: set[int] = set()  # rows whose next round is a poll (after a lost ack)
        self._resume_at = 0.0

    # -- public ---------------------------------------------------------------------------

    def pump(self) -> RoundResult:
        """One ARQ round on the most urgent ready image; never sleeps for the duty cycle.

        Returns what happened and, in `wait`, the seconds until calling again is useful
        (0.0: call now; None: the queue is empty).
        """
        now = self.clock.now()
        if now < self._resume_at:
            return RoundResult(None, wait=self._resume_at - now)
        item = self.queue.next_ready(now)
        if item is None:
            due = self.queue.next_due()
            return RoundResult(None, wait=None if due is None else max(due - now, 0.0))
        if item.frag_size != self.fragment_size:
            self.queue.start(item.row, self.fragment_size)
            item = self.queue.get(item.row)
            self._idle[item.row] = 0
        elif item.row not in self._idle:
            # Sent by an earlier process (or window), and acks may have been lost with it: ask
            # the base what it holds before resending anything.
            self._idle[item.row] = 0
            self._poll.add(item.row)
        count = math.ceil(len(item.data) / self.fragment_size)
        if count > frames.MAX_FRAGMENTS:
            self.queue.complete(item.row)
            self.stats["too_large"] += 1
            log.error("image %d (%d bytes) needs %d fragments, more than %d: dropped",
                      item.image_id, len(item.data), count, frames.MAX_FRAGMENTS)
            return RoundResult(item.image_id, wait=0.0)
        missing = [i for i in range(count) if i not in item.acked]
        if not missing:
            self.queue.complete(item.row)
            return RoundResult(item.image_id, delivered=True, wait=0.0)
        burst = self._plan(item, missing)
        airtimes = [self.modulation.time_on_air(self._frame_len(item, i)) for i in burst]
        if self.dutycycle is not None:
            fits = self.dutycycle.allowed_now(airtimes)
            want = min(len(burst), self.min_burst)
            if fits < want:
                wait = self.dutycycle.wait_for(airtimes[:want])
                return RoundResult(item.image_id, wait=max(wait, 1e-3))
            burst, airtimes = burst[:fits], airtimes[:fits]
        airtime = 0.0
        for n, index in enumerate(burst):
            airtime += self._send_fragment(item, count, index, ack_req=n == len(burst) - 1)
        return self._after_round(item, count, burst, airtime)

    def send_pending(self, deadline: float | None = None) -> int:
        """Pump until the queue is empty (or only deferred images remain past `deadline`).

        Sleeps on the clock between rounds (duty cycle, backoff). Returns images delivered.
        """
        delivered = 0
        while True:
            result = self.pump()
            delivered += result.delivered
            if result.wait is None:
                return delivered
            if result.wait > 0:
                if deadline is not None and self.clock.now() + result.wait > deadline:
                    return delivered
                self.clock.sleep(result.wait)

    # -- one round ------------------------------------------------------------------------

    def _plan(self, item: QueuedImage, missing: list[int]) -> list[int]:
        if item.row in self._poll:  # kept until an ack arrives
            return [POLL]
        window = [i for i in missing if i < missing[0] + self.span]
        return window[: self.max_burst]

    def _payload(self, item: QueuedImage, index: int) -> bytes:
        if index == POLL:
            return b""
        return item.data[index * self.fragment_size : (index + 1) * self.fragment_size]

    def _frame_len(self, item: QueuedImage, index: int) -> int:
        return len(self._payload(item, index)) + frames.data_overhead(self.auth is not None)

    def _send_fragment(self, item: QueuedImage, count: int, index: int, ack_req: bool) -> float:
        payload = self._payload(item, index)
        frame = DataFrame(self.trap_id, item.image_id, max(index, 0), count, payload,
                          self.queue.next_fcnt(), ack_req, self.encrypt and bool(payload))
        raw = seal(frame, self.auth, UP)
        if self.lbt:
            self._listen_before_talk(self.modulation.time_on_air(len(raw)))
        seconds = self.radio.send(raw)
        if self.dutycycle is not None:
            self.dutycycle.record(seconds)
            self.queue.log_airtime(self.clock.now(), seconds)
        self.stats["polls" if index == POLL else "frames"] += 1
        self.stats["airtime_ms"] += round(seconds * 1000)
        return seconds

    def _listen_before_talk(self, airtime: float) -> None:
        """Wait while the channel is busy: random 1..3 airtimes of this frame, `lbt_tries`
        times at most (then the frame goes anyway)."""
        try:
            for _ in range(self.lbt_tries):
                if not self.radio.channel_active():
                    return
                self.stats["lbt_busy"] += 1
                self.clock.sleep(airtime * self._rng.uniform(1.0, 3.0))
            if self.lbt_tries and self.radio.channel_active():
                self.stats["lbt_gave_up"] += 1
        except RadioError as exc:  # carrier sense is advice: a failed CAD never stops a frame
            self.stats["lbt_errors"] += 1
            log.warning("channel activity detection failed (%s): sending without it", exc)

    def _next_round(self, result: RoundResult) -> RoundResult:
        """A round that went well: go on at once, or after the fairness gap (`round_gap`) when
        this trap holds the channel long: a backlog of pictures, or a full `max_burst`."""
        if not self.round_gap or result.wait != 0.0:
            return result
        if result.delivered:
            if self.queue.next_ready(self.clock.now()) is None:
                return result  # nothing more to send: nobody to make room for
        elif result.sent < self.max_burst:
            return result  # the rest of this picture follows at once
        gap = self.round_gap * self._rng.uniform(1.0, 2.0)
        self._resume_at = self.clock.now() + gap
        self.stats["round_gaps"] += 1
        return replace(result, wait=gap)

    def _after_round(self, item: QueuedImage, count: int, burst: list[int],
                     airtime: float) -> RoundResult:
        ack = self._await_ack(item)
        row = item.row
        if ack is None:
            self.stats["ack_timeouts"] += 1
            self._poll.add(row)
            return self._no_progress(item, len(burst), airtime, acked=False)
        ack, fcnt = ack
        self._poll.discard(row)
        if ack.complete:
            self.queue.complete(row, fcnt)
            self._idle.pop(row, None)
            self.stats["delivered"] += 1
            return self._next_round(RoundResult(item.image_id, len(burst), airtime, True, True,
                                                wait=0.0))
        held = frozenset(i for i in frames.held_from_ack(ack) if i < count)
        acked = item.acked | held
        self.queue.record_acked(row, acked, fcnt)
        if len(acked) > len(item.acked) or burst == [POLL]:
            # progress, or a poll that got its answer: go on at once (no backoff)
            if len(acked) > len(item.acked):
                self._idle[row] = 0
            if burst == [POLL]:  # the data follows its poll's answer at once
                return RoundResult(item.image_id, len(burst), airtime, True, wait=0.0)
            return self._next_round(RoundResult(item.image_id, len(burst), airtime, True,
                                                wait=0.0))
        return self._no_progress(item, len(burst), airtime, acked=True)

    def _no_progress(self, item: QueuedImage, sent: int, airtime: float,
                     acked: bool) -> RoundResult:
        idle = self._idle.get(item.row, 0) + 1
        self._idle[item.row] = idle
        if idle >= self.max_idle_rounds:
            factor = 2 ** min(item.attempts, 4)
            until = self.clock.now() + self.retry_after * factor * self._rng.uniform(0.8, 1.2)
            self.queue.defer(item.row, until)
            self._idle.pop(item.row, None)
            self._poll.discard(item.row)
            self.stats["deferred"] += 1
            log.info("image %d: no progress in %d rounds, retry in %.0f s", item.image_id, idle,
                     until - self.clock.now())
            return RoundResult(item.image_id, sent, airtime, acked, deferred=True, wait=0.0)
        # exponential backoff with jitter (0.5x..1.5x) so traps that collided drift apart
        delay = min(self.backoff * 2 ** (idle - 1), self.max_backoff) * self._rng.uniform(0.5, 1.5)
        self._resume_at = self.clock.now() + delay
        return RoundResult(item.image_id, sent, airtime, acked, wait=delay)

    def _await_ack(self, item: QueuedImage) -> tuple[AckFrame, int] | None:
        deadline = self.clock.now() + self.ack_timeout
        while True:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return None
            reception = self.radio.receive(remaining)
            if reception is None:
                return None
            try:
                frame = frames.unpack(reception.frame)
            except FrameError:
                self.stats["corrupt"] += 1
                continue
            if (not isinstance(frame, AckFrame) or frame.trap_id != self.trap_id
                    or frame.image_id != item.image_id):
                continue  # another trap's traffic, or a stale ack
            check = self.window.check(self.auth, frame, self.queue.last_fcnt_down(),
                                      reception.frame)
            if check.verdict == "ok":
                return frame, check.fcnt
            self.stats[check.verdict] += 1

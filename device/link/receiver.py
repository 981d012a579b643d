"""The base station's side of the selective-repeat ARQ: `Receiver`.

Every data frame is authenticated (device/link/auth.py), stored before anything is said about
it (device/link/store.py), and, when its sender asks, answered with an ack bitmap of what the
base holds of that image. A poll (an empty data frame) is answered the same way and stores
nothing. Finished images are handed to the caller, who confirms each one once saved
(`Receiver.confirm`); unconfirmed ones are handed out again after a restart, so each image is
stored exactly once however the base dies.

One base serves all its traps at once. Reassembly is keyed by (trap, image) in the store, each
trap has its own key, counters and resync state (auth.CounterWindow), and frames are answered in
the order they arrive: the base never holds the channel for one trap (it transmits only the one
short ack a frame asks for), so a trap with a large backlog gets no more of the base than its
frames ask for. The base transmits too, within its own duty cycle:

* an ack is sent only while its trap still listens: within `TURNAROUND` of the frame (the
  sender's `ack_timeout` covers that plus the ack's airtime). A later one would meet the trap's
  next frame, so it is skipped (`acks_late`) and the trap's poll asks again;
* with `lbt`, an ack waits (within that window) while another trap's frame is in the air, and
  is skipped if the channel stays busy (`acks_busy`): sending would destroy that frame too;
* an ack the duty cycle does not allow now is skipped (`acks_skipped`). `stats` counts acks and
  their airtime (`ack_airtime_ms`), per trap in `trap_stats`; once an hour (clock time) the base
  logs its acks, their airtime and the share of its duty-cycle budget they used (`duty_report`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from device.errors import ConfigError
from device.link import frames
from device.link.auth import DOWN, UP, CounterWindow, FrameAuth, open_payload, seal
from device.link.dutycycle import WINDOW, DutyCycle
from device.link.frames import DataFrame, FrameError
from device.link.sender import LBT_DEFAULT, TURNAROUND
from device.link.store import DeliveredImage, FragmentStore
from device.radio.airtime import Modulation
from device.radio.base import Radio, Reception
from device.radio.clock import Clock, SystemClock

__all__ = ["Receiver"]

log = logging.getLogger(__name__)


class Receiver:
    """The base station's side: authenticate, store, acknowledge, hand out finished images.

    Args:
        radio: any `Radio`.
        store: the durable fragment store.
        keys: {trap_id: 16-byte key}; traps not listed are refused when `require_auth`.
        clock: as for the Sender.
        dutycycle: the base station's own limits for its acks (an ack that would break them is
            skipped; the trap will ask again).
        modulation: overrides `radio.modulation`.
        require_auth: refuse unsigned frames (default). False accepts unsigned frames from
            traps without a key (tests, closed networks).
        lbt: before an ack, wait while the radio's `channel_active()` says another frame is in
            the air (radios whose class offers it), skip the ack if it stays busy.

    Example (the base-station service's loop):
        >>> receiver = Receiver(radio, FragmentStore("base.sqlite"), load_keys("keys.toml"))  # doctest: +SKIP
        >>> for image in receiver.serve():      # confirmed when the loop asks for the next one
        ...     save(image.trap_id, image.image_id, image.data)
    """

    def __init__(self, radio: Radio, store: FragmentStore, keys: Mapping[int, bytes] | None,
                 clock: Clock | None = None, dutycycle: DutyCycle | None = None, *,
                 modulation: Modulation | None = None, require_auth: bool = True,
                 lbt: bool = LBT_DEFAULT) -> None:
        self.radio, self.store = radio, store
        self.clock = clock or SystemClock()
        self.dutycycle = dutycycle
        self.modulation = modulation or radio.modulation
        self.auths = {trap: FrameAuth(key) for trap, key in (keys or {}).items()}
        self.require_auth = require_auth
        self.window = CounterWindow(UP)
        self.stats: Counter[str] = Counter()
        self.trap_stats: dict[int, Counter[str]] = {}  #: per trap: fragments, polls, acks...
        self.lbt = lbt and callable(getattr(type(radio), "channel_active", None))
        # the trap listens for TURNAROUND after its frame (longer on a sped-up clock)
        self.ack_window = TURNAROUND * max(1.0, float(self.clock.speedup))
        self._report_at = self.clock.now() + WINDOW
        self._limit = frames.air_limit(radio.mtu, self.modulation, dutycycle)
        self._backlog = store.undelivered()  # finished before a crash, not confirmed
        # confirmations from other threads (a decode worker), written by the polling thread
        self._owner = threading.get_ident()
        self._confirmed: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()

    # -- public ---------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> list[DeliveredImage]:
        """Receive and handle at most one frame; return images completed by it.

        The first call also returns the images finished but not confirmed before a restart.
        An image handed out here is handed out again after a restart until it is confirmed.
        """
        self.flush_confirmed()
        if self.clock.now() >= self._report_at:
            self._report_at = self.clock.now() + WINDOW
            log.info("base acks: %s", self.duty_report())
        images, self._backlog = self._backlog, []
        reception = self.radio.receive(timeout)
        if reception is not None:
            images += self.handle(reception)
        return images

    def serve(self, stop: Callable[[], bool] | None = None,
              timeout: float = 1.0) -> Iterator[DeliveredImage]:
        """Yield finished images until `stop()` is true (forever by default).

        Each image is confirmed when the loop asks for the next one (the caller had it): a
        crash while saving it hands it out again after restart.
        """
        while stop is None or not stop():
            for image in self.poll(timeout):
                yield image
                self.confirm(image.trap_id, image.image_id)

    def confirm(self, trap_id: int, image_id: int) -> None:
        """The caller saved this image: it will not be handed out again.

        Safe from any thread: from the polling thread it is written at once, from another
        (the base service's decode worker) it is written by the next `poll` or
        `flush_confirmed`, since the store belongs to the polling thread.
        """
        if threading.get_ident() == self._owner:
            self.store.confirm(trap_id, image_id)
        else:
            self._confirmed.put((trap_id, image_id))

    def flush_confirmed(self) -> None:
        """Write the confirmations other threads made (call from the polling thread)."""
        while True:
            try:
                trap_id, image_id = self._confirmed.get_nowait()
            except queue.Empty:
                return
            self.store.confirm(trap_id, image_id)

    def duty_report(self) -> dict:
        """The base's own transmissions: acks sent and skipped, their airtime, duty-cycle use.

        `duty_used` is the share of the sub-band's budget the acks used in the last hour
        (None without a duty cycle)."""
        used = budget = None
        if self.dutycycle is not None:
            used = self.dutycycle.used()
            budget = self.dutycycle.budget
        return {"acks": self.stats["acks"], "ack_airtime_s": self.stats["ack_airtime_ms"] / 1000,
                "acks_skipped": self.stats["acks_skipped"], "acks_late": self.stats["acks_late"],
                "acks_busy": self.stats["acks_busy"],
                "last_hour_s": None if used is None else round(used, 3),
                "duty_used": None if used is None or budget == float("inf")
                else round(used / budget, 4)}

    def handle(self, reception: Reception) -> list[DeliveredImage]:
        """Process one received frame (data or junk); send the ack it asks for."""
        heard = self.clock.now()  # the frame's end, as near as the base knows it
        raw = reception.frame
        try:
            frame = frames.unpack(raw)
        except FrameError:
            self.stats["corrupt"] += 1
            return []
        if not isinstance(frame, DataFrame):
            self.stats["ignored"] += 1
            return []
        fcnt = self._authenticate(frame, raw)
        if fcnt is None:
            return []
        trap = self.trap_stats.setdefault(frame.trap_id, Counter())
        if not frame.payload:  # a poll: report what we hold, store nothing
            self.stats["polls"] += 1
            trap["polls"] += 1
            self.store.accept_fcnt(frame.trap_id, fcnt)
            if self.store.is_complete(frame.trap_id, frame.image_id):
                held, count = frozenset(range(frame.count)), frame.count
            else:
                held, count = self.store.held(frame.trap_id, frame.image_id)
                if count != frame.count:
                    held, count = frozenset(), frame.count
            if frame.ack_req:
                self._ack(frame.trap_id, frame.image_id, held, count, heard)
            return []
        payload = open_payload(frame, self.auths.get(frame.trap_id), UP, fcnt)
        result = self.store.add_fragment(frame.trap_id, frame.image_id, frame.index, frame.count,
                                         payload, fcnt, reception.rssi, reception.snr,
                                         self.clock.now())
        self.stats["fragments"] += 1
        trap["fragments"] += 1
        if result.duplicate:
            self.stats["duplicates"] += 1
        if result.completed is not None:
            self.stats["images"] += 1
        if frame.ack_req:
            self._ack(frame.trap_id, frame.image_id, result.held, result.count, heard)
        return [result.completed] if result.completed is not None else []

    # -- internals ------------------------------------------------------------------------

    def _authenticate(self, frame: DataFrame, raw: bytes) -> int | None:
        """The frame's 32-bit counter if it is authentic and new; None (and counted) if not."""
        auth = self.auths.get(frame.trap_id)
        if auth is None and (self.require_auth or frame.mic):
            self.stats["unknown_trap"] += 1
            return None
        check = self.window.check(auth, frame, self.store.last_fcnt(frame.trap_id), raw)
        if check.verdict == "ok":
            return check.fcnt
        self.stats[check.verdict] += 1
        return None

    def _ack(self, trap_id: int, image_id: int, held: frozenset[int], count: int,
             heard: float) -> None:
        auth = self.auths.get(trap_id)
        bitmap = min(frames.ack_bitmap_len(self._limit, signed=auth is not None),
                     (count + 7) // 8)
        ack = frames.ack_from_held(trap_id, image_id, held, count, bitmap)
        raw = seal(replace(ack, fcnt=self.store.next_fcnt_down(trap_id)), auth, DOWN)
        if self.dutycycle is not None:
            airtime = self.modulation.time_on_air(len(raw))
            try:
                wait = self.dutycycle.wait_time(airtime)
            except ConfigError:  # an ack the rules never allow: the base must not crash
                wait = float("inf")
            if wait > 0:
                self.stats["acks_skipped"] += 1
                return
        if not self._ack_slot(raw, heard + self.ack_window):
            return
        seconds = self.radio.send(raw)
        if self.dutycycle is not None:
            self.dutycycle.record(seconds)
        self.stats["acks"] += 1
        self.stats["ack_airtime_ms"] += round(seconds * 1000)
        trap = self.trap_stats.setdefault(trap_id, Counter())
        trap["acks"] += 1
        trap["ack_airtime_ms"] += round(seconds * 1000)

    def _ack_slot(self, raw: bytes, latest: float) -> bool:
        """Whether the ack may start now: its trap still listens (until `latest`) and, with
        `lbt`, no other frame is in the air (waiting for that within the window)."""
        if self.clock.now() > latest:
            self.stats["acks_late"] += 1
            return False
        if self.lbt:
            step = self.modulation.time_on_air(len(raw)) / 4
            while self.radio.channel_active():
                if self.clock.now() + step > latest:
                    self.stats["acks_busy"] += 1
                    return False
                self.clock.sleep(step)
        return True

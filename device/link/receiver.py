"""The base station's side of the selective-repeat ARQ: `Receiver`.

Every data frame is authenticated (device/link/auth.py), stored before anything is said about
it (device/link/store.py), and, when its sender asks, answered with an ack bitmap of what the
base holds of that image. A poll (an empty data frame) is answered the same way and stores
nothing. Finished images are handed to the caller, who confirms each one once saved
(`Receiver.confirm`); unconfirmed ones are handed out again after a restart, so each image is
stored exactly once however the base dies.
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
from device.link.dutycycle import DutyCycle
from device.link.frames import DataFrame, FrameError
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

    Example (the base-station service's loop):
        >>> receiver = Receiver(radio, FragmentStore("base.sqlite"), load_keys("keys.toml"))  # doctest: +SKIP
        >>> for image in receiver.serve():      # confirmed when the loop asks for the next one
        ...     save(image.trap_id, image.image_id, image.data)
    """

    def __init__(self, radio: Radio, store: FragmentStore, keys: Mapping[int, bytes] | None,
                 clock: Clock | None = None, dutycycle: DutyCycle | None = None, *,
                 modulation: Modulation | None = None, require_auth: bool = True) -> None:
        self.radio, self.store = radio, store
        self.clock = clock or SystemClock()
        self.dutycycle = dutycycle
        self.modulation = modulation or radio.modulation
        self.auths = {trap: FrameAuth(key) for trap, key in (keys or {}).items()}
        self.require_auth = require_auth
        self.window = CounterWindow(UP)
        self.stats: Counter[str] = Counter()
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

    def handle(self, reception: Reception) -> list[DeliveredImage]:
        """Process one received frame (data or junk); send the ack it asks for."""
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
        if not frame.payload:  # a poll: report what we hold, store nothing
            self.stats["polls"] += 1
            self.store.accept_fcnt(frame.trap_id, fcnt)
            if self.store.is_complete(frame.trap_id, frame.image_id):
                held, count = frozenset(range(frame.count)), frame.count
            else:
                held, count = self.store.held(frame.trap_id, frame.image_id)
                if count != frame.count:
                    held, count = frozenset(), frame.count
            if frame.ack_req:
                self._ack(frame.trap_id, frame.image_id, held, count)
            return []
        payload = open_payload(frame, self.auths.get(frame.trap_id), UP, fcnt)
        result = self.store.add_fragment(frame.trap_id, frame.image_id, frame.index, frame.count,
                                         payload, fcnt, reception.rssi, reception.snr,
                                         self.clock.now())
        self.stats["fragments"] += 1
        if result.duplicate:
            self.stats["duplicates"] += 1
        if result.completed is not None:
            self.stats["images"] += 1
        if frame.ack_req:
            self._ack(frame.trap_id, frame.image_id, result.held, result.count)
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

    def _ack(self, trap_id: int, image_id: int, held: frozenset[int], count: int) -> None:
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
        seconds = self.radio.send(raw)
        if self.dutycycle is not None:
            self.dutycycle.record(seconds)
        self.stats["acks"] += 1
        self.stats["ack_airtime_ms"] += round(seconds * 1000)

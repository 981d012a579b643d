"""One background thread that runs timed callbacks (BUSY release, end of TX, RX timeout)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """`call_later(delay, fn)` on a single daemon thread, in order of due time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="emulator-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer()
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), timer, fn))
            self._cv.notify()
        return timer

    def close(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped:
                    if not self._heap:
                        self._cv.wait()
                        continue
                    due = self._heap[0][0] - time.monotonic()
                    if due <= 0:
                        break
                    self._cv.wait(due)
                if self._stopped:
                    return
                _, _, timer, fn = heapq.heappop(self._heap)
            if not timer.cancelled:
                fn()

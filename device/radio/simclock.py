"""Virtual time shared by many simulated devices, each an ordinary blocking program in a thread.

`VirtualClock` serves one program: its `sleep` just adds. Several traps and a base on one
channel each block in their own loops (`Sender.pump`, `Receiver.poll`), so `EventClock` runs
each loop in a thread and lets exactly one thread run at a time: `sleep` parks the caller and
hands over to whichever thread wakes next (earliest virtual time; ties in the order they went
to sleep). No thread ever waits on wall time, so a day of twenty traps runs in seconds, and the
order of events is the same on every run (deterministic for a fixed seed).

`wait_for(predicate, timeout)` is a sleep that ends early once `notify()` finds the predicate
true: a simulated radio's `receive` returns when a frame lands, not at its timeout.

Example:
    >>> clock = EventClock()
    >>> log = []
    >>> def device(name, period):
    ...     for _ in range(2):
    ...         clock.sleep(period)
    ...         log.append((clock.now(), name))
    >>> _ = clock.spawn(device, "a", 3.0), clock.spawn(device, "b", 2.0)
    >>> clock.run()
    >>> log
    [(2.0, 'b'), (3.0, 'a'), (4.0, 'b'), (6.0, 'a')]
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

__all__ = ["EventClock", "SimulationStopped"]


class SimulationStopped(BaseException):
    """Raised inside a device thread when the simulation ends (a BaseException, so the
    device's own `except Exception` handlers do not swallow it)."""


class _Actor:
    """One simulated device: its thread and the semaphore the scheduler hands it the turn by."""

    __slots__ = ("done", "go", "name", "token", "waiting")

    def __init__(self, name: str) -> None:
        self.name = name
        self.go = threading.Semaphore(0)
        self.token = 0  # bumped on every (re)schedule; older heap entries are stale
        self.waiting: Callable[[], bool] | None = None  # predicate of a pending wait_for
        self.done = False


class EventClock:
    """A virtual clock for several device threads (see the module docstring).

    Outside `run()` (set-up code in the main thread) `sleep` simply advances time, like
    `VirtualClock`.
    """

    speedup = 1.0  #: not tied to wall time; the `Clock` protocol's field

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, _Actor, int]] = []
        self._seq = itertools.count()
        self._back = threading.Semaphore(0)  # the running actor hands control back
        self._actors: dict[int, _Actor] = {}  # thread ident -> actor
        self._all: list[_Actor] = []
        self._stopping = False
        self._until: float | None = None
        self._error: BaseException | None = None

    def now(self) -> float:
        return self._now

    def spawn(self, target: Callable[..., object], *args: object, name: str | None = None,
              at: float | None = None) -> str:
        """Add a device: `target(*args)` starts at virtual time `at` (default: now)."""
        actor = _Actor(name or f"actor{len(self._all)}")
        thread = threading.Thread(target=self._body, args=(actor, target, args),
                                  name=f"sim-{actor.name}", daemon=True)
        self._all.append(actor)
        thread.start()
        self._actors[thread.ident] = actor
        self._schedule(actor, self._now if at is None else max(at, self._now))
        return actor.name

    def sleep(self, seconds: float) -> None:
        actor = self._actors.get(threading.get_ident())
        if actor is None:
            self._now += max(seconds, 0.0)
            return
        self._park(actor, self._now + max(seconds, 0.0))

    advance = sleep

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Sleep until `predicate()` is true (checked at each `notify`) or `timeout` passes."""
        deadline = self._now + max(timeout, 0.0)
        actor = self._actors.get(threading.get_ident())
        while not predicate():
            if self._now >= deadline:
                return False
            if actor is None:  # set-up code: nothing else can happen meanwhile
                self._now = deadline
                return predicate()
            actor.waiting = predicate
            self._park(actor, deadline)
            actor.waiting = None
        return True

    def notify(self) -> None:
        """Something changed: waiters whose predicate now holds wake at the current time."""
        for actor in self._all:
            if actor.waiting is not None and not actor.done and actor.waiting():
                actor.waiting = None
                self._schedule(actor, self._now)

    def run(self, until: float | None = None) -> None:
        """Run the devices until none is left or virtual time would pass `until`; then stop
        them (each gets `SimulationStopped` where it sleeps). Re-raises a device's error."""
        self._until = until
        try:
            first = self._next()
            if first is not None:
                first.go.release()
                self._back.acquire()  # released when nothing is left to run, or on an error
            if self._error is not None:
                raise self._error
            if until is not None:
                self._now = max(self._now, until)
        finally:
            self._stop()

    # -- internals --------------------------------------------------------------------------

    def _schedule(self, actor: _Actor, when: float) -> None:
        actor.token += 1
        heapq.heappush(self._heap, (when, next(self._seq), actor, actor.token))

    def _next(self) -> _Actor | None:
        """Pop the next actor to run and move time to its wake-up; None when there is none
        (or it would wake after `until`)."""
        while self._heap and not self._stopping and self._error is None:
            wake, _, actor, token = self._heap[0]
            if self._until is not None and wake > self._until:
                return None
            heapq.heappop(self._heap)
            if token == actor.token and not actor.done:
                self._now = max(self._now, wake)
                return actor
        return None

    def _hand_over(self, nxt: _Actor | None) -> None:
        """Give the turn straight to `nxt` (one thread switch), or back to `run`."""
        (nxt.go if nxt is not None else self._back).release()

    def _park(self, actor: _Actor, wake: float) -> None:
        self._schedule(actor, wake)
        nxt = self._next()
        if nxt is actor:  # nobody is due before us: go on without any thread switch
            return
        self._hand_over(nxt)
        actor.go.acquire()
        if self._stopping:
            raise SimulationStopped

    def _body(self, actor: _Actor, target: Callable[..., object], args: tuple) -> None:
        actor.go.acquire()
        try:
            if not self._stopping:
                target(*args)
        except SimulationStopped:
            pass
        except BaseException as exc:  # handed to run(), which re-raises it in the main thread
            self._error = exc
        finally:
            actor.done = True
            self._hand_over(None if self._stopping else self._next())

    def _stop(self) -> None:
        self._stopping = True
        self._heap.clear()
        for actor in self._all:
            if not actor.done:
                actor.go.release()
                self._back.acquire()

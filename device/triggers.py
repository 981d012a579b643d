"""What makes a trap take a picture (data flow step 1): PIR motion, a timelapse, a watched folder.

Each source runs in its own thread and puts `Trigger`s on one queue; the trap service takes them
with `Triggers.wait`. The PIR is a gpiozero `MotionSensor`; its `pin_factory` is injected, so
tests drive a `MockFactory` pin high instead of waving at a sensor. The watched folder serves
replay and commercial traps that write JPEGs to a card, in subfolders (`DCIM/100MEDIA/...`), so
it is searched recursively. A file is taken once it is written: its size and modification time
unchanged over one poll and, for a JPEG, its end-of-image marker there (a camera that pauses
mid-file keeps the size for a moment). It is remembered in `watched.txt` only after the service
says it is safely queued (`done`), so a crash between the two re-sends it rather than losing it.

Example:
    >>> triggers = Triggers(config.triggers, state_dir=Path("/var/lib/wildlink"))  # doctest: +SKIP
    >>> triggers.start()
    >>> trigger = triggers.wait(timeout=1.0)   # Trigger(kind='motion', ...) or None
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from device.capture import image_files
from device.errors import ConfigError

__all__ = ["MOTION", "TIMELAPSE", "FILE", "PRIORITY", "Trigger", "Triggers"]

log = logging.getLogger(__name__)

MOTION, TIMELAPSE, FILE = "motion", "timelapse", "file"
#: Queue priority per trigger kind: animals first, then timelapse (link queue policy).
PRIORITY = {MOTION: 0, FILE: 0, TIMELAPSE: 1}
#: Polls a JPEG may keep its size without its end marker before it is taken all the same
#: (some cameras pad files; the image reader then says what is wrong, if anything).
EOI_PATIENCE = 5


@dataclass(frozen=True)
class Trigger:
    """One reason to capture: `kind` is motion, timelapse or file (then `path` is set)."""

    kind: str
    at: float
    path: Path | None = None

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]


class Triggers:
    """All configured trigger sources behind one queue.

    Args:
        config: a `TriggerConfig`.
        state_dir: where `watched.txt` remembers the files already sent.
        pin_factory: gpiozero pin factory (None = gpiozero's default; MockFactory in tests).
    """

    def __init__(self, config, state_dir: str | Path, pin_factory=None) -> None:
        self.config = config
        self._queue: queue.Queue[Trigger] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sensor = None
        self._pin_factory = pin_factory
        self._last_motion = -float("inf")
        self._state = Path(state_dir) / "watched.txt"
        self._seen: set[str] = set()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._last: dict[str, tuple[int, int]] = {}  # watched file: (size, mtime) last poll
        self._steady: dict[str, int] = {}  # watched file: polls it has not changed

    def start(self) -> None:
        config = self.config
        if config.pir_pin is not None:
            self._start_pir(config.pir_pin)
        if config.timelapse_s > 0:
            self._thread(self._timelapse, "timelapse")
        if config.watch_dir is not None:
            if not Path(config.watch_dir).is_dir():
                raise ConfigError(f"triggers.watch_dir: {config.watch_dir} is not a folder")
            if self._state.is_file():
                self._seen = set(self._state.read_text().splitlines())
            self._thread(self._watch, "watch")

    @property
    def pir(self):
        """The gpiozero `MotionSensor` (None without a PIR)."""
        return self._sensor

    def wait(self, timeout: float | None = None) -> Trigger | None:
        """The next trigger, or None after `timeout` seconds (or once closed)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def done(self, trigger: Trigger) -> None:
        """Remember a watched file as handled (call once its picture is queued durably)."""
        if trigger.path is None:
            return
        key = str(trigger.path)
        with self._lock:
            self._seen.add(key)
            self._pending.discard(key)
            self._state.parent.mkdir(parents=True, exist_ok=True)
            with open(self._state, "a") as f:
                f.write(key + "\n")
                f.flush()
                os.fsync(f.fileno())

    def close(self) -> None:
        self._stop.set()
        if self._sensor is not None:
            self._sensor.close()
            self._sensor = None
        for thread in self._threads:
            thread.join(timeout=5)

    # ---------------------------------------------------------------- sources

    def _start_pir(self, pin: int) -> None:
        from gpiozero import MotionSensor

        try:
            self._sensor = MotionSensor(pin, pin_factory=self._pin_factory)
        except Exception as exc:  # gpiozero raises its own tree; name the pin
            raise ConfigError(f"triggers.pir_pin: cannot use GPIO{pin}: {exc}") from None
        self._sensor.when_motion = self._motion
        # gpiozero fires when_motion on an edge only, after its first full sample: wait for that
        # first reading, and count a PIR that is already high at start as motion.
        if not self._sensor.wait_for_no_motion(timeout=2.0) and self._sensor.motion_detected:
            self._motion()
        log.info("PIR on GPIO%d", pin)

    def _motion(self, *_args) -> None:
        now = time.monotonic()
        if now - self._last_motion < self.config.pir_holdoff_s:
            return
        self._last_motion = now
        self._queue.put(Trigger(MOTION, time.time()))

    def _timelapse(self) -> None:
        while not self._stop.wait(self.config.timelapse_s):
            self._queue.put(Trigger(TIMELAPSE, time.time()))

    def _watch(self) -> None:
        folder = Path(self.config.watch_dir)
        missing = False
        while not self._stop.is_set():
            if folder.is_dir():
                missing = False
                self.scan()
            elif not missing:  # a card unmounted under us: keep trying
                log.warning("watched folder %s is gone; waiting for it", folder)
                missing = True
            self._stop.wait(self.config.watch_poll_s)

    def scan(self) -> None:
        """One poll of the watched folder: queue each new file that is completely written."""
        current = {}
        for path in image_files(Path(self.config.watch_dir)):
            key = str(path)
            with self._lock:
                if key in self._seen or key in self._pending:
                    continue
            try:
                stat = path.stat()
            except OSError:
                continue
            current[key] = (stat.st_size, stat.st_mtime_ns)
            polls = self._steady.get(key, 0) + 1 if self._last.get(key) == current[key] else 0
            self._steady[key] = polls
            if stat.st_size > 0 and polls > 0 and (polls >= EOI_PATIENCE or written(path)):
                with self._lock:
                    self._pending.add(key)
                self._queue.put(Trigger(FILE, time.time(), path))
        self._last = current
        self._steady = {k: v for k, v in self._steady.items() if k in current}

    def _thread(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=f"trigger-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)


def written(path: Path) -> bool:
    """False for a JPEG whose end-of-image marker (FF D9) is not there yet; True otherwise.

    Trailing zero or 0xFF padding after the marker (some cameras pad to a cluster) is allowed.
    """
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 4096, 0))
            tail = f.read()
    except OSError:
        return False
    return tail.rstrip(b"\x00\xff").endswith(b"\xff\xd9")

"""The trap service: trigger -> capture -> keep the original -> encode -> durable queue -> link.

Two threads: the main one waits for triggers and turns each into a queued container; the link
thread sends whatever the queue holds within the duty cycle. The link is built (and its radio
plan checked) in the main thread, and the main thread watches the link thread: if it dies,
`run` raises LinkError naming the cause, so the service exits non-zero and systemd restarts it
rather than capturing and queueing forever with nothing sent. They share nothing but the SQLite
queue (each opens its own connection), so a slow radio never delays a capture and a capture never
blocks the radio. The queue is the only state that matters: SIGTERM, kill -9 or a power cut at
any point loses at most the picture being encoded (its original is on the card, and a watched
file is only marked done once its container is committed).

Example:
    >>> service = TrapService(load_trap_config("trap.toml"))        # doctest: +SKIP
    >>> service.run(stop_event)                                      # until stop_event is set
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from device.capture import Camera, FileCamera, Picture, open_camera
from device.errors import LinkError, WildlinkError
from device.service.adapters import PictureEncoder, TrapLink
from device.service.config import TrapConfig
from device.service.logs import event
from device.service.storage import Originals
from device.triggers import FILE, Trigger, Triggers

__all__ = ["Captured", "TrapService", "source_key"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Captured:
    """What one trigger produced (for logs and tests)."""

    trigger: Trigger
    name: str
    image_id: int
    bytes: int
    boxes: int


class TrapService:
    """One camera trap.

    Args:
        config: the validated trap config.
        camera: a camera (default: the configured one, opened at start).
        radio: a radio (default: built from `config.radio`).
        pin_factory: gpiozero pin factory for the PIR and the radio (MockFactory in tests).
        encoder: a `PictureEncoder` (default: from `config.codec`).
        free_bytes: free-space probe for the originals' rotation (tests).
    """

    def __init__(
        self,
        config: TrapConfig,
        *,
        camera: Camera | None = None,
        radio=None,
        pin_factory=None,
        encoder: PictureEncoder | None = None,
        free_bytes=None,
    ) -> None:
        self.config = config
        config.storage.data_dir.mkdir(parents=True, exist_ok=True)
        self._camera = camera
        self._files = FileCamera()  # watched-folder pictures
        self._radio = radio
        self._encoder = encoder
        self._pin_factory = pin_factory
        self.originals = Originals(config.storage.originals, config.storage.min_free_mb, free_bytes)
        self.triggers = Triggers(config.triggers, config.storage.data_dir, pin_factory)
        self.link: TrapLink | None = None
        self.link_error: BaseException | None = None  #: why the link thread died, if it did
        self.captured: list[Captured] = []
        self.ready = threading.Event()  #: set once triggers and link are running

    # ------------------------------------------------------------------ life cycle

    def run(self, stop: threading.Event, max_images: int | None = None) -> None:
        """Serve triggers until `stop` is set (SIGTERM sets it) or `max_images` are queued."""
        config = self.config
        if self._encoder is None:
            self._encoder = PictureEncoder.from_config(config)
        uses_camera = config.triggers.pir_pin is not None or config.triggers.timelapse_s > 0
        if self._camera is None and uses_camera:  # fail at start, not at the first animal
            self._camera = open_camera(config.camera)
        self.link = TrapLink.from_config(config, self._radio, self._pin_factory)
        link_thread = threading.Thread(target=self._run_link, args=(stop,), name="link",
                                       daemon=True)
        link_thread.start()
        try:
            self.triggers.start()
            self.ready.set()
            event(log, "trap_started", trap=config.trap_id, radio=config.radio.type,
                  queued=self.link.pending(), band=self.link.dutycycle.band.name,
                  duty=self.link.dutycycle.duty)
            while not stop.is_set():
                if not link_thread.is_alive():
                    why = self.link_error or "no error"
                    raise LinkError(f"the link thread stopped ({why}); nothing would be "
                                    "sent: exiting so that the service restarts")
                trigger = self.triggers.wait(timeout=0.2)
                if trigger is None:
                    continue
                self.handle(trigger)
                if max_images is not None and len(self.captured) >= max_images:
                    break
        finally:
            self.triggers.close()
            stop.set()
            link_thread.join(timeout=30)
            self.link.close()
            if self._camera is not None:
                self._camera.close()
            event(log, "trap_stopped", trap=config.trap_id, queued_this_run=len(self.captured))

    def _run_link(self, stop: threading.Event) -> None:
        try:
            self.link.run(stop)
        except BaseException as exc:  # reported by the main thread, which then exits
            self.link_error = exc
            event(log, "link_died", logging.CRITICAL, error=f"{type(exc).__name__}: {exc}")

    def handle(self, trigger: Trigger) -> Captured | None:
        """Capture (or read) one picture, keep it, encode it and queue it durably."""
        started = time.monotonic()
        source = source_key(trigger)
        if source is not None:
            earlier = self.link.queued_as(source)
            if earlier is not None:  # queued before a crash cut its "done" record short
                event(log, "already_queued", trap=self.config.trap_id, image=earlier,
                      name=trigger.path.name)
                self._done(trigger)
                return None
        try:
            picture = self._picture(trigger)
        except Exception as exc:  # a bad file or a camera hiccup must not stop the trap
            event(log, "capture_failed", logging.ERROR, kind=trigger.kind, error=str(exc))
            if trigger.kind == FILE:
                self._done(trigger)  # never retry a file that cannot be read
            return None
        if self.config.storage.keep_originals:  # a full card loses the original, not the image
            self.originals.keep(picture.captured_at, picture.name, picture.image,
                                trigger.path if trigger.kind == FILE else None)
        try:
            encoded = self._encoder.encode(picture)
        except Exception as exc:  # keep serving; the original stays on the card
            event(log, "encode_failed", logging.ERROR, name=picture.name, error=str(exc))
            if trigger.kind == FILE:
                self._done(trigger)
            return None
        try:
            image_id = self.link.put(encoded.data, trigger.priority, source=source)
        except WildlinkError as exc:  # queue full of more important images: keep the original
            event(log, "queue_full", logging.ERROR, name=picture.name, error=str(exc))
            return None
        self._done(trigger)
        result = Captured(trigger, picture.name, image_id, len(encoded.data), len(encoded.boxes))
        self.captured.append(result)
        event(log, "queued", trap=self.config.trap_id, image=image_id, name=picture.name,
              trigger=trigger.kind, bytes=len(encoded.data), boxes=len(encoded.boxes),
              saliency=encoded.saliency, seconds=round(time.monotonic() - started, 2))
        return result

    def _done(self, trigger: Trigger) -> None:
        """Record a watched file as handled; a full card must not stop the trap over it.

        If the record cannot be written, the queue's source key still stops the file being
        queued again after a restart.
        """
        try:
            self.triggers.done(trigger)
        except OSError as exc:
            event(log, "done_record_failed", logging.ERROR, name=str(trigger.path),
                  error=str(exc))

    def _picture(self, trigger: Trigger) -> Picture:
        if trigger.kind == FILE:
            return self._files.load(trigger.path)
        if self._camera is None:
            self._camera = open_camera(self.config.camera)
        return self._camera.capture()


def source_key(trigger: Trigger) -> str | None:
    """What makes a watched file this file (path, size, modification time); None otherwise.

    Camera captures need no key: each trigger is a new picture, and no record outside the
    queue says it was sent, so a crash can never queue one twice.
    """
    if trigger.kind != FILE or trigger.path is None:
        return None
    try:
        status = trigger.path.stat()
    except OSError:  # gone: loading it will say so
        return None
    return f"file:{trigger.path}:{status.st_size}:{status.st_mtime_ns}"

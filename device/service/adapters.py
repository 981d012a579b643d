"""Adapters between the services and the codec / link layer APIs.

The services speak in captures and delivered containers; the codec (device/codec) and the link
layer (device/link) have their own, richer vocabularies. These classes map one onto the other and
hold the per-service state those APIs leave to their caller: the trap's saliency policy (its
background model saved after each picture), the link's threads, clocks and radio plan checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from device.capture import Picture
from device.service.logs import event

__all__ = ["BaseLink", "EncodedPicture", "PictureEncoder", "TrapLink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedPicture:
    """One container ready for the queue, with what the log wants to say about it."""

    data: bytes
    boxes: tuple
    saliency: str


class PictureEncoder:
    """`device.codec.encoder.Encoder` with the trap's settings and its saliency policy.

    Args:
        encoder: an `Encoder` (owns the bundle and the TFLite interpreters).
        trap_id: written into every container header.
        budget: bytes per container.
        saliency: "auto", "boxes", "background", "spectral" or "none".
        background_path: where the site's background model persists (None: not kept).
        boxes: MegaDetector results to look frames up in (replay, demo), or None.
    """

    def __init__(self, encoder, trap_id: int, budget: int, saliency: str = "auto",
                 background_path: Path | None = None, boxes: dict | None = None) -> None:
        from device.saliency import Saliency

        self.encoder = encoder
        self.trap_id = trap_id
        self.budget = budget
        self.saliency = Saliency.for_site(saliency, background_path, boxes)

    @classmethod
    def from_config(cls, config) -> PictureEncoder:
        from device.codec.encoder import Encoder

        codec = config.codec
        boxes = None
        if codec.boxes is not None:
            from device.saliency import load_megadetector

            boxes = load_megadetector(codec.boxes)
        encoder = Encoder(codec.bundle, size=codec.size)
        return cls(encoder, config.trap_id, codec.budget, codec.saliency,
                   config.storage.data_dir / "background.npz", boxes)

    def encode(self, picture: Picture) -> EncodedPicture:
        """Encode one picture within the budget (the coarsest step if even that does not fit)."""
        from device.codec.encoder import BudgetError

        try:
            result = self.encoder.encode(
                picture.image, saliency=self.saliency, lores=picture.lores,
                path=picture.path or picture.name, budget=self.budget,
                capture_time=int(picture.captured_at), trap_id=self.trap_id, name=picture.name)
        except BudgetError as exc:
            # The coarsest coding the encoder already made: sent over budget rather than
            # lost, without running saliency (and the background model) a second time.
            event(log, "over_budget", logging.WARNING, name=picture.name, error=str(exc))
            if exc.result is None:
                raise
            result = exc.result
        try:
            self.saliency.save()
        except OSError as exc:  # a full card: the model is relearnt, the image still goes
            event(log, "background_not_saved", logging.WARNING, error=str(exc))
        return EncodedPicture(result.data, tuple(result.header.boxes), result.saliency_source)


def _clock_of(radio):
    """The radio's clock (a sped-up ScaledClock for the simulator), else wall time."""
    from device.radio.clock import SystemClock

    channel = getattr(radio, "channel", None)  # an in-process SimRadio keeps it on its channel
    return getattr(radio, "clock", None) or getattr(channel, "clock", None) or SystemClock()


def _link_plan(radio, radio_config, clock, signed: bool):
    """The duty cycle of the carrier the radio really uses, checked against the radio's frame
    size and modulation: raises ConfigError/LinkError here, in the thread that builds the link,
    never later in the link thread."""
    from device.link.frames import frame_limit
    from device.service.config import dutycycle_for

    dutycycle = dutycycle_for(radio_config, clock, radio)
    frame_limit(radio.mtu, radio.modulation, dutycycle, signed)
    return dutycycle


def _warn_unsigned(role: str) -> None:
    event(log, "unsigned_frames", logging.WARNING, role=role,
          warning="no key file (keys.allow_unsigned = true): frames are not authenticated, "
                  "anyone in radio range can forge or replay them")


#: Consecutive failed rounds after which the link thread gives up, so that the service exits
#: non-zero and systemd restarts it (re-opening and re-configuring the radio).
MAX_LINK_ERRORS = 20
LINK_RETRY_S = 5.0  #: seconds between a failed round and the next


class TrapLink:
    """The trap's side of the link: a durable queue and an ARQ `Sender` in its own thread.

    `put` runs in the capture thread, `run` in the link thread; each has its own connection to
    the SQLite queue (WAL, BEGIN IMMEDIATE), so neither blocks the other for long. Everything
    that can be wrong with the setup (sub-band, dwell, duty cycle, frame size) is checked here,
    in the caller's thread, before the link thread starts.
    """

    def __init__(self, radio, queue_path: Path, trap_id: int, key: bytes | None,
                 radio_config, sender_options: dict | None = None) -> None:
        from device.link.queue import OutboundStore

        self.radio = radio
        self.queue_path = queue_path
        self.trap_id = trap_id
        self.key = key
        self.radio_config = radio_config
        self.clock = _clock_of(radio)
        self.speedup = self.clock.speedup
        self.sender_options = sender_options or {}
        self.dutycycle = _link_plan(radio, radio_config, self.clock, signed=key is not None)
        self._queue = OutboundStore(queue_path)
        self.sender = None
        self.delivered = 0

    @classmethod
    def from_config(cls, config, radio=None, pin_factory=None) -> TrapLink:
        from device.radio.factory import build_radio

        key = None
        if config.keys_file is not None:
            from device.errors import ConfigError
            from device.link.auth import load_keys

            keys = load_keys(config.keys_file)
            if config.trap_id not in keys:
                raise ConfigError(f"keys.file: {config.keys_file} has no key for trap "
                                  f"{config.trap_id}")
            key = keys[config.trap_id]
        else:
            _warn_unsigned("trap")
        built = radio is None
        radio = radio or build_radio(*config.radio.settings, pin_factory)
        try:
            return cls(radio, config.storage.queue_path, config.trap_id, key, config.radio)
        except BaseException:
            if built:  # release the port or pins; the service exits with the error
                radio.close()
            raise

    def put(self, data: bytes, priority: int, source: str | None = None) -> int:
        """Commit one container to the queue; returns its on-air image id.

        `source` (a watched file's key) is committed with it, for `queued_as`.
        """
        from device.link.queue import Priority

        level = Priority.ANIMAL if priority == 0 else Priority.TIMELAPSE
        return self._queue.put(data, level, now=self.clock.now(), source=source).image_id

    def queued_as(self, source: str) -> int | None:
        """The image id `source` was queued as (before a crash, say); None if never."""
        return self._queue.queued_as(source)

    def pending(self) -> int:
        return len(self._queue)

    def run(self, stop) -> None:
        """Send queued images until `stop` is set (an `Event`).

        A failed round is retried after LINK_RETRY_S; after MAX_LINK_ERRORS failures in a row this
        raises LinkError (the service then exits non-zero, and systemd restarts it).
        """
        from device.errors import LinkError
        from device.link.queue import OutboundStore
        from device.link.sender import Sender

        queue = OutboundStore(self.queue_path)  # this thread's own connection
        failures = 0
        try:
            self.sender = Sender(self.radio, queue, self.trap_id, self.key, self.clock,
                                 self.dutycycle, **self.sender_options)
            while not stop.is_set():
                try:
                    result = self.sender.pump()
                except Exception as exc:  # a radio fault must not kill the trap; retry later
                    failures += 1
                    event(log, "link_error", logging.ERROR, error=str(exc), failures=failures)
                    if failures >= MAX_LINK_ERRORS:
                        raise LinkError(f"{failures} link rounds failed in a row, the last "
                                        f"with: {exc}") from None
                    stop.wait(LINK_RETRY_S)
                    continue
                failures = 0
                if result.delivered:
                    self.delivered += 1
                    event(log, "delivered", trap=self.trap_id, image=result.image_id)
                elif result.deferred:
                    event(log, "deferred", logging.WARNING, trap=self.trap_id,
                          image=result.image_id)
                wait = 1.0 if result.wait is None else result.wait
                if wait > 0:  # clock seconds -> real seconds; wake up for new images and stop
                    stop.wait(min(wait / self.speedup, 0.5))
        finally:
            queue.close()

    def close(self) -> None:
        self._queue.close()
        self.radio.close()


class BaseLink:
    """The base station's side: an ARQ `Receiver` over the durable fragment store.

    Images are confirmed to the store only when the service says they are saved
    (`receiver.confirm`, from its decode worker), so a crash while decoding hands them out
    again after restart.
    """

    def __init__(self, receiver, store) -> None:
        self.receiver = receiver
        self.store = store
        self.speedup = receiver.clock.speedup

    @classmethod
    def from_config(cls, config, radio=None, pin_factory=None) -> BaseLink:
        from device.link.receiver import Receiver
        from device.link.store import FragmentStore
        from device.radio.factory import build_radio

        keys = None
        if config.keys_file is not None:
            from device.link.auth import load_keys

            keys = load_keys(config.keys_file)
        if config.allow_unsigned:
            _warn_unsigned("base")
        built = radio is None
        radio = radio or build_radio(*config.radio.settings, pin_factory)
        try:
            clock = _clock_of(radio)
            dutycycle = _link_plan(radio, config.radio, clock, signed=keys is not None)
            store = FragmentStore(config.data_dir / "fragments.sqlite")
        except BaseException:
            if built:
                radio.close()
            raise
        receiver = Receiver(radio, store, keys, clock, dutycycle,
                            require_auth=not config.allow_unsigned)
        return cls(receiver, store)

    def poll(self, timeout: float) -> list:
        """Complete images from the next frame (and, first, any left from before a crash)."""
        return self.receiver.poll(timeout * self.speedup)

    def close(self) -> None:
        self.receiver.flush_confirmed()
        self.store.close()
        self.receiver.radio.close()

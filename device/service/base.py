"""The base-station service: receive, reassemble, store the container, decode, index.

The link layer (device/link) acknowledges fragments, asks for what is missing and keeps every
fragment in its durable store; it hands over complete containers. For each one this service:

1. writes the container under `data_dir/containers/trap<id>/`, named from (trap id, image id,
   capture time) (device/service/archive.py), atomically and fsync'd;
2. decodes it and writes the picture under `out_dir/trap<id>/` (with EXIF DateTimeOriginal and
   the trap id) and a JSON sidecar in MegaDetector batch-results format (boxes, plus trap id,
   capture time, RSSI, SNR, bytes, and which parts of the container arrived);
3. calls the "image stored" hooks (`BaseService.on_stored`, see `_stored`); the first one
   keeps the per-day CSV index and merged MegaDetector file (device/service/reports.py);
4. adds a row to the SQLite index (device/service/index.py);
5. only then confirms it to the link layer's store.

A crash between any two steps repeats the work on restart (the store hands unconfirmed images
out again; the files have the same names, so they are rewritten, not copied; the index
recognises containers it already holds), so each image is stored exactly once and no fragment is
lost. A container that does not decode (another model, corruption, or a decode that the process
did not survive MAX_DECODE_ATTEMPTS times) is moved to `data_dir/quarantine/`, indexed with its
error and confirmed: nothing that arrived is thrown away, and a restarted base never meets it
again.

Example:
    >>> service = BaseService(load_base_config("base.toml"))        # doctest: +SKIP
    >>> service.run(stop_event)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from device.errors import WildlinkError
from device.imageio import picture_exif
from device.service.archive import Archive, StoredImage, image_stem, write_atomic
from device.service.config import BaseConfig
from device.service.index import ImageIndex
from device.service.logs import event
from device.service.reports import (
    Reports,
    image_status,
    megadetector_sidecar,
    part_entries,
    uplink_airtime,
)

__all__ = ["MAX_DECODE_ATTEMPTS", "BaseService", "StoredImage", "megadetector_sidecar",
           "write_atomic"]

log = logging.getLogger(__name__)
#: Decodes the process may die in (killed, out of memory) before a container is quarantined.
MAX_DECODE_ATTEMPTS = 3
#: A partial image whose newest fragment is older than this (clock seconds) is dropped from the
#: fragment store: its trap vanished or dropped it from a full queue, and its image id would
#: come round again. Long, because a trap that resumes such an image resends only the fragments
#: it has no ack for.
PARTIAL_MAX_AGE_S = 30 * 24 * 3600.0
EXPIRE_EVERY_S = 3600.0  #: real seconds between two looks for them (the first at start)


class BaseService:
    """One base station serving several traps.

    Args:
        config: the validated base config.
        radio: a radio (default: built from `config.radio`).
        pin_factory: gpiozero pin factory for the radio's pins (MockFactory in tests).
        decoder: anything with `decode(data) -> DecodeResult` (default: a
            `device.codec.registry.BundleRegistry` of the shipped bundles and the config's
            `bundle_folders`, so each container decodes with the bundle its model id names).
    """

    def __init__(self, config: BaseConfig, *, radio=None, decoder=None,
                 pin_factory=None) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.out_dir.mkdir(parents=True, exist_ok=True)
        self.index = ImageIndex(config.data_dir / "index.sqlite")
        self.archive = Archive(config.data_dir, config.out_dir, config.image_format)
        #: "image stored" hooks, called with a `StoredImage` (see `_stored`).
        self.on_stored: list[Callable[[StoredImage], None]] = []
        self.reports = Reports(config.out_dir, airtime=self._airtime)
        self.on_stored.append(self.reports.image_stored)
        self._radio = radio
        self._pin_factory = pin_factory
        self._decoder = decoder
        self.link = None
        self.stored = 0

    @property
    def decoder(self):
        """What decodes containers: the bundle registry, loaded on first use."""
        if self._decoder is None:
            from device.codec.registry import BundleRegistry

            self._decoder = BundleRegistry(self.config.bundle_folders)
        return self._decoder

    def run(self, stop: threading.Event, max_images: int | None = None) -> None:
        """Receive until `stop` is set (SIGTERM) or `max_images` new pictures are stored.

        Decoding takes seconds; it runs in a worker thread so that the radio loop keeps
        acknowledging fragments meanwhile (a trap that hears no ack gives up its window).
        The worker confirms each image to the link's receiver, which writes the confirmation
        in this thread (the one that owns its store).
        """
        from device.service.adapters import BaseLink

        decoder = self.decoder  # a missing or clashing bundle stops the base at start
        event(log, "bundles", models=list(getattr(decoder, "ids", ())))
        self.link = BaseLink.from_config(self.config, self._radio, self._pin_factory)
        work: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._work, args=(work,), name="decode", daemon=True)
        worker.start()
        event(log, "base_started", radio=self.config.radio.type, stored=len(self.index))
        next_expiry = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_expiry:
                    self._expire_partials()
                    next_expiry = time.monotonic() + EXPIRE_EVERY_S
                for delivered in self.link.poll(timeout=0.5):
                    work.put(delivered)
                if max_images is not None and self.stored >= max_images:
                    break
        finally:
            work.put(None)
            worker.join(timeout=120)  # finish what was received (SIGTERM grace)
            self.link.close()  # writes the worker's last confirmations first
            self.index.close()
            event(log, "base_stopped", stored_this_run=self.stored)

    def _work(self, work: queue.Queue) -> None:
        while (image := work.get()) is not None:
            try:
                self.deliver(image)
            except Exception as exc:  # e.g. a full disk: keep it unconfirmed, retried on restart
                event(log, "store_failed", logging.ERROR, trap=image.trap_id,
                      image=image.image_id, error=str(exc))

    def _confirm(self, trap: int, image_id: int) -> None:
        self.link.receiver.confirm(trap, image_id)  # any thread (Receiver.confirm)

    def _expire_partials(self) -> None:
        """Drop abandoned partial images from the link's store (this thread owns it)."""
        store, clock = self.link.store, self.link.receiver.clock
        dropped = store.expire_partials(older_than=clock.now() - PARTIAL_MAX_AGE_S)
        if dropped:
            event(log, "partials_expired", logging.WARNING, images=dropped,
                  max_age_h=round(PARTIAL_MAX_AGE_S / 3600, 1))

    def deliver(self, image) -> bool:
        """Store, decode and index one complete container; True if it was new."""
        trap, image_id, data = image.trap_id, image.image_id, image.data
        if self.config.traps and trap not in self.config.traps:
            event(log, "unknown_trap", logging.WARNING, trap=trap, image=image_id)
            self._confirm(trap, image_id)
            return False
        sha = hashlib.sha256(data).hexdigest()
        if self.index.has(trap, sha):
            event(log, "duplicate", trap=trap, image=image_id)
            self._confirm(trap, image_id)
            return False
        received_at = time.time()  # wall time (the link clock may be a sped-up simulation)
        capture_time = _capture_time(data)
        container = self.archive.keep_container(trap, image_stem(trap, image_id, capture_time),
                                                data)
        stem = container.stem
        row = dict(trap_id=trap, image_id=image_id, sha256=sha, received_at=received_at,
                   capture_time=capture_time, bytes=len(data), rssi=image.rssi, snr=image.snr)
        started = time.monotonic()
        result, error = self._decode(trap, image_id, sha, data)
        if result is None:
            container = self.archive.quarantine(trap, container)
            row.update(status="undecodable", error=error, container=str(container))
            event(log, "quarantined", logging.ERROR, trap=trap, image=image_id, error=error,
                  container=str(container))
            self._stored(StoredImage(trap, image_id, capture_time, sha, len(data), "undecodable",
                                     stem, container, rssi=image.rssi, snr=image.snr,
                                     error=error))
        else:
            header = result.header
            picture, sidecar = self.archive.picture_paths(trap, stem)
            _save_picture(picture, result.image, picture_exif(
                capture_time, trap, f"wildlink trap {trap} image {image_id}"))
            boxes = header_boxes(header)
            when = capture_time or received_at  # a trap whose clock was never set sends 0
            info = dict(trap_id=trap, image_id=image_id, capture_time=_iso(when),
                        received_at=_iso(received_at), rssi=image.rssi, snr=image.snr,
                        bytes=len(data), model_id=getattr(header, "model_id", None),
                        missing_bands=list(result.missing_bands),
                        parts=part_entries(result.parts), container=container.name,
                        camera_file=header.name or None)
            text = json.dumps(megadetector_sidecar(picture.name, boxes, info, capture_time),
                              indent=1)
            write_atomic(sidecar, text.encode())
            status = image_status(info)
            row.update(capture_time=when, boxes=len(boxes), model_id=info["model_id"],
                       container=str(container),
                       picture=str(picture), sidecar=str(sidecar), status=status)
            self._stored(StoredImage(trap, image_id, capture_time, sha, len(data), status, stem,
                                     container, picture, sidecar, tuple(boxes), image.rssi,
                                     image.snr))
            event(log, "stored", trap=trap, image=image_id, bytes=len(data), boxes=len(boxes),
                  rssi=image.rssi, snr=image.snr, picture=picture.name, status=status,
                  parts=len(result.parts),
                  seconds=round(time.monotonic() - started, 2))
        self.index.add(**row)
        self._confirm(trap, image_id)
        self.stored += 1
        return True

    def _decode(self, trap: int, image_id: int, sha: str, data: bytes):
        """(DecodeResult, None), or (None, why) for a container to quarantine.

        Each attempt is recorded before the decoder runs and cleared when it returns or
        raises, so an attempt still recorded at start is one the process did not survive
        (killed, out of memory); after MAX_DECODE_ATTEMPTS of those the container is given up
        rather than met at every restart.
        """
        attempts = self.index.begin_decode(trap, sha)
        if attempts >= MAX_DECODE_ATTEMPTS:
            return None, (f"decoding did not finish in {attempts} attempts (the base was "
                          "killed or ran out of memory while decoding it)")
        try:
            return self.decoder.decode(data), None
        except WildlinkError as exc:
            return None, str(exc)
        except Exception as exc:  # a decoder fault on hostile input must not stall the base
            event(log, "decoder_fault", logging.ERROR, trap=trap, image=image_id,
                  error=f"{type(exc).__name__}: {exc}")
            return None, f"decoder fault: {type(exc).__name__}: {exc}"
        finally:
            self.index.end_decode(trap, sha)

    def _airtime(self, nbytes: int) -> float | None:
        """Uplink seconds on air of an image of `nbytes` on this base's link (reports)."""
        from device.link.frames import frame_limit

        receiver = getattr(self.link, "receiver", None)
        if receiver is None:
            return None
        signed = bool(receiver.auths)
        limit = frame_limit(receiver.radio.mtu, receiver.modulation, receiver.dutycycle, signed)
        return uplink_airtime(nbytes, receiver.modulation, limit, signed)

    def _stored(self, stored: StoredImage) -> None:
        """The one "image stored" event: every hook in `on_stored` gets the image here.

        Called once the image's files are on disk and before its index row is committed, so a
        crash in between calls the hooks again on restart: hooks are at-least-once and should
        write idempotently, keyed by `stored.stem`. A failing hook is logged; it never keeps
        the image from being indexed and acknowledged.
        """
        for hook in self.on_stored:
            try:
                hook(stored)
            except Exception as exc:
                event(log, "hook_failed", logging.ERROR, trap=stored.trap_id,
                      image=stored.image_id, hook=getattr(hook, "__name__", repr(hook)),
                      error=f"{type(exc).__name__}: {exc}")


def _capture_time(data: bytes) -> int | None:
    """The capture time in a container's header; None if the header cannot be read."""
    from device.codec.container import unpack

    try:
        return int(unpack(data).capture_time)
    except Exception:  # corrupt or hostile bytes: the decoder will say what is wrong
        return None


def header_boxes(header) -> list[tuple[list[float], float]]:
    """The container's boxes as (MegaDetector `bbox` [x, y, w, h] normalised, confidence)."""
    return [(b.bbox, b.conf / 255.0) for b in header.boxes]


def _save_picture(path: Path, image, exif: bytes | None = None) -> None:
    from device.imageio import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)  # the same name on every retry
    save_image(tmp, image, exif=exif)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

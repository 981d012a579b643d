"""Cameras for the trap: picamera2 on a Pi, files for replay and tests (data flow step 2).

`PiCamera` runs a still configuration with two streams from one sensor readout: `main`, the
picture we encode, and `lores`, a small YUV420 stream (converted to a small RGB picture) that feeds
the per-site background model without resizing the big picture. After start it lets a few frames pass so that auto
exposure and white balance settle (a trap wakes up on motion, in whatever light there is). A Pi
Zero 2 W has 512 MB: a full-resolution still buffer is ~10 MB, so it gets `buffer_count=1`.

`FileCamera` returns images from a folder and its subfolders (a card's `DCIM/100MEDIA/...`),
or one file per call, each with its path (the saliency policy finds a `megadetector.json` beside
it); tests, the demo and a replay of another trap's card use it. A file's capture time is the
camera's own (EXIF DateTimeOriginal), and its modification time only when the file has none:
a copied or cloned file has the copy's time.

Example:
    >>> camera = open_camera(config.camera)          # doctest: +SKIP
    >>> picture = camera.capture()
    >>> picture.image.shape, picture.lores.shape
    ((1296, 2304, 3), (240, 320, 3))
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from device.errors import ConfigError, WildlinkError
from device.imageio import exif_capture_time, load_image

__all__ = ["Camera", "CameraError", "FileCamera", "Picture", "PiCamera", "open_camera"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
LORES_WIDTH = 320


class CameraError(WildlinkError, RuntimeError):
    """The camera cannot be opened or returned no picture."""


@dataclass(frozen=True, eq=False)
class Picture:
    """One capture.

    Attributes:
        image: uint8 [H, W, 3] RGB, upright.
        lores: uint8 [h, w, 3] small RGB picture for the background model, or None.
        captured_at: seconds since the epoch (UTC).
        name: file name (file camera) or a time stamp name (picamera2).
        path: the file the picture came from (file camera), else None.
        time_source: where `captured_at` comes from: "clock" (the Pi's, at capture),
            "exif" (the camera's DateTimeOriginal) or "mtime" (the file's modification time).
    """

    image: np.ndarray
    lores: np.ndarray | None
    captured_at: float
    name: str
    path: Path | None = None
    time_source: str = "clock"


class Camera(Protocol):
    def capture(self) -> Picture: ...

    def close(self) -> None: ...


def is_pi_zero_2(model_file: str | Path = "/proc/device-tree/model") -> bool:
    """True on a Raspberry Pi Zero 2 W (which needs single buffering)."""
    try:
        return "Zero 2" in Path(model_file).read_text(errors="replace")
    except OSError:
        return False


class PiCamera:
    """picamera2 still capture with a low-resolution luma stream (imported lazily).

    Args:
        size: (width, height) of the picture.
        lores: (width, height) of the YUV420 stream for the background model.
        settle_frames: frames to drop after start while AE/AWB converge.
        buffer_count: None = 1 on a Pi Zero 2 W, else 2.
    """

    def __init__(
        self,
        size: tuple[int, int] = (2304, 1296),
        lores: tuple[int, int] = (320, 240),
        settle_frames: int = 4,
        buffer_count: int | None = None,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError(
                "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install "
                "python3-picamera2` and make the venv with --system-site-packages"
            ) from None
        if buffer_count is None:
            buffer_count = 1 if is_pi_zero_2() else 2
        try:
            self._camera = Picamera2()
        except (IndexError, RuntimeError) as exc:  # no camera on the CSI port
            raise CameraError(f"no camera found, check the ribbon cable: {exc}") from None
        # "BGR888" gives numpy arrays in R, G, B order (picamera2 manual, section 4.2.2.2).
        config = self._camera.create_still_configuration(
            main={"size": tuple(size), "format": "BGR888"},
            lores={"size": tuple(lores), "format": "YUV420"},
            buffer_count=buffer_count,
        )
        self._camera.configure(config)
        self._lores_height = lores[1]
        self._settle = settle_frames
        log.info("camera %sx%s, lores %sx%s, %d buffer(s)", *size, *lores, buffer_count)

    def capture(self) -> Picture:
        """Start, let the exposure settle, take one picture from both streams, stop."""
        camera = self._camera
        camera.start()
        try:
            for _ in range(self._settle):
                camera.capture_metadata()
            request = camera.capture_request()
            try:
                image = request.make_array("main")
                yuv = request.make_array("lores")
            finally:
                request.release()
        finally:
            camera.stop()
        now = time.time()
        lores = yuv420_to_rgb(yuv, self._lores_height)
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
        return Picture(np.ascontiguousarray(image[..., :3]), lores, now, name + ".jpg")

    def close(self) -> None:
        self._camera.close()


class FileCamera:
    """Pictures from files: the next file of a folder per `capture()`, or `load(path)`.

    Args:
        source: a folder of images (with its subfolders, taken in path order, cycling; hidden
            files and folders skipped) or one image file.
        loop: start again after the last file (else CameraError when exhausted).
    """

    def __init__(self, source: str | Path | None = None, loop: bool = True) -> None:
        self._files: list[Path] = []
        self._next = 0
        self._loop = loop
        if source is not None:
            source = Path(source)
            if source.is_dir():
                self._files = image_files(source)
            elif source.is_file():
                self._files = [source]
            else:
                raise ConfigError(f"camera.files: {source} does not exist")
            if not self._files:
                raise ConfigError(f"camera.files: no images in {source}")

    def capture(self) -> Picture:
        if self._next >= len(self._files):
            if not self._loop or not self._files:
                raise CameraError("the file camera has no more pictures")
            self._next = 0
        path = self._files[self._next]
        self._next += 1
        return self.load(path)

    def load(self, path: str | Path) -> Picture:
        """One picture from a file."""
        path = Path(path)
        image = load_image(path)
        captured_at, source = file_capture_time(path)
        return Picture(image, lores_rgb(image), captured_at, path.name, path, source)

    def close(self) -> None:
        pass


def file_capture_time(path: Path) -> tuple[float, str]:
    """(unix seconds, "exif" | "mtime" | "clock"): the camera's time, else the file's, else now."""
    seconds = exif_capture_time(path)
    if seconds is not None:
        return seconds, "exif"
    try:
        return path.stat().st_mtime, "mtime"
    except OSError:
        return time.time(), "clock"


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` and its subfolders in path order, hidden ones skipped.

    Path order is capture order on a camera card (DCIM/100MEDIA/IMAG0001.JPG, ...,
    DCIM/101MEDIA/...). Unreadable subfolders are skipped, not fatal.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if is_image_name(f)]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def is_image_name(name: str) -> bool:
    """An image file name the trap takes (by suffix; hidden and partial files are not)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def lores_rgb(image: np.ndarray, width: int = LORES_WIDTH) -> np.ndarray:
    """The small picture a picamera2 lores stream would give, from a full picture (file camera)."""
    factor = max(1, image.shape[1] // max(width, 1))
    h, w = image.shape[0] // factor, image.shape[1] // factor
    block = image[: h * factor, : w * factor].astype(np.float32)
    small = block.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def yuv420_to_rgb(yuv: np.ndarray, height: int) -> np.ndarray:
    """picamera2's planar YUV420 array ([1.5 h, w]: Y, then U and V at half resolution) -> RGB.

    Full-range BT.601 (JFIF) coefficients; the background model needs luma and a colour
    spread (to tell IR night frames from day frames), not exact colours.
    """
    width = yuv.shape[1]
    quarter = height // 4
    y = yuv[:height].astype(np.float32)
    u = yuv[height : height + quarter].reshape(height // 2, width // 2).astype(np.float32) - 128
    v = yuv[height + quarter : height + 2 * quarter].reshape(height // 2, width // 2)
    v = v.astype(np.float32) - 128
    u = u.repeat(2, axis=0).repeat(2, axis=1)
    v = v.repeat(2, axis=0).repeat(2, axis=1)
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=2)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def open_camera(config) -> Camera:
    """The camera a `CameraConfig` asks for."""
    if config.backend == "file":
        return FileCamera(config.files)
    return PiCamera(
        (config.width, config.height),
        (config.lores_width, config.lores_height),
        config.settle_frames,
        config.buffer_count,
    )


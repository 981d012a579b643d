"""The base station's files: one name per image, atomic writes, and a quarantine.

Every file of one image is named from what identifies it, never from when it happened to
arrive: `<capture time>-t<trap>-i<image id>` (UTC, `19700101T000000Z` when the header cannot be
read). A delivery repeated after a crash therefore rewrites the same files instead of adding
copies, and the 16-bit image id, which wraps, is told apart by the capture time.

    data_dir/containers/trap005/20231114T221320Z-t005-i00007.wl   the bytes as received
    data_dir/quarantine/trap005/...wl                              containers that did not decode
    out_dir/trap005/20231114T221320Z-t005-i00007.png (+ .json)     picture and sidecar

If a name is already taken by other bytes (a trap that lost its queue and reused an image id in
the same second), the new image gets its SHA-256 prefix appended instead of overwriting.

Example:
    >>> archive = Archive(Path("/var/lib/wildlink-base"), Path("/srv/pictures"), "png")  # doctest: +SKIP
    >>> stem = image_stem(5, 7, 1_700_000_000)       # '20231114T221320Z-t005-i00007'
    >>> path = archive.keep_container(5, stem, data)
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Archive", "StoredImage", "image_stem", "write_atomic"]


@dataclass(frozen=True)
class StoredImage:
    """One image the base station has on disk: what an "image stored" hook receives.

    Attributes:
        trap_id, image_id: as the link delivered it.
        capture_time: unix seconds from the container header (None if unreadable).
        status: "decoded", "partial" (a part lost, or bands decoded as the prior mean) or
            "undecodable".
        container: the container file (under quarantine/ when undecodable).
        picture, sidecar: the decoded picture and its MegaDetector-format JSON (None when
            undecodable).
        stem: the name every file of this image shares (a key that is stable across retries).
    """

    trap_id: int
    image_id: int
    capture_time: float | None
    sha256: str
    bytes: int
    status: str
    stem: str
    container: Path
    picture: Path | None = None
    sidecar: Path | None = None
    boxes: tuple = ()  #: (bbox [x, y, w, h] normalised, confidence) pairs
    rssi: float | None = None
    snr: float | None = None
    error: str | None = None


def image_stem(trap_id: int, image_id: int, capture_time: float | None) -> str:
    """The shared file name of one image (see the module docstring)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(capture_time or 0)))
    return f"{stamp}-t{trap_id:03d}-i{image_id:05d}"


class Archive:
    """The base station's folders (see the module docstring).

    Args:
        data_dir: containers/ and quarantine/ go here.
        out_dir: decoded pictures and sidecars go here.
        image_format: picture suffix ("png", "jpg", ...).
    """

    def __init__(self, data_dir: Path, out_dir: Path, image_format: str) -> None:
        self.data_dir, self.out_dir, self.image_format = Path(data_dir), Path(out_dir), image_format

    def keep_container(self, trap_id: int, stem: str, data: bytes) -> Path:
        """Write the received bytes (atomically, fsync'd) under a free name; return the path.

        The stem of the returned name is the image's final stem (it may carry a hash suffix).
        """
        folder = self.data_dir / "containers" / f"trap{trap_id:03d}"
        path = _free_name(folder / f"{stem}.wl", data)
        if not _holds(path, data):
            write_atomic(path, data)
        return path

    def quarantine(self, trap_id: int, container: Path) -> Path:
        """Move a container that did not decode out of the way (an atomic rename)."""
        data = container.read_bytes()
        target = _free_name(self.data_dir / "quarantine" / f"trap{trap_id:03d}" / container.name,
                            data)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(container, target)
        _fsync_dir(target.parent)
        return target

    def picture_paths(self, trap_id: int, stem: str) -> tuple[Path, Path]:
        """(picture, sidecar) of an image."""
        picture = self.out_dir / f"trap{trap_id:03d}" / f"{stem}.{self.image_format}"
        return picture, picture.with_suffix(".json")


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync and rename, so a power cut leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _free_name(path: Path, data: bytes) -> Path:
    """`path`, unless other bytes already live there: then `<stem>-<sha256[:8]><suffix>`."""
    if not path.exists() or _holds(path, data):
        return path
    sha = hashlib.sha256(data).hexdigest()[:8]
    return path.with_name(f"{path.stem}-{sha}{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX: the directory entry is only safe once its folder is)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""The trap keeps every original on its card, and deletes the oldest when space runs short.

Originals are named `<UTC time>-<name>` so that name order is age order; `rotate` removes the
oldest until the file system has `min_free_mb` (plus room for the next file) free again, or
nothing of ours is left. `keep` rotates *before* it writes, and a write that fails all the same
(a full card, a card gone read-only) is logged as the loss of that original and returns None:
the picture is still encoded and sent, because the transmission matters more than the copy.
The free-space probe is injectable for tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.service.logs import event

__all__ = ["Originals"]

log = logging.getLogger(__name__)


class Originals:
    """The folder of original pictures, rotated by free space.

    Args:
        folder: where originals go (created).
        min_free_mb: keep at least this much free on the file system.
        free_bytes: probe of free bytes (default: shutil.disk_usage).
    """

    def __init__(
        self,
        folder: str | Path,
        min_free_mb: float,
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.min_free = int(min_free_mb * 1024 * 1024)
        self._free = free_bytes or (lambda p: shutil.disk_usage(p).free)

    def keep(self, captured_at: float, name: str, image: np.ndarray | None,
             source: Path | None) -> Path | None:
        """Store one original (copy `source` if it is a file, else write `image` as JPEG).

        Returns its path, or None if it could not be written (logged as `original_lost`).
        """
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(captured_at))
        stem = Path(name).stem
        suffix = source.suffix.lower() if source is not None else ".jpg"
        target = self.folder / f"{stamp}-{stem}{suffix}"
        tmp = target.with_name(target.name + ".part")
        try:
            size = source.stat().st_size if source is not None else _jpeg_estimate(image)
            self.rotate(reserve=size)
            if source is not None:
                shutil.copyfile(source, tmp)
            else:
                from device.imageio import save_image

                save_image(tmp.with_suffix(".jpg"), image, quality=92)
                tmp.with_suffix(".jpg").rename(tmp)
            os.replace(tmp, target)
        except Exception as exc:  # ENOSPC, EROFS, a card pulled: lose the copy, not the image
            for leftover in (tmp, tmp.with_suffix(".jpg")):
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass
            event(log, "original_lost", logging.ERROR, name=name, error=str(exc))
            return None
        return target

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file() and not p.name.endswith(".part"))

    def rotate(self, reserve: int = 0) -> list[Path]:
        """Delete the oldest originals until `min_free` + `reserve` bytes are free.

        Returns what was removed.
        """
        removed = []
        files = self.files()
        while files and self._free(self.folder) < self.min_free + reserve:
            oldest = files.pop(0)
            oldest.unlink(missing_ok=True)
            removed.append(oldest)
        if removed:
            event(log, "rotated", removed=len(removed), oldest_kept=files[0].name if files else None)
        return removed


def _jpeg_estimate(image: np.ndarray) -> int:
    """Room to make for a quality-92 JPEG of `image` (generously, a quarter of the raw bytes)."""
    return int(image.nbytes) // 4

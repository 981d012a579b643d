"""The trap's originals on a full card: rotate first, and a failed write loses only the copy."""

from __future__ import annotations

import errno
import logging

import numpy as np

from device.service import storage
from device.service.storage import Originals


def _card(tmp_path, files: int, free: list[int]):
    folder = tmp_path / "originals"
    folder.mkdir()
    for i in range(files):
        (folder / f"2023010{i}T000000-old{i}.jpg").write_bytes(b"o" * 1000)
    # the card's free space grows by 1000 bytes for every original deleted
    return Originals(folder, min_free_mb=0.001, free_bytes=lambda _p: free[0] + 1000 * (
        files - len(list(folder.iterdir()))))


def test_rotation_makes_room_before_the_write(tmp_path, monkeypatch):
    source = tmp_path / "new.jpg"
    source.write_bytes(b"n" * 500)
    originals = _card(tmp_path, files=3, free=[0])
    seen = []
    real_copy = storage.shutil.copyfile

    def copy(src, dst):
        seen.append(len(originals.files()))  # how many old ones are left when we write
        return real_copy(src, dst)

    monkeypatch.setattr(storage.shutil, "copyfile", copy)
    kept = originals.keep(1_700_000_000, "new.jpg", None, source)
    assert kept is not None and kept.read_bytes() == b"n" * 500
    # 1048 bytes kept free + 500 for the new file: two old originals had to go, before the copy
    assert seen == [1]
    assert [p.name for p in originals.files()] == ["20230102T000000-old2.jpg", kept.name]


def test_a_failed_write_is_a_logged_loss_of_the_original(tmp_path, monkeypatch, caplog):
    originals = _card(tmp_path, files=0, free=[0])

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("device.imageio.save_image", full)
    with caplog.at_level(logging.ERROR):
        kept = originals.keep(1_700_000_000, "cam.jpg", np.zeros((8, 8, 3), np.uint8), None)
    assert kept is None
    assert "original_lost" in caplog.text and "No space left" in caplog.text
    assert list(originals.folder.iterdir()) == []  # no half-written .part left behind

"""kill -9 of the trap or the base station mid-image: every image arrives exactly once.

Real processes, real SQLite files, the loopback-UDP simulated radio (10x real time, 10% loss).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

NODE = Path(__file__).resolve().parent / "link_node.py"
pytestmark = pytest.mark.slow


def _free_ports() -> tuple[int, int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    return ports


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(NODE), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _fragments_stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM fragments").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def setup(tmp_path):
    trap_port, base_port = _free_ports()
    images = [os.urandom(n) for n in (6000, 9000, 3000)]
    paths = []
    for i, data in enumerate(images):
        path = tmp_path / f"image{i}.bin"
        path.write_bytes(data)
        paths.append(path)
    out = tmp_path / "out"
    out.mkdir()
    procs: list[subprocess.Popen] = []

    def trap() -> subprocess.Popen:
        procs.append(_start("send", tmp_path / "trap.sqlite", trap_port, base_port, *paths))
        return procs[-1]

    def base() -> subprocess.Popen:
        procs.append(_start("receive", tmp_path / "base.sqlite", base_port, trap_port, out))
        assert procs[-1].stdout.readline().strip() == "ready"
        return procs[-1]

    yield trap, base, images, out, tmp_path / "base.sqlite"
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _check_exactly_once(images: list[bytes], out: Path, db: Path) -> None:
    _wait(lambda: len(list(out.glob("*.bin"))) == len(images), 30, "the images on disk")
    assert [(out / f"5_{i}.bin").read_bytes() == data for i, data in enumerate(images)] == [
        True] * len(images)
    with sqlite3.connect(db, timeout=5) as con:
        rows = con.execute("SELECT trap_id, image_id FROM images ORDER BY image_id").fetchall()
        assert rows == [(5, i) for i in range(len(images))]  # one row each: stored once
        assert con.execute("SELECT COUNT(*) FROM fragments").fetchone()[0] == 0


def test_trap_killed_mid_image_resumes(setup) -> None:
    trap, base, images, out, db = setup
    base()
    first = trap()
    _wait(lambda: _fragments_stored(db) >= 20, 60, "fragments at the base")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = trap()
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    stats = json.loads(stdout)
    # it resumed: it did not send all fragments of every image again
    assert stats["frames"] < sum(-(-len(d) // 240) for d in images)
    _check_exactly_once(images, out, db)


def test_base_killed_mid_image_resumes(setup) -> None:
    trap, base, images, out, db = setup
    receiver = base()
    sender = trap()
    _wait(lambda: _fragments_stored(db) >= 20, 60, "fragments at the base")
    receiver.send_signal(signal.SIGKILL)
    receiver.wait()
    time.sleep(0.3)  # the trap keeps trying while nobody listens
    base()
    stdout, stderr = sender.communicate(timeout=120)
    assert sender.returncode == 0, stderr
    _check_exactly_once(images, out, db)

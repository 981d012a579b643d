"""The base station: store, decode, sidecar, index; duplicates, bad containers, kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from service_helpers import ROOT, TINY_BUNDLE, small_samples, udp_ports, write_configs

from device.codec.decoder import Decoder
from device.codec.encoder import Encoder
from device.imageio import load_image
from device.link.store import DeliveredImage
from device.saliency import boxes_for, load_megadetector
from device.service.adapters import BaseLink
from device.service.base import BaseService
from device.service.config import load_base_config
from device.service.index import ImageIndex


@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    folder = small_samples(tmp_path_factory.mktemp("samples"))
    detections = load_megadetector(folder / "megadetector.json")
    encoder = Encoder(TINY_BUNDLE, size=256)
    out = {}
    for name in ("missouri.jpg", "wellington.jpg"):
        result = encoder.encode(load_image(folder / name), boxes=boxes_for(detections, name),
                                budget=600, capture_time=1_700_000_000 + len(out), trap_id=5)
        out[name] = result.data
    return out


def _base(tmp_path):
    trap_port, base_port = udp_ports()
    _, base_cfg = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers="timelapse_s = 60")
    config = load_base_config(base_cfg)
    service = BaseService(config, decoder=Decoder(TINY_BUNDLE))
    service.link = BaseLink.from_config(config)
    return service


def _delivered(data: bytes, image_id: int, trap_id: int = 5) -> DeliveredImage:
    return DeliveredImage(trap_id, image_id, data, -101.5, 4.25, 123.0)


def test_each_image_is_stored_once_with_picture_sidecar_and_row(tmp_path, containers):
    service = _base(tmp_path)
    data = containers["missouri.jpg"]
    assert service.deliver(_delivered(data, 7))
    assert not service.deliver(_delivered(data, 7))  # handed out again after a crash
    assert service.deliver(_delivered(containers["wellington.jpg"], 8))
    rows = service.index.rows()
    assert [(r["trap_id"], r["image_id"], r["status"]) for r in rows] == [
        (5, 7, "decoded"), (5, 8, "decoded")]
    row = rows[0]
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["bytes"] == len(data)
    assert open(row["container"], "rb").read() == data
    picture = load_image(row["picture"])
    assert picture.shape[1] == 256
    sidecar = json.loads(open(row["sidecar"]).read())
    assert set(sidecar) == {"info", "detection_categories", "images"}
    entry = sidecar["images"][0]
    assert entry["file"] == os.path.basename(row["picture"])
    info = entry["wildlink"]
    assert info["capture_time"] == "2023-11-14T22:13:20Z"
    assert (info["rssi"], info["snr"], info["bytes"]) == (-101.5, 4.25, len(data))
    assert entry["detections"][0]["category"] == "1"
    assert 0.7 < entry["detections"][0]["conf"] <= 0.8  # MegaDetector's 0.7942, in 8 bits
    service.index.close()


def test_sidecar_and_row_say_which_parts_arrived(tmp_path, containers):
    from device.codec.container import unpack

    service = _base(tmp_path)
    data = containers["missouri.jpg"]
    sent = unpack(data)
    assert [p.name for p in sent.parts][-1] == "context" and len(sent.parts) >= 2
    assert service.deliver(_delivered(data[:-20], 3))  # the tail lost: the context's last band
    row = service.index.rows()[0]
    assert row["status"] == "partial"
    parts = json.loads(open(row["sidecar"]).read())["images"][0]["wildlink"]["parts"]
    assert [p["kind"] for p in parts] == [p.name for p in sent.parts]
    assert [p["status"] for p in parts[:-1]] == ["complete"] * (len(parts) - 1)
    assert parts[-1]["status"] == "partial" and parts[-1]["missing_bands"]
    assert parts[-1]["rect"] == [0, 0, sent.width, sent.height]
    report = service.config.out_dir / "reports" / "2023-11-14.csv"
    assert report.read_text().splitlines()[1].count(":complete") == len(parts) - 1
    service.index.close()


def test_undecodable_and_foreign_traps(tmp_path, containers):
    service = _base(tmp_path)
    broken = bytearray(containers["missouri.jpg"])
    broken[5] ^= 0xFF  # header damaged
    assert service.deliver(_delivered(bytes(broken), 1))
    assert not service.deliver(_delivered(containers["missouri.jpg"], 2, trap_id=9))
    rows = service.index.rows()
    assert len(rows) == 1 and rows[0]["status"] == "undecodable" and rows[0]["error"]
    assert open(rows[0]["container"], "rb").read() == bytes(broken)  # kept all the same
    service.index.close()


def _start(role: str, config, log):
    return subprocess.Popen([sys.executable, "-m", "tools.cli", role, "--config", str(config),
                             "--log-json"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _count(db, query: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(query).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _until(predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_trap_and_base_mid_image_loses_nothing(tmp_path):
    names = ("missouri.jpg", "wellington.jpg", "camdeboo.jpg")
    card = small_samples(tmp_path / "card", names=names, width=512)
    trap_port, base_port = udp_ports()
    trap_cfg, base_cfg = write_configs(
        tmp_path, trap_port=trap_port, base_port=base_port, loss=0.1, speedup=4.0,
        triggers=f'watch_dir = "{card}"\nwatch_poll_s = 0.05')
    text = trap_cfg.read_text().replace("budget = 600", "budget = 2500").replace("size = 256",
                                                                                 "size = 512")
    trap_cfg.write_text(text)
    fragments = tmp_path / "base" / "fragments.sqlite"
    index = tmp_path / "base" / "index.sqlite"
    partial = "SELECT COUNT(*) FROM fragments"
    stored = "SELECT COUNT(*) FROM images"
    logs = open(tmp_path / "services.log", "w")
    base = _start("base", base_cfg, logs)
    trap = _start("trap", trap_cfg, logs)
    try:
        _until(lambda: _count(fragments, partial) > 0)  # the base holds part of an image
        base.send_signal(signal.SIGKILL)
        base.wait()
        base = _start("base", base_cfg, logs)
        _until(lambda: _count(index, stored) >= 1 and _count(fragments, partial) > 0)
        trap.send_signal(signal.SIGKILL)  # the trap dies in the middle of the next image
        trap.wait()
        trap = _start("trap", trap_cfg, logs)
        _until(lambda: _count(index, stored) >= len(names))
        time.sleep(1.0)  # a duplicate would arrive now
    finally:
        for process in (trap, base):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        logs.close()
    assert trap.returncode == 0 and base.returncode == 0  # clean SIGTERM shutdown
    rows = ImageIndex(index).rows()
    assert len(rows) == len(names)
    assert len({r["sha256"] for r in rows}) == len(names)
    assert all(r["status"] == "decoded" for r in rows)
    decoded = {load_image(r["picture"]).shape for r in rows}
    assert decoded == {load_image(card / n).shape for n in names}


def test_one_base_serves_two_traps_on_a_shared_channel(tmp_path):
    from service_helpers import Running

    from device.link.auth import write_keys
    from device.radio.clock import ScaledClock
    from device.radio.sim import Bernoulli, SimChannel
    from device.service.config import load_trap_config
    from device.service.trap import TrapService

    write_keys(tmp_path / "keys.toml", {5: os.urandom(16), 6: os.urandom(16)})
    cards = {5: small_samples(tmp_path / "card5", names=("missouri.jpg",)),
             6: small_samples(tmp_path / "card6", names=("wellington.jpg",))}
    trap_cfg, base_cfg = write_configs(tmp_path, trap_port=1, base_port=2,
                                       triggers=f'watch_dir = "{cards[5]}"\nwatch_poll_s = 0.05')
    base_cfg.write_text(base_cfg.read_text().replace("traps = [5]", "traps = [5, 6]"))
    text = trap_cfg.read_text()
    other = (text.replace("id = 5", "id = 6").replace(str(cards[5]), str(cards[6]))
             .replace(str(tmp_path / "trap"), str(tmp_path / "trap6")))
    (tmp_path / "trap6.toml").write_text(other)
    channel = SimChannel(ScaledClock(50.0), seed=1)
    base = BaseService(load_base_config(base_cfg),
                       radio=channel.radio("base", loss=Bernoulli(0.1, seed=2)))
    traps = [TrapService(load_trap_config(path), radio=channel.radio(f"trap{n}", loss=Bernoulli(
        0.1, seed=n))) for n, path in ((5, trap_cfg), (6, tmp_path / "trap6.toml"))]
    running = [Running(base)] + [Running(t) for t in traps]
    try:
        _until(lambda: base.stored >= 2, timeout=120)
    finally:
        for service in reversed(running):
            service.close()
    rows = ImageIndex(tmp_path / "base" / "index.sqlite").rows()
    assert sorted(r["trap_id"] for r in rows) == [5, 6]
    assert all(r["status"] == "decoded" for r in rows)
    assert (tmp_path / "pictures" / "trap005").is_dir() and (tmp_path / "pictures" / "trap006").is_dir()


class _Crash(Exception):
    """Stands in for a kill between two steps of `deliver`."""


def _files(tmp_path) -> list[str]:
    """The image files the base wrote (not its databases, nor the per-day reports)."""
    return sorted(str(p.relative_to(tmp_path)) for folder in ("base", "pictures")
                  for p in (tmp_path / folder).rglob("*")
                  if p.is_file() and p.parent not in (tmp_path / "base",
                                                      tmp_path / "pictures" / "reports"))


def test_a_delivery_repeated_after_a_crash_rewrites_the_same_files(tmp_path, containers,
                                                                    monkeypatch):
    service = _base(tmp_path)
    data = containers["missouri.jpg"]

    def crash(**_row):
        raise _Crash

    monkeypatch.setattr(service.index, "add", crash)  # killed after the files, before the row
    with pytest.raises(_Crash):
        service.deliver(_delivered(data, 7))
    first = _files(tmp_path)
    monkeypatch.undo()
    time.sleep(1.1)  # a later second: a name from the receive time would differ now
    again = _base(tmp_path)
    assert again.deliver(_delivered(data, 7))
    assert _files(tmp_path) == first == [
        "base/containers/trap005/20231114T221320Z-t005-i00007.wl",
        "pictures/trap005/20231114T221320Z-t005-i00007.json",
        "pictures/trap005/20231114T221320Z-t005-i00007.png"]
    (row,) = again.index.rows()
    assert row["container"].endswith(first[0]) and row["picture"].endswith(first[2])
    again.index.close()


def test_an_image_id_reused_with_other_bytes_never_overwrites(tmp_path, containers):
    from device.service.archive import Archive, image_stem

    archive = Archive(tmp_path, tmp_path / "out", "png")
    stem = image_stem(5, 7, 1_700_000_000)
    first = archive.keep_container(5, stem, b"first")
    assert archive.keep_container(5, stem, b"first") == first  # the same image: same file
    second = archive.keep_container(5, stem, b"second")
    assert second != first and second.stem.startswith(stem + "-")
    assert (first.read_bytes(), second.read_bytes()) == (b"first", b"second")


class _FaultyDecoder:
    def decode(self, data):
        raise MemoryError("cannot allocate 7.8 GB")


def test_a_decoder_fault_quarantines_and_acknowledges(tmp_path, containers, monkeypatch):
    service = _base(tmp_path)
    service._decoder = _FaultyDecoder()
    confirmed = []
    monkeypatch.setattr(service, "_confirm", lambda trap, image: confirmed.append((trap, image)))
    data = containers["missouri.jpg"]
    assert service.deliver(_delivered(data, 3))
    assert confirmed == [(5, 3)]  # never handed out again
    (row,) = service.index.rows()
    assert row["status"] == "undecodable" and "MemoryError" in row["error"]
    assert "/quarantine/trap005/" in row["container"]
    assert open(row["container"], "rb").read() == data
    assert _files(tmp_path) == ["base/quarantine/trap005/20231114T221320Z-t005-i00003.wl"]
    service.index.close()


def test_image_stored_hooks_see_each_image_and_cannot_stop_it(tmp_path, containers):
    service = _base(tmp_path)
    seen = []

    def broken(stored):
        raise OSError("the CSV disk is full")

    service.on_stored += [seen.append, broken]
    assert service.deliver(_delivered(containers["wellington.jpg"], 4))
    (stored,) = seen
    assert (stored.trap_id, stored.image_id, stored.status) == (5, 4, "decoded")
    assert stored.stem == "20231114T221321Z-t005-i00004"
    assert stored.picture.is_file() and stored.sidecar.is_file() and stored.container.is_file()
    assert stored.boxes and stored.capture_time == 1_700_000_001
    assert len(service.index) == 1  # the failing hook was logged, the image indexed
    service.index.close()


_KILLED_IN_DECODE = """
import os, signal, sys, threading
sys.path.insert(0, {tests!r})
from device.service.base import BaseService
from device.service.config import load_base_config

class Killer:
    calls = 0
    def decode(self, data):
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer or a stalled decode ends in

service = BaseService(load_base_config({config!r}), decoder=Killer())
service.run(threading.Event(), max_images=1)
"""


def test_a_container_the_base_dies_decoding_is_quarantined_after_three_tries(tmp_path,
                                                                             containers):
    from device.link.store import FragmentStore
    from device.service.base import MAX_DECODE_ATTEMPTS

    trap_port, base_port = udp_ports()
    _, base_cfg = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers="timelapse_s = 60")
    store = FragmentStore(tmp_path / "base" / "fragments.sqlite")
    data = containers["missouri.jpg"]
    done = store.add_fragment(5, 9, 0, 1, data, fcnt=1, rssi=-90.0, snr=5.0, now=1.0)
    assert done.completed is not None  # received whole, handed to the service at start
    store.close()
    script = _KILLED_IN_DECODE.format(tests=str(ROOT / "tests"), config=str(base_cfg))
    codes = []
    for _ in range(MAX_DECODE_ATTEMPTS + 1):
        run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        codes.append(run.returncode)
    # killed in the decoder three times; the fourth start gives the container up and exits
    assert codes == [-signal.SIGKILL] * MAX_DECODE_ATTEMPTS + [0], run.stderr
    rows = ImageIndex(tmp_path / "base" / "index.sqlite").rows()
    assert [(r["image_id"], r["status"]) for r in rows] == [(9, "undecodable")]
    assert "did not finish in 3 attempts" in rows[0]["error"]
    assert open(rows[0]["container"], "rb").read() == data
    store = FragmentStore(tmp_path / "base" / "fragments.sqlite")
    assert store.undelivered() == []  # acknowledged: a restarted base never meets it again
    store.close()


def test_the_base_expires_abandoned_partial_images_on_its_schedule(tmp_path):
    from service_helpers import Running

    from device.link.store import FragmentStore
    from device.service import base as base_module

    trap_port, base_port = udp_ports()
    _, base_cfg = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers="timelapse_s = 60")
    config = load_base_config(base_cfg)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = FragmentStore(config.data_dir / "fragments.sqlite")
    now = time.time()
    old = now - base_module.PARTIAL_MAX_AGE_S - 3600  # its trap fell silent a month ago
    store.add_fragment(5, 1, 0, 3, b"old", fcnt=1, rssi=-90, snr=5, now=old)
    store.add_fragment(5, 2, 0, 3, b"new", fcnt=2, rssi=-90, snr=5, now=now)
    running = Running(BaseService(config, decoder=Decoder(TINY_BUNDLE)))
    try:
        deadline = time.monotonic() + 30
        while store.held(5, 1)[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        running.close()
    assert store.held(5, 1) == (frozenset(), 0)  # expired at start
    assert store.held(5, 2)[0] == {0}  # a partial still in progress stays
    store.close()

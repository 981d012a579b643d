"""The trap loop: mock PIR -> file camera -> real codec (tiny bundle) -> queue -> sim radio."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from gpiozero.pins.mock import MockFactory
from service_helpers import Running, small_samples, udp_ports, write_configs

from device.capture import FileCamera
from device.service.base import BaseService
from device.service.config import load_base_config, load_trap_config
from device.service.trap import TrapService


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_pir_capture_reaches_the_base_station(tmp_path):
    samples = small_samples(tmp_path / "camera")
    trap_port, base_port = udp_ports()
    trap_cfg, base_cfg = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                       triggers="pir_pin = 17\npir_holdoff_s = 0",
                                       files=samples, loss=0.1)
    factory = MockFactory()
    trap = TrapService(load_trap_config(trap_cfg), camera=FileCamera(samples),
                       pin_factory=factory)
    base = BaseService(load_base_config(base_cfg))
    running = [Running(base), Running(trap)]
    try:
        assert trap.ready.wait(60)
        pin = factory.pin(17)
        for expected in (1, 2):  # the animal walks by twice
            pin.drive_high()
            assert _wait(lambda n=expected: len(trap.captured) >= n), "no capture on motion"
            pin.drive_low()
            assert trap.triggers.pir.wait_for_no_motion(timeout=20)  # gpiozero saw the edge
        assert _wait(lambda: base.stored >= 2), "pictures did not reach the base"
    finally:
        for service in reversed(running):
            service.close()
    names = [c.name for c in trap.captured]
    assert names == ["missouri.jpg", "wellington.jpg"]
    assert all(c.trigger.kind == "motion" for c in trap.captured)
    # originals kept on the card
    assert len(list((tmp_path / "trap" / "originals").iterdir())) == 2
    # the base wrote picture, sidecar and index row per image
    from device.service.index import ImageIndex

    rows = ImageIndex(tmp_path / "base" / "index.sqlite").rows()
    assert [r["image_id"] for r in rows] == [c.image_id for c in trap.captured]
    for row, captured in zip(rows, trap.captured, strict=True):
        assert row["status"] == "decoded" and row["bytes"] == captured.bytes <= 600
        sidecar = json.loads(open(row["sidecar"]).read())
        entry = sidecar["images"][0]
        assert entry["wildlink"]["trap_id"] == 5 and entry["wildlink"]["bytes"] == row["bytes"]
        assert entry["wildlink"]["rssi"] == pytest.approx(-95.0)
        assert len(entry["detections"]) == captured.boxes == 1  # the sample's one animal
        x, y, w, h = entry["detections"][0]["bbox"]
        assert 0 <= x < 1 and 0 < w <= 1
        from device.imageio import load_image

        assert load_image(row["picture"]).shape == load_image(samples / captured.name).shape


def test_bad_file_does_not_stop_the_trap(tmp_path):
    samples = small_samples(tmp_path / "card", names=("missouri.jpg",))
    (samples / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    trap_port, base_port = udp_ports()
    trap_cfg, _ = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers=f'watch_dir = "{samples}"\nwatch_poll_s = 0.05')
    trap = TrapService(load_trap_config(trap_cfg))
    running = Running(trap)
    try:
        assert _wait(lambda: len(trap.captured) == 1)
        assert _wait(lambda: len(trap.triggers._seen) == 2)  # both files handled, none pending
    finally:
        running.close()
    assert trap.captured[0].name == "missouri.jpg"
    # restart: nothing is sent twice from the watched folder. A new file, last in path order,
    # shows the watcher ran: any old file queued again would have been handled before it.
    again = TrapService(load_trap_config(trap_cfg))
    running = Running(again)
    try:
        assert again.ready.wait(60)
        shutil.copy(samples / "missouri.jpg", tmp_path / "zzz.jpg")
        (tmp_path / "zzz.jpg").replace(samples / "zzz.jpg")  # appears whole
        assert _wait(lambda: len(again.captured) >= 1), "the restarted trap saw no new file"
    finally:
        running.close()
    assert [c.name for c in again.captured] == ["zzz.jpg"]


def test_background_model_learns_from_the_lores_frames_and_persists(tmp_path):
    from pathlib import Path

    from service_helpers import TINY_BUNDLE

    from device.codec.encoder import Encoder
    from device.service.adapters import PictureEncoder

    site = Path(__file__).resolve().parent / "data" / "site"
    camera = FileCamera(site)  # a fixed camera: eight frames of one scene, no MegaDetector file
    store = tmp_path / "background.npz"
    encoder = PictureEncoder(Encoder(TINY_BUNDLE, size=256), 5, 800, "auto", store)
    sources = [encoder.encode(camera.capture()).saliency for _ in range(7)]
    # 3 day frames, then 3 IR night frames: too little history per mode, spectral fallback
    assert sources[:6] == ["spectral"] * 6
    assert sources[6] == "background"  # then the site's own background model gives the boxes
    assert store.is_file()
    again = PictureEncoder(Encoder(TINY_BUNDLE, size=256), 5, 800, "auto", store)
    assert again.encode(camera.capture()).saliency == "background"  # survived the restart


class _Killed(Exception):
    """Stands in for kill -9 between the queue commit and the watched-file record."""


def _trap_ready_to_handle(config_path):
    from device.service.adapters import PictureEncoder, TrapLink

    trap = TrapService(load_trap_config(config_path))
    trap._encoder = PictureEncoder.from_config(trap.config)
    trap.link = TrapLink.from_config(trap.config)
    return trap


def test_a_file_queued_before_a_crash_is_not_queued_again(tmp_path, monkeypatch):
    from device.link.queue import OutboundStore
    from device.triggers import FILE, Trigger

    card = small_samples(tmp_path / "card", names=("missouri.jpg",))
    trap_port, base_port = udp_ports()
    trap_cfg, _ = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers=f'watch_dir = "{card}"')
    trigger = Trigger(FILE, 0.0, card / "missouri.jpg")
    trap = _trap_ready_to_handle(trap_cfg)

    def killed(_trigger):
        raise _Killed

    monkeypatch.setattr(trap.triggers, "done", killed)
    with pytest.raises(_Killed):
        trap.handle(trigger)
    monkeypatch.undo()
    trap.link.close()
    again = _trap_ready_to_handle(trap_cfg)  # the restart finds the file not marked done
    assert again.handle(trigger) is None
    assert str(trigger.path) in (tmp_path / "trap" / "watched.txt").read_text().split()
    again.link.close()
    assert len(OutboundStore(tmp_path / "trap" / "queue.sqlite")) == 1  # queued once


def test_a_full_card_loses_the_original_not_the_picture(tmp_path, monkeypatch, caplog):
    import errno
    import logging

    from device.service import storage
    from device.triggers import FILE, Trigger

    card = small_samples(tmp_path / "card", names=("missouri.jpg",))
    trap_port, base_port = udp_ports()
    trap_cfg, _ = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                                triggers=f'watch_dir = "{card}"')
    trap = _trap_ready_to_handle(trap_cfg)

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.shutil, "copyfile", full)
    with caplog.at_level(logging.ERROR):
        captured = trap.handle(Trigger(FILE, 0.0, card / "missouri.jpg"))
    assert captured is not None and trap.link.pending() == 1  # encoded and queued all the same
    assert "original_lost" in caplog.text
    assert list((tmp_path / "trap" / "originals").iterdir()) == []
    trap.link.close()


def test_over_budget_sends_the_coarsest_coding_without_encoding_twice(tmp_path, caplog):
    """A budget no coding meets: the trap sends the encoder's coarsest coding (its
    `BudgetError.result`), logs it, and runs the encoder (saliency, background model) once."""
    from pathlib import Path

    from service_helpers import TINY_BUNDLE

    from device.codec.encoder import Encoder
    from device.service.adapters import PictureEncoder

    site = Path(__file__).resolve().parent / "data" / "site"
    inner = Encoder(TINY_BUNDLE, size=256)
    calls = []
    original = inner.encode

    def counting(*args, **kwargs):
        calls.append(kwargs.get("budget"))
        return original(*args, **kwargs)

    inner.encode = counting
    encoder = PictureEncoder(inner, 5, 40, "auto", None)  # 40 bytes: never enough
    with caplog.at_level("WARNING"):
        encoded = encoder.encode(FileCamera(site).capture())
    assert calls == [40] and len(encoded.data) > 40  # one encode, sent over budget
    assert "over_budget" in caplog.text


def test_the_trap_sends_what_the_encoder_makes_from_the_background_boxes_of_the_lores_frame():
    """One saliency decision per picture: the trap's policy gives the same containers as the
    background model run by hand on the lores picture, then the encoder told those boxes."""
    from pathlib import Path

    from service_helpers import TINY_BUNDLE

    from device.background import BackgroundModel
    from device.codec.encoder import BudgetError, Encoder
    from device.service.adapters import PictureEncoder

    camera = FileCamera(Path(__file__).resolve().parent / "data" / "site")
    trap = PictureEncoder(Encoder(TINY_BUNDLE, size=256), 5, 800, "auto")
    plain, twin = Encoder(TINY_BUNDLE, size=256), BackgroundModel()
    sources = []
    for _ in range(10):
        picture = camera.capture()
        sent = trap.encode(picture)
        found = twin.observe(picture.lores)
        try:
            expected = plain.encode(
                picture.image, boxes=None if found is None else list(found.boxes),
                saliency="spectral" if found is None else "boxes", budget=800,
                capture_time=int(picture.captured_at), trap_id=5, name=picture.name).data
        except BudgetError as exc:
            expected = exc.result.data
        assert sent.data == expected
        sources.append(sent.saliency)
    assert "background" in sources and "spectral" in sources
    learnt = trap.saliency.background
    assert learnt.frames_seen("day") + learnt.frames_seen("ir") == 10  # each picture once

"""Trap inputs: the file and picamera2 cameras, PIR/timelapse/folder triggers, originals rotation."""

from __future__ import annotations

import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from device.capture import CameraError, FileCamera, PiCamera, is_pi_zero_2
from device.saliency import Saliency
from device.service.config import TriggerConfig
from device.service.storage import Originals
from device.triggers import FILE, MOTION, TIMELAPSE, Triggers

SAMPLES = Path(__file__).resolve().parent / "data" / "camtrap"


def test_file_camera_cycles_and_its_pictures_find_megadetector_boxes():
    camera = FileCamera(SAMPLES)
    names = [camera.capture().name for _ in range(5)]
    assert names[:4] == sorted(p.name for p in SAMPLES.glob("*.jpg"))
    assert names[4] == names[0]
    picture = camera.load(SAMPLES / "camdeboo.jpg")
    assert picture.image.dtype == np.uint8 and picture.image.ndim == 3
    assert picture.lores.ndim == 3 and picture.lores.shape[1] < 640
    assert picture.path == SAMPLES / "camdeboo.jpg"
    boxes = Saliency.for_site("auto").boxes_of(picture.path)  # the megadetector.json beside it
    assert boxes and all(0 <= b.x <= 1 for b in boxes)


def test_file_camera_without_results_has_no_boxes(tmp_path):
    shutil.copy(SAMPLES / "missouri.jpg", tmp_path / "a.jpg")
    assert Saliency.for_site("auto").boxes_of(FileCamera(tmp_path).capture().path) is None


class _FakeRequest:
    def __init__(self, main, lores):
        self.arrays = {"main": main, "lores": lores}
        self.released = False

    def make_array(self, name):
        return self.arrays[name]

    def release(self):
        self.released = True


class _FakePicamera2:
    """Stands in for libcamera at its lowest layer: records what the trap asks of it."""

    last = None

    def __init__(self):
        _FakePicamera2.last = self
        self.calls = []

    def create_still_configuration(self, main, lores, buffer_count):
        self.config = dict(main=main, lores=lores, buffer_count=buffer_count)
        return self.config

    def configure(self, config):
        self.calls.append("configure")

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def capture_metadata(self):
        self.calls.append("metadata")

    def capture_request(self):
        w, h = self.config["main"]["size"]
        lw, lh = self.config["lores"]["size"]
        main = np.full((h, w, 3), 7, np.uint8)
        yuv = np.full((lh * 3 // 2, lw), 128, np.uint8)  # neutral chroma
        yuv[:lh] = 200  # luma plane
        self.request = _FakeRequest(main, yuv)
        return self.request

    def close(self):
        self.calls.append("close")


def test_is_pi_zero_2_reads_the_device_tree_model(tmp_path):
    model = tmp_path / "model"
    model.write_text("Raspberry Pi Zero 2 W Rev 1.0\x00")
    assert is_pi_zero_2(model)
    model.write_text("Raspberry Pi 4 Model B Rev 1.5\x00")
    assert not is_pi_zero_2(model)
    assert not is_pi_zero_2(tmp_path / "missing")  # not a Pi (a laptop, CI)


def test_picamera_still_and_lores_streams(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=_FakePicamera2))
    monkeypatch.setattr("device.capture.is_pi_zero_2", lambda: True)  # tested above
    camera = PiCamera(size=(640, 480), lores=(160, 120), settle_frames=3)
    fake = _FakePicamera2.last
    assert fake.config["buffer_count"] == 1
    assert fake.config["main"] == {"size": (640, 480), "format": "BGR888"}
    assert fake.config["lores"]["format"] == "YUV420"
    picture = camera.capture()
    assert picture.image.shape == (480, 640, 3)
    assert picture.lores.shape == (120, 160, 3) and (picture.lores == 200).all()  # grey
    assert fake.calls.count("metadata") == 3 and fake.calls[-1] == "stop"
    assert fake.request.released
    camera.close()


def test_picamera_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="python3-picamera2"):
        PiCamera()


def test_pir_motion_with_mock_pins_and_holdoff(tmp_path):
    factory = MockFactory()
    triggers = Triggers(TriggerConfig(pir_pin=17, pir_holdoff_s=3600), tmp_path, factory)
    triggers.start()
    try:
        assert triggers.wait(timeout=0.05) is None
        pin = factory.pin(17)
        pin.drive_high()
        trigger = triggers.wait(timeout=10)
        assert trigger is not None and trigger.kind == MOTION and trigger.priority == 0
        pin.drive_low()
        pin.drive_high()  # within the hold-off: ignored
        assert triggers.wait(timeout=0.5) is None
    finally:
        triggers.close()


def test_timelapse_triggers_are_low_priority(tmp_path):
    triggers = Triggers(TriggerConfig(timelapse_s=0.01), tmp_path)
    triggers.start()
    try:
        trigger = triggers.wait(timeout=10)
        assert trigger.kind == TIMELAPSE and trigger.priority > 0
    finally:
        triggers.close()


def test_watched_folder_sends_each_file_once_across_restarts(tmp_path):
    watch, state = tmp_path / "card", tmp_path / "state"
    watch.mkdir()
    shutil.copy(SAMPLES / "missouri.jpg", watch / "IMG_0001.JPG")
    (watch / "notes.txt").write_text("not a picture")
    config = TriggerConfig(watch_dir=watch, watch_poll_s=0.01)
    triggers = Triggers(config, state)
    triggers.start()
    try:
        trigger = triggers.wait(timeout=10)
        assert trigger.kind == FILE and trigger.path == watch / "IMG_0001.JPG"
        assert triggers.wait(timeout=0.2) is None  # pending, not repeated
        triggers.done(trigger)
    finally:
        triggers.close()
    # Restart: the done file is remembered; a file not marked done comes again.
    shutil.copy(SAMPLES / "wellington.jpg", watch / "IMG_0002.JPG")
    again = Triggers(config, state)
    again.start()
    try:
        trigger = again.wait(timeout=10)
        assert trigger.path == watch / "IMG_0002.JPG"
        assert again.wait(timeout=0.2) is None
    finally:
        again.close()


def test_watched_folder_finds_dcim_subfolders_and_waits_for_a_file_being_written(tmp_path):
    watch, state = tmp_path / "DCIM", tmp_path / "state"
    folder = watch / "100MEDIA"
    folder.mkdir(parents=True)
    (watch / ".Trashes").mkdir()
    shutil.copy(SAMPLES / "missouri.jpg", watch / ".Trashes" / "IMAG0000.JPG")
    shutil.copy(SAMPLES / "missouri.jpg", folder / "IMAG0001.JPG")
    data = (SAMPLES / "wellington.jpg").read_bytes()
    (folder / "IMAG0002.JPG").write_bytes(data[: len(data) // 2])  # the camera is writing it
    triggers = Triggers(TriggerConfig(watch_dir=watch), state)  # polled by hand: no thread
    triggers.scan()
    assert triggers.wait(timeout=0) is None  # nothing is taken on first sight
    triggers.scan()
    assert triggers.wait(timeout=0).path == folder / "IMAG0001.JPG"
    assert triggers.wait(timeout=0) is None  # half a JPEG: no end marker yet
    (folder / "IMAG0002.JPG").write_bytes(data)
    triggers.scan()
    assert triggers.wait(timeout=0) is None  # it changed since the last poll
    triggers.scan()
    assert triggers.wait(timeout=0).path == folder / "IMAG0002.JPG"
    for _ in range(3):
        triggers.scan()
    assert triggers.wait(timeout=0) is None  # the hidden folder is not the camera's


def test_watched_jpeg_without_end_marker_is_taken_once_it_stays_unchanged(tmp_path):
    from device.triggers import EOI_PATIENCE

    data = (SAMPLES / "missouri.jpg").read_bytes()
    (tmp_path / "IMAG0001.JPG").write_bytes(data[:-100])
    triggers = Triggers(TriggerConfig(watch_dir=tmp_path), tmp_path / "state")
    for _ in range(EOI_PATIENCE):
        triggers.scan()
        assert triggers.wait(timeout=0) is None
    triggers.scan()
    assert triggers.wait(timeout=0).path == tmp_path / "IMAG0001.JPG"


def test_jpeg_end_marker_decides_when_a_file_is_written(tmp_path):
    from device.triggers import written

    data = (SAMPLES / "missouri.jpg").read_bytes()
    cases = {"whole.jpg": data, "padded.jpg": data + b"\x00" * 700 + b"\xff" * 3,
             "half.jpg": data[:-200], "other.png": b"not checked"}
    for name, body in cases.items():
        (tmp_path / name).write_bytes(body)
    assert [written(tmp_path / n) for n in cases] == [True, True, False, True]


def test_file_camera_takes_the_camera_time_from_exif_else_the_file_time(tmp_path):
    from device.imageio import save_image

    picture = FileCamera(SAMPLES).load(SAMPLES / "camdeboo.jpg")
    assert (picture.captured_at, picture.time_source) == (1540187400.0, "exif")  # 2018-10-22 05:50
    plain = tmp_path / "plain.png"
    save_image(plain, np.zeros((32, 32, 3), np.uint8))
    os.utime(plain, (1_600_000_000, 1_600_000_000))
    picture = FileCamera(plain).capture()
    assert (picture.captured_at, picture.time_source) == (1_600_000_000.0, "mtime")


def test_file_camera_replays_a_card_with_subfolders_in_path_order(tmp_path):
    for folder, name in (("101MEDIA", "IMAG0001.JPG"), ("100MEDIA", "IMAG0002.JPG"),
                         ("100MEDIA", "IMAG0010.JPG")):
        (tmp_path / folder).mkdir(exist_ok=True)
        shutil.copy(SAMPLES / "missouri.jpg", tmp_path / folder / name)
    camera = FileCamera(tmp_path, loop=False)
    assert [camera.capture().name for _ in range(3)] == [
        "IMAG0002.JPG", "IMAG0010.JPG", "IMAG0001.JPG"]


def test_exif_times_parse_or_give_none():
    from device.imageio import parse_exif_time

    assert parse_exif_time("2018:10:22 05:50:00") == 1540187400.0
    assert parse_exif_time(b"2018:10:22 05:50:00\x00") == 1540187400.0
    assert parse_exif_time("2018-10-22 07:50:00", "+02:00") == 1540187400.0
    for bad in ("0000:00:00 00:00:00", "    :  :     :  :  ", "2018:02:30 12:00:00", None, 7,
                "1969:12:31 23:59:59"):
        assert parse_exif_time(bad) is None


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_decoded_pictures_carry_capture_time_and_trap_id_in_exif(tmp_path, suffix):
    from PIL import Image

    from device.imageio import exif_capture_time, picture_exif, save_image

    path = tmp_path / f"picture{suffix}"
    exif = picture_exif(1540187400.0, 5, "wildlink trap 5 image 7")
    save_image(path, np.zeros((32, 32, 3), np.uint8), exif=exif)
    assert exif_capture_time(path) == 1540187400.0
    with Image.open(path) as im:
        tags = im.getexif()
        assert tags[0x010E] == "wildlink trap 5 image 7"
        assert tags.get_ifd(0x8769)[0xA431] == "5"


def test_originals_rotate_oldest_first(tmp_path):
    free = {"bytes": 10 << 20}
    originals = Originals(tmp_path / "orig", min_free_mb=5, free_bytes=lambda p: free["bytes"])
    image = np.zeros((32, 32, 3), np.uint8)
    first = originals.keep(1_000_000, "a.jpg", image, None)
    second = originals.keep(1_000_100, "b.jpg", None, SAMPLES / "missouri.jpg")
    assert first.exists() and second.read_bytes() == (SAMPLES / "missouri.jpg").read_bytes()
    free["bytes"] = 1 << 20  # the card fills up
    calls = iter([1 << 20, 8 << 20])
    originals._free = lambda p: next(calls)
    removed = originals.rotate()
    assert removed == [first] and not first.exists() and second.exists()


def test_yuv420_chroma_lands_in_the_right_channels():
    from device.capture import yuv420_to_rgb

    yuv = np.full((12, 8), 128, np.uint8)
    yuv[:8] = 100
    yuv[8:10] = 128 + 50  # U (blue difference) up
    rgb = yuv420_to_rgb(yuv, 8).astype(int)
    assert rgb.shape == (8, 8, 3)
    assert (rgb[..., 2] > rgb[..., 0]).all() and (rgb[..., 0] == 100).all()

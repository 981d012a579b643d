"""Saliency sources: MegaDetector boxes, the per-site background model, spectral residual."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

from device.background import BackgroundConfig, BackgroundModel
from device.boxes import (
    Box,
    component_boxes,
    connected_components,
    info_bar_rows,
    levels_from_boxes,
    merge_boxes,
)
from device.errors import ConfigError
from device.saliency import (
    SaliencyError,
    boxes_for,
    compute_saliency,
    load_megadetector,
    spectral_residual,
)


def _load(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_megadetector_boxes_keep_animals_above_threshold_in_file_order():
    detections = load_megadetector(SAMPLES / "camtrap" / "megadetector.json")
    raw = json.loads((SAMPLES / "camtrap" / "megadetector.json").read_text())
    for entry in raw["images"]:
        expected = [
            d["bbox"]
            for d in entry["detections"] or []
            if d["category"] == "1" and d["conf"] >= 0.2
        ]
        got = boxes_for(detections, SAMPLES / "camtrap" / entry["file"])
        assert [[b.x, b.y, b.w, b.h] for b in got] == expected
    camdeboo = boxes_for(detections, "somewhere/else/camdeboo.jpg")
    assert len(camdeboo) == 4 and all(b.conf >= 0.2 for b in camdeboo)
    assert (
        len(load_megadetector(SAMPLES / "camtrap" / "megadetector.json", 0.9)["camdeboo.jpg"]) == 2
    )


def test_megadetector_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SaliencyError):
        load_megadetector(bad)
    bad.write_text('{"info": {}}')
    with pytest.raises(SaliencyError, match="not a MegaDetector"):
        load_megadetector(bad)
    detections = load_megadetector(SAMPLES / "camtrap" / "megadetector.json")
    with pytest.raises(SaliencyError, match="no entry"):
        boxes_for(detections, "unknown.jpg")
    many = {"images": [{"file": "a.jpg", "detections": [
        {"category": "1", "conf": 0.3 + i / 100, "bbox": [i / 40, 0, 0.02, 0.02]}
        for i in range(20)
    ]}]}
    path = tmp_path / "many.json"
    path.write_text(json.dumps(many))
    boxes = load_megadetector(path)["a.jpg"]
    assert len(boxes) == 16 and [b.x for b in boxes] == sorted(b.x for b in boxes)
    assert min(b.conf for b in boxes) == pytest.approx(0.34)


def test_levels_from_boxes():
    levels = levels_from_boxes([Box(0.25, 0.5, 0.5, 0.25)], 8, 8, background=0.2)
    assert levels.dtype == np.float32
    assert (levels[4:6, 2:6] == 1).all() and levels.sum() == pytest.approx(8 + 56 * 0.2)
    np.testing.assert_array_equal(levels_from_boxes([], 3, 4), np.ones((3, 4)))


def test_connected_components_and_boxes():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 2:6] = True  # 12 cells
    mask[10:18, 20:29] = True  # 72 cells
    mask[5, 6] = True  # touches the first diagonally: 8-connected
    labels, count = connected_components(mask)
    assert count == 2 and labels[2, 2] == labels[5, 6] != labels[10, 20]
    boxes = component_boxes(mask)
    # a region, not a detection: confidence 0 (the base never calls it an animal)
    assert boxes[0] == Box(20 / 30, 10 / 20, 9 / 30, 8 / 20, conf=0.0)
    assert len(component_boxes(mask, min_area=0.05)) == 1
    spiral = np.zeros((9, 9), bool)
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = True
    assert connected_components(spiral)[1] == 1
    merged = merge_boxes([Box(0, 0, 0.5, 0.5), Box(0.4, 0.4, 0.2, 0.2), Box(0.8, 0.8, 0.1, 0.1)])
    assert len(merged) == 2 and merged[0].w == pytest.approx(0.6) and merged[0].y == 0


def test_info_bar_rows_finds_burned_in_strip():
    image = _load(SAMPLES / "site" / "EK000001.jpg")
    from device.boxes import luma

    top, bottom = info_bar_rows(luma(image))
    assert top == 0 and 0.02 * image.shape[0] < bottom < 0.12 * image.shape[0]


def test_spectral_residual_on_samples():
    image = _load(SAMPLES / "camtrap" / "camdeboo.jpg")
    result = spectral_residual(image)
    assert result.source == "spectral" and result.levels.shape == image.shape[:2]
    assert 0.0 <= result.levels.min() and result.levels.max() == 1.0
    assert 1 <= len(result.boxes) <= 16
    assert all(b.conf == 0.0 for b in result.boxes)  # regions, not detections
    # The largest deer (MegaDetector conf 0.94) overlaps a spectral box.
    deer = max(load_megadetector(SAMPLES / "camtrap" / "megadetector.json")["camdeboo.jpg"],
               key=lambda b: b.conf)
    assert any(
        b.x < deer.x + deer.w
        and deer.x < b.x + b.w
        and b.y < deer.y + deer.h
        and deer.y < b.y + b.h
        for b in result.boxes
    )
    flat = spectral_residual(np.full((64, 64, 3), 100, np.uint8))
    assert flat.boxes == () and flat.levels.shape == (64, 64)


def _moving_square_frames(n: int, gain=None):
    rng = np.random.default_rng(0)
    scene = rng.integers(40, 200, (96, 128, 3)).astype(np.float32)
    scene = np.repeat(np.repeat(scene[::4, ::4], 4, 0), 4, 1)  # some texture
    frames = []
    for i in range(n):
        frame = scene * (1.0 if gain is None else gain[i])
        frame = frame + rng.normal(0, 2, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def test_background_model_finds_what_moved_despite_exposure_change():
    config = BackgroundConfig(width=128, exclude_bottom=0.0)
    model = BackgroundModel(config)
    frames = _moving_square_frames(6, gain=[1.0, 1.1, 0.9, 1.0, 1.0, 1.6])
    for frame in frames[:4]:
        assert model.observe(frame) is None or model.frames_seen("day") >= 3
    assert model.ready(frames[4])
    empty = model.observe(frames[4])
    assert empty is not None and empty.boxes == ()
    animal = frames[5].copy()  # 60% brighter exposure *and* a dark animal
    animal[40:70, 60:100] = 10
    result = model.observe(animal)
    assert result is not None and len(result.boxes) == 1
    box = result.boxes[0]
    assert abs(box.x - 60 / 128) < 0.05 and abs(box.y - 40 / 96) < 0.06
    assert abs(box.w - 40 / 128) < 0.1 and abs(box.h - 30 / 96) < 0.1
    assert result.levels[55, 80] == 1.0 and result.levels[5, 5] == 0.0


def test_background_model_keeps_ir_apart_resets_and_persists(tmp_path):
    model = BackgroundModel(BackgroundConfig(width=128, exclude_bottom=0.0))
    day = _moving_square_frames(4)
    night = [np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8) for f in day]
    for d, n in zip(day[:3], night[:3], strict=True):
        model.observe(d)
        model.observe(n)
    assert model.mode_of(night[0]) == "ir" and model.frames_seen("ir") == 3
    assert model.observe(night[3]).boxes == ()
    path = tmp_path / "bg.npz"
    model.save(path)
    again = BackgroundModel.load(path)
    assert again.frames_seen("day") == 3 and again.frames_seen("ir") == 4
    assert again.config == model.config
    other = np.random.default_rng(5).integers(0, 255, day[0].shape, dtype=np.uint8)
    assert again.observe(other) is None  # a new scene: history restarts
    assert again.frames_seen("day") == 1
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ConfigError):
        BackgroundModel.load(tmp_path / "junk.npz")


def test_background_model_learns_peru_site(shared_data):
    """The tapir sequence of sites/peru-sdzg1 (IR frames 37-39) is found after learning."""
    frames = sorted((shared_data / "sites" / "peru-sdzg1").glob("*.jpg"))[:39]
    if len(frames) < 39:
        pytest.skip("peru-sdzg1 not complete")
    model = BackgroundModel()
    results = [model.observe(_load(f)) for f in frames]
    tapir = results[-1]
    assert tapir is not None and tapir.boxes
    big = tapir.boxes[0]  # the tapir stands left of centre, about a third of the frame high
    assert 0.1 < big.x < 0.4 and big.h > 0.25


def test_compute_saliency_modes():
    image = _load(SAMPLES / "site" / "EK000001.jpg")
    boxes = [Box(0.1, 0.1, 0.2, 0.2)]
    assert compute_saliency(image, "none").levels.min() == 1.0
    assert compute_saliency(image, "auto", boxes=boxes).source == "boxes"
    assert compute_saliency(image, "auto").source == "spectral"
    model = BackgroundModel()
    assert compute_saliency(image, "background", background=model).source == "spectral"
    for path in sorted((SAMPLES / "site").glob("*.jpg"))[1:6]:
        compute_saliency(_load(path), "auto", background=model)
    assert model.frames_seen("day") + model.frames_seen("ir") == 6
    with pytest.raises(SaliencyError):
        compute_saliency(image, "boxes")
    with pytest.raises(SaliencyError):
        compute_saliency(image, "magic")


def test_the_policy_learns_the_lores_frame_once_and_is_lenient_only_for_a_trap(tmp_path):
    from device.capture import lores_rgb
    from device.saliency import Saliency

    image = _load(SAMPLES / "site" / "EK000001.jpg")[:192, :256]
    lores = lores_rgb(image, 64)
    boxes = [Box(0.1, 0.1, 0.2, 0.2)]
    model = BackgroundModel()
    policy = Saliency("background", model)
    policy(image, boxes=boxes, lores=lores)  # mode "background" ignores boxes, learns the lores
    assert model.frames_seen("day") == 1
    assert model._history["day"][0].shape == model.features(lores).shape
    assert Saliency("auto", model)(image, boxes=boxes, lores=lores).source == "boxes"
    assert model.frames_seen("day") == 1  # boxes given: the background model is not consulted
    with pytest.raises(SaliencyError, match="needs boxes"):
        Saliency("boxes")(image)
    trap = Saliency.for_site("boxes", tmp_path / "bg.npz")
    assert trap.background is None and trap(image).source == "spectral"  # skipped by the detector
    with pytest.raises(SaliencyError, match="unknown saliency mode"):
        Saliency("magic")


def test_the_trap_config_takes_the_policys_own_modes():
    from device.saliency import MODES
    from device.service import config

    assert config.SALIENCY_METHODS is MODES  # one list: a mode the policy adds is configurable

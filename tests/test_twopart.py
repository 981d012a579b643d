"""Two-part coding: regions, info bars and context in one container, composed at the base."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from device.codec import bilevel, compose, infobar, twopart
from device.codec.container import (
    KIND_CONTEXT,
    KIND_INFOBAR,
    KIND_REGION,
    ContainerError,
    Part,
    QuantBox,
    pack,
    unpack,
)
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder, Picture

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_bundle"


@pytest.fixture(scope="module")
def tiny():
    return Encoder(TINY), Decoder(TINY)


def test_bilevel_round_trip_and_damage_never_raises():
    rng = np.random.default_rng(3)
    for shape in ((1, 1), (7, 5), (40, 130)):
        bitmap = rng.random(shape) < 0.2
        assert (bilevel.decode(bilevel.encode(bitmap), *shape) == bitmap).all()
    data = bilevel.encode(rng.random((20, 60)) < 0.3)
    assert bilevel.decode(data[:3], 20, 60).shape == (20, 60)  # a cut stream still decodes
    with pytest.raises(ContainerError):
        bilevel.decode(data, 0, 60)


def test_info_bar_is_found_and_stays_sharp(missouri):
    image, _ = missouri
    rects = infobar.find_bars(image)
    assert rects and all(r[2] - r[0] == image.shape[1] for r in rects)
    part = infobar.code_bar(image, rects[-1])
    assert infobar.part_bytes(part) < 400
    bar = infobar.decode_bar(part)
    x0, y0, x1, y1 = rects[-1]
    original = image[y0:y1, x0:x1].astype(float).mean(axis=2) > 128
    decoded = bar.astype(float).mean(axis=2) > 128
    assert np.mean(original == decoded) > 0.97  # the text's pixels, not a blur of them
    flat = np.full((300, 400, 3), 90, np.uint8)
    assert infobar.find_bars(flat) == []  # a flat strip without text is not a bar


def test_region_rects_merge_close_boxes_and_keep_a_margin():
    boxes = (QuantBox(10, 10, 30, 30, 200), QuantBox(31, 10, 50, 30, 200),
             QuantBox(200, 200, 220, 220, 200))
    rects = twopart.region_rects(boxes, 1000, 1000)
    assert len(rects) == 2
    big = rects[0]
    assert big[0] < 10 * 1000 // 255 and big[2] > 50 * 1000 // 255  # merged, with margin
    many = tuple(QuantBox(20 * i, 5, 20 * i + 5, 10, 9) for i in range(10))
    assert len(twopart.region_rects(many, 4000, 4000)) <= twopart.MAX_REGIONS


def test_two_part_container_fits_and_every_part_decodes_as_coded(tiny, missouri):
    encoder, decoder = tiny
    image, boxes = missouri
    result = encoder.encode(image, boxes=boxes, budget=3000, capture_time=5,
                            name="/media/card/DCIM/100MEDIA/IMAG0042.JPG")
    assert len(result.data) <= 3000
    c = unpack(result.data)
    assert c.name == "IMAG0042.JPG"  # the camera's file name reaches the base
    kinds = [p.kind for p in c.parts]
    assert kinds[0] == KIND_REGION and kinds[-1] == KIND_CONTEXT  # regions first
    assert KIND_INFOBAR in kinds
    decoded = decoder.decode(result.data)
    assert decoded.image.shape == image.shape and decoded.incomplete == {}
    assert [p.status for p in decoded.parts] == ["complete"] * len(c.parts)


def test_decoder_y_hat_equals_the_encoders_for_each_part(tiny, missouri):
    encoder, decoder = tiny
    image, boxes = missouri
    quant = tuple(QuantBox.from_box(b) for b in boxes)
    picture = Picture(image, quant, 0, 0, {})
    regions = twopart._Regions(encoder, picture, twopart.region_rects(quant, *image.shape[1::-1]),
                               1.5, True)
    small = image[::4, ::4].copy()
    context = encoder.context_part(picture, small, np.ones(small.shape[:2], np.float32), False, 0)
    analysed = [*regions.parts, context]
    steps = [3, 0, 5][: len(analysed)]
    steps += [2] * (len(analysed) - len(steps))
    container = picture.container(encoder.bundle.model_id,
                                [p.code(0, j) for p, j in zip(analysed, steps, strict=True)])
    data = pack(container)
    unpacked = unpack(data)
    for p, j, part in zip(analysed, steps, unpacked.parts, strict=True):
        y_hat, missing = decoder.decode_latents(unpacked, part)
        assert missing == ()
        np.testing.assert_array_equal(y_hat, p.y_hat(0, j))


def test_lost_context_and_lost_region_leave_the_rest(tiny, missouri):
    encoder, decoder = tiny
    image, boxes = missouri
    data = encoder.encode(image, boxes=boxes, budget=3000, capture_time=5).data
    c = unpack(data)
    whole = decoder.decode(data)
    ctx = c.parts[-1]
    # the tail lost: the context's streams are gone, the region still decodes
    cut = data[: len(data) - len(ctx.z) - sum(len(b.data) for b in ctx.bands)]
    lost = decoder.decode(cut)
    assert lost.parts[-1].status == "lost" and lost.parts[0].status == "complete"
    x0, y0, x1, y1 = c.parts[0].rect
    inner = (slice(y0 + 20, y1 - 20), slice(x0 + 20, x1 - 20))
    np.testing.assert_array_equal(lost.image[inner], whole.image[inner])  # region untouched
    covered = np.zeros(image.shape[:2], bool)
    for p in c.parts[:-1]:
        covered[p.rect[1] : p.rect[3], p.rect[0] : p.rect[2]] = True
    assert (lost.image[~covered] == compose.GREY).all()  # no context: grey around
    # a region whose z fails its CRC: the context shows through where it was
    data2 = bytearray(data)
    data2[data.index(c.parts[0].z)] ^= 0xFF
    broken = decoder.decode(bytes(data2))
    assert broken.parts[0].status == "lost" and broken.image.shape == image.shape
    assert not np.array_equal(broken.image[inner], whole.image[inner])


def test_feathered_seam_has_no_step():
    part = Part(KIND_REGION, (40, 40, 140, 140), 100, 100, b"", ())
    dark = np.zeros((100, 100, 3), np.uint8)
    light = np.full((200, 200, 3), 200, np.uint8)
    out = compose.compose(200, 200, [(replace(part, kind=KIND_CONTEXT, rect=(0, 0, 200, 200),
                                              coded_width=200, coded_height=200), light),
                                     (part, dark)]).astype(int)
    row = out[90, :, 0]
    assert row[0] == 200 and row[90] == 0
    assert np.max(np.abs(np.diff(row))) <= 200 // compose.feather_width(part) + 2
    alpha = compose.feather(10, 10, (False, True, False, False), 4)
    assert alpha[0, 0] == 1 and alpha[-1, 0] < 0.2  # only the flagged edge ramps


def test_version_1_files_decode_exactly_as_before():
    expected = json.loads((DATA / "v1" / "expected.json").read_text())
    import hashlib

    from device.codec.registry import BundleRegistry

    decoder = BundleRegistry()  # the files name the bundle that coded them (an earlier default)

    for name, want in expected.items():
        result = decoder.decode((DATA / "v1" / f"{name}.wl").read_bytes())
        assert result.header.version == 1 and list(result.image.shape) == want["shape"]
        assert hashlib.sha256(result.y_hat.tobytes()).hexdigest() == want["y_hat_sha256"]

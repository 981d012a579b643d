"""The shipped bundles: the default model and the site-adapted examples beside it.

A fresh checkout must encode and decode with them bit-exactly (DESIGN.md determinism rule),
and the site examples must share the default's decoder files byte for byte, so one base
station decodes every trap of the site.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES

from device.codec.bundle import Bundle
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder
from device.codec.registry import BundleRegistry
from device.imageio import load_image, resize
from device.saliency import boxes_for, load_megadetector
from tools.metrics import psnr
from training.sitebundle import DECODER_FILES

MODELS = ROOT / "device" / "models"
DEFAULT = MODELS / "default"
SITE_BUNDLES = sorted(p.parent for p in MODELS.glob("sites/*/*/manifest.json"))
SAMPLE = SAMPLES / "camtrap" / sorted(p.name for p in (SAMPLES / "camtrap").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def coded():
    """One camtrap sample at long side 256 through the default bundle, with its boxes."""
    image = load_image(SAMPLE)
    boxes = boxes_for(load_megadetector(SAMPLES / "camtrap" / "megadetector.json"), SAMPLE.name)
    encoder = Encoder(DEFAULT, size=256)
    first = encoder.encode(image, boxes=boxes, capture_time=1)
    again = Encoder(DEFAULT, size=256).encode(image, boxes=boxes, capture_time=1)
    return image, first, again


def test_default_bundle_is_small_and_its_id_matches_its_files():
    bundle = Bundle.load(DEFAULT)  # verifies the model id against the files
    size = sum(p.stat().st_size for p in DEFAULT.iterdir() if p.is_file())
    assert size < 4_000_000
    assert bundle.model_id in (DEFAULT / "MODEL_CARD.md").read_text()


def test_default_bundle_encodes_repeatably_and_decodes_the_same_picture_twice(coded):
    image, first, again = coded
    assert first.data == again.data  # a second encoder: same bytes
    decoder = Decoder(DEFAULT)
    one, two = decoder.decode(first.data), decoder.decode(first.data)
    np.testing.assert_array_equal(one.image, two.image)
    assert one.image.shape == image.shape and one.missing_bands == ()
    small = decoder.decode(first.data, original_size=False).image
    reference = resize(image, *small.shape[:2])
    assert psnr(reference, small) > 20  # a trained model, not noise


def test_default_bundle_decodes_bit_exactly_in_a_fresh_process(coded, tmp_path):
    _, first, _ = coded
    (tmp_path / "c.wl").write_bytes(first.data)
    script = (
        "import hashlib, sys\n"
        "from device.codec.decoder import Decoder\n"
        "decoder = Decoder()\n"
        "c = decoder.unpack(open(sys.argv[1], 'rb').read())\n"
        "for part in c.parts:\n"
        "    y_hat, _ = decoder.decode_latents(c, part)\n"
        "    print(hashlib.sha256(y_hat.tobytes()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.wl")], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300).stdout
    decoder = Decoder(DEFAULT)
    c = decoder.unpack(first.data)
    here = [hashlib.sha256(decoder.decode_latents(c, p)[0].tobytes()).hexdigest() for p in c.parts]
    assert out.split() == here and here


@pytest.mark.skipif(not SITE_BUNDLES, reason="no site-adapted example bundles shipped")
@pytest.mark.parametrize("folder", SITE_BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_site_bundles_share_their_base_decoder_and_round_trip(folder):
    """Each site example keeps the decoder of the shipped bundle it was adapted from (the
    default, or an earlier default kept in retired/), so one base decodes the whole site."""
    bundle = Bundle.load(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    base = BundleRegistry().bundle(manifest["decoder_from"]["model_id"])
    assert bundle.model_id != base.model_id  # its own encoder
    for name in DECODER_FILES:
        assert bundle.file(name).read_bytes() == base.file(name).read_bytes(), name
    image = load_image(SAMPLE)
    data = Encoder(folder, size=256).encode(image, capture_time=1).data
    assert Decoder(folder).decode(data).image.shape == image.shape

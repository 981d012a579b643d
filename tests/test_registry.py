"""One base station, all bundles: the registry picks each container's bundle by its model id."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from service_helpers import ROOT, TINY_BUNDLE, udp_ports, write_configs

from device.codec.bundle import DEFAULT_BUNDLE, Bundle
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder
from device.codec.registry import SHIPPED_MODELS, BundleRegistry, find_bundles
from device.errors import BundleError, ConfigError, ContainerError
from device.imageio import load_image
from device.link.store import DeliveredImage
from device.service.base import BaseService
from device.service.config import load_base_config

SITE_BUNDLE = ROOT / "device" / "models" / "sites" / "peru-sdzg1" / "full"
SAMPLE = ROOT / "tests" / "data" / "camtrap" / "missouri.jpg"


@pytest.fixture(scope="module")
def registry():
    return BundleRegistry()


@pytest.fixture(scope="module")
def coded():
    """One small container per model: the shipped default, a site bundle and the tiny one."""
    image = load_image(SAMPLE)
    return {name: Encoder(path, size=192).encode(image, saliency="none", capture_time=1_700_000_000 + i,
                                                 trap_id=5).data
            for i, (name, path) in enumerate((("default", DEFAULT_BUNDLE), ("site", SITE_BUNDLE),
                                              ("tiny", TINY_BUNDLE)))}


def test_the_shipped_models_are_the_default_every_site_bundle_and_the_retired_ones(registry):
    sites = sorted(p for p in (SHIPPED_MODELS / "sites").glob("*/*") if p.is_dir())
    retired = sorted(p for p in (SHIPPED_MODELS / "retired").glob("*") if p.is_dir())
    assert retired, "earlier defaults must stay installed: traps not yet reflashed use them"
    assert find_bundles(SHIPPED_MODELS) == sorted([DEFAULT_BUNDLE, *sites, *retired])
    assert Bundle.load(DEFAULT_BUNDLE).model_id in registry
    assert Bundle.load(SITE_BUNDLE).model_id in registry
    assert len(registry) == 1 + len(sites) + len(retired)


def test_containers_of_the_default_and_a_site_bundle_decode_through_one_registry(coded):
    registry = BundleRegistry()
    assert registry.loaded == ()  # no interpreter before a file needs one
    for name, path in (("default", DEFAULT_BUNDLE), ("site", SITE_BUNDLE)):
        result = registry.decode(coded[name])
        expected = Decoder(path).decode(coded[name])
        assert result.header.model_id == Bundle.load(path).model_id
        assert np.array_equal(result.image, expected.image)
    assert registry.loaded == tuple(sorted(Bundle.load(p).model_id
                                           for p in (DEFAULT_BUNDLE, SITE_BUNDLE)))


def test_an_unknown_model_id_names_it_and_the_installed_ids(registry, coded):
    with pytest.raises(ContainerError) as caught:
        registry.decode(coded["tiny"])
    message = str(caught.value)
    assert "09e5e142" in message and "not installed" in message
    assert all(model_id in message for model_id in registry.ids)
    assert "\n" not in message


def test_a_folder_of_bundles_and_a_byte_identical_copy(tmp_path, coded):
    shelf = tmp_path / "bundles"
    shutil.copytree(TINY_BUNDLE, shelf / "old-defaults" / "tiny")
    shutil.copytree(TINY_BUNDLE, tmp_path / "copy")  # e.g. what make flash installed
    registry = BundleRegistry([shelf, tmp_path / "copy"], shipped=False)
    assert registry.ids == ("09e5e142",)
    assert registry.bundle("09e5e142").path == shelf / "old-defaults" / "tiny"  # the first
    assert registry.decode(coded["tiny"]).header.model_id == "09e5e142"


def test_two_different_bundles_claiming_one_id_are_refused(tmp_path):
    shutil.copytree(TINY_BUNDLE, tmp_path / "a" / "tiny")
    shutil.copytree(TINY_BUNDLE, tmp_path / "b" / "tiny")
    manifest = tmp_path / "b" / "tiny" / "manifest.json"
    fields = json.loads(manifest.read_text())
    fields["metrics"] = {"note": "another export under the same id"}
    manifest.write_text(json.dumps(fields))
    with pytest.raises(BundleError, match="both claim model id 09e5e142") as caught:
        BundleRegistry([tmp_path / "a", tmp_path / "b"], shipped=False)
    assert str(tmp_path / "a" / "tiny") in str(caught.value)
    assert str(tmp_path / "b" / "tiny") in str(caught.value)


def test_missing_and_empty_folders_are_refused(tmp_path):
    with pytest.raises(BundleError, match="no bundle folder"):
        BundleRegistry([tmp_path / "nowhere"], shipped=False)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(BundleError, match="holds no model bundle"):
        BundleRegistry([tmp_path / "empty"], shipped=False)


def _base_config(tmp_path, codec: str = ""):
    trap_port, base_port = udp_ports()
    _, path = write_configs(tmp_path, trap_port=trap_port, base_port=base_port,
                            triggers="timelapse_s = 60")
    path.write_text(path.read_text() + codec)
    return path


def test_the_base_config_names_more_bundle_folders(tmp_path):
    (tmp_path / "shelf").mkdir()
    config = load_base_config(_base_config(tmp_path, '[codec]\nbundles = ["shelf"]\n'))
    assert config.bundles == (tmp_path / "shelf",)
    assert config.bundle_folders == (TINY_BUNDLE, tmp_path / "shelf")
    for codec, message in (('[codec]\nbundles = "shelf"\n', "codec.bundles: must be a list"),
                           ('[codec]\nbundles = ["gone"]\n', r"codec\.bundles\[0\]: .* is not a folder"),
                           ('[codec]\nbundles = [""]\n', r"codec\.bundles\[0\]: must be a non-empty"),
                           ('[codec]\nbundle = "shelf"\n', "codec.bundle: unknown key")):
        with pytest.raises(ConfigError, match=message):
            load_base_config(_base_config(tmp_path, codec))


def _service(tmp_path, **kwargs) -> BaseService:
    from device.service.adapters import BaseLink

    config = load_base_config(_base_config(tmp_path))  # base.bundle = the tiny bundle
    service = BaseService(config, **kwargs)
    service.link = BaseLink.from_config(config)
    return service


def test_the_base_decodes_default_site_and_configured_bundles(tmp_path, coded):
    service = _service(tmp_path)
    for image_id, name in enumerate(("default", "site", "tiny"), 1):
        assert service.deliver(DeliveredImage(5, image_id, coded[name], -100.0, 5.0, 1.0))
    rows = service.index.rows()
    assert [r["status"] for r in rows] == ["decoded"] * 3
    ids = [Bundle.load(p).model_id for p in (DEFAULT_BUNDLE, SITE_BUNDLE, TINY_BUNDLE)]
    assert [r["model_id"] for r in rows] == ids
    for row in rows:
        sidecar = json.loads(open(row["sidecar"]).read())
        assert sidecar["images"][0]["wildlink"]["model_id"] == row["model_id"]
        assert load_image(row["picture"]).shape == load_image(SAMPLE).shape
    service.index.close()


def test_the_base_quarantines_a_model_it_does_not_have(tmp_path, coded):
    service = _service(tmp_path, decoder=BundleRegistry())  # without the tiny bundle
    assert service.deliver(DeliveredImage(5, 1, coded["tiny"], -100.0, 5.0, 1.0))
    (row,) = service.index.rows()
    assert row["status"] == "undecodable" and "09e5e142" in row["error"]
    assert "/quarantine/" in row["container"]
    service.index.close()


def test_wildlink_decode_takes_several_bundles_or_a_folder_of_them(tmp_path, coded, capsys):
    from tools.cli import main

    (tmp_path / "tiny.wl").write_bytes(coded["tiny"])
    (tmp_path / "site.wl").write_bytes(coded["site"])
    shelf = tmp_path / "shelf"
    shutil.copytree(TINY_BUNDLE, shelf / "tiny")
    for name, extra in (("site", []), ("tiny", ["--bundle", str(shelf)]),
                        ("tiny", ["--bundle", str(SITE_BUNDLE), "--bundle", str(TINY_BUNDLE)])):
        out = tmp_path / f"{name}.png"
        assert main(["decode", str(tmp_path / f"{name}.wl"), "-o", str(out), *extra]) == 0
        assert out.is_file()
    text = capsys.readouterr().out
    assert f"model {Bundle.load(SITE_BUNDLE).model_id}" in text and "model 09e5e142" in text
    assert main(["decode", str(tmp_path / "tiny.wl"), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "09e5e142" in err and "92738ee5" in err and len(err.strip().splitlines()) == 1

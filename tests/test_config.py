"""Service configuration: the shipped examples load, and every mistake names its key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.errors import ConfigError
from device.service.config import load_base_config, load_trap_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _write(tmp_path: Path, text: str, name: str = "trap.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _example(tmp_path: Path, role: str) -> Path:
    """The shipped example with its key file pointed at a private temp file."""
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    os.chmod(keys, 0o600)
    text = (DEPLOY / f"{role}.toml").read_text().replace("/etc/wildlink/keys.toml", str(keys))
    return _write(tmp_path, text, f"{role}.toml")


def test_shipped_trap_example_loads(tmp_path):
    config = load_trap_config(_example(tmp_path, "trap"))
    assert config.trap_id == 1
    assert config.radio.type == "sx1262" and config.radio.sf == 9
    assert config.radio.sx1262.busy_pin == 20 and config.radio.sx1262.module == "core1262"
    assert config.codec.budget == 3000 and config.codec.saliency == "auto"
    assert config.triggers.pir_pin == 23 and config.triggers.timelapse_s == 3600.0
    assert config.camera.buffer_count is None
    assert config.storage.queue_path == Path("/var/lib/wildlink/queue.sqlite")
    assert config.keys_file == tmp_path / "keys.toml"


def test_shipped_base_example_loads(tmp_path):
    config = load_base_config(_example(tmp_path, "base"))
    assert config.traps == (1, 2, 3)
    assert config.out_dir == Path("/var/lib/wildlink-base/images")
    assert config.radio.frequency_mhz == pytest.approx(869.525)


def test_defaults_and_relative_paths(tmp_path):
    (tmp_path / "in").mkdir()
    config = load_trap_config(_write(tmp_path, '[trap]\nid = 3\n[triggers]\nwatch_dir = "in"\n'))
    assert config.radio.type == "sim"
    assert config.triggers.watch_dir == tmp_path / "in"
    assert config.codec.size == 1024


@pytest.mark.parametrize(
    "text, key",
    [
        ("[trap]\nid = 300\n", "trap.id"),
        ('[trap]\nid = "one"\n', "trap.id"),
        ("[trap]\nid = 1\n[radio]\ntype = 'rfm95'\n[triggers]\ntimelapse_s = 5\n", "radio.type"),
        ("[trap]\nid = 1\n[radio]\nsf = 13\n[triggers]\ntimelapse_s = 5\n", "radio.sf"),
        ("[trap]\nid = 1\n[radio]\nbw_khz = 100\n[triggers]\ntimelapse_s = 5\n", "radio.bw_khz"),
        ("[trap]\nid = 1\n[radio]\nfrequency_mhz = 915.0\n[triggers]\ntimelapse_s = 5\n",
         "radio.frequency_mhz"),
        ("[trap]\nid = 1\n[radio.sx1262]\nbusy_pin = 'x'\n[triggers]\ntimelapse_s = 5\n",
         "radio.sx1262.busy_pin"),
        ("[trap]\nid = 1\n[radio.sim]\nloss = 1.5\n[triggers]\ntimelapse_s = 5\n", "radio.sim.loss"),
        ("[trap]\nid = 1\n[codec]\nsaliency = 'magic'\n[triggers]\ntimelapse_s = 5\n",
         "codec.saliency"),
        ("[trap]\nid = 1\n[codec]\nbudget = 10\n[triggers]\ntimelapse_s = 5\n", "codec.budget"),
        ("[trap]\nid = 1\n", "triggers"),
        ("[trap]\nid = 1\n[trigers]\npir_pin = 4\n", "trigers"),
        ("[trap]\nid = 1\n[triggers]\npir_pin = 4\nfoo = 1\n", "triggers.foo"),
        ("[trap]\nid = 1\n[triggers]\npir_pin = 40\n", "triggers.pir_pin"),
        ("[trap]\nid = 1\n[triggers]\npir_pin = 4\n[camera]\nbackend = 'file'\n", "camera.files"),
        ("[trap]\nid = 1\n[triggers]\npir_pin = 4\n[storage]\nkeep_originals = 1\n",
         "storage.keep_originals"),
        ("[trap]\nid = 1\n[triggers]\npir_pin = 4\n[keys]\nfile = 'nope.toml'\n", "keys.file"),
        ("[trap\nid = 1\n", "not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_trap_config(_write(tmp_path, text))
    message = str(info.value)
    assert key in message and "\n" not in message


def test_key_file_must_be_private(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    os.chmod(keys, 0o644)
    path = _write(tmp_path, f"[trap]\nid = 1\n[triggers]\npir_pin = 4\n[keys]\nfile = '{keys}'\n")
    with pytest.raises(ConfigError, match="chmod 600"):
        load_trap_config(path)
    os.chmod(keys, 0o600)
    assert load_trap_config(path).keys_file == keys


def test_base_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"base.traps\[1\]"):
        load_base_config(_write(tmp_path, "[base]\ntraps = [1, 999]\n", "base.toml"))
    with pytest.raises(ConfigError, match="base.image_format"):
        load_base_config(_write(tmp_path, "[base]\nimage_format = 'gif'\n", "base.toml"))


def test_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trap_config(tmp_path / "absent.toml")


def test_radio_configs_build_their_radios(tmp_path):
    from gpiozero.pins.mock import MockFactory

    from device.errors import RadioError
    from device.service.radios import build_radio

    path = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio]\nsf = 7\n"
                            "[radio.sim]\nlisten_port = 47311\npeer_port = 47312\nloss = 0.1\n")
    radio = build_radio(load_trap_config(path).radio)
    try:
        assert radio.mtu == 255 and radio.modulation.sf == 7 and radio.port == 47311
    finally:
        radio.close()
    sx = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio]\ntype = 'sx1262'\n",
                "sx.toml")
    if not Path("/dev/spidev0.0").exists():  # on a Pi with SPI this would open the chip
        with pytest.raises(RadioError, match="spidev"):
            build_radio(load_trap_config(sx).radio, MockFactory())
    e22 = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio]\ntype = 'e22'\n",
                 "e22.toml")
    with pytest.raises(ConfigError, match="radio.tx_power_dbm"):
        load_trap_config(e22)

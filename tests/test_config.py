"""Service configuration: the shipped examples load, and every mistake names its key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.errors import ConfigError
from device.link.auth import write_keys
from device.radio.sx1262_config import SX1262Config
from device.service.config import load_base_config, load_trap_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNSIGNED = "[keys]\nallow_unsigned = true\n"


def _write(tmp_path: Path, text: str, name: str = "trap.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _example(tmp_path: Path, role: str) -> Path:
    """The shipped example with its key file pointed at a private temp file."""
    keys = tmp_path / "keys.toml"
    write_keys(keys, {1: bytes(16)})
    text = (DEPLOY / f"{role}.toml").read_text().replace("/etc/wildlink/keys.toml", str(keys))
    return _write(tmp_path, text, f"{role}.toml")


def test_shipped_trap_example_loads(tmp_path):
    config = load_trap_config(_example(tmp_path, "trap"))
    assert config.trap_id == 1
    assert config.radio.type == "sx1262" and config.radio.lora.sf == 9
    # the drivers' own settings, checked by the drivers' tables (one radio schema)
    assert isinstance(config.radio.lora, SX1262Config) and config.radio.settings[0] is config.radio.lora
    assert config.radio.sx1262_pins.busy == 20 and config.radio.lora.module == "core1262"
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
    config = load_trap_config(_write(tmp_path, '[trap]\nid = 3\n[triggers]\nwatch_dir = "in"\n'
                                               + UNSIGNED))
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
        ("[trap]\nid = 1\n[radio]\ntype = 'sx1262'\n[radio.sx1262]\nmodule = 'rfm95'\n"
         "[triggers]\ntimelapse_s = 5\n", "radio.sx1262.module"),
        ("[trap]\nid = 1\n[radio.sx1262]\nspi_speed_hz = 50\n[triggers]\ntimelapse_s = 5\n",
         "radio.sx1262.spi_speed_hz"),
        ("[trap]\nid = 1\n[radio.e22]\nnet_id = 300\n[triggers]\ntimelapse_s = 5\n",
         "radio.e22.net_id"),
        ("[trap]\nid = 1\n[radio]\nsync_word = 0x12\n[triggers]\ntimelapse_s = 5\n",
         "radio.sync_word"),
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
    write_keys(keys, {1: bytes(16)})
    os.chmod(keys, 0o644)
    path = _write(tmp_path, f"[trap]\nid = 1\n[triggers]\npir_pin = 4\n[keys]\nfile = '{keys}'\n")
    with pytest.raises(ConfigError, match="chmod 600"):
        load_trap_config(path)
    os.chmod(keys, 0o600)
    assert load_trap_config(path).keys_file == keys


def test_base_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"base.traps\[1\]"):
        load_base_config(_write(tmp_path, "[base]\ntraps = [1, 999]\n" + UNSIGNED, "base.toml"))
    with pytest.raises(ConfigError, match="base.image_format"):
        load_base_config(_write(tmp_path, "[base]\nimage_format = 'gif'\n" + UNSIGNED,
                                "base.toml"))


def test_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trap_config(tmp_path / "absent.toml")


def test_radio_configs_build_their_radios(tmp_path):
    from gpiozero.pins.mock import MockFactory

    from device.errors import RadioError
    from device.radio.factory import build_radio

    path = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio]\nsf = 7\n"
                            "[radio.sim]\nlisten_port = 47311\npeer_port = 47312\nloss = 0.1\n"
                  + UNSIGNED)
    radio = build_radio(*load_trap_config(path).radio.settings)
    try:
        assert radio.mtu == 255 and radio.modulation.sf == 7 and radio.port == 47311
    finally:
        radio.close()
    sx = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio]\ntype = 'sx1262'\n"
                + UNSIGNED, "sx.toml")
    if not Path("/dev/spidev0.0").exists():  # on a Pi with SPI this would open the chip
        with pytest.raises(RadioError, match="spidev"):
            build_radio(*load_trap_config(sx).radio.settings, MockFactory())
    e22 = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio]\ntype = 'e22'\n"
                 + UNSIGNED, "e22.toml")
    with pytest.raises(ConfigError, match="radio.tx_power_dbm"):
        load_trap_config(e22)


# --- bad input is one line naming the problem, never a traceback ----------------------------------


def test_non_utf8_configs_and_key_files(tmp_path):
    bad = tmp_path / "trap.toml"
    bad.write_bytes(b"[trap]\nid = 5  # caf\xe9 latin-1\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_trap_config(bad)
    bad.rename(tmp_path / "base.toml")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_base_config(tmp_path / "base.toml")
    keys = tmp_path / "keys.toml"
    keys.write_bytes(b'[traps]\n1 = "\xff"\n')
    os.chmod(keys, 0o600)
    from device.link.auth import load_keys

    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_keys(keys)
    path = _write(tmp_path, f"[trap]\nid = 1\n[triggers]\npir_pin = 4\n[keys]\nfile = '{keys}'\n")
    with pytest.raises(ConfigError, match="keys.file: .*not UTF-8 text"):
        load_trap_config(path)


def test_a_bad_hex_key_is_called_a_bad_key(tmp_path):
    from device.link.auth import load_keys

    keys = tmp_path / "keys.toml"
    keys.write_text('[traps]\n7 = "zz' + "0" * 30 + '"\n')
    os.chmod(keys, 0o600)
    with pytest.raises(ConfigError, match="traps.7: key must be 32 hex digits"):
        load_keys(keys)
    keys.write_text('[traps]\nseven = "' + "0" * 32 + '"\n')
    with pytest.raises(ConfigError, match="traps.seven must be an integer 0..255"):
        load_keys(keys)


@pytest.mark.parametrize(("role", "text", "key"), [
    ("trap", "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[storage]\ndata_dir = '{file}'\n",
     "storage.data_dir"),
    ("trap", "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[storage]\ndata_dir = '{file}/sub'\n",
     "storage.data_dir"),
    ("trap", "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[storage]\noriginals_dir = '{file}'\n",
     "storage.originals_dir"),
    ("base", "[base]\ndata_dir = '{file}'\n", "base.data_dir"),
    ("base", "[base]\nout_dir = '{file}/pictures'\n", "base.out_dir"),
])
def test_a_folder_that_is_a_file(tmp_path, role, text, key):
    file = tmp_path / "taken"
    file.write_text("not a folder")
    path = _write(tmp_path, text.format(file=file) + UNSIGNED, f"{role}.toml")
    load = load_trap_config if role == "trap" else load_base_config
    with pytest.raises(ConfigError, match=f"{key}: .*taken is a file, not a folder"):
        load(path)


def test_unknown_e22_series(tmp_path):
    path = _write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n[radio.e22]\n"
                            "series = '800'\n" + UNSIGNED)
    with pytest.raises(ConfigError, match=r'radio.e22.series: E22 series must be "900" or "400"'):
        load_trap_config(path)


def test_running_without_keys_must_be_explicit(tmp_path, caplog):
    """An empty base config used to accept unsigned frames without a word."""
    import logging

    from device.radio.clock import VirtualClock
    from device.radio.sim import SimChannel
    from device.service.adapters import BaseLink

    with pytest.raises(ConfigError, match="keys: no key file; .*keys.allow_unsigned = true"):
        load_base_config(_write(tmp_path, "", "base.toml"))
    with pytest.raises(ConfigError, match="keys: no key file"):
        load_trap_config(_write(tmp_path, "[trap]\nid = 1\n[triggers]\npir_pin = 4\n"))
    with pytest.raises(ConfigError, match="keys.allow_unsigned: must be true or false"):
        load_base_config(_write(tmp_path, "[keys]\nallow_unsigned = 'yes'\n", "base.toml"))
    config = load_base_config(_write(tmp_path, f"[base]\ndata_dir = '{tmp_path / 'b'}'\n"
                                     + UNSIGNED, "base.toml"))
    assert config.allow_unsigned and config.keys_file is None
    with caplog.at_level(logging.WARNING):
        link = BaseLink.from_config(config, SimChannel(VirtualClock()).radio("base"))
    assert "unsigned_frames" in caplog.text and "anyone in radio range" in caplog.text
    assert not link.receiver.require_auth
    link.close()


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from tools.cli import main

    bad = tmp_path / "base.toml"
    bad.write_bytes(b"\xff\xfe[base]\n")
    assert main(["base", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8 text" in err and "Traceback" not in err

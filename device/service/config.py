"""Service configuration: one TOML file per role, validated into frozen dataclasses.

A trap reads `trap.toml`, a base station `base.toml` (examples in `deploy/`). Every value is
checked once, at start-up, so a typo stops the service with one line that names the key
(`radio.sf: must be an integer in 5..12, got 13`) instead of failing hours later in the field.
Unknown keys are refused too: a misspelt `[trigers]` section must not silently disable the PIR.
The radio is checked as a whole plan (device/service/radios.py `check_plan`): the carrier the
radio really tunes to, its sub-band in the region's rules (device/link/dutycycle.py), dwell and
duty cycle, so nothing that the config loader passes can fail later in the link thread.

Example:
    >>> config = load_trap_config("deploy/trap.toml")      # doctest: +SKIP
    >>> config.radio.sf, config.codec.budget
    (9, 3000)
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from device.errors import ConfigError
from device.link.dutycycle import REGIONS as REGION_RULES
from device.radio.e22 import AIR_RATE, POWER_DBM, SERIES_CHANNELS, SUB_PACKET

__all__ = [
    "RADIO_TYPES",
    "REGIONS",
    "SALIENCY_METHODS",
    "BaseConfig",
    "CameraConfig",
    "CodecConfig",
    "E22Config",
    "RadioConfig",
    "SimConfig",
    "StorageConfig",
    "Sx1262Config",
    "TrapConfig",
    "TriggerConfig",
    "load_base_config",
    "load_trap_config",
]

RADIO_TYPES = ("sx1262", "e22", "sim")
REGIONS = tuple(REGION_RULES)
SALIENCY_METHODS = ("auto", "boxes", "background", "spectral", "none")
CAMERA_BACKENDS = ("picamera2", "file")
BANDWIDTHS_KHZ = (7.8, 10.4, 15.6, 20.8, 31.25, 41.7, 62.5, 125.0, 250.0, 500.0)


@dataclass(frozen=True)
class Sx1262Config:
    """A bare SX1262 module on SPI (BCM pin numbers; defaults as device/radio/sx1262_config.py).

    `module` picks the RF front end (sx1262, core1262, e22-900m22s); `tcxo_voltage` None keeps
    the module's TCXO setting (0 forces the crystal), `dio2_rf_switch` None the module's switch.
    """

    module: str = "sx1262"
    spi_bus: int = 0
    spi_device: int = 0
    spi_speed_hz: int = 2_000_000
    busy_pin: int = 20
    dio1_pin: int = 16
    reset_pin: int = 18
    cs_pin: int | None = None
    txen_pin: int | None = None
    rxen_pin: int | None = None
    tcxo_voltage: float | None = None
    dio2_rf_switch: bool | None = None


@dataclass(frozen=True)
class E22Config:
    """An Ebyte E22 / Waveshare SX1262 LoRa HAT on the UART (M0, M1 select its mode).

    The E22 picks SF and bandwidth itself from `air_rate` (bit/s); `radio.frequency_mhz` must be
    one of its channels (`series` "900": 850.125 + n MHz, n = 0..80; "400": 410.125 + n MHz,
    n = 0..83), and `radio.tx_power_dbm` gives its power (22, 17, 13 or 10 dBm).
    """

    port: str = "/dev/serial0"
    m0_pin: int = 22
    m1_pin: int = 27
    aux_pin: int | None = None
    series: str = "900"
    air_rate: int = 2400
    address: int = 0
    net_id: int = 0
    sub_packet: int = 240


@dataclass(frozen=True)
class SimConfig:
    """The simulated radio: loopback UDP between two processes on one machine."""

    listen_port: int = 47001
    peer_port: int = 47002
    loss: float = 0.0
    speedup: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class RadioConfig:
    """LoRa parameters shared by every radio type, plus the chosen type's own section."""

    type: str = "sim"
    region: str = "eu868"
    frequency_mhz: float = 869.525
    sf: int = 9
    bw_khz: float = 125.0
    cr: int = 5
    preamble: int = 8
    tx_power_dbm: int = 14
    sync_word: int = 0x1424
    sx1262: Sx1262Config = field(default_factory=Sx1262Config)
    e22: E22Config = field(default_factory=E22Config)
    sim: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True)
class CodecConfig:
    """Encoder settings: which bundle, transmit size, byte budget and saliency source."""

    bundle: Path | None = None
    size: int = 1024
    budget: int = 3000
    saliency: str = "auto"
    boxes: Path | None = None


@dataclass(frozen=True)
class TriggerConfig:
    """What makes the trap take a picture. Any combination; at least one must be on."""

    pir_pin: int | None = None
    pir_holdoff_s: float = 10.0
    timelapse_s: float = 0.0
    watch_dir: Path | None = None
    watch_poll_s: float = 2.0


@dataclass(frozen=True)
class CameraConfig:
    """picamera2 still capture (or `file` for replay and tests)."""

    backend: str = "picamera2"
    width: int = 2304
    height: int = 1296
    lores_width: int = 320
    lores_height: int = 240
    settle_frames: int = 4
    buffer_count: int | None = None
    files: Path | None = None


@dataclass(frozen=True)
class StorageConfig:
    """Where the trap keeps originals and its queue, and how much card it leaves free."""

    data_dir: Path = Path("/var/lib/wildlink")
    originals_dir: Path | None = None
    min_free_mb: float = 512.0
    keep_originals: bool = True

    @property
    def originals(self) -> Path:
        return self.originals_dir or self.data_dir / "originals"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.sqlite"


@dataclass(frozen=True)
class TrapConfig:
    trap_id: int
    radio: RadioConfig
    codec: CodecConfig
    triggers: TriggerConfig
    camera: CameraConfig
    storage: StorageConfig
    keys_file: Path | None = None
    allow_unsigned: bool = False  #: no key file: send unsigned frames (explicit, logged)
    source: Path | None = None


@dataclass(frozen=True)
class BaseConfig:
    """The base station: its radio, where it writes pictures, and which traps it accepts.

    The base decodes with every bundle in `bundle_folders` (device/codec/registry.py).
    """

    radio: RadioConfig
    data_dir: Path
    out_dir: Path
    bundle: Path | None = None
    #: `[codec] bundles`: more bundle folders, or folders of bundles, beside the shipped ones
    bundles: tuple[Path, ...] = ()
    traps: tuple[int, ...] = ()
    image_format: str = "png"
    keys_file: Path | None = None
    #: accept unsigned frames from traps without a key (explicit `keys.allow_unsigned = true`)
    allow_unsigned: bool = False
    source: Path | None = None

    @property
    def bundle_folders(self) -> tuple[Path, ...]:
        """The folders the base's bundle registry loads after the shipped models."""
        return ((self.bundle,) if self.bundle is not None else ()) + self.bundles


# ---------------------------------------------------------------- reading


def load_trap_config(path: str | Path) -> TrapConfig:
    """Read and validate a trap's TOML file. Raises ConfigError (one line, names the key)."""
    path, raw = _read(path)
    _known(raw, "", {"trap", "radio", "codec", "triggers", "camera", "storage", "keys"})
    trap = _table(raw, "trap")
    _known(trap, "trap", {"id"})
    here = path.parent
    triggers = _build(TriggerConfig, _table(raw, "triggers"), "triggers", here)
    camera = _build(CameraConfig, _table(raw, "camera"), "camera", here)
    radio = _radio(_table(raw, "radio"))
    keys_file, allow_unsigned = _keys(_table(raw, "keys"), here)
    config = TrapConfig(
        trap_id=_trap_id(trap.get("id"), "trap.id"),
        radio=radio,
        codec=_build(CodecConfig, _table(raw, "codec"), "codec", here),
        triggers=triggers,
        camera=camera,
        storage=_build(StorageConfig, _table(raw, "storage"), "storage", here),
        keys_file=keys_file,
        allow_unsigned=allow_unsigned,
        source=path,
    )
    _check_trap(config)
    _plan(radio, keys_file)
    _require_keys(keys_file, allow_unsigned)
    return config


def load_base_config(path: str | Path) -> BaseConfig:
    """Read and validate a base station's TOML file. Raises ConfigError."""
    path, raw = _read(path)
    _known(raw, "", {"base", "radio", "keys", "codec"})
    base = _table(raw, "base")
    _known(base, "base", {"data_dir", "out_dir", "bundle", "traps", "image_format"})
    here = path.parent
    data_dir = _path(base.get("data_dir", "/var/lib/wildlink-base"), "base.data_dir", here)
    traps = base.get("traps", [])
    if not isinstance(traps, list):
        raise ConfigError(f"base.traps: must be a list of trap ids, got {traps!r}")
    image_format = base.get("image_format", "png")
    if image_format not in ("png", "jpg", "webp"):
        raise ConfigError(f"base.image_format: must be png, jpg or webp, got {image_format!r}")
    out_dir = _path(base.get("out_dir", str(data_dir / "images")), "base.out_dir", here)
    _folder(data_dir, "base.data_dir")
    _folder(out_dir, "base.out_dir")
    bundles = _bundle_folders(_table(raw, "codec"), here)
    radio = _radio(_table(raw, "radio"))
    keys_file, allow_unsigned = _keys(_table(raw, "keys"), here)
    _plan(radio, keys_file)
    _require_keys(keys_file, allow_unsigned)
    return BaseConfig(
        radio=radio,
        data_dir=data_dir,
        out_dir=out_dir,
        bundle=_path(base["bundle"], "base.bundle", here) if "bundle" in base else None,
        bundles=bundles,
        traps=tuple(_trap_id(t, f"base.traps[{i}]") for i, t in enumerate(traps)),
        image_format=image_format,
        keys_file=keys_file,
        allow_unsigned=allow_unsigned,
        source=path,
    )


def _bundle_folders(raw: dict, here: Path) -> tuple[Path, ...]:
    """The base's `[codec] bundles`: existing folders (their bundles are checked when the
    registry loads them, at start)."""
    _known(raw, "codec", {"bundles"})
    folders = raw.get("bundles", [])
    if not isinstance(folders, list):
        raise ConfigError(f"codec.bundles: must be a list of bundle folders, got {folders!r}")
    out = []
    for i, value in enumerate(folders):
        path = _path(value, f"codec.bundles[{i}]", here)
        if not path.is_dir():
            raise ConfigError(f"codec.bundles[{i}]: {path} is not a folder")
        out.append(path)
    return tuple(out)


def _read(path: str | Path) -> tuple[Path, dict]:
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return path, tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a config is TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _table(raw: Mapping, key: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a [{key}] table, got {value!r}")
    return value


def _known(table: Mapping, where: str, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"{name}: unknown key (expected one of {', '.join(sorted(allowed))})")


def _radio(raw: dict) -> RadioConfig:
    sub = {"sx1262": Sx1262Config, "e22": E22Config, "sim": SimConfig}
    flat = {k: v for k, v in raw.items() if k not in sub}
    parts = {k: _build(cls, _table(raw, k), f"radio.{k}", None) for k, cls in sub.items()}
    config = _build(RadioConfig, flat, "radio", None, parts)
    if config.type not in RADIO_TYPES:
        raise ConfigError(f"radio.type: must be one of {', '.join(RADIO_TYPES)}, got {config.type!r}")
    if config.region not in REGIONS:
        raise ConfigError(f"radio.region: must be one of {', '.join(REGIONS)}, got {config.region!r}")
    _range(config.sf, 5, 12, "radio.sf")
    _range(config.cr, 5, 8, "radio.cr (5..8 means 4/5..4/8)")
    _range(config.preamble, 6, 65535, "radio.preamble")
    _range(config.tx_power_dbm, -9, 22, "radio.tx_power_dbm")
    if config.bw_khz not in BANDWIDTHS_KHZ:
        raise ConfigError(
            f"radio.bw_khz: must be one of {', '.join(map(str, BANDWIDTHS_KHZ))}, got {config.bw_khz}"
        )
    if config.sync_word not in (0x1424, 0x3444):
        raise ConfigError("radio.sync_word: must be 0x1424 (private) or 0x3444 (public)")
    _range(config.sim.loss, 0.0, 0.99, "radio.sim.loss")
    if config.sim.speedup <= 0:
        raise ConfigError(f"radio.sim.speedup: must be > 0, got {config.sim.speedup}")
    for port in ("listen_port", "peer_port"):
        _range(getattr(config.sim, port), 1, 65535, f"radio.sim.{port}")
    if config.type == "sx1262" and config.sx1262.module not in ("sx1262", "core1262", "e22-900m22s"):
        raise ConfigError("radio.sx1262.module: must be sx1262, core1262 or e22-900m22s, "
                          f"got {config.sx1262.module!r}")
    if config.type == "e22" and config.tx_power_dbm not in POWER_DBM:
        raise ConfigError(f"radio.tx_power_dbm: the E22 offers {_listed(POWER_DBM)} dBm, "
                          f"got {config.tx_power_dbm}")
    e22 = config.e22
    if e22.series not in SERIES_CHANNELS:
        raise ConfigError(f"radio.e22.series: must be {_listed(SERIES_CHANNELS)}, "
                          f"got {e22.series!r}")
    if e22.air_rate not in AIR_RATE:
        raise ConfigError(f"radio.e22.air_rate: must be {_listed(AIR_RATE)} bit/s, "
                          f"got {e22.air_rate}")
    if e22.sub_packet not in SUB_PACKET:
        raise ConfigError(f"radio.e22.sub_packet: must be {_listed(SUB_PACKET)}, "
                          f"got {e22.sub_packet}")
    return config


def _listed(table) -> str:
    """'a, b or c' from a table's keys (the driver's own tables: one place for each value)."""
    names = [f'"{k}"' if isinstance(k, str) else str(k) for k in table]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _plan(radio: RadioConfig, keys_file: Path | None) -> None:
    from device.service.radios import check_plan

    check_plan(radio, signed=keys_file is not None)


def _build(cls, raw: dict, where: str, here: Path | None, extra: dict | None = None):
    """Check `raw` against the dataclass's fields and types, then construct it."""
    spec = {f.name: f for f in fields(cls)}
    _known(raw, where, set(spec) - set(extra or {}) | set(extra or {}))
    values: dict[str, Any] = dict(extra or {})
    for key, value in raw.items():
        name = f"{where}.{key}"
        kind = str(spec[key].type)
        values[key] = _coerce(value, kind, name, here)
    return cls(**values)


def _coerce(value: Any, kind: str, name: str, here: Path | None) -> Any:
    optional = "None" in kind
    if value == "" and optional:
        return None
    if kind.startswith("Path"):
        if not isinstance(value, str):
            raise ConfigError(f"{name}: must be a path string, got {value!r}")
        return _path(value, name, here)
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: must be true or false, got {value!r}")
        return value
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
        return value
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        return float(value)
    if kind.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{name}: must be a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported value {value!r}")  # pragma: no cover


def _path(value: str, name: str, here: Path | None) -> Path:
    """Paths are relative to the config file's folder (so examples work from a checkout)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: must be a non-empty path string, got {value!r}")
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() or here is None else (here / path)


def _range(value, lo, hi, name: str) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: must be in {lo}..{hi}, got {value}")


def _trap_id(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ConfigError(f"{name}: must be an integer trap id in 0..255, got {value!r}")
    return value


def _keys(raw: dict, here: Path) -> tuple[Path | None, bool]:
    """(key file, allow_unsigned). The key file holds per-trap secrets: it must exist, be
    private (mode 0600) and parse. Without one, frames are unsigned (anyone can forge them),
    so that needs an explicit `allow_unsigned = true`."""
    _known(raw, "keys", {"file", "allow_unsigned"})
    allow = raw.get("allow_unsigned", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"keys.allow_unsigned: must be true or false, got {allow!r}")
    if "file" not in raw:
        return None, allow
    path = _path(raw["file"], "keys.file", here)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"keys.file: {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"keys.file: {path} is readable by others; run chmod 600 {path}")
    from device.link.auth import load_keys

    try:
        load_keys(path)
    except ConfigError as exc:
        raise ConfigError(f"keys.file: {exc}") from None
    return path, allow


def _require_keys(keys_file: Path | None, allow_unsigned: bool) -> None:
    if keys_file is None and not allow_unsigned:
        raise ConfigError("keys: no key file; set keys.file (see `wildlink keys`), or "
                          "keys.allow_unsigned = true to run without authentication")


def _folder(path: Path, name: str) -> None:
    """A folder the service creates: refuse a path that is, or lies inside, a file."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{name}: {parent} is a file, not a folder")
            return


def _check_trap(config: TrapConfig) -> None:
    codec, triggers, camera = config.codec, config.triggers, config.camera
    if codec.saliency not in SALIENCY_METHODS:
        raise ConfigError(
            f"codec.saliency: must be one of {', '.join(SALIENCY_METHODS)}, got {codec.saliency!r}"
        )
    _range(codec.size, 64, 4096, "codec.size")
    _range(codec.budget, 64, 1_000_000, "codec.budget")
    if triggers.pir_pin is None and triggers.timelapse_s <= 0 and triggers.watch_dir is None:
        raise ConfigError(
            "triggers: none is on; set triggers.pir_pin, triggers.timelapse_s or triggers.watch_dir"
        )
    if triggers.pir_pin is not None:
        _range(triggers.pir_pin, 0, 27, "triggers.pir_pin")
    _range(triggers.timelapse_s, 0.0, 7 * 86400.0, "triggers.timelapse_s")
    _range(triggers.watch_poll_s, 0.01, 3600.0, "triggers.watch_poll_s")
    if camera.backend not in CAMERA_BACKENDS:
        raise ConfigError(
            f"camera.backend: must be one of {', '.join(CAMERA_BACKENDS)}, got {camera.backend!r}"
        )
    if camera.backend == "file" and camera.files is None:
        raise ConfigError("camera.files: the file camera needs a folder of images")
    _range(camera.width, 64, 9152, "camera.width")
    _range(camera.height, 64, 6944, "camera.height")
    _range(camera.settle_frames, 0, 100, "camera.settle_frames")
    if camera.buffer_count is not None:
        _range(camera.buffer_count, 1, 8, "camera.buffer_count")
    if config.storage.min_free_mb < 0:
        raise ConfigError("storage.min_free_mb: must be >= 0")
    _folder(config.storage.data_dir, "storage.data_dir")
    _folder(config.storage.originals, "storage.originals_dir")

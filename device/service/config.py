"""Service configuration: one TOML file per role, validated into frozen dataclasses.

A trap reads `trap.toml`, a base station `base.toml` (examples in `deploy/`). Every value is
checked once, at start-up, so a typo stops the service with one line that names the key
(`radio.sf: must be an integer in 5..12, got 13`) instead of failing hours later in the field.
Unknown keys are refused too: a misspelt `[trigers]` section must not silently disable the PIR.
The `[radio]` tables are read into the drivers' own settings objects (`SX1262Config` and
`SX1262Pins`, `E22Config` and `E22Pins`, the simulator's `SimConfig`), checked by the drivers'
own tables; `RADIO_KEYS` says which key fills which setting, so a driver's complaint names the
key. Then the radio is checked as a whole plan (`check_plan`): the carrier the radio really
tunes to, its sub-band in the region's rules (device/link/dutycycle.py), dwell and duty cycle,
so nothing that the config loader passes can fail later in the link thread.

Example:
    >>> config = load_trap_config("deploy/trap.toml")      # doctest: +SKIP
    >>> config.radio.modulation.sf, config.codec.budget
    (9, 3000)
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from device.errors import ConfigError, LinkError
from device.link.dutycycle import REGIONS, DutyCycle
from device.radio import sx126x_commands as cmd
from device.radio.airtime import MAX_PAYLOAD, Modulation
from device.radio.e22 import E22Config, E22Pins, channel_for
from device.radio.errors import SettingError
from device.radio.factory import SimConfig
from device.radio.sx1262_config import SX1262Config, SX1262Pins
from device.saliency import MODES as SALIENCY_METHODS  # the saliency policy's own list
from device.trapid import check_trap_id

__all__ = [
    "DEFAULT_FREQUENCY_MHZ",
    "RADIO_KEYS",
    "RADIO_TYPES",
    "SALIENCY_METHODS",
    "BaseConfig",
    "CameraConfig",
    "CodecConfig",
    "RadioConfig",
    "StorageConfig",
    "TrapConfig",
    "TriggerConfig",
    "check_plan",
    "dutycycle_for",
    "load_base_config",
    "load_trap_config",
]

RADIO_TYPES = ("sx1262", "e22", "sim")
CAMERA_BACKENDS = ("picamera2", "file")
#: The services' carrier: EU868 sub-band h1.7 (LoRaWAN g3), 10% duty cycle.
DEFAULT_FREQUENCY_MHZ = 869.525

#: The `[radio]` file format: each key and the driver setting it fills, as (table, settings
#: object, field, factor from the file's unit). "lora" is the `SX1262Config` (the chip the
#: simulator imitates too), "pins" the section's wiring, "e22" the `E22Config`, "sim" the
#: `SimConfig`. An E22 takes its channel from `frequency_mhz` and its power from `tx_power_dbm`.
RADIO_KEYS = {
    ("radio", "frequency_mhz"): ("lora", "frequency_hz", 1e6),
    ("radio", "sf"): ("lora", "sf", None),
    ("radio", "bw_khz"): ("lora", "bw_hz", 1e3),
    ("radio", "cr"): ("lora", "cr", None),
    ("radio", "preamble"): ("lora", "preamble", None),
    ("radio", "tx_power_dbm"): ("lora", "tx_power_dbm", None),
    ("radio", "sync_word"): ("lora", "sync_word", None),
    ("radio.sx1262", "module"): ("lora", "module", None),
    ("radio.sx1262", "tcxo_voltage"): ("lora", "tcxo_voltage", None),
    ("radio.sx1262", "dio2_rf_switch"): ("lora", "dio2_rf_switch", None),
    ("radio.sx1262", "spi_bus"): ("sx1262_pins", "spi_bus", None),
    ("radio.sx1262", "spi_device"): ("sx1262_pins", "spi_device", None),
    ("radio.sx1262", "spi_speed_hz"): ("sx1262_pins", "spi_speed_hz", None),
    ("radio.sx1262", "busy_pin"): ("sx1262_pins", "busy", None),
    ("radio.sx1262", "dio1_pin"): ("sx1262_pins", "dio1", None),
    ("radio.sx1262", "reset_pin"): ("sx1262_pins", "reset", None),
    ("radio.sx1262", "cs_pin"): ("sx1262_pins", "cs", None),
    ("radio.sx1262", "txen_pin"): ("sx1262_pins", "txen", None),
    ("radio.sx1262", "rxen_pin"): ("sx1262_pins", "rxen", None),
    ("radio.e22", "port"): ("e22_pins", "port", None),
    ("radio.e22", "m0_pin"): ("e22_pins", "m0", None),
    ("radio.e22", "m1_pin"): ("e22_pins", "m1", None),
    ("radio.e22", "aux_pin"): ("e22_pins", "aux", None),
    ("radio.e22", "series"): ("e22", "series", None),
    ("radio.e22", "air_rate"): ("e22", "air_rate", None),
    ("radio.e22", "address"): ("e22", "address", None),
    ("radio.e22", "net_id"): ("e22", "netid", None),
    ("radio.e22", "sub_packet"): ("e22", "sub_packet", None),
    ("radio.sim", "listen_port"): ("sim", "listen_port", None),
    ("radio.sim", "peer_port"): ("sim", "peer_port", None),
    ("radio.sim", "hub_port"): ("sim", "hub_port", None),
    ("radio.sim", "loss"): ("sim", "loss", None),
    ("radio.sim", "speedup"): ("sim", "speedup", None),
    ("radio.sim", "seed"): ("sim", "seed", None),
}
_SETTINGS = {"lora": SX1262Config, "sx1262_pins": SX1262Pins, "e22": E22Config,
             "e22_pins": E22Pins, "sim": SimConfig}
#: Settings filled from another table's key (the E22's power and channel).
_SHARED_KEYS = {("e22", "power_dbm"): "radio.tx_power_dbm", ("e22", "channel"): "radio.frequency_mhz"}


@dataclass(frozen=True)
class RadioConfig:
    """The configured radio, as its driver's own settings objects.

    `lora` holds the LoRa settings of `[radio]` and `[radio.sx1262]` whatever the type (the
    simulator imitates an SX1262); `e22` is set for an E22 only, its channel being
    `radio.frequency_mhz`. `settings` is what `device.radio.factory.build_radio` opens.
    """

    type: str = "sim"
    region: str = "eu868"
    lora: SX1262Config = field(
        default_factory=lambda: SX1262Config(frequency_hz=DEFAULT_FREQUENCY_MHZ * 1e6))
    sx1262_pins: SX1262Pins = field(default_factory=SX1262Pins)
    e22: E22Config | None = None
    e22_pins: E22Pins = field(default_factory=E22Pins)
    sim: SimConfig = field(default_factory=SimConfig)

    @property
    def settings(self) -> tuple[SX1262Config | E22Config | SimConfig, object]:
        """(settings, pins) of the chosen radio, for `build_radio`."""
        if self.type == "e22" and self.e22 is not None:
            return self.e22, self.e22_pins
        if self.type == "sx1262":
            return self.lora, self.sx1262_pins
        return replace(self.sim, modulation=self.modulation,
                       frequency_mhz=self.frequency_mhz), None

    @property
    def frequency_mhz(self) -> float:
        """The carrier the radio really transmits on (an E22's channel)."""
        if self.type == "e22" and self.e22 is not None:
            return self.e22.frequency_mhz
        return self.lora.frequency_hz / 1e6

    @property
    def modulation(self) -> Modulation:
        """What fixes time on air; an E22 picks SF and bandwidth from its air rate."""
        if self.type == "e22" and self.e22 is not None:
            return self.e22.modulation
        return self.lora.modulation

    @property
    def mtu(self) -> int:
        """The largest frame the configured radio sends."""
        if self.type == "e22" and self.e22 is not None:
            return self.e22.mtu
        return self.lora.max_payload if self.type == "sx1262" else MAX_PAYLOAD


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
        trap_id=check_trap_id(trap.get("id"), "trap.id"),
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
        traps=tuple(check_trap_id(t, f"base.traps[{i}]") for i, t in enumerate(traps)),
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
    """The [radio] tables into the drivers' settings; a driver's complaint names the key."""
    sections = {"radio": raw, **{f"radio.{k}": _table(raw, k) for k in ("sx1262", "e22", "sim")}}
    _known(raw, "radio", {"type", "region", "sx1262", "e22", "sim"}
           | {key for where, key in RADIO_KEYS if where == "radio"})
    kind, region = raw.get("type", RadioConfig.type), raw.get("region", RadioConfig.region)
    if kind not in RADIO_TYPES:
        raise ConfigError(f"radio.type: must be one of {', '.join(RADIO_TYPES)}, got {kind!r}")
    if region not in REGIONS:
        raise ConfigError(f"radio.region: must be one of {', '.join(REGIONS)}, got {region!r}")
    values: dict[str, dict[str, Any]] = {name: {} for name in _SETTINGS}
    values["lora"]["frequency_hz"] = DEFAULT_FREQUENCY_MHZ * 1e6
    for where, table in sections.items():
        if where != "radio":
            _known(table, where, {key for w, key in RADIO_KEYS if w == where})
        for key, value in table.items():
            if (where, key) not in RADIO_KEYS:
                continue  # type, region and the sub-tables
            target, name, factor = RADIO_KEYS[where, key]
            kind_of = next(str(f.type) for f in fields(_SETTINGS[target]) if f.name == name)
            value = _coerce(value, kind_of, f"{where}.{key}", None)
            values[target][name] = value * factor if factor and value is not None else value
    lora = values["lora"]
    if lora.get("sync_word", cmd.SYNC_WORD_PRIVATE) not in (cmd.SYNC_WORD_PRIVATE,
                                                            cmd.SYNC_WORD_PUBLIC):
        raise ConfigError("radio.sync_word: must be 0x1424 (private) or 0x3444 (public)")
    if lora.get("preamble", 8) < 6:  # the chip takes 1.., a receiver needs 6 to lock on
        raise ConfigError(f"radio.preamble: must be in 6..65535, got {lora['preamble']}")
    built = {name: _settings(name, values[name])
             for name in ("lora", "sx1262_pins", "e22_pins", "sim")}
    if kind == "e22":  # an E22 sends at radio.tx_power_dbm, from its own table of powers
        values["e22"]["power_dbm"] = built["lora"].tx_power_dbm
    e22 = _settings("e22", values["e22"])  # [radio.e22] is checked whatever the type
    if kind != "e22":
        e22 = None
    else:  # the channel is exactly radio.frequency_mhz (no rounding to another sub-band)
        try:
            e22 = replace(e22, channel=channel_for(built["lora"].frequency_hz, e22.series))
        except ConfigError as exc:
            raise ConfigError(f"radio.frequency_mhz: {exc}") from None
    return RadioConfig(type=kind, region=region, e22=e22, **built)


def _settings(target: str, values: dict):
    """One driver settings object; its own checks, reported under the config file's key."""
    try:
        return _SETTINGS[target](**values)
    except SettingError as exc:
        keys = [f"{w}.{k}" for (w, k), (t, name, _) in RADIO_KEYS.items()
                if t == target and name == exc.setting]
        key = keys[0] if keys else _SHARED_KEYS.get((target, exc.setting), "radio")
        raise ConfigError(f"{key}: {exc}") from None


def dutycycle_for(radio_config: RadioConfig, clock, radio=None) -> DutyCycle:
    """The `DutyCycle` of the carrier in use: the radio's own `frequency_mhz` when it reports
    one (the E22 driver does), else the configured radio's carrier."""
    freq = getattr(radio, "frequency_mhz", None) or radio_config.frequency_mhz
    return DutyCycle(radio_config.region, freq, clock)


def check_plan(radio_config: RadioConfig, signed: bool) -> None:
    """Refuse, with one line naming the key, a radio setup that could never send legally.

    Args:
        radio_config: a `RadioConfig` (its settings are checked by their drivers).
        signed: the frames carry a MIC (a key is configured), which takes payload room.
    """
    from device.link.frames import frame_limit
    from device.radio.clock import SystemClock

    try:
        dutycycle = dutycycle_for(radio_config, SystemClock())
    except ConfigError as exc:  # a sub-band gap (869.3 MHz in eu868)
        raise ConfigError(f"radio.frequency_mhz: {exc}") from None
    try:
        frame_limit(radio_config.mtu, radio_config.modulation, dutycycle, signed)
    except LinkError as exc:  # dwell or duty cycle too short for a single frame
        raise ConfigError(f"radio: {exc}") from None


def _plan(radio: RadioConfig, keys_file: Path | None) -> None:
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

"""Open a radio from a short text spec, the one format the CLI, the services and HIL tests share.

    sx1262:freq=868.1,sf=9,bw=125,busy=20,dio1=16,reset=18,module=core1262
    e22:port=/dev/serial0,m0=22,m1=27,freq=868.125,air_rate=2400

Units: `freq` in MHz, `bw` in kHz, `power` in dBm, `tcxo` in volts (0 = crystal). Keys not given
keep the defaults of `SX1262Config`/`SX1262Pins` or `E22Config`.
"""

from __future__ import annotations

from device.errors import ConfigError
from device.radio import sx126x_commands as cmd
from device.radio.errors import RadioNotFound

__all__ = ["open_radio", "parse_spec"]

SX1262_KEYS = {
    "freq": ("config", "frequency_hz", lambda v: float(v) * 1e6),
    "sf": ("config", "sf", int),
    "bw": ("config", "bw_hz", lambda v: float(v) * 1e3),
    "cr": ("config", "cr", int),
    "preamble": ("config", "preamble", int),
    "power": ("config", "tx_power_dbm", int),
    "sync": ("config", "sync_word", lambda v: {"private": cmd.SYNC_WORD_PRIVATE,
                                                "public": cmd.SYNC_WORD_PUBLIC}.get(v) or int(v, 0)),
    "module": ("config", "module", str),
    "tcxo": ("config", "tcxo_voltage", float),
    "dio2": ("config", "dio2_rf_switch", lambda v: v in ("1", "true", "yes")),
    "bus": ("pins", "spi_bus", int),
    "device": ("pins", "spi_device", int),
    "speed": ("pins", "spi_speed_hz", int),
    "busy": ("pins", "busy", int),
    "dio1": ("pins", "dio1", int),
    "reset": ("pins", "reset", int),
    "cs": ("pins", "cs", int),
    "txen": ("pins", "txen", int),
    "rxen": ("pins", "rxen", int),
}
E22_KEYS = {
    "channel": int, "air_rate": int, "address": lambda v: int(v, 0), "netid": int,
    "sub_packet": int, "power": int, "fixed": lambda v: v in ("1", "true", "yes"),
    "target": lambda v: int(v, 0), "lbt": lambda v: v in ("1", "true", "yes"),
    "rssi": lambda v: v not in ("0", "false", "no"), "persist": lambda v: v in ("1", "true"),
    "uart_baud": int,
}
E22_FIELDS = {"power": "power_dbm", "target": "target_address", "rssi": "rssi_byte"}
E22_OPEN = {"port": str, "m0": int, "m1": int, "aux": int}


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'driver:key=value,...' -> (driver, {key: value})."""
    driver, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"radio option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return driver.strip().lower(), options


def open_radio(spec: str | tuple[str, dict[str, str]], pin_factory=None):
    """Open and configure the radio a spec describes (raises a `WildlinkError` on failure)."""
    driver, options = parse_spec(spec) if isinstance(spec, str) else spec
    from gpiozero.exc import GPIOZeroError

    try:
        if driver == "sx1262":
            return _open_sx1262(dict(options), pin_factory)
        if driver == "e22":
            return _open_e22(dict(options), pin_factory)
    except GPIOZeroError as exc:
        raise RadioNotFound(f"GPIO unavailable ({exc}): run on a Raspberry Pi, or check that "
                            "the pins are free") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"bad {driver} radio option: {exc}") from None
    raise ConfigError(f"unknown radio driver {driver!r}: use sx1262 or e22")


def _open_sx1262(options: dict[str, str], pin_factory):
    from device.radio.sx1262 import SX1262, SX1262Config, SX1262Pins

    parts: dict[str, dict] = {"config": {}, "pins": {}}
    for key, value in options.items():
        if key not in SX1262_KEYS:
            raise ConfigError(f"unknown sx1262 option {key!r}; known: {', '.join(SX1262_KEYS)}")
        part, name, convert = SX1262_KEYS[key]
        parts[part][name] = convert(value)
    return SX1262(SX1262Config(**parts["config"]), SX1262Pins(**parts["pins"]),
                  pin_factory=pin_factory)


def _open_e22(options: dict[str, str], pin_factory):
    from device.radio.e22 import E22, E22Config, channel_for

    series = options.pop("series", "900")
    config, opened = {"series": series}, {}
    for key, value in options.items():
        if key == "freq":
            config["channel"] = channel_for(float(value) * 1e6, series)
        elif key in E22_KEYS:
            config[E22_FIELDS.get(key, key)] = E22_KEYS[key](value)
        elif key in E22_OPEN:
            opened[key] = E22_OPEN[key](value)
        else:
            known = ", ".join([*E22_KEYS, *E22_OPEN, "freq", "series"])
            raise ConfigError(f"unknown e22 option {key!r}; known: {known}")
    return E22(E22Config(**config), pin_factory=pin_factory, **opened)

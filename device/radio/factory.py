"""Open a radio: the one factory of the CLI, the services and the hardware tests.

A radio is described by its driver's own settings and wiring (`SX1262Config` + `SX1262Pins`,
`E22Config` + `E22Pins`, or `SimConfig` for the loopback-UDP simulator), each validated by its
driver's tables. The services read them from a config file (device/service/config.py); the CLI
and the hardware tests write them as a short text spec:

    sx1262:freq=868.1,sf=9,bw=125,busy=20,dio1=16,reset=18,module=core1262
    e22:port=/dev/serial0,m0=22,m1=27,freq=868.125,air_rate=2400

Spec units: `freq` in MHz, `bw` in kHz, `power` in dBm, `tcxo` in volts (0 = crystal). Keys not
given keep the defaults of the driver's settings. Driver modules are imported only for the chosen
type, so a base station on a PC never needs spidev and the simulator never touches GPIO.

Example:
    >>> radio = open_radio("sx1262:freq=869.525,sf=9")                # doctest: +SKIP
    >>> radio = build_radio(SX1262Config(), SX1262Pins(), pin_factory=MockFactory())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

from device.errors import ConfigError
from device.radio import sx126x_commands as cmd
from device.radio.airtime import Modulation
from device.radio.errors import RadioNotFound, SettingError

__all__ = ["SimConfig", "build_radio", "open_radio", "parse_spec", "settings_from_spec"]


@dataclass(frozen=True)
class SimConfig:
    """The simulated radio: loopback UDP, to one peer process or through a radio hub that any
    number of processes join (device/radio/hub.py: collisions and half-duplex)."""

    listen_port: int = 47001
    peer_port: int = 47002  #: the other process (ignored with a hub)
    hub_port: int = 0  #: the radio hub's port; 0 = no hub, talk to peer_port
    loss: float = 0.0  #: probability that a frame is lost, 0..0.99
    speedup: float = 1.0  #: the simulated clock runs this many times faster than wall time
    seed: int = 0
    modulation: Modulation = field(default_factory=Modulation)
    frequency_mhz: float = 869.525  #: the carrier (on a hub, only radios alike hear each other)

    def __post_init__(self) -> None:
        for name in ("listen_port", "peer_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise SettingError(name, f"must be in 1..65535, got {getattr(self, name)}")
        if not 0 <= self.hub_port <= 65535:
            raise SettingError("hub_port", f"must be in 0..65535 (0: no hub), got {self.hub_port}")
        if not 0.0 <= self.loss <= 0.99:
            raise SettingError("loss", f"must be in 0.0..0.99, got {self.loss}")
        if not self.speedup > 0:
            raise SettingError("speedup", f"must be > 0, got {self.speedup}")


def build_radio(settings, pins=None, pin_factory=None):
    """Open and configure the radio `settings` describe. Raises ConfigError or RadioError.

    Args:
        settings: an `SX1262Config`, an `E22Config` or a `SimConfig`.
        pins: its wiring (`SX1262Pins`, `E22Pins`; None = the driver's defaults).
        pin_factory: gpiozero pin factory for the driver's pins (MockFactory in tests).
    """
    from gpiozero.exc import GPIOZeroError

    from device.radio.e22 import E22Config
    from device.radio.sx1262_config import SX1262Config

    try:
        if isinstance(settings, SX1262Config):
            from device.radio.sx1262 import SX1262

            return SX1262(settings, pins, pin_factory=pin_factory)
        if isinstance(settings, E22Config):
            from device.radio.e22 import E22, E22Pins

            pins = pins or E22Pins()
            return E22(settings, pins.port, m0=pins.m0, m1=pins.m1, aux=pins.aux,
                       pin_factory=pin_factory)
    except GPIOZeroError as exc:
        raise RadioNotFound(f"GPIO unavailable ({exc}): run on a Raspberry Pi, or check that "
                            "the radio's pins are free") from None
    if isinstance(settings, SimConfig):
        from device.radio.sim import UdpRadio, loss_model

        hub = settings.hub_port or None
        return UdpRadio(settings.listen_port, None if hub else settings.peer_port, hub=hub,
                        modulation=settings.modulation, frequency_mhz=settings.frequency_mhz,
                        loss=loss_model(settings.loss, seed=settings.seed),
                        speedup=settings.speedup)
    raise ConfigError(f"no radio driver takes {type(settings).__name__} settings")


# --- text specs -----------------------------------------------------------------------------

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


def settings_from_spec(spec: str | tuple[str, dict[str, str]]):
    """(settings, pins) of the radio a spec describes, validated by the driver's tables."""
    driver, options = parse_spec(spec) if isinstance(spec, str) else spec
    try:
        if driver == "sx1262":
            return _sx1262_settings(dict(options))
        if driver == "e22":
            return _e22_settings(dict(options))
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"bad {driver} radio option: {exc}") from None
    raise ConfigError(f"unknown radio driver {driver!r}: use sx1262 or e22")


def open_radio(spec: str | tuple[str, dict[str, str]], pin_factory=None):
    """Open and configure the radio a spec describes (raises a `WildlinkError` on failure)."""
    settings, pins = settings_from_spec(spec)
    return build_radio(settings, pins, pin_factory)


def _sx1262_settings(options: dict[str, str]):
    from device.radio.sx1262_config import SX1262Config, SX1262Pins

    parts: dict[str, dict] = {"config": {}, "pins": {}}
    for key, value in options.items():
        if key not in SX1262_KEYS:
            raise ConfigError(f"unknown sx1262 option {key!r}; known: {', '.join(SX1262_KEYS)}")
        part, name, convert = SX1262_KEYS[key]
        parts[part][name] = convert(value)
    return SX1262Config(**parts["config"]), SX1262Pins(**parts["pins"])


def _e22_settings(options: dict[str, str]):
    from device.radio.e22 import E22Config, E22Pins, channel_for

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
    return E22Config(**config), E22Pins(**opened)

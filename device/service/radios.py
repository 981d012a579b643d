"""Build the radio a service's config names: an SX1262 on SPI, an E22 on the UART, or the simulator.

Driver modules are imported only for the chosen type, so a base station on a PC never needs
spidev and the simulator never touches GPIO. `check_plan` runs every check that needs no
hardware (the driver's settings, the carrier the radio really tunes to, its sub-band, dwell and
duty cycle) when the config loads, so a service never starts a link that cannot legally send.
"""

from __future__ import annotations

from device.errors import ConfigError, LinkError

__all__ = ["build_radio", "carrier_mhz", "check_plan", "dutycycle_for", "modulation_of"]


def modulation_of(radio_config):
    """The `Modulation` (SF, BW, CR, preamble) that fixes time on air.

    An E22 picks SF and bandwidth from its air rate and ignores `radio.sf`/`radio.bw_khz`.
    """
    from device.radio.airtime import Modulation

    if radio_config.type == "e22":
        from device.radio.e22 import AIR_MODULATION

        return AIR_MODULATION[radio_config.e22.air_rate]
    return Modulation(sf=radio_config.sf, bw_hz=radio_config.bw_khz * 1e3, cr=radio_config.cr,
                      preamble=radio_config.preamble)


def carrier_mhz(radio_config) -> float:
    """The frequency the configured radio really transmits on (an E22 tunes to its channel)."""
    if radio_config.type == "e22":
        return _e22_config(radio_config).frequency_mhz
    return radio_config.frequency_mhz


def dutycycle_for(radio_config, clock, radio=None):
    """The `DutyCycle` of the carrier in use: the radio's own `frequency_mhz` when it reports
    one (the E22 driver does), else the configured radio's carrier."""
    from device.link.dutycycle import DutyCycle

    freq = getattr(radio, "frequency_mhz", None) or carrier_mhz(radio_config)
    return DutyCycle(radio_config.region, freq, clock)


def check_plan(radio_config, signed: bool) -> None:
    """Refuse, with one line naming the key, a radio setup that could never send legally.

    Args:
        radio_config: a `RadioConfig` whose own fields are already range-checked.
        signed: the frames carry a MIC (a key is configured), which takes payload room.
    """
    from device.link.arq import frame_limit
    from device.radio.airtime import MAX_PAYLOAD
    from device.radio.clock import SystemClock

    kind, mtu = radio_config.type, MAX_PAYLOAD
    if kind == "e22":
        try:
            channel = _channel(radio_config)
        except ConfigError as exc:
            raise ConfigError(f"radio.frequency_mhz: {exc}") from None
        try:
            mtu = _e22_config(radio_config, channel).mtu
        except ConfigError as exc:
            raise ConfigError(f"radio.e22: {exc}") from None
    elif kind == "sx1262":
        try:
            mtu = _sx1262_config(radio_config).max_payload
        except ConfigError as exc:
            raise ConfigError(f"radio.sx1262: {exc}") from None
    try:
        dutycycle = dutycycle_for(radio_config, SystemClock())
    except ConfigError as exc:  # a sub-band gap (869.3 MHz in eu868)
        raise ConfigError(f"radio.frequency_mhz: {exc}") from None
    try:
        frame_limit(mtu, modulation_of(radio_config), dutycycle, signed)
    except LinkError as exc:  # dwell or duty cycle too short for a single frame
        raise ConfigError(f"radio: {exc}") from None


def build_radio(radio_config, pin_factory=None):
    """The configured radio, opened and configured. Raises ConfigError or RadioError.

    Args:
        radio_config: a `RadioConfig`.
        pin_factory: gpiozero pin factory for the drivers' pins (MockFactory in tests).
    """
    kind = radio_config.type
    if kind == "sim":
        from device.radio.sim import UdpRadio, loss_model

        sim = radio_config.sim
        return UdpRadio(
            sim.listen_port,
            sim.peer_port,
            modulation=modulation_of(radio_config),
            loss=loss_model(sim.loss, seed=sim.seed),
            speedup=sim.speedup,
        )
    if kind == "sx1262":
        return _sx1262(radio_config, pin_factory)
    if kind == "e22":
        return _e22(radio_config, pin_factory)
    raise ConfigError(f"radio.type: unknown radio {kind!r}")


def _sx1262_config(rc):
    from device.radio.sx1262_config import SX1262Config

    s = rc.sx1262
    return SX1262Config(
        frequency_hz=rc.frequency_mhz * 1e6, sf=rc.sf, bw_hz=rc.bw_khz * 1e3, cr=rc.cr,
        preamble=rc.preamble, tx_power_dbm=rc.tx_power_dbm, sync_word=rc.sync_word,
        module=s.module, tcxo_voltage=s.tcxo_voltage, dio2_rf_switch=s.dio2_rf_switch,
    )


def _sx1262(rc, pin_factory):
    from device.radio.sx1262 import SX1262, SX1262Pins

    s = rc.sx1262
    config = _sx1262_config(rc)
    pins = SX1262Pins(spi_bus=s.spi_bus, spi_device=s.spi_device, spi_speed_hz=s.spi_speed_hz,
                      busy=s.busy_pin, dio1=s.dio1_pin, reset=s.reset_pin, cs=s.cs_pin,
                      txen=s.txen_pin, rxen=s.rxen_pin)
    return _gpio_errors(lambda: SX1262(config, pins, pin_factory=pin_factory))


def _channel(rc) -> int:
    from device.radio.e22 import channel_for

    return channel_for(rc.frequency_mhz * 1e6, rc.e22.series)


def _e22_config(rc, channel: int | None = None):
    """The driver's settings; the channel must be exactly `radio.frequency_mhz` (no rounding)."""
    from device.radio.e22 import E22Config

    e = rc.e22
    return E22Config(address=e.address, netid=e.net_id,
                     channel=_channel(rc) if channel is None else channel, series=e.series,
                     air_rate=e.air_rate, sub_packet=e.sub_packet, power_dbm=rc.tx_power_dbm)


def _e22(rc, pin_factory):
    from device.radio.e22 import E22

    e = rc.e22
    config = _e22_config(rc)
    return _gpio_errors(lambda: E22(config, e.port, m0=e.m0_pin, m1=e.m1_pin, aux=e.aux_pin,
                                    pin_factory=pin_factory))


def _gpio_errors(open_radio):
    """gpiozero's own errors (no GPIO here, pin busy) as one-line RadioErrors."""
    from gpiozero.exc import GPIOZeroError

    from device.errors import RadioError

    try:
        return open_radio()
    except GPIOZeroError as exc:
        raise RadioError(f"GPIO unavailable ({exc}): run on a Raspberry Pi, or check that the "
                         "radio's pins are free") from None

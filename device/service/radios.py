"""Build the radio a service's config names: an SX1262 on SPI, an E22 on the UART, or the simulator.

Driver modules are imported only for the chosen type, so a base station on a PC never needs
spidev and the simulator never touches GPIO.
"""

from __future__ import annotations

from device.errors import ConfigError

__all__ = ["build_radio", "modulation_of"]


def modulation_of(radio_config):
    """The `Modulation` (SF, BW, CR, preamble) that fixes time on air."""
    from device.radio.airtime import Modulation

    return Modulation(sf=radio_config.sf, bw_hz=radio_config.bw_khz * 1e3, cr=radio_config.cr,
                      preamble=radio_config.preamble)


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


def _sx1262(rc, pin_factory):
    from device.radio.sx1262 import SX1262, SX1262Config, SX1262Pins

    s = rc.sx1262
    config = SX1262Config(
        frequency_hz=rc.frequency_mhz * 1e6, sf=rc.sf, bw_hz=rc.bw_khz * 1e3, cr=rc.cr,
        preamble=rc.preamble, tx_power_dbm=rc.tx_power_dbm, sync_word=rc.sync_word,
        module=s.module, tcxo_voltage=s.tcxo_voltage, dio2_rf_switch=s.dio2_rf_switch,
    )
    pins = SX1262Pins(spi_bus=s.spi_bus, spi_device=s.spi_device, spi_speed_hz=s.spi_speed_hz,
                      busy=s.busy_pin, dio1=s.dio1_pin, reset=s.reset_pin, cs=s.cs_pin,
                      txen=s.txen_pin, rxen=s.rxen_pin)
    return _gpio_errors(lambda: SX1262(config, pins, pin_factory=pin_factory))


def _e22(rc, pin_factory):
    from device.radio.e22 import E22, E22Config, channel_for

    e = rc.e22
    config = E22Config(address=e.address, netid=e.net_id,
                       channel=channel_for(rc.frequency_mhz * 1e6, e.series),
                       air_rate=e.air_rate, sub_packet=e.sub_packet, power_dbm=rc.tx_power_dbm)
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

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


def _sx1262(radio_config, pin_factory):
    from device.radio import sx1262

    raise ConfigError(f"radio.type: sx1262 driver API not wired yet ({sx1262.__name__})")


def _e22(radio_config, pin_factory):
    from device.radio import e22

    raise ConfigError(f"radio.type: e22 driver API not wired yet ({e22.__name__})")

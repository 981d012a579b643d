"""The radio interface the link layer sees (DESIGN.md, "Radio interface").

The SX1262 SPI driver, the E22 UART driver and the simulator all implement it, so the link
layer runs unchanged on any of them.

Optional parts (not in the protocol, so `isinstance(radio, Radio)` does not need them):

- `channel_active() -> bool`: whether a LoRa signal is on the channel now, for listening before
  talking; both drivers and the simulator have it. The SX1262 runs one channel activity
  detection (datasheet 13.1.8 SetCad, 13.4.7 SetCadParams); the simulator asks its shared air;
  the E22 cannot over its UART and always answers False.
- `frequency_mhz`: the carrier the radio really transmits on, when it differs from what was
  configured (an E22 tunes to its channel raster); the duty cycle is scheduled by it.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from device.radio.airtime import Modulation


class Reception(NamedTuple):
    """One received frame with its link quality."""

    frame: bytes
    rssi: float  #: dBm
    snr: float  #: dB


@runtime_checkable
class Radio(Protocol):
    """What every radio offers the link layer.

    Example:
        >>> radio.send(b"hello")            # doctest: +SKIP
        0.0412
        >>> radio.receive(timeout=2.0)      # doctest: +SKIP
        Reception(frame=b'hi', rssi=-71.0, snr=9.5)
    """

    #: Largest payload in bytes that `send` accepts.
    mtu: int
    #: SF, bandwidth, coding rate and preamble: what fixes a frame's time on air (duty cycle,
    #: dwell and ARQ timeouts are planned from it).
    modulation: Modulation

    def send(self, frame: bytes) -> float:
        """Transmit one frame; block until it is sent; return its time on air in seconds."""
        ...

    def receive(self, timeout: float) -> Reception | None:
        """Wait up to `timeout` seconds for one frame; None when nothing (valid) arrived."""
        ...

    def close(self) -> None:
        """Put the radio to sleep and release its bus and pins."""
        ...

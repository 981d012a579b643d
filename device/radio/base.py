"""The radio interface the link layer sees (DESIGN.md, "Radio interface").

The SX1262 SPI driver, the E22 UART driver and the simulator all implement it, so the link
layer runs unchanged on any of them.
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

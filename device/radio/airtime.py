"""LoRa time on air, from the SX126x datasheet.

Semtech SX1261/2 datasheet rev. 2.1, section 6.1.4 "LoRa Time-on-Air": a packet is a preamble,
a sync word and header part, and payload symbols that carry `8*PL + 16*CRC - 4*SF + 8 + 20*IH`
bits in groups of `4*SF` bits (`4*(SF-2)` with low data-rate optimisation, LDRO), each group
coded into `CR` symbols (CR = 5..8 for 4/5..4/8).

    N_sym = N_preamble + 4.25 + 8 + ceil(max(8*PL + 16*CRC - 4*SF + 8 + 20*H, 0)
                                         / (4*(SF - 2*LDRO))) * CR         (SF7..SF12)
    N_sym = N_preamble + 6.25 + 8 + ceil(max(8*PL + 16*CRC - 4*SF + 20*H, 0) / (4*SF)) * CR
                                                                           (SF5, SF6)
    T_sym = 2**SF / BW

where H = 1 with the explicit header. LDRO is switched on when a symbol lasts 16 ms or longer
(datasheet 6.1.1.4: "recommended ... when the symbol time is equal or above 16.38 ms"; SF11 and
SF12 at 125 kHz), which is what every driver (and our SX1262 driver) does.

Check against the datasheet calculator: 240 bytes, preamble 8, CR 4/5, BW 125 kHz gives
379.1 ms at SF7, 1188.9 ms at SF9 and 8527.9 ms at SF12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "LDRO_SYMBOL_TIME",
    "MAX_PAYLOAD",
    "Modulation",
    "ldro_needed",
    "symbol_time",
    "time_on_air",
]

#: Symbol time (s) from which LDRO is switched on automatically (datasheet 6.1.1.4).
LDRO_SYMBOL_TIME = 0.016
#: Largest LoRa payload of the SX126x in bytes (8-bit length field).
MAX_PAYLOAD = 255


def symbol_time(sf: int, bw_hz: float) -> float:
    """Duration of one LoRa symbol in seconds: 2**SF / BW.

    Args:
        sf: spreading factor, 5..12.
        bw_hz: bandwidth in Hz (125e3, 250e3, 500e3, ...).
    """
    _check_sf_bw(sf, bw_hz)
    return (1 << sf) / bw_hz


def ldro_needed(sf: int, bw_hz: float) -> bool:
    """Whether low data-rate optimisation is on by the 16 ms symbol-time rule."""
    return symbol_time(sf, bw_hz) >= LDRO_SYMBOL_TIME


def time_on_air(
    payload_len: int,
    sf: int,
    bw_hz: float,
    cr: int = 5,
    preamble: int = 8,
    explicit_header: bool = True,
    crc: bool = True,
    ldro: bool | None = None,
) -> float:
    """Seconds one LoRa packet occupies the channel (SX126x datasheet 6.1.4).

    Args:
        payload_len: payload bytes, 0..255.
        sf: spreading factor, 5..12.
        bw_hz: bandwidth in Hz.
        cr: coding-rate denominator, 5..8 (4/5 .. 4/8).
        preamble: programmed preamble length in symbols.
        explicit_header: explicit (variable-length) header, as the link layer uses.
        crc: payload CRC on.
        ldro: low data-rate optimisation; None = automatic at symbol time >= 16 ms.

    Returns:
        Time on air in seconds.

    Example:
        >>> round(time_on_air(240, 7, 125e3) * 1000, 1)
        379.1
    """
    if not 0 <= payload_len <= MAX_PAYLOAD:
        raise ValueError(f"LoRa payload must be 0..{MAX_PAYLOAD} bytes, got {payload_len}")
    if not 5 <= cr <= 8:
        raise ValueError(f"coding rate is the denominator 5..8 (4/5..4/8), got {cr}")
    if preamble < 1:
        raise ValueError(f"preamble must be at least 1 symbol, got {preamble}")
    t_sym = symbol_time(sf, bw_hz)
    if ldro is None:
        ldro = t_sym >= LDRO_SYMBOL_TIME
    header = 1 if explicit_header else 0
    if sf <= 6:
        # SF5/SF6: 6.25 preamble-tail symbols, no +8 bits, LDRO never applies.
        bits = 8 * payload_len + 16 * int(crc) - 4 * sf + 20 * header
        groups = math.ceil(max(bits, 0) / (4 * sf))
        n_sym = preamble + 6.25 + 8 + groups * cr
    else:
        bits = 8 * payload_len + 16 * int(crc) - 4 * sf + 8 + 20 * header
        groups = math.ceil(max(bits, 0) / (4 * (sf - 2 * int(ldro))))
        n_sym = preamble + 4.25 + 8 + groups * cr
    return n_sym * t_sym


def _check_sf_bw(sf: int, bw_hz: float) -> None:
    if not 5 <= sf <= 12:
        raise ValueError(f"spreading factor must be 5..12, got {sf}")
    if not bw_hz > 0:
        raise ValueError(f"bandwidth must be positive (Hz), got {bw_hz}")


@dataclass(frozen=True)
class Modulation:
    """The LoRa settings that fix airtime; radios expose one as `radio.modulation`.

    Example:
        >>> round(Modulation(sf=9).time_on_air(240), 3)
        1.189
    """

    sf: int = 9
    bw_hz: float = 125e3
    cr: int = 5
    preamble: int = 8

    def __post_init__(self) -> None:
        _check_sf_bw(self.sf, self.bw_hz)
        if not 5 <= self.cr <= 8:
            raise ValueError(f"coding rate is the denominator 5..8 (4/5..4/8), got {self.cr}")

    def time_on_air(self, payload_len: int) -> float:
        """Seconds on air for one packet of `payload_len` bytes (explicit header, CRC on)."""
        return time_on_air(payload_len, self.sf, self.bw_hz, self.cr, self.preamble)

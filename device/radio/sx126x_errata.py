"""Workarounds for the SX126x known limitations, datasheet chapter 15.

Each function takes the chip (anything with `read_register(address, count) -> bytes` and
`write_register(address, data)`) and does one read-modify-write, so the driver calls them at the
points the datasheet names. LoRaRF-Python got two of them wrong (the IQ-polarity bit of 15.4
the wrong way round, the 500 kHz value of 15.1 computed but never written); tests/test_sx1262.py
checks each register value against the datasheet text.
"""

from __future__ import annotations

from typing import Protocol

from device.radio import sx126x_commands as cmd


class RegisterAccess(Protocol):
    def read_register(self, address: int, count: int = 1) -> bytes: ...

    def write_register(self, address: int, data: bytes) -> None: ...


def fix_sensitivity(chip: RegisterAccess, bw_hz: float) -> None:
    """15.1 "Modulation Quality with 500 kHz LoRa Bandwidth": before every transmission, bit 2 of
    TxModulation (0x0889) is 0 at 500 kHz and 1 at every other bandwidth."""
    value = chip.read_register(cmd.REG_TX_MODULATION)[0]
    value = value & ~0x04 if bw_hz >= 500e3 else value | 0x04
    chip.write_register(cmd.REG_TX_MODULATION, bytes([value & 0xFF]))


def fix_pa_clamping(chip: RegisterAccess) -> None:
    """15.2 "Better Resistance of the SX1262 Tx to Antenna Mismatch": bits 4:1 of TxClampConfig
    (0x08D8) set to 1111 (the reset value is 0100), after SetPaConfig and after every reset."""
    value = chip.read_register(cmd.REG_TX_CLAMP_CONFIG)[0]
    chip.write_register(cmd.REG_TX_CLAMP_CONFIG, bytes([value | 0x1E]))


def fix_implicit_timeout(chip: RegisterAccess) -> None:
    """15.3 "Implicit Header Mode Timeout Behavior": after an RX with a timeout in implicit-header
    mode the RTC keeps running; stop it (write 0 to 0x0902) and clear the pending timeout event
    (set bit 1 of 0x0944)."""
    chip.write_register(cmd.REG_RTC_CONTROL, b"\x00")
    value = chip.read_register(cmd.REG_EVENT_MASK)[0]
    chip.write_register(cmd.REG_EVENT_MASK, bytes([value | 0x02]))


def fix_inverted_iq(chip: RegisterAccess, inverted: bool) -> None:
    """15.4 "Optimizing the Inverted IQ Operation": bit 2 of IQ polarity (0x0736) is 0 with
    inverted IQ and 1 with standard IQ, set after SetPacketParams."""
    value = chip.read_register(cmd.REG_IQ_POLARITY)[0]
    value = value & ~0x04 if inverted else value | 0x04
    chip.write_register(cmd.REG_IQ_POLARITY, bytes([value & 0xFF]))

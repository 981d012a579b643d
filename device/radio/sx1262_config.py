"""SX1262 settings and the command parameters they turn into (pure functions, no hardware).

`SX1262Config` is what a user chooses (frequency, SF, BW, power, module); `SX1262Pins` is how
the chip is wired to the Pi. The `*_params` functions encode them into the exact bytes the
datasheet's commands take, so tests check those bytes against the datasheet tables without a
chip, and the driver (`sx1262.py`) only sequences commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from device.radio import sx126x_commands as cmd
from device.radio.airtime import Modulation, ldro_needed
from device.radio.errors import SettingError


@dataclass(frozen=True)
class Module:
    """The RF front end around the chip: what the driver must switch and may not exceed."""

    name: str
    max_power_dbm: int
    tcxo_voltage: float | None  #: DIO3 supply for the TCXO; None = crystal
    dio2_rf_switch: bool  #: DIO2 drives the antenna switch (else TXEN/RXEN pins, or none)
    use_dcdc: bool = True  #: the module has the DC-DC inductor fitted


#: Known modules. Check your module's datasheet; a wrong TCXO voltage falls back to the crystal
#: (logged), a missing RF switch setting shows as a deaf receiver.
MODULES = {
    "sx1262": Module("bare SX1262 (crystal, DIO2 RF switch)", 22, None, True),
    "core1262": Module("Waveshare Core1262-LF/HF", 22, 1.8, True),
    "e22-900m22s": Module("Ebyte E22-900M22S / E22-400M22S", 22, 1.8, False),
}


@dataclass(frozen=True)
class SX1262Config:
    """LoRa settings. Frequencies in Hz, power in dBm, timeouts in seconds.

    Example:
        >>> SX1262Config(frequency_hz=868.1e6, sf=9, bw_hz=125e3).ldro
        False
    """

    frequency_hz: float = 868.1e6
    sf: int = 9
    bw_hz: float = 125e3
    cr: int = 5  #: coding-rate denominator, 4/5..4/8
    preamble: int = 8
    tx_power_dbm: int = 14
    sync_word: int = cmd.SYNC_WORD_PRIVATE
    crc: bool = True
    explicit_header: bool = True
    #: implicit header only: the one payload length both ends use (the header does not carry it)
    implicit_length: int = 255
    invert_iq: bool = False
    module: str = "sx1262"
    #: None = the module's default; 0 = force the crystal; else DIO3 volts (1.6..3.3)
    tcxo_voltage: float | None = None
    tcxo_delay_s: float = 0.005
    #: None = the module's default
    dio2_rf_switch: bool | None = None
    current_limit_ma: float = 140.0
    rx_boosted_gain: bool = True

    def __post_init__(self) -> None:
        if self.module not in MODULES:
            raise SettingError("module", f"unknown module {self.module!r}; known: "
                               f"{', '.join(MODULES)}")
        if not 150e6 <= self.frequency_hz <= 960e6:
            raise SettingError("frequency_hz", "SX1262 frequency must be 150..960 MHz, got "
                               f"{self.frequency_hz / 1e6:g} MHz")
        if not 5 <= self.sf <= 12:
            raise SettingError("sf", f"spreading factor must be 5..12, got {self.sf}")
        bw_code(self.bw_hz)
        if not 5 <= self.cr <= 8:
            raise SettingError("cr", f"coding rate is the denominator 5..8, got {self.cr}")
        if not 1 <= self.preamble <= 0xFFFF:
            raise SettingError("preamble", f"preamble must be 1..65535 symbols, got {self.preamble}")
        top = MODULES[self.module].max_power_dbm
        if not cmd.TX_POWER_MIN_SX1262 <= self.tx_power_dbm <= top:
            raise SettingError("tx_power_dbm", f"TX power must be {cmd.TX_POWER_MIN_SX1262}..{top} "
                               f"dBm on {self.module}, got {self.tx_power_dbm}")
        if not 1 <= self.implicit_length <= 255:
            raise SettingError("implicit_length",
                               f"implicit_length must be 1..255, got {self.implicit_length}")
        if not 0 <= self.sync_word <= 0xFFFF:
            raise SettingError("sync_word", f"sync word is two bytes, got {self.sync_word:#x}")
        volts = self.tcxo
        if volts is not None and volts not in cmd.DIO3_OUTPUT:
            raise SettingError("tcxo_voltage", "TCXO voltage must be one of "
                               f"{sorted(cmd.DIO3_OUTPUT)} V, got {volts}")
        if not 0 < self.current_limit_ma <= 140:
            raise SettingError("current_limit_ma",
                               f"current limit must be 0..140 mA, got {self.current_limit_ma}")

    @property
    def modulation(self) -> Modulation:
        """What fixes time on air (the link plans duty cycle and timeouts with it)."""
        return Modulation(self.sf, self.bw_hz, self.cr, self.preamble)

    @property
    def ldro(self) -> bool:
        """Low data-rate optimisation, on when a symbol lasts 16 ms or more (6.1.1.4)."""
        return ldro_needed(self.sf, self.bw_hz)

    @property
    def max_payload(self) -> int:
        """Largest frame: 255 with the explicit header, else exactly `implicit_length`."""
        return 255 if self.explicit_header else self.implicit_length

    @property
    def tcxo(self) -> float | None:
        """DIO3 TCXO voltage in use, or None for the crystal."""
        if self.tcxo_voltage is None:
            return MODULES[self.module].tcxo_voltage
        return None if self.tcxo_voltage == 0 else float(self.tcxo_voltage)

    @property
    def dio2_switch(self) -> bool:
        if self.dio2_rf_switch is None:
            return MODULES[self.module].dio2_rf_switch
        return self.dio2_rf_switch


@dataclass(frozen=True)
class SX1262Pins:
    """Wiring, in BCM GPIO numbers. Defaults: the Waveshare SX1262 LoRaWAN/GNSS HAT's BUSY,
    DIO1 and RESET with the chip select on CE0 (docs/hardware.md has the table)."""

    spi_bus: int = 0
    spi_device: int = 0
    spi_speed_hz: int = 2_000_000
    busy: int = 20
    dio1: int = 16
    reset: int = 18
    cs: int | None = None  #: a GPIO chip select instead of the SPI device's CE line
    txen: int | None = None
    rxen: int | None = None

    def __post_init__(self) -> None:
        if not 100_000 <= self.spi_speed_hz <= 16_000_000:
            raise SettingError("spi_speed_hz",
                               f"SX1262 SPI clock must be 0.1..16 MHz, got {self.spi_speed_hz}")


# --- command parameters (datasheet chapter 13) ------------------------------------------------


def bw_code(bw_hz: float) -> int:
    """SetModulationParams bandwidth code (13.4.5) for a bandwidth in Hz."""
    for hz, code in cmd.LORA_BW.items():
        if abs(hz - bw_hz) < 0.01 * hz:
            return code
    khz = ", ".join(f"{hz / 1e3:g}" for hz in sorted(cmd.LORA_BW))
    raise SettingError("bw_hz", f"LoRa bandwidth must be one of {khz} kHz, got {bw_hz / 1e3:g}")


def timeout_steps(seconds: float) -> int:
    """A timeout in 15.625 us steps (13.1.4), clamped below the 'continuous' value 0xFFFFFF."""
    return max(1, min(0xFFFFFE, math.ceil(seconds / cmd.TIMEOUT_STEP_S)))


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def rf_frequency_params(frequency_hz: float) -> bytes:
    """SetRfFrequency (13.4.1): RfFreq = f * 2**25 / 32 MHz, four bytes MSB first."""
    return round(frequency_hz * cmd.FREQ_DIV / cmd.XTAL_FREQ).to_bytes(4, "big")


def calibrate_image_params(frequency_hz: float) -> bytes:
    """CalibrateImage (9.2.1, table 9-2): the band's pair, else a 4 MHz-step window around f."""
    for (low, high), pair in cmd.CALIBRATE_IMAGE_BANDS:
        if low <= frequency_hz <= high:
            return bytes(pair)
    mhz = frequency_hz / 1e6
    return bytes([max(0, math.floor(mhz / 4) - 1), min(255, math.ceil(mhz / 4) + 1)])


def pa_params(power_dbm: int) -> tuple[bytes, bytes]:
    """(SetPaConfig, SetTxParams) for the SX1262 high-power PA (13.1.14, table 13-21).

    The table's rows (+22/+20/+17/+14 dBm) are optimal with +22 in SetTxParams; a power between
    rows uses the next row up and lowers SetTxParams by the difference. Every power from -9 to
    +22 dBm is applied (LoRaRF-Python returned without configuring the PA below +14 dBm on the
    SX1262), and the SX1261 low-power PA (deviceSel 1), absent on an SX1262, is never selected.
    """
    rows = sorted(cmd.PA_CONFIG_SX1262)
    row = next((r for r in rows if r >= power_dbm), rows[-1])
    duty, hp_max = cmd.PA_CONFIG_SX1262[row]
    power = max(cmd.TX_POWER_MIN_SX1262, cmd.TX_POWER_MAX_SX1262 - (row - power_dbm))
    pa = bytes([duty, hp_max, cmd.PA_DEVICE_SEL_SX1262, cmd.PA_LUT])
    return pa, bytes([power & 0xFF, cmd.RAMP_200U])


def modulation_params(config: SX1262Config) -> bytes:
    """SetModulationParams for LoRa (13.4.5): SF, BW, CR, LDRO (on at symbol >= 16 ms)."""
    ldro = cmd.LORA_LDRO_ON if config.ldro else cmd.LORA_LDRO_OFF
    return bytes([config.sf, bw_code(config.bw_hz), config.cr - 4, ldro])


def packet_params(config: SX1262Config, payload_len: int) -> bytes:
    """SetPacketParams for LoRa (13.4.6): preamble, header type, length, CRC, IQ."""
    header = cmd.LORA_HEADER_EXPLICIT if config.explicit_header else cmd.LORA_HEADER_IMPLICIT
    crc = cmd.LORA_CRC_ON if config.crc else cmd.LORA_CRC_OFF
    iq = cmd.LORA_IQ_INVERTED if config.invert_iq else cmd.LORA_IQ_STANDARD
    return config.preamble.to_bytes(2, "big") + bytes([header, payload_len, crc, iq])


def cad_symbols(config: SX1262Config) -> int:
    """Symbols one CAD listens for (the recommended cadSymbolNum for the SF)."""
    return cmd.CAD_RECOMMENDED[min(12, max(7, config.sf))][0]


def cad_params(config: SX1262Config) -> bytes:
    """SetCadParams (13.4.7): cadSymbolNum, cadDetPeak, cadDetMin for the SF (AN1200.48),
    cadExitMode CAD_ONLY (back to STDBY_RC), cadTimeout 0 (used by CAD_RX only)."""
    symbols, peak, minimum = cmd.CAD_RECOMMENDED[min(12, max(7, config.sf))]
    return bytes([cmd.CAD_ON_SYMBOLS[symbols], peak, minimum, cmd.CAD_ONLY]) + u24(0)


def tcxo_params(voltage: float, delay_s: float) -> bytes:
    """SetDIO3AsTcxoCtrl (13.3.6): voltage code and start-up delay in 15.625 us steps."""
    return bytes([cmd.DIO3_OUTPUT[voltage]]) + u24(timeout_steps(delay_s))


def irq_params(mask: int) -> bytes:
    """SetDioIrqParams (13.3.1): the same mask on IRQ and DIO1, nothing on DIO2/DIO3."""
    return b"".join(m.to_bytes(2, "big") for m in (mask, mask, 0, 0))


def ocp_value(current_ma: float) -> int:
    """OCP register (0x08E7) value: 2.5 mA steps."""
    return min(0x38, int(current_ma / cmd.OCP_STEP_MA))

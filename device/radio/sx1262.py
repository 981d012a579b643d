"""SX1262 LoRa transceiver on a Raspberry Pi's SPI bus: the `Radio` interface on real silicon.

The chip takes commands over SPI (opcode, parameters; datasheet chapter 13) and says when it can
take the next one on BUSY; it reports TxDone/RxDone/Timeout/CrcErr/HeaderErr on DIO1. This driver
waits for BUSY before every command (with a timeout), waits for DIO1 by edge (gpiozero's event,
no spinning), and checks the status byte after every write with GetStatus, mapped to errors in
`check_status` only. A stuck BUSY or a missing interrupt ends in a hard reset and a full re-init
(logged, counted in `stats`). A send is then tried once more, and if that fails too the error
reaches the caller: a frame is never dropped silently. A receive listens on after the reset
until its timeout. A reset that fails itself raises to the caller.

Hardware is injected: `bus` is anything with `transfer(bytes) -> bytes` (default: spidev, opened
lazily) and `pin_factory` is gpiozero's (tests pass `MockFactory` and an emulated chip).

Example:
    >>> radio = SX1262(SX1262Config(frequency_hz=868.1e6, sf=9))      # doctest: +SKIP
    >>> radio.send(b"hello")                                            # doctest: +SKIP
    0.124
    >>> radio.receive(timeout=5.0)                                      # doctest: +SKIP
    Reception(frame=b'hi', rssi=-71.0, snr=9.5)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from device.radio import sx126x_commands as cmd
from device.radio import sx126x_errata as errata
from device.radio.airtime import MAX_PAYLOAD, symbol_time, time_on_air
from device.radio.base import Reception
from device.radio.errors import (
    BusyTimeout,
    CommandError,
    FrameSizeError,
    IrqTimeout,
    RadioError,
    RadioNotFound,
)
from device.radio.sx1262_config import (
    MODULES,
    SX1262Config,
    SX1262Pins,
    cad_params,
    cad_symbols,
    calibrate_image_params,
    irq_params,
    modulation_params,
    ocp_value,
    pa_params,
    packet_params,
    rf_frequency_params,
    tcxo_params,
    timeout_steps,
    u24,
)

__all__ = ["SX1262", "SX1262Config", "SX1262Pins", "ChipStatus", "SpiBus", "check_status"]

log = logging.getLogger(__name__)

#: The interrupts of a packet (13.3.1), and with CadDone/CadDetected those on DIO1.
PACKET_IRQ = (cmd.IRQ_TX_DONE | cmd.IRQ_RX_DONE | cmd.IRQ_TIMEOUT | cmd.IRQ_HEADER_ERR
              | cmd.IRQ_CRC_ERR)
IRQ_MASK = PACKET_IRQ | cmd.IRQ_CAD_DONE | cmd.IRQ_CAD_DETECTED
NOT_FOUND = "failed to find SX1262, check wiring and BUSY pin"


class SpiBus(Protocol):
    """A full-duplex SPI transfer with chip select held for the whole message."""

    def transfer(self, data: bytes) -> bytes: ...

    def close(self) -> None: ...


class SpidevBus:
    """/dev/spidevB.D through spidev: mode 0, MSB first, optional GPIO chip select."""

    def __init__(self, pins: SX1262Pins, pin_factory=None) -> None:
        import spidev  # Pi only

        self._spi = spidev.SpiDev()
        path = f"/dev/spidev{pins.spi_bus}.{pins.spi_device}"
        try:
            self._spi.open(pins.spi_bus, pins.spi_device)
        except FileNotFoundError:
            raise RadioNotFound(f"{path} not found: enable SPI (raspi-config > Interface "
                                "Options > SPI) and check --spi-bus/--spi-device") from None
        self._spi.mode = 0
        self._spi.max_speed_hz = pins.spi_speed_hz
        self._cs = None
        if pins.cs is not None:
            from gpiozero import DigitalOutputDevice

            self._spi.no_cs = True
            self._cs = DigitalOutputDevice(pins.cs, active_high=False, initial_value=False,
                                           pin_factory=pin_factory)

    def transfer(self, data: bytes) -> bytes:
        if self._cs is None:
            return bytes(self._spi.xfer2(list(data)))
        self._cs.on()
        try:
            return bytes(self._spi.xfer2(list(data)))
        finally:
            self._cs.off()

    def close(self) -> None:
        self._spi.close()
        if self._cs is not None:
            self._cs.close()


def check_status(status: int, opcode: int) -> int:
    """Map a status byte (13.5.1) to an error; the one place that does (RadioLib's habit)."""
    if status in (0x00, 0xFF):
        raise RadioNotFound(NOT_FOUND)
    code = status & cmd.STATUS_CMD_MASK
    if code == cmd.STATUS_CMD_TIMEOUT:
        raise CommandError(f"SX1262 command {opcode:#04x}: command timeout (status {status:#04x})")
    if code == cmd.STATUS_CMD_INVALID:
        raise CommandError(f"SX1262 command {opcode:#04x}: invalid opcode or parameters "
                           f"(status {status:#04x})")
    if code == cmd.STATUS_CMD_FAILED:
        raise CommandError(f"SX1262 command {opcode:#04x}: failed to execute (status {status:#04x})")
    return status


@dataclass(frozen=True)
class ChipStatus:
    """What `wildlink radio` shows about the chip."""

    mode: str
    version: str
    device_errors: tuple[str, ...]
    tcxo: float | None
    rssi_inst: float  #: dBm, instantaneous (RX)


@dataclass
class Stats:
    resets: int = 0
    crc_errors: int = 0
    header_errors: int = 0
    sent: int = 0
    received: int = 0
    dio1_misses: int = 0
    cads: int = 0  #: channel activity detections run
    cad_detected: int = 0  #: of which found the channel busy
    reasons: deque[str] = field(default_factory=lambda: deque(maxlen=20))  #: last resets' causes


class SX1262:
    """An SX1262 behind the `Radio` interface (`mtu`, `modulation`, `send`, `receive`, `close`,
    and the optional `channel_active`)."""

    def __init__(self, config: SX1262Config | None = None, pins: SX1262Pins | None = None, *,
                 bus: SpiBus | None = None, pin_factory=None, busy_timeout: float = 0.1,
                 irq_margin: float = 0.5) -> None:
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        self.config = config or SX1262Config()
        self.pins = pins or SX1262Pins()
        self.mtu = self.config.max_payload
        self.modulation = self.config.modulation
        self.busy_timeout = busy_timeout
        self.irq_margin = irq_margin
        self.stats = Stats()
        self.tcxo: float | None = None  # set by init: the TCXO voltage in use, or None
        self._lock = threading.RLock()
        self._closed = False
        self._bus: SpiBus | None = bus
        p, f = self.pins, pin_factory
        self._busy = self._dio1 = self._reset = self._txen = self._rxen = None
        try:
            # BUSY and DIO1 are push-pull outputs of the chip: no pull resistor.
            self._busy = DigitalInputDevice(p.busy, pull_up=None, active_state=True,
                                            pin_factory=f)
            self._dio1 = DigitalInputDevice(p.dio1, pull_up=None, active_state=True,
                                            pin_factory=f)
            self._reset = DigitalOutputDevice(p.reset, active_high=False, initial_value=False,
                                              pin_factory=f)
            if p.txen is not None:
                self._txen = DigitalOutputDevice(p.txen, pin_factory=f)
            if p.rxen is not None:
                self._rxen = DigitalOutputDevice(p.rxen, pin_factory=f)
            if self._bus is None:
                self._bus = SpidevBus(self.pins, pin_factory)
            self._init_chip()
        except BaseException:
            self._release()
            raise

    # --- the Radio interface -----------------------------------------------------------------

    def send(self, frame: bytes) -> float:
        """Transmit one frame (1..255 bytes); block until TxDone; return seconds on air."""
        frame = bytes(frame)
        low = 1 if self.config.explicit_header else self.mtu
        if not low <= len(frame) <= self.mtu:
            raise FrameSizeError(f"SX1262 frame must be {low}..{self.mtu} bytes, got {len(frame)}")
        with self._lock:
            self._check_open()
            try:
                seconds = self._transmit(frame)
            except (BusyTimeout, IrqTimeout) as exc:
                self._recover(f"send: {exc}")
                seconds = self._transmit(frame)
            self.stats.sent += 1
            return seconds

    def receive(self, timeout: float) -> Reception | None:
        """Listen up to `timeout` seconds; return the first frame that passes the CRC, or None."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._check_open()
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    got = self._receive_once(remaining)
                except (BusyTimeout, IrqTimeout) as exc:
                    self._recover(f"receive: {exc}")
                    continue
                if got is not None:
                    self.stats.received += 1
                    return got
            return None

    def channel_active(self) -> bool:
        """Whether a LoRa signal is on the channel now: one channel activity detection.

        SetCadParams (13.4.7) with the SF's recommended symbols and thresholds (AN1200.48),
        SetCad (13.1.8), then CadDone on DIO1; True when CadDetected is set with it. It listens
        for 2 symbols (8 ms at SF9/125 kHz) and detects preambles and, less reliably, payloads
        of the same SF and bandwidth; other LoRa settings and other modulations look free.
        A stuck BUSY or a missing CadDone resets the chip and tries once more, as `send` does.
        """
        with self._lock:
            self._check_open()
            try:
                return self._cad()
            except (BusyTimeout, IrqTimeout) as exc:
                self._recover(f"CAD: {exc}")
                return self._cad()

    def close(self) -> None:
        """Sleep (cold start: lowest current) and release the bus and pins."""
        with self._lock:
            if self._closed:
                return
            try:
                self._standby()
                self._rf_switch(None)
                # SetSleep: BUSY stays high while asleep, so nothing is verified after it.
                self._xfer(bytes([cmd.CMD_SET_SLEEP, cmd.SLEEP_START_COLD]))
            except RadioError as exc:
                log.warning("SX1262 close: could not put the chip to sleep: %s", exc)
            finally:
                self._release()

    def __enter__(self) -> SX1262:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- diagnostics --------------------------------------------------------------------------

    def status(self) -> ChipStatus:
        """Chip mode, version string, device errors and instantaneous RSSI."""
        with self._lock:
            self._check_open()
            mode = cmd.CHIP_MODES.get(self.get_status() & cmd.STATUS_MODE_MASK, "?")
            errors = self.device_errors()
            # GetRssiInst (13.5.4) is only meaningful in RX: listen for a few symbols.
            self._set_packet_params(self.mtu)
            self._rf_switch("rx")
            self._command(cmd.CMD_SET_RX, u24(cmd.RX_TIMEOUT_INF), verify=False)
            time.sleep(min(0.1, max(0.002, 8 * symbol_time(self.config.sf, self.config.bw_hz))))
            raw = self._read(cmd.CMD_GET_RSSI_INST, b"", 1)[0]
            self._standby()
            self._rf_switch(None)
            return ChipStatus(mode, self.version(), errors, self.tcxo, -raw / 2)

    def version(self) -> str:
        return self.read_register(cmd.REG_VERSION_STRING, 16).split(b"\0")[0].decode("ascii",
                                                                                    "replace")

    def device_errors(self) -> tuple[str, ...]:
        bits = int.from_bytes(self._read(cmd.CMD_GET_DEVICE_ERRORS, b"", 2), "big")
        return tuple(name for bit, name in cmd.DEVICE_ERRORS.items() if bits & bit)

    # --- commands (chapter 13) ----------------------------------------------------------------

    def get_status(self) -> int:
        return check_status(self._xfer(bytes([cmd.CMD_GET_STATUS, cmd.CMD_NOP]))[1],
                            cmd.CMD_GET_STATUS)

    def read_register(self, address: int, count: int = 1) -> bytes:
        return self._read(cmd.CMD_READ_REGISTER, address.to_bytes(2, "big"), count)

    def write_register(self, address: int, data: bytes) -> None:
        self._command(cmd.CMD_WRITE_REGISTER, address.to_bytes(2, "big") + bytes(data))

    def _command(self, opcode: int, params: bytes = b"", verify: bool = True) -> None:
        """Send a write command, then GetStatus: the status of a command shows on the next
        transfer (RadioLib's SPIcheckStream does the same)."""
        self._xfer(bytes([opcode]) + params)
        if verify:
            check_status(self._xfer(bytes([cmd.CMD_GET_STATUS, cmd.CMD_NOP]))[1], opcode)

    def _read(self, opcode: int, params: bytes, count: int) -> bytes:
        """A read command: opcode, parameters, one status byte, then `count` data bytes."""
        rx = self._xfer(bytes([opcode]) + params + bytes(1 + count))
        check_status(rx[1], opcode)
        return rx[2 + len(params):]

    def _xfer(self, data: bytes) -> bytes:
        """One SPI message, after BUSY went low (8.3.1: a command while BUSY is high is lost)."""
        self._wait_busy(f"before command {data[0]:#04x}")
        rx = self._bus.transfer(data)
        if len(rx) != len(data):
            raise RadioError(f"SPI returned {len(rx)} bytes for {len(data)}")
        return rx

    def _wait_busy(self, what: str, timeout: float | None = None) -> None:
        if self._busy.is_active and not self._busy.wait_for_inactive(timeout or self.busy_timeout):
            raise BusyTimeout(f"BUSY stayed high {what} (> {timeout or self.busy_timeout:.3f} s)")

    # --- bring-up (datasheet 14.2 and 14.5 "Issuing Commands in the Right Order") ------------

    def _hard_reset(self) -> None:
        """NRESET low for >= 100 us (8.1), then wait for BUSY to fall (chip calibrates)."""
        self._reset.on()
        time.sleep(0.001)
        self._reset.off()
        time.sleep(0.001)
        try:
            self._wait_busy("after reset", timeout=max(self.busy_timeout, 0.05))
        except BusyTimeout as exc:
            raise BusyTimeout(f"{NOT_FOUND}: {exc}") from None

    def _init_chip(self) -> None:
        self._hard_reset()
        self.get_status()  # 0x00/0xFF: nothing on MISO
        version = self.read_register(cmd.REG_VERSION_STRING, 16)
        if not version.startswith(cmd.VERSION_PREFIX):
            raise RadioNotFound(f"{NOT_FOUND} (version string {version!r})")
        self._standby()
        self.tcxo = self._start_clock(self.config.tcxo)
        self._configure()

    def _start_clock(self, volts: float | None) -> float | None:
        """TCXO through DIO3 (13.3.6), then calibrate all blocks; if the oscillator does not start
        (XOSC_START_ERR), reset (the only way to undo DIO3 control) and use the crystal.

        A chip wired to a TCXO reports XOSC_START_ERR from its boot (the TCXO had no supply yet),
        so the errors are cleared first, as RadioLib's setTCXO does."""
        self._command(cmd.CMD_CLEAR_DEVICE_ERRORS, b"\x00\x00")
        if volts is not None:
            self._command(cmd.CMD_SET_DIO3_AS_TCXO_CTRL,
                          tcxo_params(volts, self.config.tcxo_delay_s))
        self._command(cmd.CMD_CALIBRATE, bytes([cmd.CALIBRATE_ALL]))
        self._wait_busy("during calibration", timeout=max(self.busy_timeout, 0.05))
        if volts is not None and "XOSC_START" in self.device_errors():
            log.warning("SX1262: TCXO at %.1f V did not start (XOSC_START_ERR); falling back to "
                        "the crystal", volts)
            self._hard_reset()
            self._standby()
            return self._start_clock(None)
        self._command(cmd.CMD_CLEAR_DEVICE_ERRORS, b"\x00\x00")
        return volts

    def _configure(self) -> None:
        c = self.config
        self._command(cmd.CMD_SET_REGULATOR_MODE,
                      bytes([cmd.REGULATOR_DC_DC if MODULES[c.module].use_dcdc else cmd.REGULATOR_LDO]))
        if c.dio2_switch:
            self._command(cmd.CMD_SET_DIO2_AS_RF_SWITCH_CTRL, bytes([cmd.DIO2_AS_RF_SWITCH]))
        self._command(cmd.CMD_SET_PACKET_TYPE, bytes([cmd.PACKET_TYPE_LORA]))
        # 9.2.1: image calibration for the band, in STDBY_RC, before SetRfFrequency.
        self._command(cmd.CMD_CALIBRATE_IMAGE, calibrate_image_params(c.frequency_hz))
        self._wait_busy("during image calibration", timeout=max(self.busy_timeout, 0.05))
        self._command(cmd.CMD_SET_RF_FREQUENCY, rf_frequency_params(c.frequency_hz))
        pa, tx = pa_params(c.tx_power_dbm)
        self._command(cmd.CMD_SET_PA_CONFIG, pa)
        self.write_register(cmd.REG_OCP_CONFIGURATION, bytes([ocp_value(c.current_limit_ma)]))
        errata.fix_pa_clamping(self)
        self._command(cmd.CMD_SET_TX_PARAMS, tx)
        self._command(cmd.CMD_SET_BUFFER_BASE_ADDRESS, b"\x00\x00")
        self._command(cmd.CMD_SET_MODULATION_PARAMS, modulation_params(c))
        self._set_packet_params(self.mtu)
        self.write_register(cmd.REG_LORA_SYNC_WORD_MSB, c.sync_word.to_bytes(2, "big"))
        self._command(cmd.CMD_SET_DIO_IRQ_PARAMS, irq_params(IRQ_MASK))
        self._clear_irq()
        gain = cmd.RX_GAIN_BOOSTED if c.rx_boosted_gain else cmd.RX_GAIN_POWER_SAVING
        self.write_register(cmd.REG_RX_GAIN, bytes([gain]))

    def _recover(self, reason: str) -> None:
        """Hard reset and full re-init after a stuck BUSY or a missing interrupt."""
        self.stats.resets += 1
        self.stats.reasons.append(reason)
        log.warning("SX1262 %s; hard reset and re-init (#%d)", reason, self.stats.resets)
        self._rf_switch(None)
        self._init_chip()

    # --- TX and RX ----------------------------------------------------------------------------

    def _transmit(self, frame: bytes) -> float:
        c = self.config
        seconds = time_on_air(len(frame), c.sf, c.bw_hz, c.cr, c.preamble, c.explicit_header,
                              c.crc, c.ldro)
        self._standby()
        errata.fix_sensitivity(self, c.bw_hz)  # 15.1: before every transmission
        self._set_packet_params(len(frame))
        self._command(cmd.CMD_WRITE_BUFFER, b"\x00" + frame)
        self._clear_irq()
        self._rf_switch("tx")
        limit = seconds * 1.5 + self.irq_margin
        self._command(cmd.CMD_SET_TX, u24(timeout_steps(limit)), verify=False)
        try:
            irq = self._wait_irq(limit)
        finally:
            self._rf_switch(None)
        if irq & cmd.IRQ_TX_DONE:
            self._clear_irq()
            return seconds
        if irq & cmd.IRQ_TIMEOUT:
            raise IrqTimeout(f"TX timeout IRQ after {limit:.3f} s (PA or clock fault)")
        raise IrqTimeout(f"no TxDone within {limit:.3f} s")

    def _cad(self) -> bool:
        self._standby()
        self._command(cmd.CMD_SET_CAD_PARAMS, cad_params(self.config))
        self._clear_irq()
        self._rf_switch("rx")
        limit = cad_symbols(self.config) * symbol_time(self.config.sf, self.config.bw_hz)
        self._command(cmd.CMD_SET_CAD, verify=False)
        try:
            irq = self._wait_irq(limit + self.irq_margin)
        finally:
            self._rf_switch(None)
        if not irq & cmd.IRQ_CAD_DONE:
            raise IrqTimeout(f"no CadDone within {limit + self.irq_margin:.3f} s")
        self._clear_irq()
        self.stats.cads += 1
        self.stats.cad_detected += bool(irq & cmd.IRQ_CAD_DETECTED)
        return bool(irq & cmd.IRQ_CAD_DETECTED)

    def _receive_once(self, seconds: float) -> Reception | None:
        """One single-mode RX of at most `seconds`; None on timeout or a rejected packet."""
        c = self.config
        self._standby()
        self._set_packet_params(self.mtu)
        self._clear_irq()
        self._rf_switch("rx")
        steps = timeout_steps(seconds)
        self._command(cmd.CMD_SET_RX, u24(steps), verify=False)
        # The RX timer stops at a valid header (13.1.5), so a packet that starts just before the
        # timeout may run for one longest packet more.
        longest = self.modulation.time_on_air(MAX_PAYLOAD)
        try:
            irq = self._wait_irq(steps * cmd.TIMEOUT_STEP_S + longest + self.irq_margin)
        finally:
            self._rf_switch(None)
        if not irq & PACKET_IRQ:
            raise IrqTimeout(f"neither RxDone nor Timeout within {seconds:.3f} s")
        self._clear_irq()
        if not c.explicit_header:
            errata.fix_implicit_timeout(self)  # 15.3
        if irq & cmd.IRQ_HEADER_ERR:
            self.stats.header_errors += 1
            log.info("SX1262: packet with a header error rejected")
            return None
        if irq & cmd.IRQ_CRC_ERR:
            self.stats.crc_errors += 1
            log.info("SX1262: packet with a CRC error rejected")
            return None
        if not irq & cmd.IRQ_RX_DONE:
            return None  # Timeout
        length, start = self._read(cmd.CMD_GET_RX_BUFFER_STATUS, b"", 2)
        if length == 0:
            log.info("SX1262: empty packet ignored")
            return None
        frame = self._read(cmd.CMD_READ_BUFFER, bytes([start]), length)
        rssi, snr, _signal = self._read(cmd.CMD_GET_PACKET_STATUS, b"", 3)
        # GetPacketStatus (13.5.3): RssiPkt = -raw/2 dBm, SnrPkt = signed raw/4 dB.
        return Reception(frame, -rssi / 2, (snr - 256 if snr > 127 else snr) / 4)

    def _wait_irq(self, timeout: float) -> int:
        """Wait for DIO1's rising edge, then read and return the IRQ flags (0 if none)."""
        edge = self._dio1.wait_for_active(timeout)
        irq = int.from_bytes(self._read(cmd.CMD_GET_IRQ_STATUS, b"", 2), "big")
        if not edge and irq & IRQ_MASK:
            self.stats.dio1_misses += 1
            log.warning("SX1262: IRQ flags %#06x set but DIO1 never rose: check the DIO1 pin", irq)
        return irq

    def _set_packet_params(self, length: int) -> None:
        self._command(cmd.CMD_SET_PACKET_PARAMS, packet_params(self.config, length))
        errata.fix_inverted_iq(self, self.config.invert_iq)  # 15.4: after SetPacketParams

    def _clear_irq(self) -> None:
        self._command(cmd.CMD_CLEAR_IRQ_STATUS, cmd.IRQ_ALL.to_bytes(2, "big"))

    def _standby(self) -> None:
        self._command(cmd.CMD_SET_STANDBY, bytes([cmd.STANDBY_RC]))

    def _rf_switch(self, direction: str | None) -> None:
        """TXEN/RXEN for modules whose antenna switch is not on DIO2 (e.g. E22-900M22S)."""
        if self._txen is not None:
            self._txen.value = direction == "tx"
        if self._rxen is not None:
            self._rxen.value = direction == "rx"

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError("SX1262 radio is closed")

    def _release(self) -> None:
        self._closed = True
        for device in (self._busy, self._dio1, self._reset, self._txen, self._rxen):
            if device is not None:
                device.close()
        if self._bus is not None:
            self._bus.close()


"""An SX1262 that answers SPI transfers opcode by opcode, on a simulated channel.

`EmulatedSX1262` is the `SpiBus` the driver talks to (`transfer(bytes) -> bytes`) and it drives
the BUSY and DIO1 pins of a gpiozero `MockFactory`, watches NRESET, and keeps the datasheet's
state: chip mode, status byte (13.5.1), registers, the 256-byte buffer, IRQ flags, packet status,
packet statistics (GetStats, 13.5.5). Two or more chips share an `Air` (`lora_air.py`: who hears
whom, within what frequency offset, and when).

It takes every opcode of the datasheet's command list (chapter 11) that a LoRa driver may send,
with the parameter counts of chapter 13. SetModulationParams has 8 parameters and
SetPacketParams 9 (13.4.5, 13.4.6); LoRa uses the first 4 and 6 and ignores the rest, so a
driver may send the short form (RadioLib does) or the full form. GFSK and LR-FHSS settings are
stored but not modelled on the air. A single 0x00 byte is a NOP (RadioLib wakes the chip with
one); 0x00 with 6 zero bytes is ResetStats. A transfer while asleep wakes the chip (NSS falls,
13.1.1) and is otherwise lost, as on the chip.

Fault injection (each a counter or a flag on the chip or the air):
    chip.stuck_busy       next N commands leave BUSY high until a reset
    chip.busy_dead        BUSY never falls, even after a reset (a broken BUSY wire)
    chip.drop_irq         next N TX/RX/CAD events never happen (no flags, no DIO1)
    chip.mute_dio1        flags are set but DIO1 never rises (a broken DIO1 wire)
    chip.absent           nothing on MISO (reads 0xFF)
    chip.tcxo_fails       the TCXO does not start (XOSC_START_ERR after Calibrate)
    chip.boot_errors      device errors present after every reset (a TCXO board: XOSC_START)
    chip.channel_busy     CAD detects activity whatever the air carries ("the channel is busy")
    air.corrupt           next N packets arrive with bit errors (CrcErr at the receiver)
    air.header_errors     next N packets arrive with a broken header (HeaderErr)

`chip.violations` counts commands sent while BUSY was high (the chip would lose them; a lone
NOP is harmless and not counted); a correct driver keeps it at 0. `chip.log` records every
(opcode, parameters) for sequence checks, and `chip.invalid` every one answered as invalid.
"""

from __future__ import annotations

import threading

from gpiozero.pins.mock import MockPin

from device.radio import sx126x_commands as cmd
from device.radio.airtime import time_on_air
from device.radio.sx1262_config import SX1262Pins
from emulators.lora_air import BW_HZ, Air, Transmission, Tuning, hears, register_hz
from emulators.sx1262_commands import (
    CAD_ONLY,
    CAD_RX,
    CAD_SYMBOLS,
    FULL_LEN,
    PARAM_LEN,
    STANDBY_OR_FS,
    STANDBY_RC_ONLY,
    ConfigCommands,
)

__all__ = ["Air", "EmulatedSX1262", "emulated_pair", "PARAM_LEN"]

VERSION = b"SX1261 V2D 2D02\x00"
#: Register reset values (table 12-1 and chapter 15 text).
REGISTER_DEFAULTS = {
    cmd.REG_LORA_SYNC_WORD_MSB: 0x14,
    cmd.REG_LORA_SYNC_WORD_LSB: 0x24,
    cmd.REG_IQ_POLARITY: 0x0D,
    cmd.REG_TX_MODULATION: 0x04,
    cmd.REG_RX_GAIN: 0x94,
    cmd.REG_TX_CLAMP_CONFIG: 0x08,  # bits 4:1 = 0100
    cmd.REG_OCP_CONFIGURATION: 0x38,
    cmd.REG_RTC_CONTROL: 0x00,
    cmd.REG_EVENT_MASK: 0x00,
}
MODE_WEDGED = 0x10  #: fault: a chip stuck deaf and silent until a reset


class _ResetPin(MockPin):
    """NRESET as the chip sees it: low holds the chip in reset, the rising edge boots it."""

    def __init__(self, factory, info, chip: EmulatedSX1262) -> None:
        super().__init__(factory, info)
        self._chip = chip

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self._chip.on_nreset(bool(value))
        return changed


class EmulatedSX1262(ConfigCommands):
    """One emulated chip on `air`, wired to `factory` at `pins`."""

    def __init__(self, factory, air: Air, pins: SX1262Pins | None = None, *,
                 busy_time: float = 20e-6, boot_time: float = 0.002) -> None:
        self.pins = pins or SX1262Pins()
        self.air, self.factory = air, factory
        self.busy_time, self.boot_time = busy_time, boot_time
        self.busy = factory.pin(self.pins.busy)
        self.dio1 = factory.pin(self.pins.dio1)
        self.reset_pin = factory.pin(self.pins.reset, pin_class=_ResetPin, chip=self)
        self._lock = threading.RLock()
        self.log: list[tuple[int, bytes]] = []
        self.invalid: list[tuple[int, bytes]] = []
        self.violations = 0
        self.resets = 0
        self.wakeups = 0
        self.sent: list[bytes] = []
        # faults
        self.stuck_busy = 0
        self.busy_dead = False
        self.drop_irq = 0
        self.mute_dio1 = False
        self.absent = False
        self.tcxo_fails = False
        #: a test verb: another LoRa transmitter is on the channel (CAD reports CadDetected)
        #: whatever this air carries; `chip.channel_busy = True`
        self.channel_busy = False
        #: device errors at boot (a TCXO board shows XOSC_START until DIO3 powers the TCXO)
        self.boot_errors = 0
        self._timer = self._symb_timer = None
        self._power_on()
        air.chips.append(self)

    # --- state --------------------------------------------------------------------------------

    def _power_on(self) -> None:
        """Reset values (also a cold-start wake-up: the configuration is lost, 13.1.1)."""
        self._cancel_timers()
        self.mode = cmd.STATUS_MODE_STBY_RC
        self.cmd_status = 0x02  # "RFU" (0x1 << 1): a plain status after reset
        self.registers = dict(REGISTER_DEFAULTS)
        self.buffer = bytearray(256)
        self.irq = 0
        self.irq_mask = self.dio1_mask = 0
        self.device_errors = self.boot_errors
        self.packet_type = cmd.PACKET_TYPE_GFSK
        self.other_params: dict[int, bytes] = {}  #: GFSK / LR-FHSS parameters, stored raw
        self.frequency = 0
        self.sf, self.bw_code, self.cr, self.ldro = 7, 0x04, 1, 0
        self.preamble, self.implicit, self.length, self.crc_on, self.iq_inv = 8, False, 255, True, False
        self.tx_base = self.rx_base = 0
        self.rx_len = self.rx_start = 0
        self.pkt_rssi, self.pkt_snr = 0, 0
        self.stats = [0, 0, 0]  #: GetStats: packets received, CRC errors, header errors
        self.tcxo = None
        self.regulator = cmd.REGULATOR_LDO
        self.dio2_switch = False
        self.pa = None
        self.tx_power = None
        self.fallback = cmd.STATUS_MODE_STBY_RC
        self.stop_on_preamble = False
        self.symb_num_timeout = 0
        self.cad_params = (0x03, 22, 10, CAD_ONLY, 0)  # RadioLib's defaults; no reset value given
        self.duty_cycle: tuple[float, float] | None = None  #: (rx s, sleep s) in SetRxDutyCycle
        self.continuous = False
        self.asleep = None  #: None awake, else "warm" or "cold"
        self._cad = False
        self._stuck = False
        self._tx: Transmission | None = None
        self._candidate = self._locked = None
        self._rx_epoch = 0

    def tuning(self) -> Tuning:
        sync = (self.registers[cmd.REG_LORA_SYNC_WORD_MSB], self.registers[cmd.REG_LORA_SYNC_WORD_LSB])
        return Tuning(self.packet_type, register_hz(self.frequency), self.sf, self.bw_code,
                      self.cr, self.ldro, sync, self.iq_inv, self.implicit, self.length,
                      self.crc_on, self.preamble)

    def on_nreset(self, high: bool) -> None:
        if self.absent:
            return  # no chip: BUSY floats (reads low)
        with self._lock:
            self._leave_mode()
            self.busy.drive_high()
            self.dio1.drive_low()
            if high:
                self.resets += 1
                self._power_on()
                if not self.busy_dead:
                    self.air.scheduler.call_later(self.boot_time, self._release_busy)

    def _release_busy(self) -> None:
        with self._lock:
            if not self._stuck and not self.busy_dead and self.asleep is None:
                self.busy.drive_low()

    def _cancel_timers(self) -> None:
        for timer in (self._timer, self._symb_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._symb_timer = None

    def _leave_mode(self, mode: int | None = None) -> None:
        """End whatever the chip was doing (TX on the air, RX, CAD); then enter `mode`."""
        self._cancel_timers()
        if self._tx is not None:
            tx, self._tx = self._tx, None
            self.air.stop(tx)
        self._candidate = self._locked = None
        self._cad = False
        self.duty_cycle = None
        if mode is not None:
            self.mode = mode

    def _raise_irq(self, flags: int) -> None:
        self.irq |= flags & self.irq_mask
        if self.irq & self.dio1_mask and not self.mute_dio1:
            self.dio1.drive_high()

    # --- SPI ----------------------------------------------------------------------------------

    def transfer(self, data: bytes) -> bytes:
        with self._lock:
            if self.absent:
                return b"\xff" * len(data)
            if self.asleep is not None:
                self._wake()
                return bytes(len(data))
            if self.busy.state:
                if bytes(data) != b"\x00":  # a lone NOP (RadioLib's wake-up) is harmless
                    self.violations += 1
                return bytes(len(data))  # the chip ignores it; MISO idles low
            opcode, params = data[0], bytes(data[1:])
            status = self.mode | self.cmd_status
            out = bytearray([0, status]) + bytearray(max(0, len(data) - 2))
            if opcode == cmd.CMD_NOP and not params:
                return bytes(out[: len(data)])  # NOP: no command, BUSY does not move
            self.log.append((opcode, params))
            busy = self.busy_time
            if opcode in cmd.READ_COMMANDS:
                out = self._read_command(opcode, params, status, len(data))
            elif opcode in PARAM_LEN:
                busy = self._write_command(opcode, params)
            else:
                self.cmd_status = cmd.STATUS_CMD_INVALID
                self.invalid.append((opcode, params))
            self.busy.drive_high()
            if self.asleep is not None:
                return bytes(out[: len(data)])  # asleep: BUSY stays high until a wake-up
            if self.stuck_busy:
                self.stuck_busy -= 1
                self._stuck = True
            else:
                self.air.scheduler.call_later(busy, self._release_busy)
            return bytes(out[: len(data)])

    def close(self) -> None:
        pass

    def _wake(self) -> None:
        """NSS fell while asleep (13.1.1): boot to STBY_RC, keeping the configuration on a warm
        start; BUSY stays high until the chip is ready."""
        cold = self.asleep == "cold"
        self.asleep = None
        self.wakeups += 1
        if cold:
            self._power_on()
        self.mode = cmd.STATUS_MODE_STBY_RC
        self.air.scheduler.call_later(self.boot_time, self._release_busy)

    def _read_command(self, opcode: int, params: bytes, status: int, n: int) -> bytearray:
        if opcode == cmd.CMD_READ_REGISTER:
            address = int.from_bytes(params[:2], "big")
            head = bytearray([0, status, status, status])
            data = [self._register(address + i) for i in range(max(0, n - 4))]
        elif opcode == cmd.CMD_READ_BUFFER:
            offset = params[0]
            head = bytearray([0, status, status])
            data = [self.buffer[(offset + i) % 256] for i in range(max(0, n - 3))]
        else:
            head = bytearray([0, status])
            data = list(self._read_data(opcode))
            if opcode != cmd.CMD_GET_STATUS:
                self.cmd_status = cmd.STATUS_DATA_AVAILABLE
        out = head + bytearray(data)
        return out + bytearray(max(0, n - len(out)))

    def _read_data(self, opcode: int) -> bytes:
        if opcode == cmd.CMD_GET_IRQ_STATUS:
            return self.irq.to_bytes(2, "big")
        if opcode == cmd.CMD_GET_RX_BUFFER_STATUS:
            return bytes([self.rx_len, self.rx_start])
        if opcode == cmd.CMD_GET_PACKET_STATUS:
            return bytes([self.pkt_rssi, self.pkt_snr, self.pkt_rssi])
        if opcode == cmd.CMD_GET_DEVICE_ERRORS:
            return self.device_errors.to_bytes(2, "big")
        if opcode == cmd.CMD_GET_RSSI_INST:
            return bytes([0xB4])  # -90 dBm
        if opcode == cmd.CMD_GET_PACKET_TYPE:
            return bytes([self.packet_type])
        if opcode == cmd.CMD_GET_STATS:  # 13.5.5: three 16-bit counters
            return b"".join(min(count, 0xFFFF).to_bytes(2, "big") for count in self.stats)
        return b""

    def _register(self, address: int) -> int:
        if cmd.REG_VERSION_STRING <= address < cmd.REG_VERSION_STRING + 16:
            return VERSION[address - cmd.REG_VERSION_STRING]
        return self.registers.get(address, 0)

    def _write_command(self, opcode: int, p: bytes) -> float:
        """Apply one command; set the command status; return how long BUSY stays high."""
        low, high = PARAM_LEN[opcode]
        if opcode in FULL_LEN and self.packet_type != cmd.PACKET_TYPE_LORA:
            low = high = FULL_LEN[opcode]
        if len(p) < low or high is not None and len(p) > high:
            self.cmd_status = cmd.STATUS_CMD_INVALID
            self.invalid.append((opcode, p))
            return self.busy_time
        if opcode in STANDBY_RC_ONLY and self.mode != cmd.STATUS_MODE_STBY_RC:
            self.cmd_status = cmd.STATUS_CMD_FAILED
            return self.busy_time
        ok = getattr(self, f"_op_{opcode:02x}")(p)
        self.cmd_status = 0x02 if ok is not False else cmd.STATUS_CMD_INVALID
        if ok is False:
            self.invalid.append((opcode, p))
        return self.busy_time * (100 if opcode in (cmd.CMD_CALIBRATE, cmd.CMD_CALIBRATE_IMAGE)
                                 else 1)

    # one method per write opcode, named by the opcode (datasheet chapter 13)
    def _op_84(self, p):  # SetSleep (13.1.1): bit 2 = warm start
        self._leave_mode(0)
        self.asleep = "warm" if p[0] & cmd.SLEEP_START_WARM else "cold"

    def _op_80(self, p):  # SetStandby
        if p[0] not in (cmd.STANDBY_RC, cmd.STANDBY_XOSC):
            return False
        self._leave_mode(cmd.STATUS_MODE_STBY_RC if p[0] == cmd.STANDBY_RC
                         else cmd.STATUS_MODE_STBY_XOSC)

    def _op_c1(self, p):  # SetFs (13.1.3): PLL on, from standby
        if self.mode not in STANDBY_OR_FS:
            return False
        self._leave_mode(cmd.STATUS_MODE_FS)

    # --- TX, RX and CAD (13.1.4 .. 13.1.9) ----------------------------------------------------

    def _op_83(self, p):  # SetTx
        if self.mode not in STANDBY_OR_FS:
            return False
        if self.packet_type != cmd.PACKET_TYPE_LORA:
            raise NotImplementedError("the emulator does not model GFSK or LR-FHSS on the air")
        self._leave_mode(cmd.STATUS_MODE_TX)
        payload = bytes(self.buffer[self.tx_base:self.tx_base + self.length])
        seconds = time_on_air(self.length, self.sf, BW_HZ[self.bw_code], self.cr + 4, self.preamble,
                              not self.implicit, self.crc_on, bool(self.ldro))
        timeout = int.from_bytes(p, "big") * cmd.TIMEOUT_STEP_S
        if self.drop_irq:
            self.drop_irq -= 1
            return  # hangs in TX: no TxDone, no Timeout
        self._tx = self.air.start(self, self.tuning(), payload, seconds)
        if timeout and timeout < seconds:
            self._timer = self.air.scheduler.call_later(timeout, self._tx_timeout)

    def _op_d1(self, p):  # SetTxContinuousWave (13.1.9): an unmodulated carrier until standby
        if self.mode not in STANDBY_OR_FS:
            return False
        self._leave_mode(cmd.STATUS_MODE_TX)

    def _op_d2(self, p):  # SetTxInfinitePreamble (13.1.10): LoRa preamble until standby (CAD detects it)
        if self.mode not in STANDBY_OR_FS:
            return False
        self._leave_mode(cmd.STATUS_MODE_TX)
        self._tx = self.air.start(self, self.tuning(), b"", None)

    def _op_82(self, p):  # SetRx
        if self.mode not in STANDBY_OR_FS:
            return False
        steps = int.from_bytes(p, "big")
        self._enter_rx(steps * cmd.TIMEOUT_STEP_S, continuous=steps == cmd.RX_TIMEOUT_INF)

    def _op_94(self, p):  # SetRxDutyCycle (13.1.7): rxPeriod, sleepPeriod (24 bits of 15.625 us each)
        if self.mode not in STANDBY_OR_FS:
            return False
        rx_s = int.from_bytes(p[:3], "big") * cmd.TIMEOUT_STEP_S
        sleep_s = int.from_bytes(p[3:], "big") * cmd.TIMEOUT_STEP_S
        if not rx_s or not sleep_s:
            return False
        self._enter_rx(0.0, continuous=False)
        self.duty_cycle = (rx_s, sleep_s)

    def _enter_rx(self, timeout: float, continuous: bool) -> None:
        self._leave_mode(cmd.STATUS_MODE_RX)
        self._rx_epoch += 1
        self.continuous = continuous
        if self.drop_irq:
            self.drop_irq -= 1
            self.mode = MODE_WEDGED  # deaf and silent until a reset
            return
        if not continuous and timeout:
            self._timer = self.air.scheduler.call_later(timeout, self._rx_timeout)
        if not continuous and self.symb_num_timeout:
            # no preamble within that many symbols ends a single RX (LoRaMac's use of 13.4.9)
            symbols = self.symb_num_timeout * self.tuning().symbol_s
            epoch = self._rx_epoch
            self._symb_timer = self.air.scheduler.call_later(
                symbols, lambda: self._symbol_timeout(epoch))

    def _op_c5(self, p):  # SetCad (13.1.8): listen for the CAD symbols, then CadDone
        if self.mode not in STANDBY_OR_FS or self.packet_type != cmd.PACKET_TYPE_LORA:
            return False
        self._leave_mode(cmd.STATUS_MODE_RX)
        if self.drop_irq:
            self.drop_irq -= 1
            self.mode = MODE_WEDGED  # no CadDone until a reset
            return
        self._cad = True
        seconds = CAD_SYMBOLS[self.cad_params[0]] * self.tuning().symbol_s
        self._timer = self.air.scheduler.call_later(seconds, self._cad_done)

    # --- timed events (called by the scheduler and by the Air) -------------------------------

    def listening(self, epoch: int | None = None) -> bool:
        """In RX for packets (not CAD, not wedged), in the RX session `epoch` if given."""
        return (self.mode == cmd.STATUS_MODE_RX and not self._cad
                and (epoch is None or epoch == self._rx_epoch))

    def on_preamble(self, tx: Transmission) -> int | None:
        """A preamble reached this chip: detect it if listening and tuned to it."""
        with self._lock:
            if not self.listening() or self._candidate is not None:
                return None
            if not hears(self.tuning(), tx.tuning):
                return None
            if self.duty_cycle is not None:
                rx_s, sleep_s = self.duty_cycle
                # caught only if the preamble spans the window the chip opens on a preamble,
                # 2 * rxPeriod + sleepPeriod (13.1.7; RadioLib's calculateRxDutyCycle); shorter
                # ones are missed (the worst case, so that tests are deterministic)
                if tx.tuning.preamble_s() < 2 * rx_s + sleep_s:
                    return None
            self._candidate = tx
            if self._symb_timer is not None:
                self._symb_timer.cancel()
            if self.stop_on_preamble and self._timer is not None:
                self._timer.cancel()
            self._raise_irq(cmd.IRQ_PREAMBLE_DETECTED)
            return self._rx_epoch

    def on_header(self, tx: Transmission, epoch: int, failed: bool) -> bool:
        """End of sync word and header: lock on the packet (the RX timer stops), or HeaderErr."""
        with self._lock:
            if not self.listening(epoch) or self._candidate is not tx:
                return False
            if self._timer is not None:
                self._timer.cancel()
            if failed:
                self._candidate = None
                self.stats[2] += 1
                self._end_rx()
                self._raise_irq(cmd.IRQ_HEADER_ERR)
                return False
            self._locked = tx
            if not tx.tuning.implicit:
                self._raise_irq(cmd.IRQ_HEADER_VALID)
            return True

    def on_packet(self, tx: Transmission, epoch: int, payload: bytes, flags: int, rssi: float,
                  snr: float) -> None:
        with self._lock:
            if not self.listening(epoch) or self._locked is not tx:
                return
            self._candidate = self._locked = None
            self._end_rx()
            for i, value in enumerate(payload):
                self.buffer[(self.rx_base + i) % 256] = value
            self.rx_len, self.rx_start = len(payload), self.rx_base
            self.pkt_rssi = min(255, round(-2 * rssi))
            self.pkt_snr = round(snr * 4) & 0xFF
            self.stats[0] += 1
            self.stats[1] += bool(flags & cmd.IRQ_CRC_ERR)
            self._raise_irq(flags)

    def _end_rx(self) -> None:
        """A single RX ends in the fallback mode (13.1.15); continuous RX listens on."""
        if not self.continuous:
            self._cancel_timers()
            self.duty_cycle = None
            self.mode = self.fallback

    def on_tx_end(self, tx: Transmission) -> None:
        with self._lock:
            if self._tx is not tx or self.mode != cmd.STATUS_MODE_TX:
                return
            self._tx = None
            self._cancel_timers()
            self.mode = self.fallback
            self.sent.append(tx.payload)
            self._raise_irq(cmd.IRQ_TX_DONE)

    def _tx_timeout(self) -> None:
        with self._lock:
            if self.mode == cmd.STATUS_MODE_TX:
                self._leave_mode(self.fallback)
                self._raise_irq(cmd.IRQ_TIMEOUT)

    def _rx_timeout(self) -> None:
        with self._lock:
            if self.listening() and self._locked is None:
                self._leave_mode(self.fallback)
                self._raise_irq(cmd.IRQ_TIMEOUT)

    def _symbol_timeout(self, epoch: int) -> None:
        with self._lock:
            if self.listening(epoch) and self._candidate is None:
                self._leave_mode(self.fallback)
                self._raise_irq(cmd.IRQ_TIMEOUT)

    def _cad_done(self) -> None:
        with self._lock:
            if not self._cad:
                return
            me = self.tuning()
            detected = self.channel_busy or any(hears(me, tx.tuning)
                                                for tx in self.air.in_progress()
                                                if tx.sender is not self)
            exit_mode, timeout_steps = self.cad_params[3], self.cad_params[4]
            self._cad = False
            self._timer = None
            if detected and exit_mode == CAD_RX:
                self._enter_rx(timeout_steps * cmd.TIMEOUT_STEP_S, continuous=False)
            else:
                self.mode = cmd.STATUS_MODE_STBY_RC  # 13.4.7: CAD_ONLY ends in STDBY_RC
            self._raise_irq(cmd.IRQ_CAD_DONE | (cmd.IRQ_CAD_DETECTED if detected else 0))


#: Preamble symbols that last as long at SF5/500 kHz as the deployment's 8 symbols at SF9/125 kHz
#: (32.8 ms): a receiver re-arms between two back-to-back frames within that time, or misses one.
FAST_PREAMBLE = 512


def emulated_pair(sf: int = 5, bw_hz: float = 500e3,
                  preamble: int = FAST_PREAMBLE) -> tuple[list, Air]:
    """Two real SX1262 drivers on two emulated chips sharing one `Air` (short test timeouts)."""
    from gpiozero.pins.mock import MockFactory

    from device.radio.sx1262 import SX1262, SX1262Config

    air = Air()
    radios = []
    for _ in range(2):
        factory = MockFactory()
        chip = EmulatedSX1262(factory, air)
        radios.append(SX1262(SX1262Config(sf=sf, bw_hz=bw_hz, preamble=preamble), bus=chip, pin_factory=factory,
                             busy_timeout=0.25, irq_margin=0.05))
    return radios, air

"""An SX1262 that answers SPI transfers opcode by opcode, on a simulated channel.

`EmulatedSX1262` is the `SpiBus` the driver talks to (`transfer(bytes) -> bytes`) and it drives
the BUSY and DIO1 pins of a gpiozero `MockFactory`, watches NRESET, and keeps the datasheet's
state: chip mode, status byte (13.5.1), registers, the 256-byte buffer, IRQ flags, packet status.
Two or more chips share an `Air`: a packet sent by one reaches every other chip in RX on the same
frequency, SF, BW, sync word and IQ polarity after its time on air.

Fault injection (each a counter or a flag on the chip or the air):
    chip.stuck_busy       next N commands leave BUSY high until a reset
    chip.busy_dead        BUSY never falls, even after a reset (a broken BUSY wire)
    chip.drop_irq         next N TX/RX events never happen (no flags, no DIO1)
    chip.mute_dio1        flags are set but DIO1 never rises (a broken DIO1 wire)
    chip.absent           nothing on MISO (reads 0xFF)
    chip.tcxo_fails       the TCXO does not start (XOSC_START_ERR after Calibrate)
    chip.boot_errors      device errors present after every reset (a TCXO board: XOSC_START)
    air.corrupt           next N packets arrive with bit errors (CrcErr at the receiver)
    air.header_errors     next N packets arrive with a broken header (HeaderErr)

`chip.violations` counts commands sent while BUSY was high (the chip would lose them); a correct
driver keeps it at 0. `chip.log` records every (opcode, parameters) for sequence checks.
"""

from __future__ import annotations

import random
import threading

from gpiozero.pins.mock import MockPin

from device.radio import sx126x_commands as cmd
from device.radio.airtime import time_on_air
from device.radio.sx1262_config import SX1262Pins
from emulators.scheduler import Scheduler

BW_HZ = {code: hz for hz, code in cmd.LORA_BW.items()}
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
#: Parameter bytes each write command takes (chapter 13); None = variable.
PARAM_LEN = {
    cmd.CMD_SET_SLEEP: 1, cmd.CMD_SET_STANDBY: 1, cmd.CMD_SET_TX: 3, cmd.CMD_SET_RX: 3,
    cmd.CMD_SET_REGULATOR_MODE: 1, cmd.CMD_CALIBRATE: 1, cmd.CMD_CALIBRATE_IMAGE: 2,
    cmd.CMD_SET_PA_CONFIG: 4, cmd.CMD_SET_DIO_IRQ_PARAMS: 8, cmd.CMD_CLEAR_IRQ_STATUS: 2,
    cmd.CMD_SET_DIO2_AS_RF_SWITCH_CTRL: 1, cmd.CMD_SET_DIO3_AS_TCXO_CTRL: 4,
    cmd.CMD_SET_RF_FREQUENCY: 4, cmd.CMD_SET_PACKET_TYPE: 1, cmd.CMD_SET_TX_PARAMS: 2,
    cmd.CMD_SET_MODULATION_PARAMS: 4, cmd.CMD_SET_PACKET_PARAMS: 6,
    cmd.CMD_SET_BUFFER_BASE_ADDRESS: 2, cmd.CMD_CLEAR_DEVICE_ERRORS: 2,
    cmd.CMD_WRITE_REGISTER: None, cmd.CMD_WRITE_BUFFER: None,
}
#: Commands only valid in STDBY_RC (9.2.1, 13.1.12, 13.3.6, 13.4.2).
STANDBY_RC_ONLY = {cmd.CMD_CALIBRATE, cmd.CMD_CALIBRATE_IMAGE, cmd.CMD_SET_DIO3_AS_TCXO_CTRL,
                   cmd.CMD_SET_PACKET_TYPE, cmd.CMD_SET_REGULATOR_MODE}


class Air:
    """The shared channel: who is listening, link quality, and channel faults."""

    def __init__(self, rssi: float = -60.0, snr: float = 9.5, seed: int = 0) -> None:
        self.scheduler = Scheduler()
        self.chips: list[EmulatedSX1262] = []
        self.rssi, self.snr = rssi, snr
        self.corrupt = 0
        self.header_errors = 0
        self._rng = random.Random(seed)

    def close(self) -> None:
        self.scheduler.close()

    def deliver(self, sender: EmulatedSX1262, payload: bytes, key: tuple) -> None:
        for chip in self.chips:
            if chip is sender or chip.mode != cmd.STATUS_MODE_RX or chip.air_key() != key:
                continue
            flags = 0
            data = payload
            if self.header_errors:
                self.header_errors -= 1
                flags = cmd.IRQ_HEADER_ERR
            elif self.corrupt:
                self.corrupt -= 1
                i = self._rng.randrange(len(payload))
                data = payload[:i] + bytes([payload[i] ^ 0x10]) + payload[i + 1:]
                flags = cmd.IRQ_RX_DONE | (cmd.IRQ_CRC_ERR if chip.crc_on else 0)
            else:
                flags = cmd.IRQ_RX_DONE
            chip.on_packet(data, flags, self.rssi, self.snr)


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


class EmulatedSX1262:
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
        self.violations = 0
        self.resets = 0
        self.sent: list[bytes] = []
        # faults
        self.stuck_busy = 0
        self.busy_dead = False
        self.drop_irq = 0
        self.mute_dio1 = False
        self.absent = False
        self.tcxo_fails = False
        #: device errors at boot (a TCXO board shows XOSC_START until DIO3 powers the TCXO)
        self.boot_errors = 0
        self._power_on()
        air.chips.append(self)

    # --- state --------------------------------------------------------------------------------

    def _power_on(self) -> None:
        self.mode = cmd.STATUS_MODE_STBY_RC
        self.cmd_status = 0x02  # "RFU" (0x1 << 1): a plain status after reset
        self.registers = dict(REGISTER_DEFAULTS)
        self.buffer = bytearray(256)
        self.irq = 0
        self.irq_mask = self.dio1_mask = 0
        self.device_errors = getattr(self, "boot_errors", 0)
        self.packet_type = cmd.PACKET_TYPE_GFSK
        self.frequency = 0
        self.sf, self.bw_code, self.cr, self.ldro = 7, 0x04, 1, 0
        self.preamble, self.implicit, self.length, self.crc_on, self.iq_inv = 8, False, 255, True, False
        self.tx_base = self.rx_base = 0
        self.rx_len = self.rx_start = 0
        self.pkt_rssi, self.pkt_snr = 0, 0
        self.tcxo = None
        self.dio2_switch = False
        self.pa = None
        self.tx_power = None
        self.continuous = False
        self._stuck = False
        self._timer = None

    def air_key(self) -> tuple:
        sync = (self.registers[cmd.REG_LORA_SYNC_WORD_MSB], self.registers[cmd.REG_LORA_SYNC_WORD_LSB])
        return (self.packet_type, self.frequency, self.sf, self.bw_code, sync, self.iq_inv,
                self.implicit)

    def on_nreset(self, high: bool) -> None:
        if self.absent:
            return  # no chip: BUSY floats (reads low)
        with self._lock:
            self._cancel_timer()
            self.busy.drive_high()
            self.dio1.drive_low()
            if high:
                self.resets += 1
                self._power_on()
                if not self.busy_dead:
                    self.air.scheduler.call_later(self.boot_time, self._release_busy)

    def _release_busy(self) -> None:
        with self._lock:
            if not self._stuck and not self.busy_dead:
                self.busy.drive_low()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _raise_irq(self, flags: int) -> None:
        self.irq |= flags & self.irq_mask
        if self.irq & self.dio1_mask and not self.mute_dio1:
            self.dio1.drive_high()

    # --- SPI ----------------------------------------------------------------------------------

    def transfer(self, data: bytes) -> bytes:
        with self._lock:
            if self.absent:
                return b"\xff" * len(data)
            if self.busy.state:
                self.violations += 1
                return bytes(len(data))  # the chip ignores it; MISO idles low
            opcode, params = data[0], bytes(data[1:])
            self.log.append((opcode, params))
            status = self.mode | self.cmd_status
            out = bytearray([0, status]) + bytearray(max(0, len(data) - 2))
            busy = self.busy_time
            if opcode in cmd.READ_COMMANDS:
                out = self._read_command(opcode, params, status, len(data))
            elif opcode in PARAM_LEN:
                busy = self._write_command(opcode, params)
            else:
                self.cmd_status = cmd.STATUS_CMD_INVALID
            if opcode == cmd.CMD_SET_SLEEP and self.cmd_status != cmd.STATUS_CMD_INVALID:
                self.busy.drive_high()  # asleep: BUSY stays high until a wake-up
                return bytes(out[: len(data)])
            self.busy.drive_high()
            if self.stuck_busy:
                self.stuck_busy -= 1
                self._stuck = True
            else:
                self.air.scheduler.call_later(busy, self._release_busy)
            return bytes(out[: len(data)])

    def close(self) -> None:
        pass

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
        return b""

    def _register(self, address: int) -> int:
        if cmd.REG_VERSION_STRING <= address < cmd.REG_VERSION_STRING + 16:
            return VERSION[address - cmd.REG_VERSION_STRING]
        return self.registers.get(address, 0)

    def _write_command(self, opcode: int, p: bytes) -> float:
        """Apply one command; set the command status; return how long BUSY stays high."""
        want = PARAM_LEN[opcode]
        if want is not None and len(p) != want or want is None and len(p) < 2:
            self.cmd_status = cmd.STATUS_CMD_INVALID
            return self.busy_time
        if opcode in STANDBY_RC_ONLY and self.mode != cmd.STATUS_MODE_STBY_RC:
            self.cmd_status = cmd.STATUS_CMD_FAILED
            return self.busy_time
        ok = getattr(self, f"_op_{opcode:02x}")(p)
        self.cmd_status = 0x02 if ok is not False else cmd.STATUS_CMD_INVALID
        return self.busy_time * (100 if opcode in (cmd.CMD_CALIBRATE, cmd.CMD_CALIBRATE_IMAGE)
                                 else 1)

    # one method per write opcode, named by the opcode (datasheet chapter 13)
    def _op_84(self, p):  # SetSleep
        self._cancel_timer()
        self.mode = 0

    def _op_80(self, p):  # SetStandby
        if p[0] not in (cmd.STANDBY_RC, cmd.STANDBY_XOSC):
            return False
        self._cancel_timer()
        self.mode = cmd.STATUS_MODE_STBY_RC if p[0] == cmd.STANDBY_RC else cmd.STATUS_MODE_STBY_XOSC

    def _op_96(self, p):  # SetRegulatorMode
        return p[0] in (cmd.REGULATOR_LDO, cmd.REGULATOR_DC_DC)

    def _op_89(self, p):  # Calibrate
        if self.tcxo is not None and self.tcxo_fails:
            self.device_errors |= cmd.ERR_XOSC_START

    def _op_98(self, p):  # CalibrateImage
        return p[0] <= p[1]

    def _op_95(self, p):  # SetPaConfig
        if p[2] != cmd.PA_DEVICE_SEL_SX1262 or p[3] != cmd.PA_LUT or p[1] > 0x07 or p[0] > 0x04:
            return False
        self.pa = tuple(p)

    def _op_0d(self, p):  # WriteRegister
        address = int.from_bytes(p[:2], "big")
        for i, value in enumerate(p[2:]):
            self.registers[address + i] = value

    def _op_0e(self, p):  # WriteBuffer
        for i, value in enumerate(p[1:]):
            self.buffer[(p[0] + i) % 256] = value

    def _op_08(self, p):  # SetDioIrqParams
        self.irq_mask = int.from_bytes(p[0:2], "big")
        self.dio1_mask = int.from_bytes(p[2:4], "big")

    def _op_02(self, p):  # ClearIrqStatus
        self.irq &= ~int.from_bytes(p, "big")
        if not self.irq & self.dio1_mask:
            self.dio1.drive_low()

    def _op_9d(self, p):  # SetDIO2AsRfSwitchCtrl
        self.dio2_switch = bool(p[0])

    def _op_97(self, p):  # SetDIO3AsTcxoCtrl
        if p[0] > 0x07:
            return False
        self.tcxo = p[0]

    def _op_86(self, p):  # SetRfFrequency
        self.frequency = int.from_bytes(p, "big")

    def _op_8a(self, p):  # SetPacketType
        if p[0] not in (cmd.PACKET_TYPE_GFSK, cmd.PACKET_TYPE_LORA):
            return False
        self.packet_type = p[0]

    def _op_8e(self, p):  # SetTxParams
        power = p[0] - 256 if p[0] > 127 else p[0]
        if not cmd.TX_POWER_MIN_SX1262 <= power <= cmd.TX_POWER_MAX_SX1262 or p[1] > 7:
            return False
        self.tx_power = power

    def _op_8b(self, p):  # SetModulationParams (LoRa)
        if self.packet_type != cmd.PACKET_TYPE_LORA:
            return False
        if not 5 <= p[0] <= 12 or p[1] not in BW_HZ or not 1 <= p[2] <= 4 or p[3] > 1:
            return False
        self.sf, self.bw_code, self.cr, self.ldro = p

    def _op_8c(self, p):  # SetPacketParams (LoRa)
        if self.packet_type != cmd.PACKET_TYPE_LORA or p[2] > 1 or p[4] > 1 or p[5] > 1:
            return False
        self.preamble = int.from_bytes(p[:2], "big")
        self.implicit, self.length, self.crc_on, self.iq_inv = bool(p[2]), p[3], bool(p[4]), bool(p[5])

    def _op_8f(self, p):  # SetBufferBaseAddress
        self.tx_base, self.rx_base = p[0], p[1]

    def _op_07(self, p):  # ClearDeviceErrors
        self.device_errors = 0

    def _op_83(self, p):  # SetTx
        if self.mode not in (cmd.STATUS_MODE_STBY_RC, cmd.STATUS_MODE_STBY_XOSC, cmd.STATUS_MODE_FS):
            return False
        self.mode = cmd.STATUS_MODE_TX
        payload = bytes(self.buffer[self.tx_base:self.tx_base + self.length])
        seconds = time_on_air(self.length, self.sf, BW_HZ[self.bw_code], self.cr + 4, self.preamble,
                              not self.implicit, self.crc_on, bool(self.ldro))
        timeout = int.from_bytes(p, "big") * cmd.TIMEOUT_STEP_S
        if self.drop_irq:
            self.drop_irq -= 1
            return  # hangs in TX: no TxDone, no Timeout
        if timeout and timeout < seconds:
            self._timer = self.air.scheduler.call_later(timeout, self._tx_timeout)
        else:
            key = self.air_key()
            self._timer = self.air.scheduler.call_later(seconds, lambda: self._tx_done(payload, key))

    def _op_82(self, p):  # SetRx
        if self.mode not in (cmd.STATUS_MODE_STBY_RC, cmd.STATUS_MODE_STBY_XOSC, cmd.STATUS_MODE_FS):
            return False
        self.mode = cmd.STATUS_MODE_RX
        steps = int.from_bytes(p, "big")
        self.continuous = steps == cmd.RX_TIMEOUT_INF
        if self.drop_irq:
            self.drop_irq -= 1
            self.mode = 0x10  # wedged: deaf and silent until a reset
            return
        if steps not in (cmd.RX_TIMEOUT_NONE, cmd.RX_TIMEOUT_INF):
            self._timer = self.air.scheduler.call_later(steps * cmd.TIMEOUT_STEP_S, self._rx_timeout)

    # --- timed events -------------------------------------------------------------------------

    def _tx_done(self, payload: bytes, key: tuple) -> None:
        with self._lock:
            if self.mode != cmd.STATUS_MODE_TX:
                return
            self.mode = cmd.STATUS_MODE_STBY_RC
            self.sent.append(payload)
            self._raise_irq(cmd.IRQ_TX_DONE)
        self.air.deliver(self, payload, key)

    def _tx_timeout(self) -> None:
        with self._lock:
            self.mode = cmd.STATUS_MODE_STBY_RC
            self._raise_irq(cmd.IRQ_TIMEOUT)

    def _rx_timeout(self) -> None:
        with self._lock:
            if self.mode == cmd.STATUS_MODE_RX:
                self.mode = cmd.STATUS_MODE_STBY_RC
                self._raise_irq(cmd.IRQ_TIMEOUT)

    def on_packet(self, payload: bytes, flags: int, rssi: float, snr: float) -> None:
        with self._lock:
            if self.mode != cmd.STATUS_MODE_RX:
                return
            self._cancel_timer()
            if not self.continuous:
                self.mode = cmd.STATUS_MODE_STBY_RC
            if flags & cmd.IRQ_RX_DONE:
                for i, value in enumerate(payload):
                    self.buffer[(self.rx_base + i) % 256] = value
                self.rx_len, self.rx_start = len(payload), self.rx_base
                self.pkt_rssi = min(255, round(-2 * rssi))
                self.pkt_snr = round(snr * 4) & 0xFF
            self._raise_irq(flags)


def emulated_pair(sf: int = 5, bw_hz: float = 500e3) -> tuple[list, Air]:
    """Two real SX1262 drivers on two emulated chips sharing one `Air` (short test timeouts)."""
    from gpiozero.pins.mock import MockFactory

    from device.radio.sx1262 import SX1262, SX1262Config

    air = Air()
    radios = []
    for _ in range(2):
        factory = MockFactory()
        chip = EmulatedSX1262(factory, air)
        radios.append(SX1262(SX1262Config(sf=sf, bw_hz=bw_hz), bus=chip, pin_factory=factory,
                             busy_timeout=0.25, irq_margin=0.05))
    return radios, air

"""The SX1262 emulator's configuration commands (datasheet chapter 13) and their parameter counts.

`ConfigCommands` holds the commands that only set state (no mode change, no timing); it is mixed
into `EmulatedSX1262`, one class in two files, the way RadioLib splits its SX126x class across
SX126x_commands.cpp and SX126x_config.cpp. Each method is named by its opcode and answers False
for parameters the datasheet does not allow (the chip then reports a command error).
"""

from __future__ import annotations

from device.radio import sx126x_commands as cmd
from emulators.lora_air import BW_HZ

#: (fewest, most) parameter bytes of each write command (chapter 13); None = no upper bound.
PARAM_LEN = {
    cmd.CMD_SET_SLEEP: (1, 1), cmd.CMD_SET_STANDBY: (1, 1), cmd.CMD_SET_FS: (0, 0),
    cmd.CMD_SET_TX: (3, 3), cmd.CMD_SET_RX: (3, 3), cmd.CMD_STOP_TIMER_ON_PREAMBLE: (1, 1),
    cmd.CMD_SET_RX_DUTY_CYCLE: (6, 6), cmd.CMD_SET_CAD: (0, 0),
    cmd.CMD_SET_TX_CONTINUOUS_WAVE: (0, 0), cmd.CMD_SET_TX_INFINITE_PREAMBLE: (0, 0),
    cmd.CMD_SET_REGULATOR_MODE: (1, 1), cmd.CMD_CALIBRATE: (1, 1),
    cmd.CMD_CALIBRATE_IMAGE: (2, 2), cmd.CMD_SET_PA_CONFIG: (4, 4),
    cmd.CMD_SET_RX_TX_FALLBACK_MODE: (1, 1),
    cmd.CMD_WRITE_REGISTER: (3, None), cmd.CMD_WRITE_BUFFER: (2, None),
    cmd.CMD_SET_DIO_IRQ_PARAMS: (8, 8), cmd.CMD_CLEAR_IRQ_STATUS: (2, 2),
    cmd.CMD_SET_DIO2_AS_RF_SWITCH_CTRL: (1, 1), cmd.CMD_SET_DIO3_AS_TCXO_CTRL: (4, 4),
    cmd.CMD_SET_RF_FREQUENCY: (4, 4), cmd.CMD_SET_PACKET_TYPE: (1, 1),
    cmd.CMD_SET_TX_PARAMS: (2, 2),
    cmd.CMD_SET_MODULATION_PARAMS: (4, 8),  # LoRa uses 4 of 8 (13.4.5)
    cmd.CMD_SET_PACKET_PARAMS: (6, 9),  # LoRa uses 6 of 9 (13.4.6)
    cmd.CMD_SET_CAD_PARAMS: (7, 7), cmd.CMD_SET_BUFFER_BASE_ADDRESS: (2, 2),
    cmd.CMD_SET_LORA_SYMB_NUM_TIMEOUT: (1, 1), cmd.CMD_CLEAR_DEVICE_ERRORS: (2, 2),
    cmd.CMD_RESET_STATS: (6, 6),
}
#: SetModulationParams / SetPacketParams take all 8 / 9 parameters outside LoRa.
FULL_LEN = {cmd.CMD_SET_MODULATION_PARAMS: 8, cmd.CMD_SET_PACKET_PARAMS: 9}
#: Commands only valid in STDBY_RC (9.2.1, 13.1.12, 13.3.6, 13.4.2).
STANDBY_RC_ONLY = {cmd.CMD_CALIBRATE, cmd.CMD_CALIBRATE_IMAGE, cmd.CMD_SET_DIO3_AS_TCXO_CTRL,
                   cmd.CMD_SET_PACKET_TYPE, cmd.CMD_SET_REGULATOR_MODE}
STANDBY_OR_FS = (cmd.STATUS_MODE_STBY_RC, cmd.STATUS_MODE_STBY_XOSC, cmd.STATUS_MODE_FS)
#: SetCadParams cadSymbolNum (13.4.7): code -> symbols.
CAD_SYMBOLS = {0x00: 1, 0x01: 2, 0x02: 4, 0x03: 8, 0x04: 16}
CAD_ONLY, CAD_RX = 0x00, 0x01
#: SetRxTxFallbackMode (13.1.15): the value is the status byte's chip mode it falls back to.
FALLBACK_MODES = (cmd.STATUS_MODE_STBY_RC, cmd.STATUS_MODE_STBY_XOSC, cmd.STATUS_MODE_FS)


class ConfigCommands:
    """SetPacketType, SetModulationParams, SetPacketParams, registers, buffer, IRQ, PA, ..."""

    def _op_96(self, p):  # SetRegulatorMode
        if p[0] not in (cmd.REGULATOR_LDO, cmd.REGULATOR_DC_DC):
            return False
        self.regulator = p[0]

    def _op_89(self, p):  # Calibrate
        if self.tcxo is not None and self.tcxo_fails:
            self.device_errors |= cmd.ERR_XOSC_START

    def _op_98(self, p):  # CalibrateImage
        return p[0] <= p[1]

    def _op_95(self, p):  # SetPaConfig; it also sets OCP to the device's default (table 12-1)
        if p[2] != cmd.PA_DEVICE_SEL_SX1262 or p[3] != cmd.PA_LUT or p[1] > 0x07 or p[0] > 0x04:
            return False
        self.pa = tuple(p)
        self.registers[cmd.REG_OCP_CONFIGURATION] = cmd.OCP_SX1262_140MA

    def _op_93(self, p):  # SetRxTxFallbackMode (13.1.15)
        if p[0] not in FALLBACK_MODES:
            return False
        self.fallback = p[0]

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
        if p[0] not in (cmd.PACKET_TYPE_GFSK, cmd.PACKET_TYPE_LORA, cmd.PACKET_TYPE_LR_FHSS):
            return False
        self.packet_type = p[0]

    def _op_8e(self, p):  # SetTxParams
        power = p[0] - 256 if p[0] > 127 else p[0]
        if not cmd.TX_POWER_MIN_SX1262 <= power <= cmd.TX_POWER_MAX_SX1262 or p[1] > 7:
            return False
        self.tx_power = power

    def _op_8b(self, p):  # SetModulationParams; LoRa: SF, BW, CR, LDRO, then 4 unused (13.4.5)
        if self.packet_type != cmd.PACKET_TYPE_LORA:
            self.other_params[cmd.CMD_SET_MODULATION_PARAMS] = p
            return
        if not 5 <= p[0] <= 12 or p[1] not in BW_HZ or not 1 <= p[2] <= 4 or p[3] > 1:
            return False
        self.sf, self.bw_code, self.cr, self.ldro = p[:4]

    def _op_8c(self, p):  # SetPacketParams; LoRa: preamble(2), header, length, CRC, IQ (13.4.6)
        if self.packet_type != cmd.PACKET_TYPE_LORA:
            self.other_params[cmd.CMD_SET_PACKET_PARAMS] = p
            return
        if p[2] > 1 or p[4] > 1 or p[5] > 1:
            return False
        self.preamble = int.from_bytes(p[:2], "big")
        self.implicit, self.length, self.crc_on, self.iq_inv = bool(p[2]), p[3], bool(p[4]), bool(p[5])

    def _op_88(self, p):  # SetCadParams (13.4.7): symbols, detPeak, detMin, exit mode, timeout
        if p[0] not in CAD_SYMBOLS or p[3] not in (CAD_ONLY, CAD_RX):
            return False
        self.cad_params = (p[0], p[1], p[2], p[3], int.from_bytes(p[4:7], "big"))

    def _op_8f(self, p):  # SetBufferBaseAddress
        self.tx_base, self.rx_base = p[0], p[1]

    def _op_a0(self, p):  # SetLoRaSymbNumTimeout (13.4.9)
        self.symb_num_timeout = p[0]

    def _op_9f(self, p):  # SetStopRxTimerOnPreambleDetect (13.1.6)
        if p[0] > 1:
            return False
        self.stop_on_preamble = bool(p[0])

    def _op_07(self, p):  # ClearDeviceErrors
        self.device_errors = 0

    def _op_00(self, p):  # ResetStats (13.5.6): six zero bytes
        if any(p):
            return False
        self.stats = [0, 0, 0]

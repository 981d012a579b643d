"""SX126x opcodes, registers and field values, named as in the Semtech datasheet.

Semtech SX1261/2 datasheet rev. 2.1: chapter 13 ("Commands Interface"; chapter 11 lists
the opcodes), chapter 12 (registers). Each field's values sit under the command that
takes them, with the bits they occupy, the way RadioLib groups `SX126x_commands.h`. Nothing here
talks to hardware; the driver (`sx1262.py`) and the test emulator both read these names, so a
wrong constant would have to be wrong in the same way twice against the datasheet tests.
"""

from __future__ import annotations

# --- opcodes (datasheet chapter 11) ------------------------------------------------
# operating modes (13.1)
CMD_SET_SLEEP = 0x84
CMD_SET_STANDBY = 0x80
CMD_SET_FS = 0xC1
CMD_SET_TX = 0x83
CMD_SET_RX = 0x82
CMD_STOP_TIMER_ON_PREAMBLE = 0x9F
CMD_SET_RX_DUTY_CYCLE = 0x94
CMD_SET_CAD = 0xC5
CMD_SET_TX_CONTINUOUS_WAVE = 0xD1
CMD_SET_TX_INFINITE_PREAMBLE = 0xD2
CMD_SET_REGULATOR_MODE = 0x96
CMD_CALIBRATE = 0x89
CMD_CALIBRATE_IMAGE = 0x98
CMD_SET_PA_CONFIG = 0x95
CMD_SET_RX_TX_FALLBACK_MODE = 0x93
# registers and buffer (13.2)
CMD_WRITE_REGISTER = 0x0D
CMD_READ_REGISTER = 0x1D
CMD_WRITE_BUFFER = 0x0E
CMD_READ_BUFFER = 0x1E
# DIO and IRQ control (13.3)
CMD_SET_DIO_IRQ_PARAMS = 0x08
CMD_GET_IRQ_STATUS = 0x12
CMD_CLEAR_IRQ_STATUS = 0x02
CMD_SET_DIO2_AS_RF_SWITCH_CTRL = 0x9D
CMD_SET_DIO3_AS_TCXO_CTRL = 0x97
# RF, modulation and packet (13.4)
CMD_SET_RF_FREQUENCY = 0x86
CMD_SET_PACKET_TYPE = 0x8A
CMD_GET_PACKET_TYPE = 0x11
CMD_SET_TX_PARAMS = 0x8E
CMD_SET_MODULATION_PARAMS = 0x8B
CMD_SET_PACKET_PARAMS = 0x8C
CMD_SET_CAD_PARAMS = 0x88
CMD_SET_BUFFER_BASE_ADDRESS = 0x8F
CMD_SET_LORA_SYMB_NUM_TIMEOUT = 0xA0
# status (13.5)
CMD_GET_STATUS = 0xC0
CMD_GET_RSSI_INST = 0x15
CMD_GET_RX_BUFFER_STATUS = 0x13
CMD_GET_PACKET_STATUS = 0x14
CMD_GET_DEVICE_ERRORS = 0x17
CMD_CLEAR_DEVICE_ERRORS = 0x07
CMD_GET_STATS = 0x10
CMD_RESET_STATS = 0x00
CMD_NOP = 0x00

#: Commands that return data after one status byte (ReadRegister: after its address and one
#: status byte; ReadBuffer: after its offset and one status byte), datasheet 13.2 and 13.5.
READ_COMMANDS = {
    CMD_GET_STATUS,
    CMD_GET_RSSI_INST,
    CMD_GET_RX_BUFFER_STATUS,
    CMD_GET_PACKET_STATUS,
    CMD_GET_DEVICE_ERRORS,
    CMD_GET_STATS,
    CMD_GET_IRQ_STATUS,
    CMD_GET_PACKET_TYPE,
    CMD_READ_REGISTER,
    CMD_READ_BUFFER,
}

# CMD_SET_SLEEP (13.1.1)                                           bits
SLEEP_START_COLD = 0x00  # 2 0: cold start, configuration lost
SLEEP_START_WARM = 0x04  # 2 1: warm start, configuration kept
SLEEP_RTC_WAKEUP = 0x01  # 0 1: wake on RTC timeout

# CMD_SET_STANDBY (13.1.2)
STANDBY_RC = 0x00  # 13 MHz RC oscillator
STANDBY_XOSC = 0x01  # XTAL / TCXO

# CMD_SET_TX / CMD_SET_RX timeout (13.1.4, 13.1.5): 24 bits of 15.625 us
TIMEOUT_STEP_S = 15.625e-6
RX_TIMEOUT_NONE = 0x000000  # single mode, no timeout
RX_TIMEOUT_INF = 0xFFFFFF  # continuous mode
TX_TIMEOUT_NONE = 0x000000

# CMD_SET_CAD_PARAMS (13.4.7): cadSymbolNum codes, exit mode
CAD_ON_SYMBOLS = {1: 0x00, 2: 0x01, 4: 0x02, 8: 0x03, 16: 0x04}
CAD_ONLY = 0x00  # back to STDBY_RC after CadDone
CAD_RX = 0x01  # stay in RX when activity is detected
#: Recommended (cadSymbolNum, cadDetPeak, cadDetMin) per SF at 125 kHz: Semtech AN1200.48
#: "SX126X CAD performance evaluation", table p. 41 (RadioLib's defaults follow it). The note has
#: no rows below SF7: SF5 and SF6 use SF7's.
CAD_RECOMMENDED = {7: (2, 22, 10), 8: (2, 22, 10), 9: (2, 24, 10), 10: (2, 25, 10),
                   11: (2, 26, 10), 12: (2, 30, 10)}

# CMD_SET_REGULATOR_MODE (13.1.11)
REGULATOR_LDO = 0x00
REGULATOR_DC_DC = 0x01

# CMD_CALIBRATE (13.1.12): one bit per block                       bits
CALIBRATE_RC64K = 0x01  # 0
CALIBRATE_RC13M = 0x02  # 1
CALIBRATE_PLL = 0x04  # 2
CALIBRATE_ADC_PULSE = 0x08  # 3
CALIBRATE_ADC_BULK_N = 0x10  # 4
CALIBRATE_ADC_BULK_P = 0x20  # 5
CALIBRATE_IMAGE = 0x40  # 6
CALIBRATE_ALL = 0x7F

# CMD_CALIBRATE_IMAGE (9.2.1 and 13.1.13, table 9-2): band -> (freq1, freq2), 4 MHz steps
CALIBRATE_IMAGE_BANDS = (
    ((430e6, 440e6), (0x6B, 0x6F)),
    ((470e6, 510e6), (0x75, 0x81)),
    ((779e6, 787e6), (0xC1, 0xC5)),
    ((863e6, 870e6), (0xD7, 0xDB)),
    ((902e6, 928e6), (0xE1, 0xE9)),
)

# CMD_SET_PA_CONFIG (13.1.14, table 13-21): SX1262 optimal settings per output power
PA_DEVICE_SEL_SX1262 = 0x00
PA_DEVICE_SEL_SX1261 = 0x01
PA_LUT = 0x01
#: target dBm -> (paDutyCycle, hpMax), SX1262 high-power PA, with SetTxParams power +22
PA_CONFIG_SX1262 = {22: (0x04, 0x07), 20: (0x03, 0x05), 17: (0x02, 0x03), 14: (0x02, 0x02)}

# CMD_SET_TX_PARAMS (13.4.4)
TX_POWER_MIN_SX1262 = -9
TX_POWER_MAX_SX1262 = 22
RAMP_10U = 0x00
RAMP_20U = 0x01
RAMP_40U = 0x02
RAMP_80U = 0x03
RAMP_200U = 0x04
RAMP_800U = 0x05
RAMP_1700U = 0x06
RAMP_3400U = 0x07

# CMD_SET_DIO_IRQ_PARAMS / CMD_GET_IRQ_STATUS (13.3.1)                bits
IRQ_TX_DONE = 0x0001  # 0
IRQ_RX_DONE = 0x0002  # 1
IRQ_PREAMBLE_DETECTED = 0x0004  # 2
IRQ_SYNC_WORD_VALID = 0x0008  # 3 (FSK)
IRQ_HEADER_VALID = 0x0010  # 4
IRQ_HEADER_ERR = 0x0020  # 5
IRQ_CRC_ERR = 0x0040  # 6
IRQ_CAD_DONE = 0x0080  # 7
IRQ_CAD_DETECTED = 0x0100  # 8
IRQ_TIMEOUT = 0x0200  # 9
IRQ_LR_FHSS_HOP = 0x4000  # 14
IRQ_ALL = 0x43FF
IRQ_NONE = 0x0000

# CMD_SET_DIO2_AS_RF_SWITCH_CTRL (13.3.5)
DIO2_AS_IRQ = 0x00
DIO2_AS_RF_SWITCH = 0x01

# CMD_SET_DIO3_AS_TCXO_CTRL (13.3.6): supply voltage; delay is 24 bits of 15.625 us
DIO3_OUTPUT = {1.6: 0x00, 1.7: 0x01, 1.8: 0x02, 2.2: 0x03, 2.4: 0x04, 2.7: 0x05, 3.0: 0x06, 3.3: 0x07}

# CMD_SET_RF_FREQUENCY (13.4.1): RfFreq = f * 2**25 / F_XTAL
XTAL_FREQ = 32e6
FREQ_DIV = 1 << 25

# CMD_SET_PACKET_TYPE (13.4.2)
PACKET_TYPE_GFSK = 0x00
PACKET_TYPE_LORA = 0x01
PACKET_TYPE_LR_FHSS = 0x03

# CMD_SET_MODULATION_PARAMS, LoRa (13.4.5)
LORA_BW = {  # Hz -> code
    7.81e3: 0x00,
    10.42e3: 0x08,
    15.63e3: 0x01,
    20.83e3: 0x09,
    31.25e3: 0x02,
    41.67e3: 0x0A,
    62.5e3: 0x03,
    125e3: 0x04,
    250e3: 0x05,
    500e3: 0x06,
}
LORA_CR_4_5 = 0x01
LORA_CR_4_6 = 0x02
LORA_CR_4_7 = 0x03
LORA_CR_4_8 = 0x04
LORA_LDRO_OFF = 0x00
LORA_LDRO_ON = 0x01

# CMD_SET_PACKET_PARAMS, LoRa (13.4.6)
LORA_HEADER_EXPLICIT = 0x00
LORA_HEADER_IMPLICIT = 0x01
LORA_CRC_OFF = 0x00
LORA_CRC_ON = 0x01
LORA_IQ_STANDARD = 0x00
LORA_IQ_INVERTED = 0x01

# CMD_GET_STATUS (13.5.1): the status byte                           bits
STATUS_MODE_MASK = 0x70  # 6:4 chip mode
STATUS_MODE_STBY_RC = 0x20
STATUS_MODE_STBY_XOSC = 0x30
STATUS_MODE_FS = 0x40
STATUS_MODE_RX = 0x50
STATUS_MODE_TX = 0x60
STATUS_CMD_MASK = 0x0E  # 3:1 command status
STATUS_DATA_AVAILABLE = 0x04  # 0x2 << 1
STATUS_CMD_TIMEOUT = 0x06  # 0x3 << 1
STATUS_CMD_INVALID = 0x08  # 0x4 << 1: processing error (bad opcode or parameters)
STATUS_CMD_FAILED = 0x0A  # 0x5 << 1: failure to execute
STATUS_TX_DONE = 0x0C  # 0x6 << 1
CHIP_MODES = {
    STATUS_MODE_STBY_RC: "STBY_RC",
    STATUS_MODE_STBY_XOSC: "STBY_XOSC",
    STATUS_MODE_FS: "FS",
    STATUS_MODE_RX: "RX",
    STATUS_MODE_TX: "TX",
}

# CMD_GET_DEVICE_ERRORS (13.6.1)                                     bits
ERR_RC64K_CALIB = 0x0001  # 0
ERR_RC13M_CALIB = 0x0002  # 1
ERR_PLL_CALIB = 0x0004  # 2
ERR_ADC_CALIB = 0x0008  # 3
ERR_IMG_CALIB = 0x0010  # 4
ERR_XOSC_START = 0x0020  # 5
ERR_PLL_LOCK = 0x0040  # 6
ERR_PA_RAMP = 0x0100  # 8
DEVICE_ERRORS = {
    ERR_RC64K_CALIB: "RC64K_CALIB",
    ERR_RC13M_CALIB: "RC13M_CALIB",
    ERR_PLL_CALIB: "PLL_CALIB",
    ERR_ADC_CALIB: "ADC_CALIB",
    ERR_IMG_CALIB: "IMG_CALIB",
    ERR_XOSC_START: "XOSC_START",
    ERR_PLL_LOCK: "PLL_LOCK",
    ERR_PA_RAMP: "PA_RAMP",
}

# --- registers (chapter 12 and chapter 15) ---------------------------------------------------
REG_VERSION_STRING = 0x0320  # 16 bytes of ASCII, e.g. "SX1261 V2D 2D02"
REG_LORA_SYNC_WORD_MSB = 0x0740
REG_LORA_SYNC_WORD_LSB = 0x0741
REG_IQ_POLARITY = 0x0736  # 15.4: bit 2
REG_TX_MODULATION = 0x0889  # 15.1: bit 2
REG_RX_GAIN = 0x08AC
REG_TX_CLAMP_CONFIG = 0x08D8  # 15.2: bits 4:1
REG_OCP_CONFIGURATION = 0x08E7
REG_RTC_CONTROL = 0x0902  # 15.3
REG_XTA_TRIM = 0x0911
REG_XTB_TRIM = 0x0912
REG_EVENT_MASK = 0x0944  # 15.3: bit 1

# LoRa sync word (chapter 12): two bytes, 0x1424 private and 0x3444 public networks
SYNC_WORD_PRIVATE = 0x1424
SYNC_WORD_PUBLIC = 0x3444

# RX gain (9.6): power saving vs boosted
RX_GAIN_POWER_SAVING = 0x94
RX_GAIN_BOOSTED = 0x96

# OCP (chapter 12): 2.5 mA steps; 0x38 = 140 mA, the SX1262 default after SetPaConfig
OCP_STEP_MA = 2.5
OCP_SX1262_140MA = 0x38

#: What the version string starts with on every SX126x (the SX1262 reports "SX1261" too).
VERSION_PREFIX = b"SX126"

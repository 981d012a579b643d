"""RadioLib's SX126x command sequences, replayed byte for byte against the SX1262 emulator.

So that the emulator does not only agree with our own driver, these are the SPI transfers that
jgromes/RadioLib 7.7.1 (commit 187ef24) sends for `SX1262::begin`, `SX126x::transmit` and
`SX126x::receive`, read from its source and written out here as bytes (RadioLib's code is not
copied). Each helper is named after the RadioLib function whose transfers it sends:

    src/Module.cpp                           SPItransferStream, SPIcheckStream (PARANOID on)
    src/modules/SX126x/SX1262.cpp            begin, setFrequency, setOutputPower (PA table)
    src/modules/SX126x/SX126x.cpp            begin, modSetup, findChip, reset, transmit,
                                             receive, stageMode, launchMode, finishTransmit,
                                             readData, getPacketLength, fixSensitivity,
                                             fixPaClamping, fixInvertedIQ, calibrateImage
    src/modules/SX126x/SX126x_config.cpp     config, setTCXO, setCodingRate, setSyncWord,
                                             setPreambleLength, setCurrentLimit, setCRC,
                                             invertIQ, setBandwidth, setSpreadingFactor
    src/modules/SX126x/SX126x_commands.cpp   standby (NOP first), setPacketParams, ...

RadioLib computes RfFreq in 32-bit floats and truncates: 868.1 MHz becomes 0x36419980, 26
register steps (24 Hz) below our driver's rounded 0x3641999A. The two still talk, because a
LoRa receiver tolerates a quarter of the bandwidth (lora_air.hears); exactly equal registers,
as the emulator once required, would have kept them deaf to each other.
"""

from __future__ import annotations

import threading

import pytest
from emulators.lora_air import Air
from emulators.spi_host import SpiHost
from emulators.sx1262 import EmulatedSX1262
from gpiozero.pins.mock import MockFactory

from device.radio import sx126x_commands as cmd
from device.radio.sx1262 import SX1262, SX1262Config
from device.radio.sx1262_config import rf_frequency_params

RADIOLIB_868_1 = 0x36419980  # (uint32_t)(868.1f * 2^25 / 32.0f) in float32
IRQ_ALL = [0x43, 0xFF]


@pytest.fixture
def air():
    air = Air()
    yield air
    air.close()


class RadioLib:
    """The transfers of RadioLib's SX1262 class (defaults of `SX1262::begin` unless given)."""

    def __init__(self, chip: EmulatedSX1262) -> None:
        self.chip = chip
        self.host = SpiHost(chip)

    # Module::SPItransferStream: BUSY low before and after; with data bytes, the status in the
    # second byte goes through SX126x::SPIparseStatus (0x00/0xFF chip not found, 3:1 errors).
    def stream(self, *data: int, wait: bool = True) -> bytes:
        rx = self.host.xfer(bytes(data), wait=wait)
        if len(data) > 1:
            status = rx[1]
            assert status not in (0x00, 0xFF), f"{data[0]:#04x}: chip not found"
            assert status & 0x0E not in (0x06, 0x08, 0x0A), f"{data[0]:#04x}: status {status:#04x}"
        return rx

    def check_stream(self) -> None:  # Module::SPIcheckStream, RADIOLIB_SPI_PARANOID = 1
        self.stream(0xC0, 0x00, 0x00)

    def standby(self) -> None:  # SX126x::standby(RC, wakeup=true): a NOP without BUSY wait
        self.stream(0x00, wait=False)
        self.stream(0x80, 0x00)

    def get_packet_type(self) -> int:
        return self.stream(0x11, 0x00, 0x00)[2]

    def read_register(self, address: int, n: int = 1) -> bytes:  # readRegister
        data = self.stream(0x1D, address >> 8, address & 0xFF, 0x00, *bytes(n))[4:]
        self.check_stream()
        return data

    def write_register(self, address: int, *data: int) -> None:
        self.stream(0x0D, address >> 8, address & 0xFF, *data)

    def set_packet_params(self, length: int) -> None:
        """setPacketParams(preamble 8, CRC on, length, explicit, standard IQ), which first runs
        fixInvertedIQ: bit 2 of 0x0736 set for standard IQ."""
        iq = self.read_register(0x0736)[0]
        self.write_register(0x0736, iq | 0x04)
        self.stream(0x8C, 0x00, 0x08, 0x00, length, 0x01, 0x00)

    def begin(self) -> None:
        """SX1262::begin(868.1, 125.0, sf 9, cr 7, private sync word, 14 dBm, preamble 8,
        TCXO 1.6 V, DC-DC)."""
        # modSetup -> findChip -> reset(true): NRESET pulse, then standby until it answers
        self.host.reset()
        self.standby()
        version = self.read_register_burst_version()
        assert version.startswith(b"SX1261")  # RADIOLIB_SX1262_CHIP_TYPE
        # setTCXO(1.6, 5000 us): standby, clear XOSC_START_ERR, DIO3 at 1.6 V, 320 steps
        self.standby()
        errors = int.from_bytes(self.stream(0x17, 0x00, 0x00, 0x00)[2:], "big")
        if errors & 0x20:
            self.stream(0x07, 0x00, 0x00)
        self.stream(0x97, 0x00, 0x00, 0x01, 0x40)
        # config(LoRa)
        self.stream(0x8F, 0x00, 0x00)  # setBufferBaseAddress
        self.stream(0x8A, 0x01)  # SetPacketType LoRa
        self.stream(0x93, 0x20)  # SetRxTxFallbackMode STDBY_RC
        self.stream(0x88, 0x03, 9 + 13, 10, 0x00, 0x00, 0x00, 0x00)  # SetCadParams
        self.stream(0x02, *IRQ_ALL)  # clearIrqStatus
        self.stream(0x08, 0, 0, 0, 0, 0, 0, 0, 0)  # setDioIrqParams(NONE, NONE)
        self.stream(0x89, 0x7F)  # Calibrate all blocks, then wait for BUSY
        self.host.wait_busy()
        self.check_stream()
        self.stream(0x96, 0x01)  # setRegulatorDCDC
        # SX126x::begin: coding rate, sync word, preamble, current limit, DIO2, CRC, IQ
        self.get_packet_type()
        self.stream(0x8B, 0x09, 0x06, 0x03, 0x00)  # SF9, BW500 (its start value), CR 4/7
        self.get_packet_type()
        self.write_register(0x0740, 0x14, 0x24)  # setSyncWord(0x12, 0x44)
        self.get_packet_type()
        self.set_packet_params(0xFF)  # setPreambleLength(8)
        self.write_register(0x08E7, 0x18)  # setCurrentLimit(60 mA)
        self.stream(0x9D, 0x01)  # setDio2AsRfSwitch(true)
        self.get_packet_type()
        self.set_packet_params(0xFF)  # setCRC(2)
        self.get_packet_type()
        self.set_packet_params(0xFF)  # invertIQ(false)
        # SX1262::begin: SF, BW, frequency, PA clamping, output power
        self.get_packet_type()
        self.stream(0x8B, 0x09, 0x06, 0x03, 0x00)  # setSpreadingFactor(9)
        self.get_packet_type()
        self.stream(0x8B, 0x09, 0x04, 0x03, 0x00)  # setBandwidth(125): LDRO off (4.1 ms)
        self.stream(0x98, 0xD7, 0xDB)  # calibrateImage(868.1): the 863-870 MHz band
        self.stream(0x86, *RADIOLIB_868_1.to_bytes(4, "big"))  # setFrequencyRaw
        clamp = self.read_register(0x08D8)[0]  # fixPaClamping
        self.write_register(0x08D8, clamp | 0x1E)
        ocp = self.read_register(0x08E7)[0]  # setOutputPower(14): table row 23
        self.stream(0x95, 0x01, 0x04, 0x00, 0x01)  # SetPaConfig duty 1, hpMax 4, SX1262, LUT
        self.stream(0x8E, 20, 0x04)  # SetTxParams +20 dBm, 200 us ramp
        self.write_register(0x08E7, ocp)  # restore OCP (SetPaConfig changed it)

    def read_register_burst_version(self) -> bytes:
        # Module::SPIreadRegisterBurst(0x0320, 16): no SPIcheckStream after it in findChip
        return self.stream(0x1D, 0x03, 0x20, 0x00, *bytes(16))[4:]

    def transmit(self, payload: bytes) -> None:
        """SX126x::transmit: standby, stageMode(TX), launchMode, poll DIO1, finishTransmit."""
        self.standby()
        self.get_packet_type()
        self.set_packet_params(len(payload))
        self.stream(0x08, 0x02, 0x01, 0x00, 0x01, 0, 0, 0, 0)  # TxDone|Timeout, DIO1 TxDone
        self.stream(0x8F, 0x00, 0x00)
        self.stream(0x0E, 0x00, *payload)  # writeBuffer
        self.stream(0x02, *IRQ_ALL)
        sensitivity = self.read_register(0x0889)[0]  # fixSensitivity (not 500 kHz: bit 2 set)
        self.get_packet_type()
        self.write_register(0x0889, sensitivity | 0x04)
        self.stream(0x83, 0x00, 0x00, 0x00)  # setTx(TX_TIMEOUT_NONE), wait for BUSY
        self.get_packet_type()
        self.host.wait_dio1()
        self.stream(0x02, *IRQ_ALL)  # finishTransmit
        self.standby()

    def start_receive(self, timeout_ms: int) -> None:
        """SX126x::receive up to launchMode: standby, stageMode(RX), setRx(timeout)."""
        steps = int(timeout_ms * 1000 / 15.625)
        self.standby()
        self.standby()  # stageMode starts with one too
        # RX_DEFAULT_FLAGS: RxDone, Timeout, CrcErr, HeaderValid, HeaderErr; DIO1: RxDone and
        # (a timeout is set) Timeout
        self.stream(0x08, 0x02, 0x72, 0x02, 0x02, 0, 0, 0, 0)
        self.stream(0x8F, 0x00, 0x00)
        self.stream(0x02, *IRQ_ALL)
        self.get_packet_type()
        self.set_packet_params(0xFF)
        self.stream(0x82, *steps.to_bytes(3, "big"))

    def finish_receive(self) -> tuple[int, bytes]:
        """After DIO1: standby, getIrqFlags, then readData; returns (IRQ flags, payload)."""
        self.host.wait_dio1()
        self.standby()
        flags = int.from_bytes(self.stream(0x12, 0x00, 0x00, 0x00)[2:], "big")
        if flags & cmd.IRQ_TIMEOUT:
            return flags, b""
        self.check_stream()  # readData
        flags = int.from_bytes(self.stream(0x12, 0x00, 0x00, 0x00)[2:], "big")
        self.get_packet_type()  # getPacketLength(true, &offset)
        length, offset = self.stream(0x13, 0x00, 0x00, 0x00)[2:]
        payload = self.stream(0x1E, offset, 0x00, *bytes(length))[3:]  # readBuffer
        self.stream(0x02, *IRQ_ALL)
        return flags, payload


def radiolib_chip(air):
    chip = EmulatedSX1262(MockFactory(), air)
    chip.boot_errors = cmd.ERR_XOSC_START  # a TCXO board: the clock was off until DIO3 powers it
    radio = RadioLib(chip)
    radio.begin()
    return radio, chip


def our_driver(air):
    factory = MockFactory()
    chip = EmulatedSX1262(factory, air)
    config = SX1262Config(frequency_hz=868.1e6, sf=9, bw_hz=125e3, cr=7, preamble=8)
    return SX1262(config, bus=chip, pin_factory=factory, busy_timeout=0.25, irq_margin=0.05), chip


def test_radiolib_begin_leaves_the_chip_configured(air):
    _, chip = radiolib_chip(air)
    assert not chip.invalid and chip.violations == 0
    assert chip.mode == cmd.STATUS_MODE_STBY_RC and chip.packet_type == cmd.PACKET_TYPE_LORA
    assert (chip.sf, chip.bw_code, chip.cr, chip.ldro) == (9, 0x04, 0x03, 0)
    assert (chip.preamble, chip.implicit, chip.length, chip.crc_on, chip.iq_inv) == (
        8, False, 0xFF, True, False)
    assert (chip.registers[0x0740], chip.registers[0x0741]) == (0x14, 0x24)
    assert chip.registers[0x08E7] == 0x18 and chip.registers[0x08D8] == 0x1E
    assert chip.frequency == RADIOLIB_868_1 and chip.tcxo == 0x00 and chip.dio2_switch
    assert chip.pa == (0x01, 0x04, 0x00, 0x01) and chip.tx_power == 20
    assert chip.fallback == cmd.STATUS_MODE_STBY_RC and chip.regulator == cmd.REGULATOR_DC_DC
    assert chip.cad_params == (0x03, 22, 10, 0x00, 0) and chip.device_errors == 0


def test_radiolib_transmits_to_our_driver(air):
    radio, chip = radiolib_chip(air)
    ours, our_chip = our_driver(air)
    assert int.from_bytes(rf_frequency_params(868.1e6), "big") - RADIOLIB_868_1 == 26
    got = []
    thread = threading.Thread(target=lambda: got.append(ours.receive(3.0)))
    thread.start()
    for _ in range(1000):
        if our_chip.listening():
            break
        threading.Event().wait(0.001)
    radio.transmit(b"from RadioLib")
    thread.join()
    assert got[0] is not None and got[0].frame == b"from RadioLib"
    assert chip.mode == cmd.STATUS_MODE_STBY_RC and chip.sent == [b"from RadioLib"]
    assert not chip.invalid and chip.violations == 0
    ours.close()


def test_radiolib_receives_from_our_driver(air):
    radio, chip = radiolib_chip(air)
    ours, _ = our_driver(air)
    radio.start_receive(timeout_ms=2000)
    assert chip.listening()
    ours.send(b"from wildlink")
    flags, payload = radio.finish_receive()
    assert flags & cmd.IRQ_RX_DONE and flags & cmd.IRQ_HEADER_VALID
    assert not flags & (cmd.IRQ_CRC_ERR | cmd.IRQ_TIMEOUT) and payload == b"from wildlink"
    assert chip.mode == cmd.STATUS_MODE_STBY_RC and not chip.invalid and chip.violations == 0
    ours.close()


def test_radiolib_receive_times_out_in_standby(air):
    radio, chip = radiolib_chip(air)
    radio.start_receive(timeout_ms=20)
    flags, payload = radio.finish_receive()
    assert flags == cmd.IRQ_TIMEOUT and payload == b""
    assert chip.mode == cmd.STATUS_MODE_STBY_RC and not chip.invalid

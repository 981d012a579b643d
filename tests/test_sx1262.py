"""The SX1262 driver against the datasheet and against emulated chips (tests/emulators/sx1262.py).

Values quoted from the Semtech SX1261/2 datasheet rev. 2.1 are checked literally, so a constant
wrong in both the driver and the emulator still fails here.
"""

from __future__ import annotations

import logging
import threading

import pytest
from emulators.sx1262 import Air, EmulatedSX1262
from gpiozero.pins.mock import MockFactory

from device.errors import ConfigError, RadioError
from device.radio import sx126x_commands as cmd
from device.radio import sx126x_errata as errata
from device.radio.base import Radio
from device.radio.errors import (
    BusyTimeout,
    CommandError,
    FrameSizeError,
    IrqTimeout,
    RadioNotFound,
)
from device.radio.sx1262 import IRQ_MASK, SX1262, check_status
from device.radio.sx1262_config import (
    SX1262Config,
    SX1262Pins,
    cad_params,
    calibrate_image_params,
    modulation_params,
    pa_params,
    packet_params,
    rf_frequency_params,
    tcxo_params,
)

FAST = SX1262Config(sf=7, bw_hz=500e3)  # ~0.1 s for 255 bytes: keeps the suite quick


@pytest.fixture
def air():
    air = Air()
    yield air
    air.close()


def make(air, config=FAST, pins=None, **faults):
    """One emulated chip and the real driver on it; faults apply before bring-up."""
    factory = MockFactory()
    chip = EmulatedSX1262(factory, air, pins)
    for name, value in faults.items():
        setattr(chip, name, value)
    radio = SX1262(config, pins, bus=chip, pin_factory=factory, busy_timeout=0.25,
                   irq_margin=0.05)
    return radio, chip


def listen(radio, timeout=2.0):
    """Receive on a thread; returns a function that joins and gives the result."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", radio.receive(timeout)))
    thread.start()

    def result():
        thread.join()
        return out["r"]

    return result


def wait_rx(chip):
    """Block until the emulated chip is in RX (the receiver thread armed it)."""
    for _ in range(1000):
        if chip.mode == cmd.STATUS_MODE_RX:
            return
        threading.Event().wait(0.005)
    raise AssertionError("receiver never entered RX")


# --- datasheet values (no chip) ----------------------------------------------------------------


def test_rf_frequency_is_f_times_2_pow_25_over_32mhz():
    assert rf_frequency_params(868e6) == bytes.fromhex("36400000")  # 868 * 2**20
    assert rf_frequency_params(915e6) == bytes.fromhex("39300000")
    assert rf_frequency_params(433e6) == bytes.fromhex("1B100000")


def test_calibrate_image_uses_table_9_2():
    assert calibrate_image_params(868.1e6) == bytes([0xD7, 0xDB])
    assert calibrate_image_params(915e6) == bytes([0xE1, 0xE9])
    assert calibrate_image_params(433.5e6) == bytes([0x6B, 0x6F])
    assert calibrate_image_params(490e6) == bytes([0x75, 0x81])
    assert calibrate_image_params(780e6) == bytes([0xC1, 0xC5])
    low, high = calibrate_image_params(600e6)
    assert low * 4 < 600 < high * 4


def test_pa_config_follows_table_13_21_and_never_the_low_power_pa():
    assert pa_params(22) == (bytes([0x04, 0x07, 0x00, 0x01]), bytes([22, cmd.RAMP_200U]))
    assert pa_params(20)[0] == bytes([0x03, 0x05, 0x00, 0x01])
    assert pa_params(17)[0] == bytes([0x02, 0x03, 0x00, 0x01])
    assert pa_params(14) == (bytes([0x02, 0x02, 0x00, 0x01]), bytes([22, cmd.RAMP_200U]))
    pa, tx = pa_params(10)  # low power: still the SX1262 high-power PA (deviceSel 0)
    assert pa[2] == 0x00 and tx[0] == 18
    assert pa_params(-9)[0][2] == 0x00 and pa_params(-9)[1][0] == (-1) & 0xFF


def test_ldro_on_from_16ms_symbols():
    def ldro(sf, bw):
        return modulation_params(SX1262Config(sf=sf, bw_hz=bw))[3]

    assert ldro(12, 125e3) == 1 and ldro(11, 125e3) == 1  # 32.8 ms, 16.4 ms
    assert ldro(10, 125e3) == 0 and ldro(11, 250e3) == 0  # 8.2 ms
    assert ldro(12, 250e3) == 1
    assert modulation_params(SX1262Config(sf=9, bw_hz=125e3, cr=8)) == bytes([9, 0x04, 0x04, 0])


def test_packet_params_bytes():
    assert packet_params(SX1262Config(), 42) == bytes([0x00, 0x08, 0x00, 42, 0x01, 0x00])
    inverted = SX1262Config(invert_iq=True, crc=False, explicit_header=False, preamble=300)
    assert packet_params(inverted, 7) == bytes([0x01, 0x2C, 0x01, 7, 0x00, 0x01])


def test_tcxo_params():
    assert tcxo_params(1.8, 0.005) == bytes([0x02, 0x00, 0x01, 0x40])  # 320 * 15.625 us
    assert tcxo_params(3.3, 0.005)[0] == 0x07


def test_config_rejects_bad_values():
    for bad in (dict(bw_hz=100e3), dict(sf=13), dict(tx_power_dbm=23), dict(cr=9),
                dict(tcxo_voltage=2.0), dict(module="rfm95"), dict(frequency_hz=2.4e9)):
        with pytest.raises(ConfigError):
            SX1262Config(**bad)
    assert SX1262Pins().spi_speed_hz == 2_000_000


def test_status_byte_mapped_in_one_place():
    with pytest.raises(RadioNotFound, match="failed to find SX1262, check wiring and BUSY pin"):
        check_status(0x00, cmd.CMD_GET_STATUS)
    with pytest.raises(RadioNotFound):
        check_status(0xFF, cmd.CMD_GET_STATUS)
    for code in (cmd.STATUS_CMD_TIMEOUT, cmd.STATUS_CMD_INVALID, cmd.STATUS_CMD_FAILED):
        with pytest.raises(CommandError):
            check_status(cmd.STATUS_MODE_STBY_RC | code, cmd.CMD_SET_TX)
    for code in (0x02, cmd.STATUS_DATA_AVAILABLE, cmd.STATUS_TX_DONE):
        assert check_status(cmd.STATUS_MODE_RX | code, cmd.CMD_SET_RX) == cmd.STATUS_MODE_RX | code


class Registers:
    def __init__(self, values):
        self.values = dict(values)

    def read_register(self, address, count=1):
        return bytes([self.values[address]])

    def write_register(self, address, data):
        self.values[address] = data[0]


def test_errata_registers_match_chapter_15():
    regs = Registers({0x0889: 0xFF, 0x08D8: 0x08, 0x0736: 0x0D, 0x0902: 0x55, 0x0944: 0x00})
    errata.fix_sensitivity(regs, 500e3)  # 15.1: bit 2 cleared at 500 kHz ...
    assert regs.values[0x0889] == 0xFB
    errata.fix_sensitivity(regs, 125e3)  # ... and set otherwise
    assert regs.values[0x0889] == 0xFF
    errata.fix_pa_clamping(regs)  # 15.2: bits 4:1 = 1111
    assert regs.values[0x08D8] == 0x1E
    errata.fix_implicit_timeout(regs)  # 15.3
    assert regs.values[0x0902] == 0x00 and regs.values[0x0944] == 0x02
    errata.fix_inverted_iq(regs, inverted=True)  # 15.4: bit 2 = 0 with inverted IQ
    assert regs.values[0x0736] == 0x09
    errata.fix_inverted_iq(regs, inverted=False)  # ... and 1 with standard IQ
    assert regs.values[0x0736] == 0x0D


# --- bring-up on the emulator ------------------------------------------------------------------


def test_bring_up_sequence_and_values(air):
    radio, chip = make(air, SX1262Config(frequency_hz=868.1e6, sf=12, bw_hz=125e3,
                                         tx_power_dbm=22, sync_word=cmd.SYNC_WORD_PUBLIC))
    assert isinstance(radio, Radio) and radio.mtu == 255
    ops = [op for op, _ in chip.log if op != cmd.CMD_GET_STATUS]
    order = [cmd.CMD_SET_STANDBY, cmd.CMD_CALIBRATE, cmd.CMD_SET_REGULATOR_MODE,
             cmd.CMD_SET_DIO2_AS_RF_SWITCH_CTRL, cmd.CMD_SET_PACKET_TYPE,
             cmd.CMD_CALIBRATE_IMAGE, cmd.CMD_SET_RF_FREQUENCY, cmd.CMD_SET_PA_CONFIG,
             cmd.CMD_SET_TX_PARAMS, cmd.CMD_SET_BUFFER_BASE_ADDRESS,
             cmd.CMD_SET_MODULATION_PARAMS, cmd.CMD_SET_PACKET_PARAMS,
             cmd.CMD_SET_DIO_IRQ_PARAMS, cmd.CMD_CLEAR_IRQ_STATUS]
    positions = [ops.index(op) for op in order]
    assert positions == sorted(positions)
    params = {op: p for op, p in chip.log}
    assert params[cmd.CMD_SET_PACKET_TYPE] == b"\x01"
    assert params[cmd.CMD_SET_REGULATOR_MODE] == b"\x01"  # DC-DC
    assert params[cmd.CMD_CALIBRATE] == b"\x7f"
    assert params[cmd.CMD_CALIBRATE_IMAGE] == b"\xd7\xdb"
    assert params[cmd.CMD_SET_MODULATION_PARAMS] == bytes([12, 0x04, 0x01, 0x01])  # LDRO on
    assert params[cmd.CMD_SET_DIO_IRQ_PARAMS][:4] == bytes.fromhex("03E303E3")
    assert IRQ_MASK == 0x03E3  # TxDone, RxDone, HeaderErr, CrcErr, CadDone, CadDetected, Timeout
    assert chip.pa == (0x04, 0x07, 0x00, 0x01) and chip.tx_power == 22
    assert (chip.registers[0x0740], chip.registers[0x0741]) == (0x34, 0x44)
    assert chip.registers[0x08D8] == 0x1E  # 15.2
    assert chip.registers[0x0736] & 0x04  # 15.4, standard IQ
    assert chip.registers[0x08E7] == 0x38  # 140 mA
    assert chip.registers[0x08AC] == 0x96  # boosted RX gain
    assert chip.dio2_switch and chip.tcxo is None
    assert radio.status().version.startswith("SX126")
    assert chip.violations == 0
    radio.close()
    assert chip.log[-1] == (cmd.CMD_SET_SLEEP, b"\x00")


def test_private_sync_word_and_inverted_iq(air):
    radio, chip = make(air, SX1262Config(sf=7, bw_hz=500e3, invert_iq=True))
    assert (chip.registers[0x0740], chip.registers[0x0741]) == (0x14, 0x24)
    assert not chip.registers[0x0736] & 0x04 and chip.iq_inv
    radio.close()


def test_sensitivity_fix_written_before_each_transmission(air):
    radio, chip = make(air, SX1262Config(sf=7, bw_hz=500e3))
    radio.send(b"x")
    assert not chip.registers[0x0889] & 0x04
    radio.close()
    slow, chip2 = make(air, SX1262Config(sf=5, bw_hz=250e3))
    slow.send(b"x")
    assert chip2.registers[0x0889] & 0x04
    slow.close()


def test_absent_chip_is_reported_with_the_wiring_hint(air):
    with pytest.raises(RadioNotFound, match="failed to find SX1262, check wiring and BUSY pin"):
        make(air, absent=True)


def test_tcxo_by_dio3_and_crystal_fallback(air, caplog):
    # A TCXO board reports XOSC_START_ERR from boot; that alone must not cause a fallback.
    radio, chip = make(air, SX1262Config(sf=7, bw_hz=500e3, module="e22-900m22s"),
                       boot_errors=cmd.ERR_XOSC_START)
    assert radio.tcxo == 1.8 and chip.tcxo == 0x02 and not chip.dio2_switch
    assert chip.log[[op for op, _ in chip.log].index(cmd.CMD_SET_DIO3_AS_TCXO_CTRL)][1] == \
        bytes([0x02, 0x00, 0x01, 0x40])  # 1.8 V, 5 ms
    radio.close()
    with caplog.at_level(logging.WARNING, logger="device.radio.sx1262"):
        radio, chip = make(air, SX1262Config(sf=7, bw_hz=500e3, module="core1262"),
                           tcxo_fails=True)
    assert radio.tcxo is None and chip.tcxo is None  # reset undid DIO3 control
    assert "falling back to the crystal" in caplog.text
    assert radio.status().device_errors == ()
    radio.close()


# --- packets between two emulated chips ---------------------------------------------------------


def test_two_chips_exchange_packets(air):
    a, chip_a = make(air)
    b, chip_b = make(air)
    for frame in (b"hello", bytes(range(255)), b"\x00" * 17):
        result = listen(b)
        wait_rx(chip_b)
        seconds = a.send(frame)
        got = result()
        assert got.frame == frame and got.rssi == -60.0 and got.snr == 9.5
        assert seconds == pytest.approx(a.modulation.time_on_air(len(frame)))
    result = listen(a)
    wait_rx(chip_a)
    b.send(b"pong")
    assert result().frame == b"pong"
    assert chip_a.violations == chip_b.violations == 0
    assert a.stats.resets == b.stats.resets == 0
    a.close()
    b.close()


def test_receive_times_out_with_none(air):
    radio, chip = make(air)
    assert radio.receive(0.05) is None
    assert radio.stats.resets == 0
    radio.close()


def test_frames_outside_1_to_255_bytes_are_refused(air):
    radio, _ = make(air)
    for frame in (b"", bytes(256)):
        with pytest.raises(FrameSizeError):
            radio.send(frame)
    radio.close()
    with pytest.raises(RadioError, match="closed"):
        radio.send(b"x")


def test_other_sync_word_is_not_heard(air):
    a, _ = make(air)
    b, chip_b = make(air, SX1262Config(sf=7, bw_hz=500e3, sync_word=cmd.SYNC_WORD_PUBLIC))
    result = listen(b, 0.3)
    wait_rx(chip_b)
    a.send(b"private")
    assert result() is None
    a.close()
    b.close()


def test_txen_rxen_follow_the_direction(air):
    pins = SX1262Pins(txen=5, rxen=6)
    radio, chip = make(air, SX1262Config(sf=7, bw_hz=500e3, module="e22-900m22s"), pins)
    txen, rxen = chip.factory.pin(5), chip.factory.pin(6)
    radio.send(b"x")
    assert [s.state for s in txen.states][-2:] == [True, False]
    radio.receive(0.02)
    assert [s.state for s in rxen.states][-2:] == [True, False]
    assert not txen.state and not rxen.state
    radio.close()


# --- faults ------------------------------------------------------------------------------------


def test_stuck_busy_resets_and_still_sends(air, caplog):
    a, chip_a = make(air)
    b, chip_b = make(air)
    result = listen(b)
    wait_rx(chip_b)
    chip_a.stuck_busy = 1
    with caplog.at_level(logging.WARNING, logger="device.radio.sx1262"):
        a.send(b"after a stuck BUSY")
    assert result().frame == b"after a stuck BUSY"
    assert a.stats.resets == 1 and "BUSY stayed high" in a.stats.reasons[0]
    assert "hard reset and re-init" in caplog.text
    a.close()
    b.close()


def test_dead_busy_line_fails_loudly(air):
    radio, chip = make(air)
    chip.stuck_busy, chip.busy_dead = 1, True
    with pytest.raises(BusyTimeout, match="failed to find SX1262"):
        radio.send(b"x")


def test_missing_tx_done_resets_and_retransmits_once(air):
    a, chip_a = make(air)
    b, chip_b = make(air)
    result = listen(b)
    wait_rx(chip_b)
    chip_a.drop_irq = 1
    a.send(b"retried")
    assert result().frame == b"retried"
    assert a.stats.resets == 1 and chip_a.sent == [b"retried"]
    a.close()
    b.close()


def test_missing_irq_twice_reaches_the_caller(air):
    radio, chip = make(air)
    chip.drop_irq = 2
    with pytest.raises(IrqTimeout, match="no TxDone"):
        radio.send(b"never silently dropped")
    assert radio.stats.resets == 1
    radio.close()


def test_missing_rx_irq_resets_and_listens_again(air):
    radio, chip = make(air)
    chip.drop_irq = 1
    assert radio.receive(0.1) is None
    assert radio.stats.resets == 1 and chip.resets >= 2
    a, _ = make(air)
    result = listen(radio)
    wait_rx(chip)
    a.send(b"ok again")
    assert result().frame == b"ok again"
    radio.close()
    a.close()


# --- channel activity detection (13.1.8 SetCad, 13.4.7 SetCadParams) ---------------------------


@pytest.mark.parametrize(("sf", "peak"), [(5, 22), (7, 22), (8, 22), (9, 24), (10, 25), (11, 26),
                                          (12, 30)])
def test_cad_params_follow_an1200_48(sf, peak):
    """2 symbols, cadDetPeak per SF, cadDetMin 10 (Semtech AN1200.48 p. 41; SF5/6 as SF7),
    CAD_ONLY with no timeout."""
    assert cad_params(SX1262Config(sf=sf)) == bytes([0x01, peak, 10, 0x00, 0, 0, 0])


def test_cad_on_a_quiet_channel_is_free(air):
    radio, chip = make(air)
    assert radio.channel_active() is False
    sent = [params for opcode, params in chip.log if opcode == cmd.CMD_SET_CAD_PARAMS]
    assert sent == [bytes([0x01, 22, 10, 0x00, 0, 0, 0])]  # SF7
    assert [op for op, _ in chip.log].count(cmd.CMD_SET_CAD) == 1
    assert chip.mode == cmd.STATUS_MODE_STBY_RC and chip.irq == 0  # CAD_ONLY, flags cleared
    assert (radio.stats.cads, radio.stats.cad_detected) == (1, 0)
    radio.close()


def test_cad_reports_a_busy_channel_and_the_radio_works_on(air):
    radio, chip = make(air)
    chip.channel_busy = True
    assert radio.channel_active() is True
    chip.channel_busy = False
    assert radio.channel_active() is False
    assert (radio.stats.cads, radio.stats.cad_detected) == (2, 1)
    other, chip_other = make(air)
    result = listen(other)
    wait_rx(chip_other)
    radio.send(b"after CAD")
    assert result().frame == b"after CAD"
    assert chip.violations == 0 and radio.stats.resets == 0
    radio.close()
    other.close()


def test_cad_hears_another_radio_transmitting(air):
    slow = SX1262Config(sf=7, bw_hz=125e3)  # 255 bytes: ~0.4 s on air, a CAD: 2 ms
    a, _ = make(air, slow)
    b, _ = make(air, slow)
    far, _ = make(air, SX1262Config(frequency_hz=869.525e6, sf=7, bw_hz=125e3))
    sender = threading.Thread(target=b.send, args=(bytes(255),))
    sender.start()
    while not air.in_progress():
        threading.Event().wait(0.001)
    assert a.channel_active() is True
    assert far.channel_active() is False  # another carrier: not this channel's activity
    sender.join()
    assert a.channel_active() is False
    for radio in (a, b, far):
        radio.close()


def test_missing_cad_done_resets_and_runs_the_cad_again(air):
    radio, chip = make(air)
    chip.drop_irq = 1
    chip.channel_busy = True
    assert radio.channel_active() is True
    assert radio.stats.resets == 1 and "CAD" in radio.stats.reasons[-1]
    radio.close()


def test_crc_and_header_errors_are_rejected_and_listening_continues(air):
    a, _ = make(air)
    b, chip_b = make(air)
    air.corrupt, air.header_errors = 0, 0
    for fault in ("corrupt", "header_errors"):
        result = listen(b, 3.0)
        wait_rx(chip_b)
        setattr(air, fault, 1)
        a.send(b"bad")
        wait_rx(chip_b)  # the driver re-armed RX after rejecting
        a.send(b"good")
        assert result().frame == b"good"
    assert b.stats.crc_errors == 1 and b.stats.header_errors == 1 and b.stats.resets == 0
    a.close()
    b.close()


def test_broken_dio1_wire_still_completes_from_the_flags(air, caplog):
    radio, chip = make(air)
    chip.mute_dio1 = True
    with caplog.at_level(logging.WARNING, logger="device.radio.sx1262"):
        assert radio.send(b"x") > 0
    assert radio.stats.dio1_misses == 1 and "check the DIO1 pin" in caplog.text
    radio.close()


def test_command_error_from_the_status_byte(air):
    radio, chip = make(air)
    with pytest.raises(CommandError, match="invalid opcode or parameters"):
        radio._command(cmd.CMD_SET_MODULATION_PARAMS, bytes([13, 0x04, 0x01, 0x00]))  # SF13
    radio.close()


def test_implicit_header_exchange_applies_the_timeout_fix(air):
    config = SX1262Config(sf=6, bw_hz=500e3, explicit_header=False, implicit_length=20)
    a, _ = make(air, config)
    b, chip_b = make(air, config)
    assert a.mtu == 20
    with pytest.raises(FrameSizeError):
        a.send(b"short")
    result = listen(b)
    wait_rx(chip_b)
    a.send(bytes(range(20)))
    assert result().frame == bytes(range(20))
    assert chip_b.registers[0x0902] == 0x00 and chip_b.registers[0x0944] & 0x02  # 15.3
    a.close()
    b.close()


class FakeSpiDev:
    """Stands in for the `spidev` module's SpiDev (the Pi's kernel driver is absent here)."""

    opened: list = []

    def __init__(self):
        self.mode, self.max_speed_hz, self.no_cs, self.sent = None, None, False, []

    def open(self, bus, device):
        if bus != 0:
            raise FileNotFoundError(2, "No such file or directory")
        FakeSpiDev.opened.append(self)

    def xfer2(self, data):
        self.sent.append(list(data))
        return [0x22] * len(data)

    def close(self):
        pass


def test_spidev_backend_mode_speed_and_gpio_chip_select(monkeypatch):
    import sys
    import types

    from device.radio.sx1262 import SpidevBus

    monkeypatch.setitem(sys.modules, "spidev", types.SimpleNamespace(SpiDev=FakeSpiDev))
    factory = MockFactory()
    bus = SpidevBus(SX1262Pins(cs=21), pin_factory=factory)
    spi = FakeSpiDev.opened[-1]
    assert spi.mode == 0 and spi.max_speed_hz == 2_000_000 and spi.no_cs
    cs = factory.pin(21)
    assert cs.state  # idle high (active low)
    assert bus.transfer(b"\xc0\x00") == b"\x22\x22" and spi.sent == [[0xC0, 0x00]]
    assert [s.state for s in cs.states][-2:] == [False, True]  # asserted for the transfer
    bus.close()
    with pytest.raises(RadioNotFound, match="enable SPI"):
        SpidevBus(SX1262Pins(spi_bus=1))


def test_low_power_still_configures_the_high_power_pa(air):
    """LoRaRF-Python returned early below +14 dBm on the SX1262, leaving the PA unset."""
    radio, chip = make(air, SX1262Config(sf=7, bw_hz=500e3, tx_power_dbm=5))
    assert chip.pa == (0x02, 0x02, 0x00, 0x01) and chip.tx_power == 13
    radio.close()

"""The SX1262 emulator against the Semtech SX1261/2 datasheet rev. 2.1, by raw SPI bytes.

No driver here: `SpiHost` sends the bytes the datasheet's chapter 13 defines, so the emulator
is held to the datasheet rather than to what our driver happens to send.
"""

from __future__ import annotations

import threading

import pytest
from emulators.lora_air import FREQ_TOLERANCE_OF_BW, Air, register_hz
from emulators.spi_host import SpiHost
from emulators.sx1262 import EmulatedSX1262, emulated_pair
from gpiozero.pins.mock import MockFactory

from device.radio import sx126x_commands as cmd

F_868_1 = 0x3641999A  # 868.1 MHz rounded to the nearest register step (13.4.1)
STEP_HZ = cmd.XTAL_FREQ / cmd.FREQ_DIV  # 0.95 Hz
INVALID, FAILED = cmd.STATUS_CMD_INVALID, cmd.STATUS_CMD_FAILED


@pytest.fixture
def air():
    air = Air()
    yield air
    air.close()


def booted(air):
    chip = EmulatedSX1262(MockFactory(), air)
    host = SpiHost(chip)
    host.reset()
    host.wait_busy()
    return chip, host


def lora(host, freq=F_868_1, sf=7, bw=0x04, preamble=8):
    """LoRa, frequency, SF/BW/CR 4/5, explicit header, CRC on, every IRQ on DIO1."""
    host.xfer([0x8A, 0x01])
    host.xfer([0x86, *freq.to_bytes(4, "big")])
    host.xfer([0x8B, sf, bw, 0x01, 0x00])
    host.xfer([0x8C, *preamble.to_bytes(2, "big"), 0x00, 0xFF, 0x01, 0x00])
    host.xfer([0x08, 0x43, 0xFF, 0x43, 0xFF, 0, 0, 0, 0])
    assert host.command_status() not in (INVALID, FAILED)


def send(host, payload: bytes, preamble=8, wait=True):
    host.xfer([0x0E, 0x00, *payload])
    host.xfer([0x8C, *preamble.to_bytes(2, "big"), 0x00, len(payload), 0x01, 0x00])
    host.xfer([0x83, 0x00, 0x00, 0x00])
    if wait:
        host.wait_dio1()
        host.xfer([0x02, 0x43, 0xFF])


def irq(host) -> int:
    return int.from_bytes(host.xfer([0x12, 0x00, 0x00, 0x00])[2:], "big")


def stats(host) -> tuple[int, int, int]:
    """GetStats (13.5.5): packets received, CRC errors, header errors."""
    raw = host.xfer([0x10, 0, 0, 0, 0, 0, 0, 0])[2:]
    return tuple(int.from_bytes(raw[i : i + 2], "big") for i in (0, 2, 4))


def wait_for(predicate, what):
    for _ in range(2000):
        if predicate():
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"timed out waiting for {what}")


# --- parameter counts (13.4.5, 13.4.6) ----------------------------------------------------------


def test_lora_modulation_params_take_the_short_or_the_full_8_byte_form(air):
    chip, host = booted(air)
    lora(host)
    host.xfer([0x8B, 0x09, 0x05, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00])  # all 8 parameters
    assert host.command_status() not in (INVALID, FAILED)
    assert (chip.sf, chip.bw_code, chip.cr, chip.ldro) == (9, 0x05, 2, 1)
    host.xfer([0x8B, 0x0A, 0x04, 0x01, 0x00])  # LoRa's 4
    assert (chip.sf, chip.bw_code, chip.cr, chip.ldro) == (10, 0x04, 1, 0)
    for bad in ([0x8B, 0x09, 0x04, 0x01], [0x8B, *range(9)]):
        host.xfer(bad)
        assert host.command_status() == INVALID and chip.sf == 10


def test_lora_packet_params_take_the_short_or_the_full_9_byte_form(air):
    chip, host = booted(air)
    lora(host)
    host.xfer([0x8C, 0x00, 0x0C, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00])  # all 9
    assert host.command_status() not in (INVALID, FAILED)
    assert (chip.preamble, chip.implicit, chip.length, chip.crc_on, chip.iq_inv) == (
        12, True, 0x20, False, True)
    host.xfer([0x8C, 0x00, 0x0C, 0x00, 0x20, 0x01])  # 5 of LoRa's 6: refused
    assert host.command_status() == INVALID and chip.implicit


def test_gfsk_takes_only_the_full_forms(air):
    chip, host = booted(air)  # GFSK after reset (13.4.2)
    host.xfer([0x8B, 0x09, 0x04, 0x01, 0x00])
    assert host.command_status() == INVALID
    host.xfer([0x8B, 0x00, 0x0D, 0x00, 0x00, 0x1A, 0x00, 0x0C, 0xCD])
    host.xfer([0x8C, 0x00, 0x20, 0x05, 0x10, 0x00, 0x01, 0xFF, 0x02, 0x00])
    assert host.command_status() not in (INVALID, FAILED)
    assert chip.other_params[0x8C][6] == 0xFF and chip.sf == 7  # stored, LoRa untouched


# --- the opcodes of chapter 11 ----------------------------------------------------------------------


@pytest.mark.parametrize("data, mode", [
    ([0xC1], cmd.STATUS_MODE_FS),  # SetFs (13.1.3)
    ([0x9F, 0x01], cmd.STATUS_MODE_STBY_RC),  # SetStopRxTimerOnPreambleDetect (13.1.6)
    ([0x94, 0x00, 0x00, 0x40, 0x00, 0x02, 0x80], cmd.STATUS_MODE_RX),  # SetRxDutyCycle (13.1.7)
    ([0x88, 0x03, 0x16, 0x0A, 0x00, 0x00, 0x00, 0x00], cmd.STATUS_MODE_STBY_RC),  # SetCadParams
    ([0xC5], cmd.STATUS_MODE_RX),  # SetCad (13.1.8)
    ([0xD1], cmd.STATUS_MODE_TX),  # SetTxContinuousWave (13.1.9)
    ([0xD2], cmd.STATUS_MODE_TX),  # SetTxInfinitePreamble (13.1.10)
    ([0x93, 0x40], cmd.STATUS_MODE_STBY_RC),  # SetRxTxFallbackMode (13.1.15)
    ([0xA0, 0x05], cmd.STATUS_MODE_STBY_RC),  # SetLoRaSymbNumTimeout (13.4.9)
    ([0x00, 0, 0, 0, 0, 0, 0], cmd.STATUS_MODE_STBY_RC),  # ResetStats (13.5.6)
], ids=["SetFs", "StopRxTimerOnPreamble", "SetRxDutyCycle", "SetCadParams", "SetCad",
        "SetTxContinuousWave", "SetTxInfinitePreamble", "SetRxTxFallbackMode",
        "SetLoRaSymbNumTimeout", "ResetStats"])
def test_listed_opcodes_are_valid_and_change_mode(air, data, mode):
    chip, host = booted(air)
    lora(host)
    host.xfer(data)
    assert host.status() & cmd.STATUS_MODE_MASK == mode
    assert host.command_status() not in (INVALID, FAILED) and not chip.invalid
    host.xfer([0x80, 0x00])  # SetStandby ends every one of them
    assert host.status() & cmd.STATUS_MODE_MASK == cmd.STATUS_MODE_STBY_RC


def test_unknown_opcode_and_wrong_lengths_are_still_invalid(air):
    chip, host = booted(air)
    for bad in ([0xFE], [0xC1, 0x00], [0x00, 0, 0], [0x93, 0x10], [0x9F, 0x02]):
        host.xfer(bad)
        assert host.command_status() == INVALID, bad
    assert len(chip.invalid) == 5


def test_a_lone_nop_is_no_command(air):
    chip, host = booted(air)
    host.xfer([0xFE])  # leaves an invalid status behind
    log = len(chip.log)
    assert chip.transfer(b"\x00") == b"\x00" and not chip.busy.state
    assert len(chip.log) == log and host.command_status() == INVALID


# --- statistics, fallback mode, timers ------------------------------------------------------------


def test_get_stats_counts_packets_crc_and_header_errors_and_reset_stats_clears(air):
    _, tx = booted(air)
    _, rx = booted(air)
    for host in (tx, rx):
        lora(host, sf=5, bw=0x06)
    rx.xfer([0x82, 0xFF, 0xFF, 0xFF])  # continuous RX
    send(tx, b"good")
    air.corrupt = 1
    send(tx, b"bitflip")
    air.header_errors = 1
    send(tx, b"noheader")
    wait_for(lambda: stats(rx) == (2, 1, 1), "the three packets")
    rx.xfer([0x00, 0, 0, 0, 0, 0, 0])
    assert stats(rx) == (0, 0, 0)


def test_fallback_mode_after_tx_and_rx(air):
    _, tx = booted(air)
    rx_chip, rx = booted(air)
    for host in (tx, rx):
        lora(host, sf=5, bw=0x06)
        host.xfer([0x93, 0x40])  # fall back to FS
    rx.xfer([0x82, 0x00, 0x00, 0x00])  # single RX
    send(tx, b"hi")
    assert tx.status() & cmd.STATUS_MODE_MASK == cmd.STATUS_MODE_FS
    wait_for(lambda: rx_chip.irq & cmd.IRQ_RX_DONE, "RxDone")
    assert rx.status() & cmd.STATUS_MODE_MASK == cmd.STATUS_MODE_FS


def test_rx_timeout_stops_at_the_header_so_a_long_packet_still_arrives(air):
    _, tx = booted(air)
    rx_chip, rx = booted(air)
    for host in (tx, rx):
        lora(host, sf=7, bw=0x04)  # 255 bytes: ~400 ms on air, header after ~21 ms
    rx.xfer([0x82, *(12800).to_bytes(3, "big")])  # 200 ms timeout (13.1.5)
    send(tx, bytes(range(255)))
    wait_for(lambda: rx_chip.irq & (cmd.IRQ_RX_DONE | cmd.IRQ_TIMEOUT), "RxDone or Timeout")
    flags = irq(rx)
    assert flags & cmd.IRQ_RX_DONE and flags & cmd.IRQ_HEADER_VALID
    assert flags & cmd.IRQ_PREAMBLE_DETECTED and not flags & cmd.IRQ_TIMEOUT


@pytest.mark.parametrize("stop_on_preamble", [False, True])
def test_stop_rx_timer_on_preamble_detect(air, stop_on_preamble):
    _, tx = booted(air)
    rx_chip, rx = booted(air)
    for host in (tx, rx):
        lora(host, sf=10, bw=0x04)  # 8.2 ms symbols: preamble ends at 66 ms, header at 166 ms
    rx.xfer([0x9F, int(stop_on_preamble)])
    rx.xfer([0x82, *(7360).to_bytes(3, "big")])  # 115 ms: between the two
    send(tx, b"x")
    wait_for(lambda: rx_chip.irq & (cmd.IRQ_RX_DONE | cmd.IRQ_TIMEOUT), "RxDone or Timeout")
    got = irq(rx)
    assert bool(got & cmd.IRQ_RX_DONE) == stop_on_preamble
    assert bool(got & cmd.IRQ_TIMEOUT) != stop_on_preamble and got & cmd.IRQ_PREAMBLE_DETECTED


def test_a_receiver_that_starts_after_the_preamble_misses_the_packet(air):
    tx_chip, tx = booted(air)
    rx_chip, rx = booted(air)
    for host in (tx, rx):
        lora(host, sf=7, bw=0x04)
    send(tx, bytes(255), wait=False)
    wait_for(lambda: air.on_air and air.on_air[0].past_preamble, "the end of the preamble")
    rx.xfer([0x82, 0xFF, 0xFF, 0xFF])  # the packet is still on the air, its preamble is not
    tx.wait_dio1()
    assert stats(rx) == (0, 0, 0) and not rx_chip.irq


def test_symbol_timeout_ends_a_quiet_single_rx(air):
    chip, host = booted(air)
    lora(host, sf=5, bw=0x06)
    host.xfer([0xA0, 0x05])  # 5 symbols
    host.xfer([0x82, 0x00, 0x00, 0x00])  # single RX without a timer of its own
    host.wait_dio1()
    assert irq(host) == cmd.IRQ_TIMEOUT
    assert host.status() & cmd.STATUS_MODE_MASK == cmd.STATUS_MODE_STBY_RC


def test_rx_duty_cycle_catches_a_preamble_longer_than_its_sleep_only(air):
    _, tx = booted(air)
    _, rx = booted(air)
    for host in (tx, rx):
        lora(host, sf=7, bw=0x04)  # 1.024 ms symbols
    # listen 1 ms, sleep 8 ms: a preamble must last 2 * 1 + 8 = 10 ms to be caught (13.1.7)
    rx.xfer([0x94, *(64).to_bytes(3, "big"), *(512).to_bytes(3, "big")])
    send(tx, b"short", preamble=8)  # 8.2 ms: falls inside a sleep period
    rx.xfer([0x80, 0x00])
    rx.xfer([0x94, *(64).to_bytes(3, "big"), *(512).to_bytes(3, "big")])
    send(tx, b"long", preamble=16)  # 16.4 ms
    wait_for(lambda: stats(rx) == (1, 0, 0), "the long-preamble packet")
    assert rx.xfer([0x1E, 0x00, 0x00, 0, 0, 0, 0])[3:] == b"long"


def test_cad_detects_a_lora_transmission_on_its_channel_only(air):
    _, tx = booted(air)
    _, near = booted(air)
    _, far = booted(air)
    lora(tx)
    lora(near)
    lora(far, freq=F_868_1 + round(200e3 / STEP_HZ))  # 868.3 MHz
    tx.xfer([0xD2])  # an endless preamble
    for host, detected in ((near, True), (far, False)):
        host.xfer([0x88, 0x03, 0x16, 0x0A, 0x00, 0x00, 0x00, 0x00])  # 8 symbols, CAD_ONLY
        host.xfer([0xC5])
        host.wait_dio1()
        flags = irq(host)
        assert flags & cmd.IRQ_CAD_DONE and bool(flags & cmd.IRQ_CAD_DETECTED) == detected
        assert host.status() & cmd.STATUS_MODE_MASK == cmd.STATUS_MODE_STBY_RC


# --- frequency tolerance (lora_air.hears) ---------------------------------------------------------


@pytest.mark.parametrize("offset, heard", [
    (1, True),  # one register step: two drivers rounding 868.1 MHz differently
    (-round(0.24 * 125e3 / STEP_HZ), True),
    (round(0.26 * 125e3 / STEP_HZ), False),
    (round(200e3 / STEP_HZ), False),  # the next 200 kHz channel
])
def test_receivers_tolerate_a_quarter_of_the_bandwidth(air, offset, heard):
    _, tx = booted(air)
    _, rx = booted(air)
    lora(tx, freq=F_868_1 + offset, sf=5, bw=0x04)
    lora(rx, sf=5, bw=0x04)
    rx.xfer([0x82, 0xFF, 0xFF, 0xFF])
    send(tx, b"x")
    send(tx, b"y")  # starts after the first was delivered (one scheduler thread)
    assert (stats(rx)[0] >= 1) == heard
    assert FREQ_TOLERANCE_OF_BW == 0.25 and register_hz(F_868_1) == pytest.approx(868.1e6, abs=1)


# --- sleep, wake-up and the PA --------------------------------------------------------------------


@pytest.mark.parametrize("sleep, kept", [(0x04, True), (0x00, False)], ids=["warm", "cold"])
def test_nss_wakes_the_chip_warm_keeps_the_configuration(air, sleep, kept):
    chip, host = booted(air)
    host.xfer([0x0D, 0x07, 0x40, 0x34, 0x44])  # public sync word
    host.wait_busy()
    chip.transfer(bytes([0x84, sleep]))  # SetSleep: BUSY stays high
    assert chip.busy.state and chip.asleep
    host.xfer([0x00], wait=False)  # NSS low: wake up (RadioLib's standby() does this)
    host.wait_busy()
    assert host.status() & cmd.STATUS_MODE_MASK == cmd.STATUS_MODE_STBY_RC
    assert (chip.registers[0x0740] == 0x34) == kept and chip.violations == 0


def test_set_pa_config_sets_ocp_to_the_sx1262_default(air):
    chip, host = booted(air)
    host.xfer([0x0D, 0x08, 0xE7, 0x18])  # 60 mA
    host.xfer([0x95, 0x04, 0x07, 0x00, 0x01])
    assert chip.registers[0x08E7] == 0x38  # 140 mA (table 12-1), so a driver writes OCP after


def test_our_driver_sends_nothing_the_chip_refuses():
    (a, b), air = emulated_pair()
    got = []
    thread = threading.Thread(target=lambda: got.append(b.receive(2.0)))
    thread.start()
    wait_for(lambda: air.chips[1].listening(), "RX")
    a.send(b"ping")
    thread.join()
    assert got[0].frame == b"ping"
    assert all(not chip.invalid and chip.violations == 0 for chip in air.chips)
    a.close()
    b.close()
    air.close()

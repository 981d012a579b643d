"""The LoRa channel that emulated SX1262s share: who hears a packet, when, and channel faults.

A transmission goes through the phases a receiver sees (datasheet 6.1.4 packet layout):

    0 .. preamble          preamble symbols: a listening chip detects it (PreambleDetected)
    .. + 4.25 (6.25 at SF5/SF6) + 8 symbols
                           sync word and explicit header: the chip locks (HeaderValid) and its
                           RX timeout stops (13.1.5; with SetStopRxTimerOnPreambleDetect it
                           already stopped at the preamble, 13.1.6)
    .. time on air         payload: RxDone (and CrcErr) at the end, TxDone at the sender

Only a chip that was listening when the preamble was detected can lock, and a locked chip
receives the packet only if it is still in RX at the end; a chip locked on one packet does
not lock on another (the first packet wins a collision).

Who hears whom (`hears`): same packet type (LoRa), SF, bandwidth, sync word, IQ polarity and
header mode, and carrier frequencies within a quarter of the bandwidth of each other, each
computed from the chip's RfFreq register (f = RfFreq * 32 MHz / 2**25, 13.4.1). A LoRa
demodulator tolerates a carrier offset of up to +-25 % of the bandwidth (Semtech's SX127x
figure; the SX126x uses the same modem). So two drivers that round 868.1 MHz to neighbouring
register steps (0.95 Hz apart) hear each other, while 868.1 and 868.3 MHz (200 kHz apart) are
deaf to each other at every bandwidth up to 500 kHz. A mismatch that only the payload decoder
sees (LDRO, or in implicit-header mode the length, coding rate or CRC setting) is a CRC error.

Faults: `air.corrupt` (next N packets arrive with bit errors: CrcErr) and `air.header_errors`
(next N packets fail at the header: HeaderErr), counted per receiving chip.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from device.radio import sx126x_commands as cmd
from device.radio.airtime import symbol_time
from emulators.scheduler import Scheduler

BW_HZ = {code: hz for hz, code in cmd.LORA_BW.items()}
#: Largest carrier offset a LoRa receiver tolerates, as a fraction of the bandwidth.
FREQ_TOLERANCE_OF_BW = 0.25


def register_hz(rf_freq: int) -> float:
    """Carrier frequency in Hz of an RfFreq register value (13.4.1)."""
    return rf_freq * cmd.XTAL_FREQ / cmd.FREQ_DIV


@dataclass(frozen=True)
class Tuning:
    """What a chip is tuned to: the settings a transmitter and a receiver must share."""

    packet_type: int
    frequency_hz: float
    sf: int
    bw_code: int
    cr: int
    ldro: int
    sync: tuple[int, int]
    iq_inv: bool
    implicit: bool
    length: int
    crc_on: bool
    preamble: int

    @property
    def bw_hz(self) -> float:
        return BW_HZ[self.bw_code]

    @property
    def symbol_s(self) -> float:
        return symbol_time(self.sf, self.bw_hz)

    def preamble_s(self) -> float:
        return self.preamble * self.symbol_s

    def lock_s(self) -> float:
        """From the start of the packet to the end of the sync word and explicit header."""
        sync = 6.25 if self.sf < 7 else 4.25
        return (self.preamble + sync + (0 if self.implicit else 8)) * self.symbol_s


def hears(rx: Tuning, tx: Tuning) -> bool:
    """Whether a receiver tuned to `rx` detects and demodulates the header of a `tx` packet."""
    if rx.packet_type != cmd.PACKET_TYPE_LORA or tx.packet_type != cmd.PACKET_TYPE_LORA:
        return False
    same = (rx.sf, rx.bw_code, rx.sync, rx.iq_inv, rx.implicit) == (
        tx.sf, tx.bw_code, tx.sync, tx.iq_inv, tx.implicit)
    return same and abs(rx.frequency_hz - tx.frequency_hz) <= FREQ_TOLERANCE_OF_BW * rx.bw_hz


def payload_ok(rx: Tuning, tx: Tuning) -> bool:
    """Settings the header does not carry must match, or the payload fails its CRC."""
    if rx.ldro != tx.ldro:
        return False
    return not rx.implicit or (rx.length, rx.cr, rx.crc_on) == (tx.length, tx.cr, tx.crc_on)


@dataclass(eq=False)
class Transmission:
    """One packet on the air (`airtime` None: an infinite preamble, until the sender stops)."""

    sender: object
    tuning: Tuning
    payload: bytes
    airtime: float | None
    candidates: list = field(default_factory=list)  #: (chip, rx epoch) that saw the preamble
    locked: list = field(default_factory=list)  #: (chip, rx epoch) that passed the header
    past_preamble: bool = False  #: receivers that were not listening by now miss it
    past_header: bool = False
    over: bool = False


class Air:
    """The shared channel: transmissions in progress, link quality, and channel faults."""

    def __init__(self, rssi: float = -60.0, snr: float = 9.5, seed: int = 0) -> None:
        self.scheduler = Scheduler()
        self.chips: list = []
        self.rssi, self.snr = rssi, snr
        self.corrupt = 0
        self.header_errors = 0
        self.on_air: list[Transmission] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def close(self) -> None:
        self.scheduler.close()

    def in_progress(self) -> list[Transmission]:
        with self._lock:
            return list(self.on_air)

    def start(self, sender, tuning: Tuning, payload: bytes, airtime: float | None) -> Transmission:
        """A chip entered TX: schedule preamble detection, header lock and the end."""
        tx = Transmission(sender, tuning, payload, airtime)
        with self._lock:
            self.on_air.append(tx)
        at_preamble = tuning.preamble_s() if airtime is None else min(tuning.preamble_s(), airtime)
        self.scheduler.call_later(at_preamble, lambda: self._preamble(tx))
        if airtime is not None:
            self.scheduler.call_later(min(tuning.lock_s(), airtime), lambda: self._header(tx))
            self.scheduler.call_later(airtime, lambda: self._end(tx))
        return tx

    def stop(self, tx: Transmission) -> None:
        """The sender left TX early (standby, sleep, TX timeout): the packet is cut short."""
        with self._lock:
            if tx.over:
                return
            tx.over = True
            self.on_air.remove(tx)
        # on the scheduler thread, after any event in progress (the caller holds its chip lock)
        self.scheduler.call_later(0, lambda: self._cut(tx))

    def _cut(self, tx: Transmission) -> None:
        for chip, epoch in tx.locked:  # the receivers locked on it get half a packet
            chip.on_packet(tx, epoch, tx.payload[: len(tx.payload) // 2],
                           cmd.IRQ_RX_DONE | cmd.IRQ_CRC_ERR, self.rssi, self.snr)

    def _preamble(self, tx: Transmission) -> None:
        if tx.over:
            return
        for chip in list(self.chips):
            if chip is not tx.sender:
                epoch = chip.on_preamble(tx)
                if epoch is not None:
                    tx.candidates.append((chip, epoch))
        tx.past_preamble = True

    def _header(self, tx: Transmission) -> None:
        if tx.over:
            return
        for chip, epoch in tx.candidates:
            failed = False
            with self._lock:
                if self.header_errors and chip.listening(epoch):
                    self.header_errors -= 1
                    failed = True
            if chip.on_header(tx, epoch, failed):
                tx.locked.append((chip, epoch))
        tx.past_header = True

    def _end(self, tx: Transmission) -> None:
        with self._lock:
            if tx.over:
                return
            tx.over = True
            self.on_air.remove(tx)
        tx.sender.on_tx_end(tx)
        for chip, epoch in tx.locked:
            data, flags = tx.payload, cmd.IRQ_RX_DONE
            with self._lock:
                bad = not payload_ok(chip.tuning(), tx.tuning)
                if not bad and self.corrupt and chip.listening(epoch):
                    self.corrupt -= 1
                    i = self._rng.randrange(len(data))
                    data = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]
                    bad = True
            if bad and chip.tuning().implicit:  # the receiver reads its own length
                data = (data + bytes(255))[: chip.tuning().length]
            rx = chip.tuning()
            if bad and (rx.crc_on if rx.implicit else tx.tuning.crc_on):  # explicit: from header
                flags |= cmd.IRQ_CRC_ERR
            chip.on_packet(tx, epoch, data, flags, self.rssi, self.snr)

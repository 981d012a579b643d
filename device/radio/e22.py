"""Ebyte E22-xxxT22S (Waveshare SX1262 LoRa HAT) over the UART: the `Radio` interface.

The module is an SX1262 with its own microcontroller. M1/M0 select its mode (E22-900T22S manual,
section 6: 00 transmission, 01 WOR, 10 configuration, 11 deep sleep); in configuration mode at
9600 8N1 it takes `C0`/`C2` (write registers, saved / temporary), `C1` (read) and answers
`C1 addr len data`, or `FF FF FF` for a malformed command. Registers 00H..06H are ADDH, ADDL,
NETID, REG0 (UART baud, parity, air rate), REG1 (sub-packet size, ambient RSSI, power),
REG2 (channel), REG3 (RSSI byte, fixed-point, relay, LBT, WOR).

In transmission mode the UART has no frame boundaries, so every frame is wrapped as

    A5 5A | LEN | LEN^FF | payload (LEN bytes) | CRC-16/CCITT-FALSE over LEN..payload

and `Deframer` hunts for it: a bad length check or CRC drops one byte and searches again, a
frame that stops arriving is dropped after an inter-byte gap, and the buffer is bounded, so a
corrupted length byte never hangs the receiver. With the RSSI byte on, the module appends one
byte after each received packet: RSSI = -(256 - byte) dBm.

Example:
    >>> radio = E22(E22Config(channel=18, air_rate=2400), port="/dev/serial0")  # doctest: +SKIP
    >>> radio.send(b"hello")                                                    # doctest: +SKIP
"""

from __future__ import annotations

import binascii
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from device.errors import ConfigError
from device.radio.airtime import Modulation
from device.radio.base import Reception
from device.radio.errors import (
    ConfigVerifyError,
    FrameSizeError,
    RadioError,
    RadioNotFound,
    SettingError,
)

__all__ = ["E22", "E22Config", "E22Pins", "Deframer", "FRAME_OVERHEAD", "SERIES_CHANNELS", "channel_for",
           "encode_frame", "frequency_of"]

log = logging.getLogger(__name__)

MAGIC = b"\xa5\x5a"
FRAME_OVERHEAD = len(MAGIC) + 2 + 2  #: magic, length and its complement, CRC-16
CONFIG_BAUD = 9600

# Register fields (E22-900T22S manual, section 7)                     bits
UART_BAUD = {1200: 0, 2400: 1, 4800: 2, 9600: 3, 19200: 4, 38400: 5, 57600: 6, 115200: 7}  # 7:5
AIR_RATE = {300: 0, 1200: 1, 2400: 2, 4800: 3, 9600: 4, 19200: 5, 38400: 6, 62500: 7}  # 2:0
SUB_PACKET = {240: 0, 128: 1, 64: 2, 32: 3}  # REG1 7:6
POWER_DBM = {22: 0, 17: 1, 13: 2, 10: 3}  # REG1 1:0 (T22S)
REG1_AMBIENT_RSSI = 0x20
REG3_RSSI_BYTE = 0x80
REG3_FIXED = 0x40
REG3_RELAY = 0x20
REG3_LBT = 0x10
#: Channel raster per series: channel n is base + n MHz, n = 0..last (E22-900T22S manual:
#: 850.125-930.125 MHz, channels 0-80; E22-400T22S: 410.125-493.125 MHz, channels 0-83).
SERIES_CHANNELS = {"900": (850.125, 80), "400": (410.125, 83)}
#: How far (MHz) a configured frequency may sit from a channel and still name it (float slack).
RASTER_TOLERANCE_MHZ = 0.0005
#: Modulation with the nominal bit rate of each air rate (SF*BW/2^SF*4/5); the module does not
#: report its SF/BW, so airtime from these is an estimate.
AIR_MODULATION = {
    300: Modulation(12, 125e3), 1200: Modulation(11, 250e3), 2400: Modulation(11, 500e3),
    4800: Modulation(7, 125e3), 9600: Modulation(7, 250e3), 19200: Modulation(7, 500e3),
    38400: Modulation(6, 500e3), 62500: Modulation(5, 500e3),
}


@dataclass(frozen=True)
class E22Config:
    """Module settings. Addresses 0..0xFFFF (0xFFFF = broadcast), channel 0..80 (900 series).

    Example:
        >>> E22Config(channel=18).registers().hex(" ")
        '00 00 00 62 00 12 80'
    """

    address: int = 0x0000
    netid: int = 0
    channel: int = 18  #: 868.125 MHz on the 900 series
    air_rate: int = 2400  #: bit/s
    sub_packet: int = 240  #: bytes per air packet: 240, 128, 64 or 32
    power_dbm: int = 22
    uart_baud: int = 9600  #: transmission-mode baud rate
    rssi_byte: bool = True
    ambient_rssi: bool = False
    fixed: bool = False  #: fixed-point: every frame goes to `target_address` on `target_channel`
    target_address: int = 0xFFFF
    target_channel: int | None = None  #: None = own channel
    lbt: bool = False  #: listen before talk
    persist: bool = False  #: C0 (saved in flash) instead of C2 (until power-off)
    series: str = "900"  #: frequency band of the module: "900" (E22-900T22S) or "400"

    def __post_init__(self) -> None:
        last = _series(self.series)[1]
        for name, value, top in (("address", self.address, 0xFFFF), ("netid", self.netid, 0xFF),
                                 ("channel", self.channel, last),
                                 ("target_address", self.target_address, 0xFFFF)):
            if not 0 <= value <= top:
                raise SettingError(name, f"E22 {name} must be 0..{top}, got {value}")
        for name, value, table in (("air_rate", self.air_rate, AIR_RATE),
                                   ("sub_packet", self.sub_packet, SUB_PACKET),
                                   ("power_dbm", self.power_dbm, POWER_DBM),
                                   ("uart_baud", self.uart_baud, UART_BAUD)):
            if value not in table:
                raise SettingError(name, f"E22 {name} must be {_listed(table)}, got {value}")
        if self.target_channel is not None and not 0 <= self.target_channel <= last:
            raise SettingError("target_channel",
                               f"E22 target_channel must be 0..{last}, got {self.target_channel}")

    def registers(self) -> bytes:
        """Registers 00H..06H as the module stores them."""
        reg0 = UART_BAUD[self.uart_baud] << 5 | AIR_RATE[self.air_rate]  # parity 8N1 = 00
        reg1 = SUB_PACKET[self.sub_packet] << 6 | POWER_DBM[self.power_dbm]
        reg1 |= REG1_AMBIENT_RSSI if self.ambient_rssi else 0
        reg3 = (REG3_RSSI_BYTE if self.rssi_byte else 0) | (REG3_FIXED if self.fixed else 0)
        reg3 |= REG3_LBT if self.lbt else 0
        return bytes([self.address >> 8, self.address & 0xFF, self.netid, reg0, reg1,
                      self.channel, reg3])

    @property
    def mtu(self) -> int:
        return self.sub_packet - FRAME_OVERHEAD - (3 if self.fixed else 0)

    @property
    def modulation(self) -> Modulation:
        """The nominal modulation of the air rate (an estimate: the module does not say)."""
        return AIR_MODULATION[self.air_rate]

    @property
    def frequency_mhz(self) -> float:
        """The carrier the module transmits on: its own channel, or in fixed-point mode the
        target channel (the duty cycle is that carrier's)."""
        tx = self.target_channel if self.fixed and self.target_channel is not None else self.channel
        return frequency_of(tx, self.series)


@dataclass(frozen=True)
class E22Pins:
    """How the module is wired: its serial port and the BCM pins of M0, M1 and AUX.

    Defaults: the Waveshare SX1262 LoRa HAT (M0/M1 jumpers off), AUX not wired.
    """

    port: str = "/dev/serial0"  #: serial device or pyserial URL
    m0: int = 22
    m1: int = 27
    aux: int | None = None


def _listed(table) -> str:
    """'a, b or c' from a table's keys."""
    names = [f'"{k}"' if isinstance(k, str) else str(k) for k in table]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _series(series: str) -> tuple[float, int]:
    if series not in SERIES_CHANNELS:
        raise SettingError("series", f"E22 series must be {_listed(SERIES_CHANNELS)}, "
                           f"got {series!r}")
    return SERIES_CHANNELS[series]


def frequency_of(channel: int, series: str = "900") -> float:
    """The carrier (MHz) of a channel (E22 manual, REG2: f = base + channel x 1 MHz)."""
    return round(_series(series)[0] + channel, 6)


def channel_for(frequency_hz: float, series: str = "900") -> int:
    """The channel whose carrier is `frequency_hz`; refuses frequencies off the 1 MHz raster.

    The module can only tune to base + n MHz: a frequency between two channels would be
    rounded to one the caller did not choose (869.525 MHz -> 869.125 MHz, another sub-band
    with another duty cycle), so it is an error that names the nearest channels.
    """
    base, last = _series(series)
    mhz = frequency_hz / 1e6
    channel = round(mhz - base)
    if abs(mhz - base - channel) <= RASTER_TOLERANCE_MHZ and 0 <= channel <= last:
        return channel
    if not base - 0.5 <= mhz <= base + last + 0.5:
        raise ConfigError(f"{mhz:g} MHz is outside the E22-{series} band "
                          f"({base:g}-{base + last:g} MHz)")
    lower = max(0, min(last, math.floor(mhz - base)))
    nearest = sorted({lower, min(last, lower + 1)})
    names = " or ".join(f"{frequency_of(n, series):g} MHz (channel {n})" for n in nearest)
    raise ConfigError(f"{mhz:g} MHz is not an E22-{series} channel (the module tunes to "
                      f"{base:g} + n MHz, n = 0..{last}): use {names}")


def encode_frame(payload: bytes) -> bytes:
    """Wrap one payload (1..255 bytes) in our UART framing."""
    n = len(payload)
    if not 1 <= n <= 255:
        raise FrameSizeError(f"frame must be 1..255 bytes, got {n}")
    body = bytes([n, n ^ 0xFF]) + payload
    return MAGIC + body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")


@dataclass
class DeframerStats:
    frames: int = 0
    crc_errors: int = 0
    bad_lengths: int = 0
    timeouts: int = 0  #: frames abandoned after the inter-byte gap
    junk_bytes: int = 0  #: bytes skipped while hunting for a frame


@dataclass
class Deframer:
    """Turns a byte stream into frames; never waits for bytes that may not come.

    Example:
        >>> d = Deframer()
        >>> d.feed(b"noise" + encode_frame(b"hi")[:5], now=0.0)
        []
        >>> [payload for payload, rssi in d.feed(encode_frame(b"hi")[5:], now=0.01)]
        [b'hi']

    Args:
        max_payload: longest payload accepted (a larger length is a corrupted length).
        rssi_byte: the module appends one RSSI byte after each packet.
        gap: seconds without new bytes after which a partial frame is abandoned.
    """

    max_payload: int = 255
    rssi_byte: bool = False
    gap: float = 0.05
    stats: DeframerStats = field(default_factory=DeframerStats)

    def __post_init__(self) -> None:
        self._buf = bytearray()
        self._last = 0.0
        self._limit = 4 * (self.max_payload + FRAME_OVERHEAD + 1)

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Add bytes received at `now`; return the complete (payload, rssi dBm) frames."""
        if data:
            self._buf += data
            self._last = now
            if len(self._buf) > self._limit:  # bounded: keep the newest bytes
                drop = len(self._buf) - self._limit
                self.stats.junk_bytes += drop
                del self._buf[:drop]
        return self._parse(stalled=bool(self._buf) and now - self._last >= self.gap)

    def _parse(self, stalled: bool) -> list[tuple[bytes, float]]:
        out = []
        while True:
            frame = self._next(stalled)
            if frame is not None:
                out.append(frame)
            elif stalled and self._buf:
                self.stats.timeouts += 1  # a frame that stopped arriving: resync past it
                self._skip()
            else:
                return out

    def _next(self, stalled: bool) -> tuple[bytes, float] | None:
        """The first complete frame in the buffer, or None when more bytes are needed."""
        while True:
            start = self._buf.find(MAGIC)
            if start < 0:
                keep = 1 if self._buf[-1:] == MAGIC[:1] else 0
                self.stats.junk_bytes += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                return None
            self.stats.junk_bytes += start
            del self._buf[:start]
            if len(self._buf) < 4:
                return None
            n = self._buf[2]
            if self._buf[3] != n ^ 0xFF or not 1 <= n <= self.max_payload:
                self.stats.bad_lengths += 1
                self._skip()
                continue
            end = 4 + n + 2
            if len(self._buf) < end:
                return None
            body = bytes(self._buf[2 : 4 + n])
            if binascii.crc_hqx(body, 0xFFFF) != int.from_bytes(self._buf[4 + n : end], "big"):
                self.stats.crc_errors += 1
                self._skip()
                continue
            rssi = math.nan
            if self.rssi_byte:
                # The module appends RSSI after each air packet, and one packet may carry two
                # of our frames: a magic right after the CRC is the next frame, not RSSI. Only
                # a lone 0xA5 is ambiguous (RSSI -91 dBm, or the next frame's first byte).
                tail = bytes(self._buf[end : end + 2])
                if not stalled and (not tail or tail == MAGIC[:1]):
                    return None  # the RSSI byte (or the next frame) is still on its way
                if tail and tail != MAGIC:
                    rssi = -(256 - tail[0])
                    end += 1
            del self._buf[:end]
            self.stats.frames += 1
            return body[2:], float(rssi)

    def _skip(self) -> None:
        """Drop the first byte of a false or broken frame and hunt again from the next."""
        self.stats.junk_bytes += 1
        del self._buf[:1]


class E22:
    """An E22 UART module behind the `Radio` interface.

    Args:
        config: module settings, written at start-up and read back for verification.
        port: serial device or pyserial URL ("/dev/serial0", "/dev/ttyS0", "loop://", ...).
        m0, m1: BCM pins of M0 and M1 (Waveshare HAT: 22 and 27, with its M0/M1 jumpers off).
        aux: BCM pin of AUX if wired (high = idle); without it fixed delays are used.
        mode_delay: seconds to wait after switching modes when AUX is not wired.
    """

    def __init__(self, config: E22Config | None = None, port: str = E22Pins.port, *,
                 m0: int = E22Pins.m0, m1: int = E22Pins.m1, aux: int | None = E22Pins.aux,
                 pin_factory=None,
                 mode_delay: float = 0.1, modulation: Modulation | None = None) -> None:
        import serial
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        self.config = config or E22Config()
        self.mtu = self.config.mtu
        self.frequency_mhz = self.config.frequency_mhz  #: the carrier really used (duty cycle)
        self.modulation = modulation or self.config.modulation
        self.mode_delay = mode_delay
        self.product = b""
        self._lock = threading.RLock()
        self._frames: deque[Reception] = deque()
        self._closed = False
        self._m0 = self._m1 = self._aux = self._serial = None
        try:
            self._m0 = DigitalOutputDevice(m0, initial_value=False, pin_factory=pin_factory)
            self._m1 = DigitalOutputDevice(m1, initial_value=True, pin_factory=pin_factory)
            if aux is not None:
                # AUX is the module's push-pull output, high when idle.
                self._aux = DigitalInputDevice(aux, pull_up=None, active_state=True,
                                               pin_factory=pin_factory)
            self._serial = serial.serial_for_url(port, baudrate=CONFIG_BAUD, timeout=0.5)
        except (serial.SerialException, OSError) as exc:
            self._release()
            raise RadioNotFound(f"cannot open serial port {port}: {exc}; enable the serial port "
                                "without a login shell (raspi-config > Interface Options > "
                                "Serial Port) and check --port") from None
        except BaseException:
            self._release()
            raise
        gap = max(0.05, 40 * 10 / self.config.uart_baud)
        self._deframer = Deframer(255, self.config.rssi_byte, gap)
        try:
            self.configure()
        except BaseException:
            self._release()
            raise

    # --- configuration mode ------------------------------------------------------------------

    def configure(self) -> None:
        """Write the registers (C2, or C0 to persist), verify by reading them back (C1)."""
        with self._lock:
            self._set_mode(m1=True, m0=False, baud=CONFIG_BAUD)
            want = self.config.registers()
            opcode = 0xC0 if self.config.persist else 0xC2
            echo = self._transact(bytes([opcode, 0x00, len(want)]) + want, 3 + len(want))
            self._verify(want, echo, "the write's answer")
            self._verify(want, self._transact(bytes([0xC1, 0x00, len(want)]), 3 + len(want)),
                         "the read-back")
            try:  # product information (C1 80 07); not every firmware answers it
                self.product = self._transact(b"\xc1\x80\x07", 10)[3:]
            except RadioError as exc:
                log.info("E22 product information unavailable: %s", exc)
            self._set_mode(m1=False, m0=False, baud=self.config.uart_baud)
            log.info("E22 configured: %s", want.hex(" "))

    @staticmethod
    def _verify(want: bytes, answer: bytes, what: str) -> None:
        if answer[:3] != bytes([0xC1, 0x00, len(want)]):
            raise ConfigVerifyError(f"E22 {what} has header {answer[:3].hex(' ')}, not C1 00 "
                                    f"{len(want):02X}")
        for i, (w, g) in enumerate(zip(want, answer[3:], strict=True)):
            if w != g:
                raise ConfigVerifyError(f"E22 register {i:02X}H reads {g:#04x} in {what}, "
                                        f"{w:#04x} was written")

    def read_registers(self) -> bytes:
        """Registers 00H..06H as the module reports them (enters configuration mode briefly)."""
        with self._lock:
            self._set_mode(m1=True, m0=False, baud=CONFIG_BAUD)
            try:
                return self._transact(b"\xc1\x00\x07", 10)[3:]
            finally:
                self._set_mode(m1=False, m0=False, baud=self.config.uart_baud)

    def _transact(self, request: bytes, answer_len: int) -> bytes:
        self._serial.timeout = 0.5  # receive() shortens it
        self._serial.reset_input_buffer()
        self._serial.write(request)
        self._serial.flush()
        answer = self._serial.read(answer_len)
        if answer[:3] == b"\xff\xff\xff":
            raise ConfigVerifyError(f"E22 rejected command {request[:3].hex(' ')} (FF FF FF)")
        if len(answer) < answer_len:
            raise RadioNotFound(
                f"E22 does not answer in configuration mode ({len(answer)} of {answer_len} "
                "bytes): check the M0/M1 wiring (jumpers off on the Waveshare HAT), the serial "
                "port, and that the port's login shell is disabled")
        return answer

    def _set_mode(self, m1: bool, m0: bool, baud: int) -> None:
        self._wait_aux(1.0)
        self._m1.value, self._m0.value = m1, m0
        if self._aux is None:
            time.sleep(self.mode_delay)
        else:
            time.sleep(0.002)
            self._wait_aux(1.0)
        self._serial.baudrate = baud
        self._serial.reset_input_buffer()

    def _wait_aux(self, timeout: float) -> None:
        if self._aux is not None and not self._aux.wait_for_active(timeout):
            raise RadioError(f"E22 AUX stayed low for {timeout} s: module busy or not wired")

    # --- the Radio interface -----------------------------------------------------------------

    def send(self, frame: bytes) -> float:
        """Transmit one frame; block until the module has sent it; return estimated airtime."""
        frame = bytes(frame)
        if not 1 <= len(frame) <= self.mtu:
            raise FrameSizeError(f"E22 frame must be 1..{self.mtu} bytes, got {len(frame)}")
        data = encode_frame(frame)
        c = self.config
        if c.fixed:
            channel = c.channel if c.target_channel is None else c.target_channel
            data = bytes([c.target_address >> 8, c.target_address & 0xFF, channel]) + data
        seconds = self.modulation.time_on_air(len(encode_frame(frame)))
        with self._lock:
            self._check_open()
            self._wait_aux(1.0)
            self._serial.write(data)
            self._serial.flush()  # tcdrain: the bytes have left the UART
            if self._aux is None:  # the module waits ~3 byte times of UART silence first
                time.sleep(seconds + 30 / self.config.uart_baud)
            else:  # AUX falls when the module takes the bytes and rises when it has sent them
                self._aux.wait_for_inactive(0.05)
                self._wait_aux(seconds * 2 + 1.0)
        return seconds

    def receive(self, timeout: float) -> Reception | None:
        """The next frame that passes the CRC, or None after `timeout` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._check_open()
            while not self._frames:
                now = time.monotonic()
                if now >= deadline:
                    self._drain(now)
                    break
                self._serial.timeout = min(deadline - now, self._deframer.gap)
                chunk = self._serial.read(max(1, self._serial.in_waiting))
                self._drain(time.monotonic(), chunk)
            return self._frames.popleft() if self._frames else None

    def _drain(self, now: float, chunk: bytes = b"") -> None:
        for payload, rssi in self._deframer.feed(chunk, now):
            self._frames.append(Reception(payload, rssi, math.nan))

    def channel_active(self) -> bool:
        """Always False: the UART gives no access to the SX1262's channel activity detection.

        The module's own listen-before-talk (`E22Config.lbt`, an RSSI threshold applied inside
        the module before each packet) is the E22's only carrier sense; a caller that needs CAD
        must use a bare SX1262 on SPI.
        """
        return False

    @property
    def stats(self) -> DeframerStats:
        return self._deframer.stats

    def close(self) -> None:
        """Leave the module in transmission mode and release the port and pins."""
        with self._lock:
            self._release()

    def __enter__(self) -> E22:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError("E22 radio is closed")

    def _release(self) -> None:
        self._closed = True
        if self._serial is not None:
            self._serial.close()
        for device in (self._m0, self._m1, self._aux):
            if device is not None:
                device.close()

"""An Ebyte E22-xxxT22S behind a pseudo-terminal, for the real E22 driver and pyserial.

`EmulatedE22(factory, air)` opens a pty pair; the driver opens `chip.port` (the slave side) with
pyserial exactly as it opens /dev/serial0. The emulator reads M0/M1 from the gpiozero
`MockFactory` pins, answers configuration commands (C0/C1/C2, product info C1 80 07) only in
configuration mode and only at 9600 baud (it reads the line speed from the pty), and in
transmission mode cuts the byte stream into air packets (at the sub-packet size or an idle gap)
and delivers them through `E22Air` to every module on the same channel, air rate and NETID
whose address matches (0xFFFF = broadcast), appending the RSSI byte when REG3 asks for it.

The air data rate (REG0 bits 2:0) is the LoRa modulation both ends must share: modules at
different rates do not hear each other, and each air packet lasts the LoRa time on air of its
bytes at that rate (`AIR_MODULATION`, within 0.9..1.4 of 8 bits / rate for a full sub-packet),
scaled by `air.time_scale`. A module sends its air packets one after another (AUX stays low
until the last has left) and hears nothing while it transmits (half duplex). In transmission
mode the UART runs at the REG0 baud rate: bytes at another line speed are noise to the module
(dropped, counted in `garbled`), and what it outputs is noise to the host. `module.air_log`
keeps (payload, air rate, unscaled seconds on air) of every packet it sent.

Faults on the air, applied to the next packets a module outputs on its UART:
    air.faults.append("length")   the length byte is corrupted
    air.faults.append("byte")     one payload byte is flipped
    air.faults.append("truncate") the tail of the packet is lost
    air.faults.append("garbage")  noise bytes come out before the packet
    air.faults.append("drop")     the packet is lost
"""

from __future__ import annotations

import os
import random
import select
import termios
import threading
import time
import tty

from device.radio.e22 import AIR_MODULATION, AIR_RATE, SUB_PACKET, UART_BAUD
from emulators.scheduler import Scheduler

DEFAULT_REGISTERS = bytes([0x00, 0x00, 0x00, 0x62, 0x00, 0x12, 0x03])
PRODUCT_INFO = bytes([0x00, 0x22, 0x13, 0x0B, 0x00, 0x00, 0x00])
#: REG0 bits 7:5 -> the termios speed of that UART baud rate.
LINE_SPEED = {code: getattr(termios, f"B{baud}") for baud, code in UART_BAUD.items()}


class E22Air:
    def __init__(self, rssi: float = -70.0, seed: int = 0, time_scale: float = 0.02) -> None:
        self.scheduler = Scheduler()
        self.modules: list[EmulatedE22] = []
        self.rssi = rssi
        self.faults: list[str] = []
        self.time_scale = time_scale  #: airtime multiplier (0.02: 50x faster than real)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def close(self) -> None:
        for module in list(self.modules):
            module.close()
        self.scheduler.close()

    def transmit(self, sender: EmulatedE22, target: int, channel: int, payload: bytes) -> None:
        """Queue one air packet behind the sender's earlier ones; deliver it when it ends."""
        rate = sender.air_rate()
        seconds = AIR_MODULATION[rate].time_on_air(len(payload))
        sender.air_log.append((payload, rate, seconds))
        key = (channel, rate, sender.registers[2])
        with self._lock:
            now = time.monotonic()
            start = max(now, sender.on_air_until)
            end = start + seconds * self.time_scale
            sender.on_air_until = end
            sender.on_air.append((start, end))
        self.scheduler.call_later(end - now,
                                  lambda: self._deliver(sender, target, key, payload, start, end))

    def _deliver(self, sender, target, key, payload, start, end) -> None:
        sender.sent_done()
        for module in self.modules:
            if module is sender or module.closed or not module.normal_mode():
                continue
            if (module.registers[5], module.air_rate(), module.registers[2]) != key:
                continue
            if target != 0xFFFF and target != module.address():
                continue
            if module.transmitting_during(start, end):
                continue  # half duplex: it was sending
            module.output(self._damage(payload), self.rssi)

    def _damage(self, payload: bytes) -> bytes | None:
        if not self.faults:
            return payload
        fault = self.faults.pop(0)
        data = bytearray(payload)
        if fault == "drop":
            return None
        if fault == "length" and len(data) > 2:
            data[2] ^= 0x40  # our framing: magic(2) then the length byte
        elif fault == "byte":
            data[self._rng.randrange(4, len(data))] ^= 0x01
        elif fault == "truncate":
            del data[len(data) // 2 :]
        elif fault == "garbage":
            data[:0] = bytes([0xA5, 0x5A, 0xFE, 0x01, 0x33]) + bytes(self._rng.randrange(256)
                                                                      for _ in range(7))
        return bytes(data)


class EmulatedE22:
    """One module: `port` is the path the driver opens."""

    def __init__(self, factory, air: E22Air, m0: int = 22, m1: int = 27, aux: int | None = None,
                 registers: bytes = DEFAULT_REGISTERS, idle_gap: float = 0.005) -> None:
        self.air = air
        self.m0, self.m1 = factory.pin(m0), factory.pin(m1)
        self.aux = None if aux is None else factory.pin(aux)  # high = idle
        if self.aux is not None:
            self.aux.drive_high()
        self._in_flight = 0
        self.registers = bytearray(registers)
        self.saved = bytearray(registers)
        self.idle_gap = idle_gap
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self._slave)  # no echo, no line editing until pyserial opens it
        self.port = os.ttyname(self._slave)
        self.closed = False
        self.received_config: list[bytes] = []
        self.read_only: set[int] = set()  #: fault: registers that ignore writes
        self.speeds: list[int] = []  #: line speed seen with each configuration command
        self.packets_sent: list[bytes] = []
        self.air_log: list[tuple[bytes, int, float]] = []  #: (payload, air rate, seconds on air)
        self.garbled = 0  #: bytes received at a line speed other than REG0's
        self.on_air_until = 0.0  #: monotonic time its last queued air packet ends
        self.on_air: list[tuple[float, float]] = []  #: (start, end) of its air packets
        self._thread = threading.Thread(target=self._run, name="e22-emulator", daemon=True)
        self._thread.start()
        air.modules.append(self)

    # --- register views -----------------------------------------------------------------------

    def normal_mode(self) -> bool:
        return not self.m0.state and not self.m1.state

    def config_mode(self) -> bool:
        return self.m1.state and not self.m0.state

    def address(self) -> int:
        return self.registers[0] << 8 | self.registers[1]

    def air_rate(self) -> int:
        code = self.registers[3] & 0x07
        return next(rate for rate, c in AIR_RATE.items() if c == code)

    def sub_packet(self) -> int:
        code = self.registers[4] >> 6
        return next(size for size, c in SUB_PACKET.items() if c == code)

    def line_speed(self) -> int:
        return termios.tcgetattr(self._slave)[4]

    def uart_ok(self) -> bool:
        """The host's line speed is the REG0 baud rate (transmission mode)."""
        return self.line_speed() == LINE_SPEED[self.registers[3] >> 5]

    def transmitting_during(self, start: float, end: float) -> bool:
        self.on_air = [(s, e) for s, e in self.on_air if e > time.monotonic() - 1.0]
        return any(s < end and e > start for s, e in self.on_air)

    # --- UART ---------------------------------------------------------------------------------

    def output(self, payload: bytes | None, rssi: float) -> None:
        """A packet arrived over the air: write it (and the RSSI byte) to the UART."""
        if payload is None or self.closed:
            return
        data = payload
        if self.registers[6] & 0x80:
            data += bytes([max(0, min(255, round(256 + rssi)))])
        if not self.uart_ok():
            data = bytes(b ^ 0xA5 for b in data)  # at the wrong baud the host reads noise
        os.write(self.master, data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._thread.join(timeout=1.0)
            os.close(self.master)
            os.close(self._slave)

    def _run(self) -> None:
        pending = bytearray()
        last = time.monotonic()
        while not self.closed:
            ready, _, _ = select.select([self.master], [], [], self.idle_gap)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    return
                if self.config_mode():
                    self._config_bytes(chunk)
                    continue
                if self.normal_mode():
                    if not self.uart_ok():
                        self.garbled += len(chunk)  # noise at the wrong baud: nothing sent
                        continue
                    self._busy(True)
                    pending += chunk
                    last = time.monotonic()
                    while len(pending) >= self.sub_packet() + self._prefix():
                        self._send(bytes(pending[: self.sub_packet() + self._prefix()]))
                        del pending[: self.sub_packet() + self._prefix()]
            elif pending and time.monotonic() - last >= self.idle_gap:
                self._send(bytes(pending))
                pending.clear()

    def _prefix(self) -> int:
        return 3 if self.registers[6] & 0x40 else 0

    def _send(self, data: bytes) -> None:
        if self.registers[6] & 0x40:  # fixed-point: target address and channel first
            target, channel, payload = data[0] << 8 | data[1], data[2], data[3:]
        else:
            target, channel, payload = self.address(), self.registers[5], data
        self.packets_sent.append(payload)
        self._in_flight += 1
        self.air.transmit(self, target, channel, payload)

    def _busy(self, busy: bool) -> None:
        if self.aux is not None:
            self.aux.drive_low() if busy else self.aux.drive_high()

    def sent_done(self) -> None:
        """The air packet has left: AUX rises once nothing else is queued."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._busy(False)

    def _config_bytes(self, chunk: bytes) -> None:
        if self.line_speed() != termios.B9600:
            return  # wrong baud: the module sees noise and stays silent
        self.received_config.append(chunk)
        self.speeds.append(self.line_speed())
        op = chunk[0]
        if len(chunk) < 3 or op not in (0xC0, 0xC1, 0xC2):
            os.write(self.master, b"\xff\xff\xff")
            return
        start, length = chunk[1], chunk[2]
        if op == 0xC1 and start == 0x80:
            os.write(self.master, bytes([0xC1, 0x80, length]) + PRODUCT_INFO[:length])
            return
        if start + length > 9 or op != 0xC1 and len(chunk) != 3 + length:
            os.write(self.master, b"\xff\xff\xff")
            return
        if op in (0xC0, 0xC2):
            for i, value in enumerate(chunk[3:]):
                if start + i < 7 and start + i not in self.read_only:
                    self.registers[start + i] = value
            if op == 0xC0:
                self.saved[:] = self.registers
        values = bytes(self.registers[start + i] if start + i < 7 else 0 for i in range(length))
        os.write(self.master, bytes([0xC1, start, length]) + values)

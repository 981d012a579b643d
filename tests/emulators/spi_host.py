"""A bare SPI master for an emulated SX1262: byte sequences in, bytes out, no driver in between.

It behaves like RadioLib's `Module::SPItransferStream` (Module.cpp): wait for BUSY low before a
transfer, clock the bytes, then wait for BUSY to fall again; a NOP can be sent without waiting
(RadioLib's wake-up from sleep). Tests replay other drivers' command sequences through it, so
the emulator is checked against more than our own driver.
"""

from __future__ import annotations

import time

from device.radio import sx126x_commands as cmd


class SpiHost:
    """Transfers to `chip` (an `EmulatedSX1262`); every wait is bounded by `timeout` seconds."""

    def __init__(self, chip, timeout: float = 1.0) -> None:
        self.chip = chip
        self.timeout = timeout

    def reset(self) -> None:
        """NRESET low for a moment, then high: the chip boots with BUSY high."""
        self.chip.reset_pin.drive_low()
        time.sleep(0.001)
        self.chip.reset_pin.drive_high()

    def wait_busy(self) -> None:
        self._wait(lambda: not self.chip.busy.state, "BUSY to fall")

    def wait_dio1(self) -> None:
        self._wait(lambda: self.chip.dio1.state, "DIO1 to rise")

    def xfer(self, data: bytes | list[int], wait: bool = True) -> bytes:
        """One transfer; with `wait`, BUSY is low before it and has fallen again after it."""
        if wait:
            self.wait_busy()
        out = self.chip.transfer(bytes(data))
        if wait:
            self.wait_busy()
        return out

    def status(self) -> int:
        """GetStatus (13.5.1): the status byte."""
        return self.xfer([cmd.CMD_GET_STATUS, cmd.CMD_NOP])[1]

    def command_status(self) -> int:
        """The command-status field (bits 3:1) of GetStatus after the last command."""
        return self.status() & cmd.STATUS_CMD_MASK

    def _wait(self, done, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.0005)

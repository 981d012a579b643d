"""Radio error leaves under `device.errors.RadioError` (one root, each leaf also a builtin)."""

from __future__ import annotations

from device.errors import ConfigError, RadioError

__all__ = [
    "BusyTimeout",
    "CommandError",
    "ConfigVerifyError",
    "FrameSizeError",
    "IrqTimeout",
    "RadioError",
    "RadioNotFound",
    "SettingError",
]


class SettingError(ConfigError):
    """A driver setting outside the driver's own table or range.

    `setting` names the field of the settings object (`sf`, `bw_hz`, `power_dbm`, ...), so a
    config file that spells it differently (`radio.bw_khz`) can name its own key.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class RadioNotFound(RadioError):
    """Nothing answers on the bus or the port: wiring, bus number, or interface not enabled."""


class CommandError(RadioError):
    """The chip's status byte reported a command timeout, processing error or failure."""


class BusyTimeout(RadioError):
    """BUSY stayed high past its timeout (the driver resets the chip and retries once)."""


class IrqTimeout(RadioError):
    """An expected interrupt (TxDone, RxDone or Timeout) never came."""


class ConfigVerifyError(RadioError):
    """A configuration read back from the module differs from what was written."""


class FrameSizeError(RadioError, ValueError):
    """A frame is empty or longer than the radio's `mtu`."""

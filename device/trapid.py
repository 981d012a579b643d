"""Trap ids: one range for the whole system, checked in one place.

The radio frame carries the trap id in one byte (device/link/frames.py, byte 1), so a trap id
is 0..255 everywhere: the config, the key file, the encoder and the container (whose header
field is 16 bits wide, written only with ids the radio can carry).

Example:
    >>> check_trap_id(7)
    7
    >>> check_trap_id(300, "trap.id")    # doctest: +SKIP
    ConfigError: trap.id must be an integer 0..255 (the radio frame's trap id byte), got 300
"""

from __future__ import annotations

import numbers

from device.errors import ConfigError

__all__ = ["MAX_TRAP_ID", "TRAP_ID_BITS", "check_trap_id"]

TRAP_ID_BITS = 8  #: the radio frame's trap id field (device/link/frames.py, byte 1)
MAX_TRAP_ID = (1 << TRAP_ID_BITS) - 1


def check_trap_id(value, what: str = "trap id", error: type[Exception] = ConfigError) -> int:
    """`value` as a trap id; else `error` (a one-line message naming `what` and the range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 0 <= value <= MAX_TRAP_ID:
        raise error(f"{what} must be an integer 0..{MAX_TRAP_ID} (the radio frame's trap id "
                    f"byte), got {value!r}")
    return int(value)

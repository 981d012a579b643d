"""Frame authentication: per-trap AES-CMAC MIC, frame counters, optional AES-CTR payloads.

Poachers listen to radios too. LoRaWAN's answer fits a camera trap: every frame carries a
4-byte MIC, a truncated AES-CMAC (RFC 4493) over a block that includes the direction and the full
32-bit frame counter, of which only the low 16 bits travel (LoRaWAN 1.0.x, section 4.4). The
receiver rebuilds the 32-bit counter from the last one it accepted and refuses anything not
strictly newer: a replayed frame fails, a forged or corrupted one fails its MIC.

From the one 16-byte trap key we derive two keys with AES-ECB of a constant block (as LoRaWAN
derives NwkSKey/AppSKey): one signs, one encrypts, so the MIC never reuses the CTR key. The
payload cipher is AES-CTR with a counter block unique per (direction, trap, frame counter):
frame counters never repeat, so keystreams never repeat either.

Keys live in a TOML file readable by its owner only (mode 0600)::

    [traps]
    7 = "000102030405060708090a0b0c0d0e0f"
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from device.errors import ConfigError, LinkError

__all__ = [
    "DOWN",
    "KEY_LEN",
    "MAX_FCNT_GAP",
    "UP",
    "AuthError",
    "FrameAuth",
    "check_private",
    "extend_fcnt",
    "load_keys",
    "write_keys",
]

log = logging.getLogger(__name__)

KEY_LEN = 16
UP, DOWN = 0, 1  #: direction: trap -> base, base -> trap
#: Largest accepted jump of the frame counter (LoRaWAN 1.0 MAX_FCNT_GAP).
MAX_FCNT_GAP = 16384


class AuthError(LinkError, ValueError):
    """A frame failed authentication (forged, corrupted or replayed)."""


class FrameAuth:
    """MIC and payload cipher for one trap key.

    Example:
        >>> auth = FrameAuth(bytes(16))
        >>> mic = auth.mic(UP, 7, 1, b"frame bytes")
        >>> auth.verify(UP, 7, 1, b"frame bytes", mic)
        True
    """

    MIC_LEN = 4

    def __init__(self, key: bytes) -> None:
        key = bytes(key)
        if len(key) != KEY_LEN:
            raise ConfigError(f"a trap key must be {KEY_LEN} bytes (32 hex digits), got {len(key)}")
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self._mic_key = ecb.update(b"\x01" + bytes(15))
        self._enc_key = ecb.update(b"\x02" + bytes(15))

    def mic(self, direction: int, trap_id: int, fcnt: int, body: bytes) -> bytes:
        """4-byte truncated AES-CMAC over B0 || body; B0 binds direction, trap and fcnt32."""
        cmac = CMAC(algorithms.AES(self._mic_key))
        cmac.update(self._b0(direction, trap_id, fcnt, len(body)) + body)
        return cmac.finalize()[: self.MIC_LEN]

    def verify(self, direction: int, trap_id: int, fcnt: int, body: bytes, mic: bytes) -> bool:
        """Whether `mic` is right (constant-time compare of the full tag prefix)."""
        import hmac

        return hmac.compare_digest(self.mic(direction, trap_id, fcnt, body), bytes(mic))

    def crypt(self, direction: int, trap_id: int, fcnt: int, data: bytes) -> bytes:
        """AES-CTR encrypt or decrypt (the same operation) one frame's payload."""
        block = bytes([0x01, direction, trap_id, 0]) + fcnt.to_bytes(4, "big") + bytes(8)
        cipher = Cipher(algorithms.AES(self._enc_key), modes.CTR(block)).encryptor()
        return cipher.update(bytes(data)) + cipher.finalize()

    @staticmethod
    def _b0(direction: int, trap_id: int, fcnt: int, length: int) -> bytes:
        # LoRaWAN B0 layout in spirit: 0x49 | dir | trap | fcnt32 | length, padded to 16 bytes.
        return (bytes([0x49, direction, trap_id]) + fcnt.to_bytes(4, "big")
                + length.to_bytes(2, "big") + bytes(7))


def extend_fcnt(last: int | None, low16: int) -> int:
    """The 32-bit counter a received 16-bit value stands for, given the last accepted one.

    The smallest value above `last` whose low 16 bits are `low16` (LoRaWAN's rule). With no
    previous frame the high bits are taken as 0.
    """
    if last is None:
        return low16
    candidate = (last & ~0xFFFF) | low16
    if candidate <= last:
        candidate += 0x10000
    return candidate


def check_private(path: str | os.PathLike, strict: bool = True) -> None:
    """Refuse (or with strict=False, warn about) a secret file that others may read or write."""
    path = Path(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        message = (f"{path} has mode {stat.S_IMODE(mode):04o}; keys must be private: "
                   f"chmod 600 {path}")
        if strict:
            raise ConfigError(message)
        log.warning(message)


def load_keys(path: str | os.PathLike, strict: bool = True) -> dict[int, bytes]:
    """Read `{trap_id: key}` from a key file; refuses group/world access unless strict=False."""
    path = Path(path)
    check_private(path, strict)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table = raw.get("traps")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: needs a [traps] table of trap id = \"32 hex digits\"")
    keys = {}
    for name, value in table.items():
        try:
            trap_id = int(name)
            key = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            trap_id, key = -1, b""
        if not 0 <= trap_id <= 255:
            raise ConfigError(f"{path}: traps.{name}: trap id must be an integer 0..255")
        if len(key) != KEY_LEN:
            raise ConfigError(f"{path}: traps.{name}: key must be 32 hex digits")
        keys[trap_id] = key
    return keys


def write_keys(path: str | os.PathLike, keys: dict[int, bytes]) -> None:
    """Write a key file created with mode 0600 (never readable by others, even briefly)."""
    lines = ["# wildlink per-trap keys: keep this file mode 0600", "[traps]"]
    lines += [f'{trap} = "{bytes(key).hex()}"' for trap, key in sorted(keys.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)

"""Frame authentication: per-trap AES-CMAC MIC, frame counters, optional AES-CTR payloads.

Poachers listen to radios too. LoRaWAN's answer fits a camera trap: every frame carries a
4-byte MIC, a truncated AES-CMAC (RFC 4493) over a block that includes the direction and the full
32-bit frame counter, of which only the low 16 bits travel (LoRaWAN 1.0.x, section 4.4). The
receiver rebuilds the 32-bit counter from the last one it accepted and refuses anything not
strictly newer: a replayed frame fails, a forged or corrupted one fails its MIC.

Resynchronisation (`check_fcnt`). A counter at most `MAX_FCNT_GAP` above the last accepted one
is accepted on its own MIC. A larger jump (the trap sent frames the base never heard, restarted
in a loop, or the base lost its state) is searched up to `RESYNC_WRAPS` 16-bit wraps ahead;
a frame found there is not accepted but held as *pending*, and the next frame that verifies
within `MAX_FCNT_GAP` above the pending counter confirms the jump. Accepting a jump thus takes
two authentic frames in sequence: a single lucky forgery (2^-32 per counter tried) can
neither be accepted nor push the counter ahead and lock the real trap out, and the ARQ
resends the one frame the resync costs.

From the one 16-byte trap key we derive two keys with AES-ECB of a constant block (as LoRaWAN
derives NwkSKey/AppSKey): one signs, one encrypts, so the MIC never reuses the CTR key. The
payload cipher is AES-CTR with a counter block unique per (direction, trap, frame counter):
frame counters never repeat, so keystreams never repeat either.

Both ends go through this module alone: `seal` turns a frame into bytes on air (payload cipher,
MIC) and `CounterWindow` judges a received one (MIC, counter rebuild, the resync rule).

Keys live in a TOML file readable by its owner only (mode 0600)::

    [traps]
    7 = "000102030405060708090a0b0c0d0e0f"
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from device.errors import ConfigError, LinkError
from device.link import frames
from device.link.frames import DataFrame, Frame
from device.trapid import check_trap_id

__all__ = [
    "DOWN",
    "KEY_LEN",
    "MAX_FCNT_GAP",
    "RESYNC_WRAPS",
    "UP",
    "AuthError",
    "CounterWindow",
    "FcntCheck",
    "FrameAuth",
    "check_fcnt",
    "check_private",
    "extend_fcnt",
    "load_keys",
    "open_payload",
    "seal",
    "write_keys",
]

log = logging.getLogger(__name__)

KEY_LEN = 16
UP, DOWN = 0, 1  #: direction: trap -> base, base -> trap
#: Largest counter jump one frame is accepted on (LoRaWAN 1.0 MAX_FCNT_GAP); a larger one needs
#: a second frame to confirm it (`check_fcnt`).
MAX_FCNT_GAP = 16384
#: 16-bit wraps searched beyond the expected counter for a resync (2^26 frames: at 32 counters
#: burnt per restart, 2 million restarts). Costs at most RESYNC_WRAPS + 2 MICs per bad frame.
RESYNC_WRAPS = 1024
FCNT_MAX = 0xFFFFFFFF


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


@dataclass(frozen=True)
class FcntCheck:
    """The verdict on one frame's counter and MIC (see `check_fcnt`)."""

    #: "ok", "resync" (held pending), "replayed", "forged"; "unauthenticated" (`CounterWindow`)
    verdict: str
    fcnt: int | None = None  #: the 32-bit counter ("ok": accept it; "resync": the pending one)


def check_fcnt(last: int | None, low16: int, verify: Callable[[int], bool],
               pending: int | None = None) -> FcntCheck:
    """Rebuild and judge a frame's 32-bit counter (the resynchronisation rule, module docstring).

    Args:
        last: the last accepted counter from this sender (None: none yet, as after a reset).
        low16: the 16 bits the frame carries.
        verify: whether the frame's MIC is right for a candidate 32-bit counter.
        pending: the counter of an earlier frame held for resync, if any.

    Example:
        >>> check_fcnt(5, 6, lambda c: c == 6)
        FcntCheck(verdict='ok', fcnt=6)
        >>> check_fcnt(5, 6, lambda c: c == 4 * 0x10000 + 6)    # 4 wraps ahead: held
        FcntCheck(verdict='resync', fcnt=262150)
        >>> check_fcnt(5, 7, lambda c: c == 4 * 0x10000 + 7, pending=262150)
        FcntCheck(verdict='ok', fcnt=262151)
    """
    floor = -1 if last is None else last
    if pending is not None and pending > floor:
        confirm = extend_fcnt(pending, low16)
        if confirm - pending <= MAX_FCNT_GAP and verify(confirm):
            return FcntCheck("ok", confirm)
    expected = extend_fcnt(last, low16)
    for wraps in range(RESYNC_WRAPS + 1):
        candidate = expected + wraps * 0x10000
        if candidate > FCNT_MAX:
            break
        if verify(candidate):
            return FcntCheck("ok" if candidate - floor <= MAX_FCNT_GAP else "resync", candidate)
    older = expected - 0x10000
    if older >= 0 and verify(older):
        return FcntCheck("replayed")
    return FcntCheck("forged")


def seal(frame: Frame, auth: FrameAuth | None, direction: int) -> bytes:
    """A frame's bytes on air: its payload encrypted when flagged, its MIC when there is a key.

    `frame.fcnt` is the full 32-bit counter (its low 16 bits travel, all 32 enter the MIC and
    the cipher's counter block); `frame.payload` is the plaintext. Without a key the frame is
    packed unsigned (an encrypted flag then is an error: there is nothing to encrypt with).
    """
    if auth is None:
        if isinstance(frame, DataFrame) and frame.encrypted:
            raise LinkError("payload encryption needs a trap key")
        return frames.pack(frame)
    if isinstance(frame, DataFrame) and frame.encrypted:
        frame = replace(frame, payload=auth.crypt(direction, frame.trap_id, frame.fcnt,
                                                  frame.payload))
    mic = auth.mic(direction, frame.trap_id, frame.fcnt, frames.signed_part(frame))
    return frames.pack(replace(frame, mic=mic))


def open_payload(frame: DataFrame, auth: FrameAuth | None, direction: int, fcnt: int) -> bytes:
    """The plaintext of a received data frame whose 32-bit counter `fcnt` was accepted."""
    if not frame.encrypted:
        return frame.payload
    if auth is None:  # frames.unpack refuses encrypted frames without a MIC; no key, no MIC
        raise AuthError(f"trap {frame.trap_id}: an encrypted frame and no key for it")
    return auth.crypt(direction, frame.trap_id, fcnt, frame.payload)


class CounterWindow:
    """The receiving end's judgement of one direction's frames: MIC, 32-bit counter, resync.

    One per receiver: the base station's holds the uplink frames of all its traps, a trap's the
    acks from its base. It keeps, per trap, the counter of a frame held pending for a resync
    (`check_fcnt`); the last accepted counter lives in the caller's durable store.

    Example:
        >>> window = CounterWindow(UP)
        >>> window.check(None, frames.unpack(frames.pack(DataFrame(7, 1, 0, 1, b"x", fcnt=6))),
        ...              last=5)
        FcntCheck(verdict='ok', fcnt=6)
    """

    def __init__(self, direction: int) -> None:
        self.direction = direction
        self._pending: dict[int, int] = {}  # trap -> counter of a frame held for resync

    def check(self, auth: FrameAuth | None, frame: Frame, last: int | None,
              raw: bytes | None = None) -> FcntCheck:
        """The verdict on one unpacked frame (`raw`: its bytes on air, saves packing it again).

        Returns "ok" with the 32-bit counter to accept, else the reason to drop it: "resync"
        (held pending), "replayed", "forged" or "unauthenticated" (no MIC while a key is set).
        Without a key (`auth` None) the counter is only rebuilt, never judged.
        """
        if auth is None:
            return FcntCheck("ok", extend_fcnt(last, frame.fcnt))
        if not frame.mic:
            return FcntCheck("unauthenticated")
        trap = frame.trap_id
        if raw is None:
            raw = frames.pack(frame)
        body = raw[: len(raw) - frames.CRC_LEN - frames.MIC_LEN]
        check = check_fcnt(last, frame.fcnt,
                           lambda c: auth.verify(self.direction, trap, c, body, frame.mic),
                           self._pending.get(trap))
        if check.verdict == "ok":
            self._pending.pop(trap, None)
        elif check.verdict == "resync":
            self._pending[trap] = check.fcnt
            log.warning("trap %d: %s frame counter jumped from %s to %d; waiting for a second "
                        "frame to confirm", trap, "uplink" if self.direction == UP else "downlink",
                        last, check.fcnt)
        return check


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
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a key file is TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table = raw.get("traps")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: needs a [traps] table of trap id = \"32 hex digits\"")
    keys = {}
    for name, value in table.items():
        trap_id = check_trap_id(int(name) if name.isdigit() else name, f"{path}: traps.{name}")
        try:
            key = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            key = b""
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

"""Frame-authentication trials: forged, tampered, replayed and foreign frames, counter resyncs.

    python -m tools.auth_trials            # 1000 frames per attack, the resync table

Every frame goes through the base station's real `Receiver` (device/link/receiver.py) and its
SQLite `FragmentStore`; the counts are its own `stats`. Figures for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from device.link import FragmentStore, Receiver, frames
from device.link.auth import MAX_FCNT_GAP, RESYNC_WRAPS, UP, FrameAuth
from device.link.frames import DataFrame
from device.radio.base import Reception
from device.radio.clock import VirtualClock
from device.radio.sim import SimChannel

KEY = bytes(range(16))
TRAP = 7
WRAP = 0x10000


def _frame(fcnt: int, image: int, index: int = 0, count: int = 2, key: bytes = KEY,
           trap: int = TRAP, payload: bytes = b"fragment") -> bytes:
    frame = DataFrame(trap, image, index, count, payload, fcnt=fcnt & 0xFFFF)
    mic = FrameAuth(key).mic(UP, trap, fcnt, frames.signed_part(frame))
    return frames.pack(replace(frame, mic=mic))


def _receiver(folder: Path, name: str) -> Receiver:
    clock = VirtualClock()
    return Receiver(SimChannel(clock).radio("base"), FragmentStore(folder / f"{name}.sqlite"),
                    {TRAP: KEY}, clock)


def _feed(receiver: Receiver, raw: bytes) -> bool:
    """Whether the frame was accepted (stored: its counter became the last one)."""
    before = receiver.store.last_fcnt(TRAP)
    receiver.handle(Reception(raw, -90.0, 7.0))
    return receiver.store.last_fcnt(TRAP) != before


def attacks(n: int, folder: Path, seed: int = 0) -> dict[str, dict[str, int]]:
    """{attack: {"sent", "accepted", stat counts...}} for n frames of each attack."""
    rng = random.Random(seed)
    out = {}
    rx = _receiver(folder, "attacks")
    genuine = [_frame(fcnt, 1 + fcnt // 2, fcnt % 2) for fcnt in range(1, n + 1)]
    accepted = sum(_feed(rx, raw) for raw in genuine)
    out["genuine"] = {"sent": n, "accepted": accepted}
    last = rx.store.last_fcnt(TRAP)

    def run(name: str, frames_: list[bytes]) -> None:
        before = dict(rx.stats)
        got = sum(_feed(rx, raw) for raw in frames_)
        counts = {k: v - before.get(k, 0) for k, v in rx.stats.items() if v != before.get(k, 0)}
        counts.pop("fragments", None)
        out[name] = {"sent": len(frames_), "accepted": got, **counts}

    run("forged (random key)", [_frame(last + 1 + i, 9000 + i, key=rng.randbytes(16))
                                for i in range(n)])
    tampered = []
    for i in range(n):
        raw = bytearray(_frame(last + 1 + i, 9000 + i))
        raw[frames.DATA_HEADER + rng.randrange(8)] ^= 1 << rng.randrange(8)
        body = bytes(raw[:-frames.CRC_LEN])
        tampered.append(body + frames.crc16(body).to_bytes(2, "big"))
    run("tampered (CRC fixed)", tampered)
    run("replayed", [genuine[rng.randrange(n)] for _ in range(n)])
    run("foreign trap", [_frame(i + 1, 1, trap=8, key=rng.randbytes(16)) for i in range(n)])
    run("unsigned", [frames.pack(DataFrame(TRAP, 9000 + i, 0, 1, b"x", fcnt=(last + 1 + i) & 0xFFFF))
                     for i in range(n)])
    assert rx.store.last_fcnt(TRAP) == last  # no attack moved the counter
    rx.store.close()
    return out


def resyncs(folder: Path) -> list[tuple[str, int | None]]:
    """(jump, frames until accepted or None) for counter jumps ahead of the base."""
    rows = []
    for label, jump in [("1", 1), ("MAX_FCNT_GAP", MAX_FCNT_GAP),
                        ("MAX_FCNT_GAP + 1", MAX_FCNT_GAP + 1), ("1 wrap", WRAP),
                        ("4 wraps", 4 * WRAP), ("100 wraps", 100 * WRAP),
                        (f"{RESYNC_WRAPS} wraps", RESYNC_WRAPS * WRAP),
                        (f"{RESYNC_WRAPS + 1} wraps + 1", (RESYNC_WRAPS + 1) * WRAP + 1)]:
        rx = _receiver(folder, f"resync-{jump}")
        _feed(rx, _frame(10, 1, 0, 1))
        needed = None
        for k in range(1, 6):
            if _feed(rx, _frame(10 + jump + k - 1, 2, k % 2)):
                needed = k
                break
        rows.append((label, needed))
        rx.store.close()
    return rows


def forged_cost(n: int, folder: Path) -> float:
    """Mean seconds the base spends refusing one forged frame (the full resync search)."""
    rx = _receiver(folder, "cost")
    _feed(rx, _frame(1, 1, 0, 1))
    raws = [_frame(2 + i, 5, key=os.urandom(16)) for i in range(n)]
    started = time.perf_counter()
    for raw in raws:
        _feed(rx, raw)
    rx.store.close()
    return (time.perf_counter() - started) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="frames per attack")
    args = parser.parse_args(argv)
    logging.getLogger("device.link").setLevel(logging.ERROR)  # the resync warnings
    with tempfile.TemporaryDirectory(prefix="wildlink-auth-") as tmp:
        folder = Path(tmp)
        print(f"| frames ({args.n} each) | accepted | counted as |")
        print("|---|---|---|")
        for name, row in attacks(args.n, folder).items():
            rest = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("sent", "accepted"))
            print(f"| {name} | {row['accepted']} of {row['sent']} | {rest or '-'} |")
        print("\n| trap counter ahead of the base by | frames until accepted |")
        print("|---|---|")
        for label, needed in resyncs(folder):
            print(f"| {label} | {needed if needed is not None else 'never (refused as forged)'} |")
        cost = forged_cost(min(args.n, 200), folder)
        print(f"\nrefusing one forged frame costs {cost * 1e3:.1f} ms "
              f"(up to {RESYNC_WRAPS + 2} AES-CMACs)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

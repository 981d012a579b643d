"""The base station's durable fragment store (SQLite, WAL, fsync on commit).

Every fragment is committed before the ack that reports it is sent, so an ack never claims a
fragment a power cut could take back. A finished image is assembled in the same transaction
that removes its fragments, and its (trap, image id) is remembered so late duplicates are
acknowledged as complete instead of starting a second copy: each image arrives exactly once.
Per-trap frame counters (last accepted uplink, next downlink) live here too.

Completed images stay in the `images` table until `confirm` says the application has saved
them; after a crash `undelivered()` hands them out again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from device.link.queue import FCNT_BLOCK, _Transaction, connect

__all__ = ["DeliveredImage", "FragmentResult", "FragmentStore"]


@dataclass(frozen=True)
class DeliveredImage:
    """A completely received image, as the base-station service gets it."""

    trap_id: int
    image_id: int
    data: bytes
    rssi: float | None  #: mean over its fragments, dBm (None: not reported)
    snr: float | None  #: mean over its fragments, dB (None: not reported)
    received_at: float  #: clock time of the last fragment


@dataclass(frozen=True)
class FragmentResult:
    """What storing one fragment changed."""

    held: frozenset[int]
    count: int
    duplicate: bool
    completed: DeliveredImage | None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS fragments (
    trap_id INTEGER NOT NULL, image_id INTEGER NOT NULL, idx INTEGER NOT NULL,
    count INTEGER NOT NULL, payload BLOB NOT NULL, rssi REAL, snr REAL, at REAL,
    PRIMARY KEY (trap_id, image_id, idx)
);
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trap_id INTEGER NOT NULL, image_id INTEGER NOT NULL, count INTEGER NOT NULL,
    data BLOB, rssi REAL, snr REAL, at REAL, delivered INTEGER NOT NULL DEFAULT 0,
    UNIQUE (trap_id, image_id)
);
CREATE TABLE IF NOT EXISTS counters (
    trap_id INTEGER PRIMARY KEY, fcnt_up INTEGER, fcnt_down INTEGER NOT NULL DEFAULT 0
);
"""


class FragmentStore:
    """Fragments, finished images and counters of every trap one base station hears.

    Args:
        path: the SQLite file.
        remember: finished images remembered per trap for duplicate detection (image ids
            wrap at 65536, so older ones are forgotten).
    """

    def __init__(self, path: str | os.PathLike, remember: int = 4096) -> None:
        self.path = Path(path)
        self.remember = remember
        self._db = connect(self.path)
        self._db.executescript(_SCHEMA)
        self._down: dict[int, tuple[int, int]] = {}

    # -- counters -------------------------------------------------------------------------

    def last_fcnt(self, trap_id: int) -> int | None:
        """Last accepted uplink counter of a trap (None before its first frame)."""
        got = self._db.execute("SELECT fcnt_up FROM counters WHERE trap_id=?",
                               (trap_id,)).fetchone()
        return None if got is None else got[0]

    def accept_fcnt(self, trap_id: int, fcnt: int) -> None:
        """Record an accepted uplink counter (joins the caller's transaction if any)."""
        with _Transaction(self._db):
            self._db.execute(
                "INSERT INTO counters (trap_id, fcnt_up) VALUES (?, ?) ON CONFLICT(trap_id)"
                " DO UPDATE SET fcnt_up=excluded.fcnt_up", (trap_id, fcnt))

    def next_fcnt_down(self, trap_id: int) -> int:
        """A never-used downlink counter for acks to this trap (reserved in blocks)."""
        nxt, limit = self._down.get(trap_id, (0, 0))
        if nxt >= limit:
            with _Transaction(self._db):
                got = self._db.execute("SELECT fcnt_down FROM counters WHERE trap_id=?",
                                       (trap_id,)).fetchone()
                nxt = got[0] if got else 0
                limit = nxt + FCNT_BLOCK
                self._db.execute(
                    "INSERT INTO counters (trap_id, fcnt_down) VALUES (?, ?) ON CONFLICT(trap_id)"
                    " DO UPDATE SET fcnt_down=excluded.fcnt_down", (trap_id, limit))
        self._down[trap_id] = (nxt + 1, limit)
        return nxt

    # -- fragments ------------------------------------------------------------------------

    def is_complete(self, trap_id: int, image_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM images WHERE trap_id=? AND image_id=?",
                                (trap_id, image_id)).fetchone() is not None

    def held(self, trap_id: int, image_id: int) -> tuple[frozenset[int], int]:
        """Indexes held and fragment count of a partial image ((empty, 0) when unknown)."""
        rows = self._db.execute("SELECT idx, count FROM fragments WHERE trap_id=? AND image_id=?",
                                (trap_id, image_id)).fetchall()
        return frozenset(r[0] for r in rows), (rows[0][1] if rows else 0)

    def add_fragment(self, trap_id: int, image_id: int, index: int, count: int, payload: bytes,
                     fcnt: int, rssi: float, snr: float, now: float) -> FragmentResult:
        """Store one authenticated fragment and its counter; assemble the image when whole."""
        with _Transaction(self._db):
            self.accept_fcnt(trap_id, fcnt)
            if self.is_complete(trap_id, image_id):
                return FragmentResult(frozenset(range(count)), count, True, None)
            held, known = self.held(trap_id, image_id)
            if held and known != count:  # the trap re-fragmented (mtu changed): start over
                self._db.execute("DELETE FROM fragments WHERE trap_id=? AND image_id=?",
                                 (trap_id, image_id))
                held = frozenset()
            duplicate = index in held
            if not duplicate:
                self._db.execute(
                    "INSERT INTO fragments VALUES (?,?,?,?,?,?,?,?)",
                    (trap_id, image_id, index, count, bytes(payload), rssi, snr, now))
                held = held | {index}
            completed = self._assemble(trap_id, image_id, count, now) if len(held) == count else None
        return FragmentResult(held, count, duplicate, completed)

    def _assemble(self, trap_id: int, image_id: int, count: int, now: float) -> DeliveredImage:
        rows = self._db.execute(
            "SELECT payload, rssi, snr FROM fragments WHERE trap_id=? AND image_id=? ORDER BY idx",
            (trap_id, image_id)).fetchall()
        data = b"".join(bytes(r[0]) for r in rows)
        rssi = _mean(r[1] for r in rows)
        snr = _mean(r[2] for r in rows)
        self._db.execute("DELETE FROM fragments WHERE trap_id=? AND image_id=?",
                         (trap_id, image_id))
        self._db.execute(
            "INSERT INTO images (trap_id, image_id, count, data, rssi, snr, at)"
            " VALUES (?,?,?,?,?,?,?)", (trap_id, image_id, count, data, rssi, snr, now))
        # forget the oldest finished images of this trap beyond `remember`
        self._db.execute(
            "DELETE FROM images WHERE trap_id=? AND delivered=1 AND seq NOT IN"
            " (SELECT seq FROM images WHERE trap_id=? ORDER BY seq DESC LIMIT ?)",
            (trap_id, trap_id, self.remember))
        return DeliveredImage(trap_id, image_id, data, rssi, snr, now)

    # -- delivery -------------------------------------------------------------------------

    def undelivered(self) -> list[DeliveredImage]:
        """Finished images the application has not confirmed yet, oldest first."""
        rows = self._db.execute(
            "SELECT trap_id, image_id, data, rssi, snr, at FROM images WHERE delivered=0"
            " ORDER BY seq").fetchall()
        return [DeliveredImage(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def confirm(self, trap_id: int, image_id: int) -> None:
        """The application saved this image: drop its bytes, keep its key against duplicates."""
        with _Transaction(self._db):
            self._db.execute("UPDATE images SET delivered=1, data=NULL WHERE trap_id=? AND"
                             " image_id=?", (trap_id, image_id))

    def expire_partials(self, older_than: float) -> int:
        """Drop fragments of images not completed since `older_than` (a trap that vanished)."""
        with _Transaction(self._db):
            stale = self._db.execute(
                "SELECT trap_id, image_id FROM fragments GROUP BY trap_id, image_id"
                " HAVING MAX(at) < ?", (older_than,)).fetchall()
            for trap_id, image_id in stale:
                self._db.execute("DELETE FROM fragments WHERE trap_id=? AND image_id=?",
                                 (trap_id, image_id))
        return len(stale)

    def close(self) -> None:
        self._db.close()


def _mean(values) -> float | None:
    """Mean of the known values, rounded to 0.1; None when the radio reports none.

    An E22 module has no SNR (and RSSI only when its RSSI byte is on): it reports NaN,
    which SQLite stores as NULL.
    """
    known = [v for v in values if v is not None and v == v]
    return round(sum(known) / len(known), 1) if known else None

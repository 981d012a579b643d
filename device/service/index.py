"""The base station's image index: one SQLite row per received picture.

A row is written only after the picture and its sidecar are on disk, in one transaction, so the
index never points at a file that is not there. The `decoding` table counts decodes that were
started and never returned (the process was killed or ran out of memory inside the decoder), so
that the base station can quarantine a container it cannot survive instead of retrying it at
every restart. The key is (trap, SHA-256 of the container): the
link layer may hand out the same container again after a crash (it is confirmed only after this
row is written), and then the index says it is already stored: each image is kept exactly once,
even when a trap's 16-bit image ids wrap around.

Example:
    >>> index = ImageIndex("/var/lib/wildlink-base/index.sqlite")     # doctest: +SKIP
    >>> index.rows(trap_id=1)[0]["picture"]
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["ImageIndex"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    row INTEGER PRIMARY KEY,
    trap_id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    capture_time REAL,
    received_at REAL NOT NULL,
    bytes INTEGER NOT NULL,
    rssi REAL,
    snr REAL,
    boxes INTEGER NOT NULL DEFAULT 0,
    model_id TEXT,
    container TEXT NOT NULL,
    picture TEXT,
    sidecar TEXT,
    status TEXT NOT NULL,
    error TEXT,
    UNIQUE (trap_id, sha256)
);
CREATE INDEX IF NOT EXISTS images_by_trap ON images (trap_id, capture_time);
CREATE TABLE IF NOT EXISTS decoding (
    trap_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (trap_id, sha256)
);
"""

COLUMNS = ("trap_id", "image_id", "sha256", "capture_time", "received_at", "bytes", "rssi", "snr",
           "boxes", "model_id", "container", "picture", "sidecar", "status", "error")


class ImageIndex:
    """SQLite (WAL, synchronous FULL) index of stored pictures."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def has(self, trap_id: int, sha256: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM images WHERE trap_id = ? AND sha256 = ?", (trap_id, sha256)
        ).fetchone()
        return row is not None

    def begin_decode(self, trap_id: int, sha256: str) -> int:
        """Record a decode attempt (committed); return how many earlier ones never finished."""
        got = self._db.execute("SELECT attempts FROM decoding WHERE trap_id = ? AND sha256 = ?",
                               (trap_id, sha256)).fetchone()
        earlier = got[0] if got else 0
        self._db.execute("INSERT OR REPLACE INTO decoding VALUES (?, ?, ?)",
                         (trap_id, sha256, earlier + 1))  # autocommit: durable before decoding
        return earlier

    def end_decode(self, trap_id: int, sha256: str) -> None:
        """The decoder returned (an image or an error): forget the attempts."""
        self._db.execute("DELETE FROM decoding WHERE trap_id = ? AND sha256 = ?",
                         (trap_id, sha256))

    def add(self, **values) -> bool:
        """Insert one row; False if this container was already indexed (a duplicate)."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown index columns {sorted(unknown)}")
        names = [c for c in COLUMNS if c in values]
        cursor = self._db.execute(
            f"INSERT OR IGNORE INTO images ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            [values[c] for c in names],
        )
        return cursor.rowcount == 1

    def rows(self, trap_id: int | None = None) -> list[dict]:
        query, args = "SELECT * FROM images", ()
        if trap_id is not None:
            query, args = query + " WHERE trap_id = ?", (trap_id,)
        return [dict(r) for r in self._db.execute(query + " ORDER BY row", args)]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def close(self) -> None:
        self._db.close()

"""The trap's persistent outbound store: SQLite in WAL mode, safe across kill -9 and power loss.

`OutboundStore` is everything the sending side must not forget, in one database file:

* the outbound queue of images (below);
* the frame counters: the uplink counter, reserved in blocks so a crash can only skip counter
  values, never reuse one (a reused counter would look like a replay to the base), and the
  downlink counter of the last accepted ack, written in the same transaction as that ack's
  news so the two never disagree after a crash;
* the airtime log, so a reboot cannot double the duty-cycle budget.

It mirrors the base station's `FragmentStore` (store.py). An image is committed here before
its first fragment goes on air, and every ack's news (which fragments the base holds) is
committed as it arrives, so a restarted trap resends only what is still missing.

Order: priority first (animals before timelapse), then age. Full-disk policy: the queue keeps
within `max_bytes` and leaves `min_free_bytes` on the file system; to make room it drops the
oldest image of the least important class, but never an image more important than the new
one; if that is not enough, `put` raises `QueueFullError` and the caller keeps its file.

Example:
    >>> queue = OutboundStore("/var/lib/wildlink/outbound.sqlite")     # doctest: +SKIP
    >>> item = queue.put(container_bytes, Priority.ANIMAL)
    >>> queue.next_ready(now=time.time()).image_id == item.image_id
    True
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from device.errors import LinkError

__all__ = ["FCNT_BLOCK", "REMEMBER_SOURCES", "OutboundStore", "Priority", "QueueFullError", "QueuedImage", "connect"]

log = logging.getLogger(__name__)

FCNT_BLOCK = 32  #: frame counters reserved per database write


class Priority(IntEnum):
    """Lower sends first."""

    ANIMAL = 0
    OTHER = 1
    TIMELAPSE = 2


class QueueFullError(LinkError, OSError):
    """No room for an image without dropping a more important one."""


@dataclass(frozen=True)
class QueuedImage:
    """One image waiting in the queue, with what the base already acknowledged."""

    row: int  #: database key (stable)
    image_id: int  #: on-air image id, 0..65535
    priority: Priority
    data: bytes
    created: float
    frag_size: int | None  #: payload bytes per fragment, fixed at the first transmission
    acked: frozenset[int]
    attempts: int  #: windows already given up
    next_try: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL,
    data BLOB NOT NULL,
    frag_size INTEGER,
    acked BLOB NOT NULL DEFAULT x'',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS images_order ON images (priority, created, row);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS airtime (end_time REAL NOT NULL, seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    image_id INTEGER NOT NULL
);
"""
#: Source keys remembered (the newest); only the last few matter: a crash can cut short the
#: caller's own "done" record of the image it was queueing, not of older ones.
REMEMBER_SOURCES = 1024


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """SQLite in WAL mode with full fsync on commit: a committed row survives power loss."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def _bits(indexes: frozenset[int] | set[int]) -> bytes:
    value = 0
    for i in indexes:
        value |= 1 << i
    return value.to_bytes((value.bit_length() + 7) // 8, "little")


def _unbits(blob: bytes) -> frozenset[int]:
    value = int.from_bytes(blob, "little")
    return frozenset(i for i in range(value.bit_length()) if value >> i & 1)


class OutboundStore:
    """One trap's images waiting to be sent, its frame counters and its airtime log.

    A store rather than a bare queue: the downlink counter must commit in the same transaction
    as the ack it came with (`record_acked`, `complete`), so they share one database.
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = 64 << 20,
                 min_free_bytes: int = 16 << 20) -> None:
        self.path = Path(path)
        self.max_bytes, self.min_free_bytes = max_bytes, min_free_bytes
        self._db = connect(self.path)
        self._db.executescript(_SCHEMA)
        self._fcnt_next: int | None = None
        self._fcnt_limit = 0

    # -- images ---------------------------------------------------------------------------

    def put(self, data: bytes, priority: Priority = Priority.ANIMAL,
            now: float | None = None, source: str | None = None) -> QueuedImage:
        """Commit an image before anything of it is sent; evicts by the full-disk policy.

        `now` orders images of equal priority (pass `clock.now()`; default wall time).
        `source` names what the image was made from (a watched file, say); it is committed
        in the same transaction, so after a crash `queued_as(source)` says the image is
        queued even if the caller never recorded that it was.
        """
        data = bytes(data)
        now = time.time() if now is None else now
        if not data:
            raise LinkError("refusing to queue an empty image")
        priority = Priority(priority)
        self._make_room(len(data), priority)
        for _ in range(2):
            try:
                with self._tx():
                    image_id = self._next_image_id()
                    cur = self._db.execute(
                        "INSERT INTO images (image_id, priority, created, data) VALUES (?,?,?,?)",
                        (image_id, int(priority), now, data))
                    if source is not None:
                        self._remember_source(source, image_id)
                return self.get(cur.lastrowid)
            except sqlite3.OperationalError as exc:  # SQLITE_FULL: disk full despite our checks
                if "full" not in str(exc) or not self._evict_one(priority):
                    raise QueueFullError(f"cannot queue image: {exc}") from None
        raise QueueFullError("cannot queue image: disk full")

    def queued_as(self, source: str) -> int | None:
        """The image id an earlier `put(..., source=source)` got; None if never queued."""
        got = self._db.execute("SELECT image_id FROM sources WHERE key=?", (source,)).fetchone()
        return None if got is None else got[0]

    def _remember_source(self, source: str, image_id: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO sources (key, image_id) VALUES (?, ?)",
                         (source, image_id))
        self._db.execute("DELETE FROM sources WHERE seq <= (SELECT MAX(seq) FROM sources) - ?",
                         (REMEMBER_SOURCES,))

    def get(self, row: int) -> QueuedImage | None:
        got = self._db.execute(
            "SELECT row, image_id, priority, data, created, frag_size, acked, attempts, next_try"
            " FROM images WHERE row=?", (row,)).fetchone()
        return None if got is None else self._item(got)

    def next_ready(self, now: float) -> QueuedImage | None:
        """The most important, oldest image whose retry time has come."""
        got = self._db.execute(
            "SELECT row, image_id, priority, data, created, frag_size, acked, attempts, next_try"
            " FROM images WHERE next_try <= ? ORDER BY priority, created, row LIMIT 1",
            (now,)).fetchone()
        return None if got is None else self._item(got)

    def next_due(self) -> float | None:
        """Earliest retry time of any queued image; None when the queue is empty."""
        return self._db.execute("SELECT MIN(next_try) FROM images").fetchone()[0]

    def pending(self) -> list[QueuedImage]:
        """Every queued image in sending order (for status displays and tests)."""
        rows = self._db.execute(
            "SELECT row, image_id, priority, data, created, frag_size, acked, attempts, next_try"
            " FROM images ORDER BY priority, created, row").fetchall()
        return [self._item(r) for r in rows]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def bytes_queued(self) -> int:
        return self._db.execute("SELECT COALESCE(SUM(LENGTH(data)),0) FROM images").fetchone()[0]

    def start(self, row: int, frag_size: int) -> None:
        """Fix the fragmentation before the first frame; a changed size forgets old acks."""
        with self._tx():
            got = self._db.execute("SELECT frag_size FROM images WHERE row=?", (row,)).fetchone()
            if got is not None and got[0] != frag_size:
                self._db.execute("UPDATE images SET frag_size=?, acked=x'' WHERE row=?",
                                 (frag_size, row))

    def record_acked(self, row: int, acked: frozenset[int] | set[int], fcnt_down: int) -> None:
        """Store the fragments the base holds and the ack's counter, in one transaction."""
        with self._tx():
            self._db.execute("UPDATE images SET acked=? WHERE row=?", (_bits(acked), row))
            self._set_meta("fcnt_down", fcnt_down)

    def complete(self, row: int, fcnt_down: int | None = None) -> None:
        """The base holds the whole image: forget it."""
        with self._tx():
            self._db.execute("DELETE FROM images WHERE row=?", (row,))
            if fcnt_down is not None:
                self._set_meta("fcnt_down", fcnt_down)

    def defer(self, row: int, until: float) -> None:
        """Give up for this window: keep the image, try again at `until`."""
        with self._tx():
            self._db.execute("UPDATE images SET attempts=attempts+1, next_try=? WHERE row=?",
                             (until, row))

    # -- frame counters -------------------------------------------------------------------

    def next_fcnt(self) -> int:
        """A never-used uplink frame counter (reserved FCNT_BLOCK at a time on disk)."""
        if self._fcnt_next is None or self._fcnt_next >= self._fcnt_limit:
            with self._tx():
                start = self._get_meta("fcnt_up", 0)
                self._set_meta("fcnt_up", start + FCNT_BLOCK)
            self._fcnt_next, self._fcnt_limit = start, start + FCNT_BLOCK
        value = self._fcnt_next
        self._fcnt_next += 1
        return value

    def last_fcnt_down(self) -> int | None:
        """Counter of the last ack accepted from the base (None before the first)."""
        return self._get_meta("fcnt_down", None)

    # -- airtime history (so a reboot cannot double the duty-cycle budget) -----------------

    def log_airtime(self, end: float, seconds: float) -> None:
        """Record one transmission; entries older than two hours are pruned."""
        with self._tx():
            self._db.execute("INSERT INTO airtime VALUES (?, ?)", (end, seconds))
            self._db.execute("DELETE FROM airtime WHERE end_time < ?", (end - 7200.0,))

    def recent_airtime(self, since: float) -> list[tuple[float, float]]:
        """(end, seconds) of transmissions that ended after `since`, oldest first."""
        return [tuple(r) for r in self._db.execute(
            "SELECT end_time, seconds FROM airtime WHERE end_time > ? ORDER BY end_time",
            (since,))]

    def close(self) -> None:
        self._db.close()

    # -- internals ------------------------------------------------------------------------

    def _item(self, r) -> QueuedImage:
        return QueuedImage(r[0], r[1], Priority(r[2]), bytes(r[3]), r[4], r[5], _unbits(r[6]),
                           r[7], r[8])

    def _next_image_id(self) -> int:
        taken = {r[0] for r in self._db.execute("SELECT image_id FROM images")}
        image_id = self._get_meta("next_image_id", 0)
        for _ in range(65536):
            if image_id not in taken:
                break
            image_id = (image_id + 1) & 0xFFFF
        else:
            raise QueueFullError("65536 images queued: no free image id")
        self._set_meta("next_image_id", (image_id + 1) & 0xFFFF)
        return image_id

    def _free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return 1 << 62

    def _make_room(self, size: int, priority: Priority) -> None:
        """Evict enough less-or-equally important images for `size` bytes, or nothing at all.

        Deleted rows free pages inside the database file that SQLite reuses, so their bytes
        count as free disk space for the new image.
        """
        queued = self.bytes_queued()
        need = max(queued + size - self.max_bytes, self.min_free_bytes - (self._free_bytes() - size))
        if need <= 0:
            return
        if size > self.max_bytes:
            raise QueueFullError(f"image of {size} bytes exceeds the queue limit of "
                                 f"{self.max_bytes} bytes")
        victims, freed = [], 0
        for row, image_id, prio, length in self._db.execute(
                "SELECT row, image_id, priority, LENGTH(data) FROM images WHERE priority >= ?"
                " ORDER BY priority DESC, created, row", (int(priority),)):
            if freed >= need:
                break
            victims.append((row, image_id, prio))
            freed += length
        if freed < need:
            raise QueueFullError(
                f"queue full ({queued} bytes queued, limit {self.max_bytes}, "
                f"{self._free_bytes()} bytes free on disk) and nothing less important to drop")
        with self._tx():
            for row, image_id, prio in victims:
                log.warning("queue full: dropping image %d (priority %s)", image_id,
                            Priority(prio).name)
                self._db.execute("DELETE FROM images WHERE row=?", (row,))

    def _evict_one(self, priority: Priority) -> bool:
        """Drop the oldest image of the least important class, if not more important."""
        got = self._db.execute(
            "SELECT row, image_id, priority FROM images WHERE priority >= ?"
            " ORDER BY priority DESC, created, row LIMIT 1", (int(priority),)).fetchone()
        if got is None:
            return False
        log.warning("queue full: dropping image %d (priority %s)", got[1], Priority(got[2]).name)
        with self._tx():
            self._db.execute("DELETE FROM images WHERE row=?", (got[0],))
        return True

    def _get_meta(self, key: str, default):
        got = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if got is None else got[0]

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (key, value))

    def _tx(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (nesting joins the outer one)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, exc, tb) -> None:
        if not self.outer:
            return
        self.db.execute("ROLLBACK" if kind else "COMMIT")

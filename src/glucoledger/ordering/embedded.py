"""The embedded orderer: the global log in one SQLite file, for a single-process node.

WAL mode with ``synchronous=FULL``: when ``append`` returns, the entries survive a crash of the
process or the machine. ``BEGIN IMMEDIATE`` serializes appenders, also across processes (the
CLI and a server on the same folder), so positions are contiguous and never reused.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import OrderingError
from ..sqlitetx import connect, sqlite_error, transaction
from .base import MAX_ENTRY, Orderer

__all__ = ["EmbeddedOrderer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (pos INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS compacted (id INTEGER PRIMARY KEY CHECK (id = 0),
    first INTEGER NOT NULL);
"""


class EmbeddedOrderer(Orderer):
    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._db = connect(self.path, sync="FULL", readonly=readonly, schema=_SCHEMA,
                           what="the ordered log", error=OrderingError)
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._version: int | None = None  # PRAGMA data_version as ``others_appended`` saw it

    def append(self, entries: Sequence[bytes]) -> int:
        first = self._append(entries, None)
        assert first is not None
        return first

    def append_at(self, entries: Sequence[bytes], size: int) -> int | None:
        return self._append(entries, size)

    def _append(self, entries: Sequence[bytes], at: int | None) -> int | None:
        if not entries:
            raise ValueError("append needs at least one entry")
        for e in entries:
            if not isinstance(e, bytes) or len(e) > MAX_ENTRY:
                raise ValueError(f"log entries are bytes, at most {MAX_ENTRY} long")
        with self._lock, transaction(self._db, self.path, "appending to the ordered log",
                                     error=OrderingError) as db:
            first = self._size_locked()
            if at is not None and first != at:
                return None
            db.executemany("INSERT INTO log (pos, entry) VALUES (?, ?)",
                           [(first + i, e) for i, e in enumerate(entries)])
        with self._cond:
            self._cond.notify_all()
        return first

    def _first_locked(self) -> int:
        try:
            row = self._db.execute("SELECT first FROM compacted WHERE id = 0").fetchone()
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path, "reading the ordered log",
                               error=OrderingError) from None
        return int(row[0]) if row else 0

    def _size_locked(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(pos) + 1, 0) FROM log").fetchone()
        return max(int(row[0]), self._first_locked())

    def others_appended(self) -> bool:
        """Whether another connection (another process on the folder: a command next to
        ``serve``) committed to the log since the last call (SQLite's ``data_version``, which
        this connection's own appends do not move). The first call says True."""
        with self._lock:
            try:
                version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise sqlite_error(exc, self.path, "reading the ordered log",
                                   error=OrderingError) from None
            changed, self._version = version != self._version, version
            return changed

    def first(self) -> int:
        with self._lock:
            return self._first_locked()

    def compact(self, below: int) -> None:
        """Drop entries below ``below`` (at most up to the current size; never backwards)."""
        with self._lock, transaction(self._db, self.path, "compacting the ordered log",
                                     error=OrderingError) as db:
            below = min(below, self._size_locked())
            if below > self._first_locked():
                db.execute("DELETE FROM log WHERE pos < ?", (below,))
                db.execute("INSERT OR REPLACE INTO compacted VALUES (0, ?)", (below,))

    def read(self, start: int, limit: int = 1000) -> list[bytes]:
        if start < 0 or limit < 0:
            raise ValueError("start and limit are non-negative")
        with self._lock:
            if start < self._first_locked():
                raise OrderingError(
                    f"log positions below {self._first_locked()} were compacted away; catch up "
                    "from another node's blocks"
                )
            try:
                rows = self._db.execute(
                    "SELECT entry FROM log WHERE pos >= ? ORDER BY pos LIMIT ?", (start, limit)
                ).fetchall()
            except sqlite3.Error as exc:
                raise sqlite_error(exc, self.path, "reading the ordered log",
                                   error=OrderingError) from None
        return [bytes(r[0]) for r in rows]

    def size(self) -> int:
        with self._lock:
            try:
                return self._size_locked()
            except sqlite3.Error as exc:
                raise sqlite_error(exc, self.path, "reading the ordered log",
                                   error=OrderingError) from None

    def wait(self, size: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            now = self.size()
            remaining = deadline - time.monotonic()
            if now > size or remaining <= 0:
                return now
            with self._cond:  # woken by appends in this process; polls for other processes
                self._cond.wait(min(remaining, 0.05))

    def close(self) -> None:
        with self._lock:
            self._db.close()

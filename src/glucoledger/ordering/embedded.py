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
from .base import MAX_ENTRY, Orderer

__all__ = ["EmbeddedOrderer"]


class EmbeddedOrderer(Orderer):
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS log (pos INTEGER PRIMARY KEY, entry BLOB NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS compacted (id INTEGER PRIMARY KEY "
                             "CHECK (id = 0), first INTEGER NOT NULL)")
        except sqlite3.Error as exc:
            raise OrderingError(f"cannot open the log at {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._cond = threading.Condition()

    def append(self, entries: Sequence[bytes]) -> int:
        if not entries:
            raise ValueError("append needs at least one entry")
        for e in entries:
            if not isinstance(e, bytes) or len(e) > MAX_ENTRY:
                raise ValueError(f"log entries are bytes, at most {MAX_ENTRY} long")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    first = self._size_locked()
                    self._db.executemany(
                        "INSERT INTO log (pos, entry) VALUES (?, ?)",
                        [(first + i, e) for i, e in enumerate(entries)],
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OrderingError(f"could not append to the log at {self.path}: {exc}") from None
        with self._cond:
            self._cond.notify_all()
        return first

    def _first_locked(self) -> int:
        row = self._db.execute("SELECT first FROM compacted WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def _size_locked(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(pos) + 1, 0) FROM log").fetchone()
        return max(int(row[0]), self._first_locked())

    def first(self) -> int:
        with self._lock:
            return self._first_locked()

    def compact(self, below: int) -> None:
        """Drop entries below ``below`` (at most up to the current size; never backwards)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    below = min(below, self._size_locked())
                    if below > self._first_locked():
                        self._db.execute("DELETE FROM log WHERE pos < ?", (below,))
                        self._db.execute("INSERT OR REPLACE INTO compacted VALUES (0, ?)", (below,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OrderingError(f"could not compact the log at {self.path}: {exc}") from None

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
                raise OrderingError(f"could not read the log at {self.path}: {exc}") from None
        return [bytes(r[0]) for r in rows]

    def size(self) -> int:
        with self._lock:
            try:
                return self._size_locked()
            except sqlite3.Error as exc:
                raise OrderingError(f"could not read the log at {self.path}: {exc}") from None

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

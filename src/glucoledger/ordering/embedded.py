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
        except sqlite3.Error as exc:
            raise OrderingError(f"cannot open the log at {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._cond = threading.Condition()

    def append(self, entries: Sequence[bytes]) -> int:
        if not entries:
            raise ValueError("append needs at least one entry")
        for e in entries:
            if not isinstance(e, bytes) or not 0 < len(e) <= MAX_ENTRY:
                raise ValueError(f"log entries are 1 to {MAX_ENTRY} bytes")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute("SELECT COALESCE(MAX(pos) + 1, 0) FROM log").fetchone()
                    first = int(row[0])
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

    def read(self, start: int, limit: int = 1000) -> list[bytes]:
        if start < 0 or limit < 0:
            raise ValueError("start and limit are non-negative")
        with self._lock:
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
                row = self._db.execute("SELECT COALESCE(MAX(pos) + 1, 0) FROM log").fetchone()
            except sqlite3.Error as exc:
                raise OrderingError(f"could not read the log at {self.path}: {exc}") from None
        return int(row[0])

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

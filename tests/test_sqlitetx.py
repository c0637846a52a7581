"""The SQLite helper every store opens its file with (``glucoledger.sqlitetx``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from glucoledger import sqlitetx

from .servers import wait_until


class _Tagged(bytes):
    """A bytes subclass: adapted by its own type, as without the helper."""


def test_bytes_parameters_bind_unchanged_through_the_identity_adapter(tmp_path: Path) -> None:
    """Importing the helper registers ``bytes`` as the adapter of bytes (one dict look-up
    instead of two failed attribute look-ups a parameter); what is stored is exactly what
    was bound: empty, binary, large, a subclass, and None beside them."""
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)] is bytes
    db = sqlitetx.connect(tmp_path / "t.db",
                          schema="CREATE TABLE IF NOT EXISTS t (k INTEGER, v BLOB)")
    values: list[bytes | None] = [b"", bytes(range(256)), b"\x00" * 300_000,
                                  _Tagged(b"tag"), None]
    db.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    stored = [v for _, v in db.execute("SELECT k, v FROM t ORDER BY k")]
    assert stored == values
    assert [type(v) for v in stored[:4]] == [bytes] * 4
    db.close()


def _pages(path: Path) -> int:
    return path.stat().st_size // 4096


def _commit_pages(db: sqlite3.Connection, n: int, start: int = 0) -> None:
    """``n`` rows of one page each, in transactions of 100."""
    for k in range(start, start + n, 100):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?, ?)",
                       [(i, bytes([i % 256]) * 3900) for i in range(k, k + 100)])
        db.execute("COMMIT")


def test_commits_leave_the_checkpoint_to_its_thread_and_the_wal_starts_over(
        tmp_path: Path, checkpoint_threads: Callable[[], list[str]]) -> None:
    """Without the checkpointer SQLite checkpoints in the committing thread once the WAL
    holds 1,000 pages (the database file grows as it commits); with it the commits only
    append to the WAL, the thread copies them back once woken, and the next commit starts
    the WAL over, so it stays about one wake's commits long."""
    schema = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)"
    plain = sqlitetx.connect(tmp_path / "plain.db", sync="NORMAL", schema=schema)
    _commit_pages(plain, 1500)
    assert _pages(tmp_path / "plain.db") > 1000  # the committing thread checkpointed
    plain.close()

    path = tmp_path / "t.db"
    db = sqlitetx.connect(path, sync="NORMAL", schema=schema)
    cp = sqlitetx.Checkpointer(db, path)
    try:
        assert checkpoint_threads() == ["checkpoint t.db"]
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16_000
        before = _pages(path)
        _commit_pages(db, 1500)
        assert _pages(path) == before  # everything is still in the WAL: nothing waited
        cp.wake()
        wait_until(lambda: _pages(path) > 1500, 20, "the thread to copy the commits back")
        other = sqlite3.connect(path, isolation_level=None)

        def backfilled() -> tuple[int, int]:
            busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return (-1, -1) if busy else (frames, copied)

        def ended() -> bool:  # busy while the thread copies
            frames, copied = backfilled()
            return frames == copied >= 1500

        wait_until(ended, 20, "the thread's checkpoint to end")
        _commit_pages(db, 100, start=1500)  # starts the WAL over
        frames, copied = backfilled()
        other.close()
        assert 0 < frames == copied < 200, frames
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1600
    finally:
        cp.close()
        db.close()
    assert checkpoint_threads() == []
    assert not Path(f"{path}-wal").exists()  # the writer closed last: WAL folded and removed


def test_a_checkpointer_that_is_never_woken_stays_asleep(tmp_path: Path) -> None:
    """An idle store costs no checkpoints: commits without a wake are left in the WAL."""
    path = tmp_path / "t.db"
    db = sqlitetx.connect(path, sync="NORMAL",
                          schema="CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    cp = sqlitetx.Checkpointer(db, path, interval=0.0)
    try:
        _commit_pages(db, 300)
        before = _pages(path)
        time.sleep(0.5)
        assert _pages(path) == before
        assert cp.checkpoint()[0] == 0 and _pages(path) > before  # ...and it can
    finally:
        cp.close()
        db.close()

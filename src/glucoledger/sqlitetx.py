"""The one way every store of a node folder opens SQLite and runs a write transaction.

The chain store, the embedded orderer and the vault each keep one SQLite file in WAL mode.
They all open it with :func:`connect` and write with :func:`transaction`, so that:

- a write either commits whole or leaves the file as it was (``BEGIN IMMEDIATE`` ...
  ``COMMIT``; any exception rolls back). SQLite itself rolls back a transaction on some
  errors (``SQLITE_FULL``, ``SQLITE_IOERR``): the helper rolls back only while a transaction
  is still open, so the real cause is reported, never "cannot rollback - no transaction is
  active" (https://www.sqlite.org/lang_transaction.html, "Response To Errors Within A
  Transaction");
- every failure becomes the store's backend error (:class:`StorageError` or
  :class:`OrderingError`) with a message a person can act on: "disk full on <folder> while
  storing block 15: free space and retry", a read-only folder, a damaged file. The message
  names the file and the action, never a value stored in it.

``readonly=True`` opens the file with ``mode=ro`` (https://www.sqlite.org/uri.html): no
schema, no journal-mode change, nothing written; for ``verify`` on a copy or a read-only
folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import BackendError, StorageError

__all__ = ["Checkpointer", "connect", "integrity_problems", "readonly_copy", "sqlite_error",
           "transaction"]

log = logging.getLogger("glucoledger.storage")

# Python's sqlite3 "adapts" every parameter before binding it, except an int, float, str or
# bytearray. With no adapter registered for bytes, each bytes parameter looks for
# ``__adapt__`` on the sqlite3 protocol type and fails, and a failed look-up on a type
# formats an AttributeError message before it is dropped: about 3,300 instructions a bytes
# parameter (callgrind), seven of them for each transaction a node stores. The identity
# adapter is found in one dict look-up; ``bytes`` of an exact bytes object is that object,
# so what is bound is unchanged (a subclass of bytes is looked up by its own type, as
# before). The registry is process-wide: any other user of sqlite3 in the process binds
# exactly what it bound before, too.
sqlite3.register_adapter(bytes, bytes)

# Primary result codes (https://www.sqlite.org/rescode.html).
_READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB, _PERM = 8, 10, 11, 13, 14, 26, 3
_BUSY, _LOCKED = 5, 6


def _no_room(folder: Path) -> bool:
    """True when the file system holding ``folder`` has less than 64 KiB left for us."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def sqlite_error(exc: sqlite3.Error, path: Path | str, doing: str, *,
                 error: type[BackendError] = StorageError) -> BackendError:
    """The backend error for a SQLite failure on ``path`` while ``doing`` something."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else int(code) & 0xFF
    text = str(exc).lower()
    where = Path(path)
    try:  # the folder that is full: a symlinked file lives on its target's disk
        full = where.resolve().parent
    except OSError:
        full = where.parent
    # An I/O error on a file system with no room left is the full disk (SQLite reports
    # SQLITE_IOERR, not SQLITE_FULL, when growing the WAL index or mapping it fails there).
    if primary == _FULL or "disk is full" in text or "disk full" in text or (
            primary == _IOERR and _no_room(full)):
        return error(f"disk full on {full} while {doing}: free space and retry "
                     "(or restart the node); nothing was acknowledged", code="disk_full")
    if primary in (_READONLY, _PERM) or "readonly" in text or "read-only" in text:
        return error(f"cannot write {where} while {doing}: the file or its folder is "
                     "read-only; fix the permissions or use another --data folder",
                     code="read_only")
    if primary == _CANTOPEN:
        return error(f"cannot open {where} while {doing}: the folder is missing, not "
                     "readable or not writable; check --data and its permissions",
                     code="cannot_open")
    if primary in (_CORRUPT, _NOTADB):
        return error(f"{where} is damaged (not a valid SQLite database) while {doing}: run "
                     "`glucoledger verify`, then restore it from a backup or another node",
                     code="damaged_store")
    if primary in (_BUSY, _LOCKED):
        return error(f"{where} is locked by another process while {doing}: retry, or stop "
                     "the other process using this folder", code="busy")
    if primary == _IOERR:
        return error(f"input/output error on {where} while {doing}: check the disk and "
                     "free space, then retry (or restart the node)", code="io_error")
    return error(f"SQLite failed on {where} while {doing} ({exc}); run `glucoledger verify`")


def connect(path: Path | str, *, sync: str = "FULL", readonly: bool = False,
            schema: str | None = None, what: str = "the database",
            error: type[BackendError] = StorageError) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with ``synchronous=sync`` and create ``schema``.

    ``readonly``: open with ``mode=ro`` and touch nothing (the file must exist).
    Raises ``error`` naming the file and what to do.
    """
    path = Path(path)
    try:
        if readonly:
            if not path.exists():
                raise error(f"{what} ({path}) does not exist", code="missing_store")
            db = sqlite3.connect(_readonly_uri(path), uri=True, isolation_level=None,
                                 check_same_thread=False, timeout=30.0)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={sync}")
            if schema:
                db.executescript(schema)
        except BaseException:
            db.close()
            raise
        return db
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path, f"opening {what}", error=error) from None


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL, IOERR)
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the cause being reported is the first error, not this one


@contextmanager
def transaction(db: sqlite3.Connection, path: Path | str, doing: str, *,
                error: type[BackendError] = StorageError) -> Iterator[sqlite3.Connection]:
    """``with transaction(db, path, "storing block 3"):`` one atomic write.

    The body's statements commit together when it ends, or none of them do: any exception
    rolls back; a SQLite failure (in the body or at ``COMMIT``) is raised as ``error`` with a
    message for people. The caller holds its own lock: one connection, one writer thread.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path, doing, error=error) from None
    try:
        yield db
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(db)
        raise sqlite_error(exc, path, doing, error=error) from None
    except BaseException:
        _rollback(db)
        raise


class Checkpointer:
    """Checkpoints one WAL-mode database from a thread of its own, so that the thread that
    commits never waits for a checkpoint's writes and fsyncs.

    SQLite checkpoints a WAL file in the thread that commits, once the WAL holds
    ``wal_autocheckpoint`` pages (1,000 by default): that commit then copies the pages back
    into the database file and fsyncs both. Once a store's tables are far larger than what
    one commit writes (random keys: state keys, transaction hashes), nearly every row a
    commit inserts dirties a page of its own, and the committing thread spends much of its
    time in those checkpoints (README, Performance, "A growing chain").

    Here the writer's own automatic checkpoint is only a backstop (``backstop`` pages), and
    :meth:`wake`, called after each commit, has this thread run a ``PASSIVE`` checkpoint
    (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html): it copies what is committed
    without blocking the writer or readers, and once it has copied all of it the next
    write starts the WAL over, so the WAL stays about one checkpoint's commits long. At
    most one checkpoint every ``interval`` seconds; none while nothing is committed (an
    idle node's thread sleeps). Durability is the connection's ``synchronous`` setting's,
    as before: the checkpoint fsyncs what it copies. A failing checkpoint (a full disk) is
    logged, never raised: the commits themselves report the disk, and the backstop and
    the next wake try again.
    """

    def __init__(self, db: sqlite3.Connection, path: Path | str, *, sync: str = "NORMAL",
                 backstop: int = 16_000, interval: float = 0.05) -> None:
        self._path = Path(path)
        try:
            db.execute(f"PRAGMA wal_autocheckpoint={int(backstop)}")
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self._path, "setting its checkpoint backstop") from None
        self._db = connect(self._path, sync=sync, what=f"{self._path.name} to checkpoint it")
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failed = ""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"checkpoint {self._path.name}")
        self._thread.start()

    def wake(self) -> None:
        """Something was committed: checkpoint it soon."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and close its connection (before the writer's, so that the
        writer's close is the last and checkpoints and removes the WAL as before)."""
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            self.checkpoint()
            if self._stop.wait(self._interval):
                return

    def checkpoint(self) -> tuple[int, int, int]:
        """One ``PASSIVE`` checkpoint: (busy, frames in the WAL, frames copied), or
        (1, -1, -1) when it failed (logged once until one succeeds)."""
        try:
            row = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            problem = str(exc)  # SQLite's words ("database or disk is full"), never a value
            if problem != self._failed:
                log.warning("checkpointing %s failed (%s): its WAL grows until a checkpoint "
                            "succeeds; free space on its disk if it is full", self._path,
                            problem)
                self._failed = problem
            return 1, -1, -1
        self._failed = ""
        return int(row[0]), int(row[1]), int(row[2])


def _readonly_uri(path: Path) -> str:
    """``mode=ro``; and ``immutable=1`` when no ``-wal`` file exists: then no connection has
    the database open for writing (a WAL-mode writer keeps its ``-wal`` file), and SQLite
    creates no ``-wal``/``-shm`` files for the reader (https://www.sqlite.org/uri.html)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    return uri


def _opens_readonly(path: Path) -> bool:
    try:
        db = sqlite3.connect(_readonly_uri(path), uri=True)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return True


@contextmanager
def readonly_copy(folder: Path, names: Sequence[str]) -> Iterator[Path]:
    """A folder where the SQLite files ``names`` of ``folder`` open read-only.

    ``folder`` itself when they do (SQLite gives a consistent snapshot even while a server
    writes); otherwise (a read-only folder or medium, where SQLite cannot create the WAL
    index) a private temporary copy of each file and its ``-wal``, removed afterwards.
    Nothing in ``folder`` is ever written. Files that do not exist are not copied.
    """
    folder = Path(folder)
    present = [n for n in names if (folder / n).exists()]
    if all(_opens_readonly(folder / n) for n in present):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="glucoledger-verify-") as tmp:
        for name in present:
            for suffix in ("", "-wal"):
                src = folder / f"{name}{suffix}"
                if src.exists():
                    try:
                        shutil.copyfile(src, Path(tmp) / src.name)
                    except OSError as exc:
                        raise StorageError(f"cannot read {src} to verify it: "
                                           f"{exc.strerror}") from None
        yield Path(tmp)


def integrity_problems(path: Path, *, limit: int = 20) -> list[str]:
    """What ``PRAGMA integrity_check`` finds wrong in the SQLite file ``path`` ([] = none):
    damaged pages, and indexes that disagree with their tables (a read through such an index
    returns other values than the table holds; https://www.sqlite.org/pragma.html
    #pragma_integrity_check). Read-only; a file SQLite cannot open is one problem."""
    try:
        db = sqlite3.connect(_readonly_uri(Path(path)), uri=True)
        try:
            rows = db.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [f"{Path(path).name} cannot be read as a SQLite database ({exc})"]
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else [f"{Path(path).name}: {m}" for m in found]

"""The vault: sealed batches in a blob store, wrapped keys and the batch index in SQLite.

``<data>/vault.db`` holds, and never holds plaintext:

    keks(patient, stream, wrapped)   a random 32-byte key-encryption key per patient and
                                     stream, sealed under the node master key (context "kek",
                                     patient and stream as associated data)
    batches(ct, patient, stream, uploader, seq, start, end, count, root, custody,
            wrapped_key, trust, tx_hash, tx_index, status)
                                     one row per batch: its ciphertext hash (= blob name), the
                                     same coarse hour range and salted root the ledger holds,
                                     the data key wrapped under the KEK (custody "node") or to
                                     the patient's X25519 key with HPKE (custody "self"), and
                                     its data.commit (status "pending" until ordered)
    tags(tag, ct)                    idempotency tags: opaque keys a caller attached to a batch
                                     (Nightscout's document identities, as HMACs), written in
                                     the same transaction as the batch's row and deleted with
                                     it, so "seen before" means "held by a batch" even across
                                     a crash

Erasing a patient's stream is deleting its KEK row (and the blobs): every data key under it
becomes unrecoverable. Reading a batch checks the blob's SHA-256 against the committed hash,
then the AES-GCM tag; either failure raises ``BatchIntegrityError`` naming the batch.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..crypto import constant_time_equal, sha256
from ..crypto.hpke import hpke_open, hpke_seal
from ..crypto.seal import new_key, open_sealed, seal
from ..errors import ConsistencyError, GlucoledgerError, NotFoundError
from ..files import locked
from ..glucose.readings import Batch
from ..sqlitetx import connect, sqlite_error, transaction
from .batch import Checked, Upload, batch_aad, read_plaintext
from .blobstore import BlobStore, FsBlobStore

__all__ = ["BatchIntegrityError", "BatchRow", "Sealed", "Vault"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keks (patient BLOB NOT NULL, stream TEXT NOT NULL,
    wrapped BLOB NOT NULL, PRIMARY KEY (patient, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    ct BLOB PRIMARY KEY, patient BLOB NOT NULL, stream TEXT NOT NULL, uploader BLOB NOT NULL,
    seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, count INTEGER NOT NULL,
    root BLOB NOT NULL, custody TEXT NOT NULL, wrapped_key BLOB NOT NULL, trust TEXT NOT NULL,
    tx_hash BLOB NOT NULL, tx_index INTEGER, status TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_uploader ON batches(uploader, seq);
CREATE INDEX IF NOT EXISTS batches_patient ON batches(patient, stream, start);
CREATE INDEX IF NOT EXISTS batches_last ON batches(patient, status, tx_index);
CREATE TABLE IF NOT EXISTS tags (tag BLOB PRIMARY KEY, ct BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_ct ON tags(ct);
"""
_COLS = ("ct", "patient", "stream", "uploader", "seq", "start", "end", "count", "root",
         "custody", "wrapped_key", "trust", "tx_hash", "tx_index", "status")


class BatchIntegrityError(ConsistencyError):
    code = "batch_integrity"

    def __init__(self, message: str, row: BatchRow) -> None:
        super().__init__(message)
        self.row = row


@dataclass(frozen=True, slots=True)
class BatchRow:
    ct: bytes
    patient: bytes
    stream: str
    uploader: bytes
    seq: int
    start: int
    end: int
    count: int
    root: bytes
    custody: str
    wrapped_key: bytes
    trust: str
    tx_hash: bytes
    tx_index: int | None
    status: str

    def describe(self) -> str:
        where = "" if self.tx_index is None else f", log index {self.tx_index}"
        return (f"batch of patient {self.patient.hex()[:16]} stream {self.stream} "
                f"(uploader {self.uploader.hex()[:16]} seq {self.seq}{where}, "
                f"blob {self.ct.hex()[:16]})")

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in _COLS)


@dataclass(frozen=True, slots=True)
class Sealed:
    """An upload encrypted under a fresh data key. ``wrapped_key``: the data key sealed to
    the patient's key (custody "self"), or empty (custody "node"): a node-custody data key
    is wrapped when its batch is ordered (``Vault.wrap``, under ``Vault.ordering``), with
    the stream key the database holds then, never one an erasure destroyed meanwhile."""

    blob: bytes
    ct: bytes
    wrapped_key: bytes
    custody: str
    data_key: bytes = field(default=b"", repr=False)
    aad: bytes = field(default=b"", repr=False)


def _row(r: Sequence[Any]) -> BatchRow:
    v: list[Any] = [bytes(x) if isinstance(x, (bytes, memoryview)) else x for x in r]
    return BatchRow(*v)


class Vault:
    def __init__(self, data_dir: Path, master: bytes, chain: str, *,
                 blobs: BlobStore | None = None, fsync: bool = True,
                 readonly: bool = False) -> None:
        """``readonly``: open an existing vault without writing anything (for verify)."""
        self.data_dir = Path(data_dir)
        self.chain = chain
        self._master = master
        self._fsync = fsync
        self.blobs = blobs if blobs is not None else FsBlobStore(self.data_dir / "blobs",
                                                                 fsync=fsync)
        self._lock = threading.RLock()
        #: Unsealed stream keys by (patient, stream): (the sealed bytes read, the key).
        self._keks: dict[tuple[bytes, str], tuple[bytes, bytes]] = {}
        #: The ledger's erasure records whose key step this process knows is done
        #: (node/erasure.py, ``destroy_erased_keys``).
        self.erasures_done: set[str] = set()
        self._path = self.data_dir / "vault.db"
        self._db = connect(self._path, sync="FULL" if fsync else "NORMAL", readonly=readonly,
                           schema=_SCHEMA, what="the vault database")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self.blobs.close()

    # --- SQL helpers ----------------------------------------------------------------------
    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise sqlite_error(exc, self._path, "reading the vault database") from None

    def _many(self, statements: Iterable[tuple[str, Sequence[Sequence[Any]]]], *,
              durable: bool = True) -> None:
        """Run the statements in one transaction. ``durable=False``: the commit is not
        synced (a power cut may lose it, a process crash cannot); only for writes that
        ``IngestService.recover`` re-derives from the ledger."""
        with self._lock:
            try:
                if not durable and self._fsync:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                with transaction(self._db, self._path, "writing the vault database") as db:
                    for sql, rows in statements:
                        db.executemany(sql, rows)
            except sqlite3.Error as exc:  # the PRAGMA
                raise sqlite_error(exc, self._path, "writing the vault database") from None
            finally:
                if not durable and self._fsync:
                    try:
                        self._db.execute("PRAGMA synchronous=FULL")
                    except sqlite3.Error:
                        pass  # the next durable write reports the cause

    # --- keys -----------------------------------------------------------------------------
    def kek(self, patient: bytes, stream: str) -> bytes:
        """The patient's key-encryption key for ``stream``, created on first use.

        Read from the database every time (a primary-key lookup; only the unsealing is
        cached, by the sealed bytes): another process on the folder may have erased the
        stream (``glucoledger erase`` next to ``serve``), and a key kept in memory would
        seal new readings under a destroyed key, unreadable for good after a restart."""
        aad = patient + stream.encode()
        with self._lock:
            key = self.existing_kek(patient, stream)
            if key is None:
                self._many([("INSERT OR IGNORE INTO keks VALUES (?, ?, ?)",
                              [(patient, stream, seal(self._master, new_key(), "kek", aad))])])
                key = self.existing_kek(patient, stream)
            assert key is not None  # just inserted (or by another process: the same row)
            return key

    def existing_kek(self, patient: bytes, stream: str) -> bytes | None:
        """The patient's key-encryption key for ``stream`` if she has one (None once erased
        or never made); unlike ``kek``, never creates one (so a read-only vault can ask)."""
        with self._lock:
            rows = self._q("SELECT wrapped FROM keks WHERE patient = ? AND stream = ?",
                           (patient, stream))
            if not rows:
                self._keks.pop((patient, stream), None)
                return None
            wrapped = bytes(rows[0][0])
            cached = self._keks.get((patient, stream))
            if cached is not None and cached[0] == wrapped:
                return cached[1]
            key = open_sealed(self._master, wrapped, "kek", patient + stream.encode())
            self._keks[(patient, stream)] = (wrapped, key)
            return key

    def wrapped_under_current_kek(self, row: BatchRow) -> bool:
        """Whether ``row``'s data key is wrapped under its stream's key-encryption key as the
        database holds it now (never a cached one): custody "node" and the wrap opens. A
        key made after the stream was erased (new uploads) wraps no erased batch's key."""
        if row.custody != "node":
            return False
        rows = self._q("SELECT wrapped FROM keks WHERE patient = ? AND stream = ?",
                       (row.patient, row.stream))
        if not rows:
            return False
        try:
            kek = open_sealed(self._master, bytes(rows[0][0]), "kek",
                              row.patient + row.stream.encode())
            open_sealed(kek, row.wrapped_key, "data-key", self._aad(row))
        except GlucoledgerError:
            return False
        return True

    def erase(self, patient: bytes, stream: str) -> None:
        """Destroy the stream's KEK: every batch under it becomes unreadable."""
        with self._lock:
            self._many([("DELETE FROM keks WHERE patient = ? AND stream = ?",
                         [(patient, stream)])])
            self._keks.pop((patient, stream), None)

    # --- sealing --------------------------------------------------------------------------
    def seal(self, upload: Upload | Checked, custody_pub: bytes | None = None) -> Sealed:
        """Encrypt an upload under a fresh data key; wrap that key to ``custody_pub`` (the
        patient's key) if given, otherwise leave it for ``wrap``. Stores nothing."""
        if isinstance(upload, Upload):
            upload = upload.checked()
        aad = upload.aad()
        dk = new_key()
        blob = seal(dk, upload.plaintext, "batch", aad)
        if custody_pub is None:
            return Sealed(blob, sha256(blob), b"", "node", dk, aad)
        return Sealed(blob, sha256(blob), hpke_seal(custody_pub, dk, "data-key", aad), "self")

    def wrap(self, sealed: Sequence[tuple[bytes, str, Sealed]]) -> list[bytes]:
        """The wrapped data keys of sealed uploads (patient, stream, sealed) as their rows
        store them: for custody "node", sealed now under the stream key the database holds
        (made if none; read once per stream). Called under ``ordering``, which an erasure
        holds while it orders itself and destroys the key: a batch ordered after an erasure
        is never wrapped under the key it destroyed."""
        keks: dict[tuple[bytes, str], bytes] = {}
        out = []
        for patient, stream, s in sealed:
            if s.custody != "node":
                out.append(s.wrapped_key)
                continue
            kek = keks.get((patient, stream))
            if kek is None:
                kek = keks[(patient, stream)] = self.kek(patient, stream)
            out.append(seal(kek, s.data_key, "data-key", s.aad))
        return out

    def _aad(self, row: BatchRow) -> bytes:
        return batch_aad(self.chain, row.patient, row.uploader, row.stream, row.seq)

    def decrypt(self, row: BatchRow, blob: bytes, *,
                x25519_private: bytes | None = None, strict: bool = True
                ) -> tuple[bytes, Batch]:
        """Unwrap the data key and open ``blob`` (no hash check: the GCM tag decides).
        ``strict=False``: parse the authenticated plaintext without re-checking its
        canonical form (``read_plaintext(authenticated=True)``)."""
        aad = self._aad(row)
        try:
            if row.custody == "self":
                if x25519_private is None:
                    raise NotFoundError(
                        f"{row.describe()} is in the patient's custody: pass her X25519 key")
                dk = hpke_open(x25519_private, row.wrapped_key, "data-key", aad)
            else:
                dk = open_sealed(self.kek(row.patient, row.stream), row.wrapped_key,
                                 "data-key", aad)
            return read_plaintext(open_sealed(dk, blob, "batch", aad),
                                  authenticated=not strict)
        except NotFoundError:
            raise
        except GlucoledgerError as exc:
            raise BatchIntegrityError(
                f"{row.describe()} does not decrypt ({exc.message}); restore the blob from a "
                "backup or another node", row) from None

    def open(self, row: BatchRow, *, x25519_private: bytes | None = None,
             strict: bool = True) -> tuple[bytes, Batch]:
        """Fetch, check and decrypt a batch: (salt key, batch); ``strict`` as ``decrypt``."""
        try:
            blob = self.blobs.get(row.ct)
        except NotFoundError:
            raise BatchIntegrityError(f"{row.describe()}: its blob is missing", row) from None
        if not constant_time_equal(sha256(blob), row.ct):
            raise BatchIntegrityError(
                f"{row.describe()}: the blob's SHA-256 is not the committed ciphertext hash "
                "(the blob was altered)", row)
        return self.decrypt(row, blob, x25519_private=x25519_private, strict=strict)

    # --- the batch index ------------------------------------------------------------------
    def add_pending(self, rows: Sequence[BatchRow],
                    tags: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Record batches as pending, with their idempotency ``tags`` (tag, ct), atomically.

        A tag a committed batch holds stays with it. A tag only a pending batch holds (an
        earlier attempt whose commit failed, still unsettled) moves to the new batch: the
        documents are stored again, and the tags follow the batch that will be committed, so
        the failed attempt's row can be dropped without taking them along."""
        self._many([(f"INSERT INTO batches VALUES ({','.join('?' * len(_COLS))})",
                     [r.as_tuple() for r in rows]),
                    ("INSERT INTO tags VALUES (?, ?) ON CONFLICT(tag) DO UPDATE SET "
                     "ct = excluded.ct WHERE NOT EXISTS (SELECT 1 FROM batches b WHERE "
                     "b.ct = tags.ct AND b.status = 'committed')", tags)])

    def ordering(self) -> contextlib.AbstractContextManager[None]:
        """Held while batches go from pending through the ledger to committed (an ingest
        group: row written, ``data.commit`` ordered, row settled) and while a day's
        zero-knowledge commitment is computed from the committed rows and ordered
        (node/zkclaims.py): so the commitment holds exactly the batches ordered before it,
        as ``verify`` recomputes it. Threads of this process and other processes on the
        folder (``files.locked``). Raises StorageError."""
        return locked(self.data_dir / ".ordering.lock", "ordering uploads")

    def settle(self, committed: Sequence[tuple[bytes, int]], dropped: Sequence[bytes]) -> None:
        """Mark (ct, tx index) committed; delete refused batches' rows and their tags.

        Not synced: the ledger already says what became of each batch, and a settle lost to
        a power cut leaves "pending" rows that ``IngestService.recover`` settles again.
        """
        gone = [(ct,) for ct in dropped]
        self._many([
            ("UPDATE batches SET status = 'committed', tx_index = ? WHERE ct = ?",
             [(idx, ct) for ct, idx in committed]),
            ("DELETE FROM batches WHERE ct = ?", gone),
            ("DELETE FROM tags WHERE ct = ?", gone),
        ], durable=False)

    def forget(self, cts: Sequence[bytes]) -> None:
        """Delete the rows and tags of erased batches (their blobs are the caller's)."""
        gone = [(ct,) for ct in cts]
        self._many([("DELETE FROM batches WHERE ct = ?", gone),
                    ("DELETE FROM tags WHERE ct = ?", gone)])

    def tagged(self, tags: Sequence[bytes]) -> set[bytes]:
        """Which of ``tags`` some batch (committed or pending) holds."""
        found: set[bytes] = set()
        for i in range(0, len(tags), 500):
            part = list(tags[i:i + 500])
            found.update(bytes(r[0]) for r in self._q(
                f"SELECT tag FROM tags WHERE tag IN ({','.join('?' * len(part))})", part))
        return found

    def tag_owners(self, tags: Sequence[bytes]) -> dict[bytes, BatchRow]:
        """For each of ``tags`` some batch holds: that batch's row (committed or pending)."""
        found: dict[bytes, BatchRow] = {}
        for i in range(0, len(tags), 500):
            part = list(tags[i:i + 500])
            cols = ",".join(f"b.{c}" for c in _COLS)
            for r in self._q(f"SELECT t.tag, {cols} FROM tags t JOIN batches b ON b.ct = t.ct "
                             f"WHERE t.tag IN ({','.join('?' * len(part))})", part):
                found[bytes(r[0])] = _row(r[1:])
        return found

    def tags_from(self, prefix: bytes, limit: int = 4) -> dict[bytes, BatchRow]:
        """The tags that start with ``prefix`` (at most ``limit``), each with its batch's
        row: how a short public name of a tag (Nightscout's 12-byte ``_id``) finds the tag."""
        if not prefix:
            raise ValueError("a tag prefix is at least one byte")
        cols = ",".join(f"b.{c}" for c in _COLS)
        top = int.from_bytes(prefix, "big") + 1
        if top >> (8 * len(prefix)):  # all 0xff: no upper bound of the same length
            rows = self._q(f"SELECT t.tag, {cols} FROM tags t JOIN batches b ON b.ct = t.ct "
                           "WHERE t.tag >= ? LIMIT ?", (prefix, limit))
        else:
            rows = self._q(f"SELECT t.tag, {cols} FROM tags t JOIN batches b ON b.ct = t.ct "
                           "WHERE t.tag >= ? AND t.tag < ? LIMIT ?",
                           (prefix, top.to_bytes(len(prefix), "big"), limit))
        return {bytes(r[0]): _row(r[1:]) for r in rows if bytes(r[0]).startswith(prefix)}

    def add_tags(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        """Attach (tag, ct) idempotency tags to batches already stored: tags that may only
        exist once the ledger accepted what they stand for (a new version of a document,
        node/nsversions.py), so a refused transaction leaves none behind. A tag already held
        keeps its batch (INSERT OR IGNORE, as ``add_pending``)."""
        self._many([("INSERT OR IGNORE INTO tags VALUES (?, ?)", list(pairs))])

    def find(self, uploader: bytes, seq: int, *, status: str = "committed") -> BatchRow | None:
        rows = self._q(f"SELECT {','.join(_COLS)} FROM batches WHERE uploader = ? AND seq = ? "
                       "AND status = ?", (uploader, seq, status))
        return _row(rows[0]) if rows else None

    def by_ct(self, ct: bytes) -> BatchRow:
        rows = self._q(f"SELECT {','.join(_COLS)} FROM batches WHERE ct = ?", (ct,))
        if not rows:
            raise NotFoundError(f"no batch with ciphertext hash {ct.hex()[:16]} in the vault")
        return _row(rows[0])

    def batches(self, patient: bytes | None = None, stream: str | None = None, *,
                at: int | None = None, status: str = "committed") -> list[BatchRow]:
        sql = f"SELECT {','.join(_COLS)} FROM batches WHERE status = ?"
        args: list[Any] = [status]
        if patient is not None:
            sql += " AND patient = ?"
            args.append(patient)
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        if at is not None:
            sql += " AND start <= ? AND end > ?"
            args += [at, at]
        return [_row(r) for r in self._q(sql + " ORDER BY patient, stream, start, seq", args)]

    def last_index(self, patient: bytes) -> int:
        """The highest log index of the patient's committed batches (-1: none): what moves
        whenever new data of hers is committed (a push feed's cheap "anything new?", asked
        every 2 s for every followed patient: one seek in ``batches_last``, not a walk over
        her rows; 122 ms for 100,000 rows without it)."""
        row = self._q("SELECT MAX(tx_index) FROM batches WHERE patient = ? AND "
                      "status = 'committed'", (patient,))[0][0]
        return -1 if row is None else int(row)

    def mark(self, patient: bytes, streams: Sequence[str]) -> tuple[int, int]:
        """The highest log index of the patient's committed batches of ``streams`` (-1:
        none) and how many there are: it moves when one is committed or erased. For a
        stream of few batches (settings): it walks them."""
        top, n = self._q("SELECT MAX(tx_index), COUNT(*) FROM batches WHERE patient = ? AND "
                         f"stream IN ({','.join('?' * len(streams))}) AND "
                         "status = 'committed'", [patient, *streams])[0]
        return -1 if top is None else int(top), int(n)

    def max_committed_index(self) -> int | None:
        """The highest log index a committed row names (None: no committed row)."""
        row = self._q("SELECT MAX(tx_index) FROM batches WHERE status = 'committed'")[0][0]
        return None if row is None else int(row)

    def count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM batches WHERE status = 'committed'")[0][0])

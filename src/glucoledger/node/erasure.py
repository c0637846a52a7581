"""Erasure (GDPR article 17): order the ``erase`` transaction, then destroy keys and blobs.

Order of work (``ErasureService.erase``):

1. submit the patient's ``erase`` transaction; the state machine lists the batches it covers
   (state/access.py) and records ``erased/<ct>`` for each, so ``verify`` reports them as
   "erased by" that transaction rather than as tampering;
2. for a whole stream (no time range): delete the stream's key-encryption key, so even a
   backup of the vault database taken earlier can no longer be opened for that stream with
   the current master key's key store;
3. for each listed batch: overwrite the blob with zeros, fsync, remove it; then delete the
   batches' index rows (which hold their wrapped data keys), last, in one transaction;
4. purge the node's alert notifications for the erased streams and period;
5. make the deletions unrecoverable from the SQLite files: ``secure_delete`` (deleted
   content is zeroed), a WAL checkpoint that truncates the log, then ``VACUUM`` (free pages
   released).

Steps 1 and 2 run under the vault's ordering lock (``Vault.ordering``), which every ingest
group holds while it wraps its data keys and orders them (``Vault.wrap``): a batch is wrapped
under the stream key either before the erasure is ordered (the erasure lists it and erases
it) or after the key is gone (a new key). Before, a batch sealed before the erasure and
ordered after it kept a data key wrapped under the destroyed key, unreadable for good.

A kill -9 between steps 1 and 2 leaves the key, and a process already running (``serve``)
would go on wrapping new batches under it, which the erasure then destroys when it is
finished. So whoever takes the ordering lock first carries out step 2 of every erasure the
ledger holds that its process has not seen (``destroy_erased_keys``), before it wraps or
salts anything under a stream key.

``finish`` runs steps 2-5 again for every recorded erasure whose batches still have a row
or a blob: a kill -9 between 1 and 3 is repaired the next time the node opens its vault
(``NodeServices.vault``; the ledger is the to-do list). The rows go last, so an erasure
with none left got past step 2 (a stream key made since, for new uploads, is never
destroyed by a finished erasure). Step 2 is redone only for the key generation the erasure
targets: the stream key that wraps a remaining erased row's data key. A kill after step 2
and before the rows went, then a new stream key made by another process for new uploads
(``serve``, whose vault was open before: nothing finished the erasure there), then any
open: that new key is spared (before, it was destroyed and every new reading with it).
If no erased row left is in the node's custody, nothing tells the generation and the key
stays (the erased batches' blobs and rows still go; their data keys were never under it).
``verify`` names an erased batch whose row or blob is still there.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto import PrivateKey
from ..errors import NotFoundError, RejectedError, StorageError
from ..ledger.tx import SignedTx, Transaction, sign
from ..state.access import erased_key, erasure_key
from ..vault.blobstore import FsBlobStore
from ..vault.store import Vault
from .service import Node

__all__ = ["ErasureReport", "ErasureService", "destroy_erased_keys", "erased_by",
           "left_after_erasure"]


def erased_by(node: Node) -> Callable[[bytes], bytes | None]:
    """For ``verify_vault``: the erase transaction that destroyed a batch, if any."""

    def lookup(ct: bytes) -> bytes | None:
        record = node.state.get(erased_key(ct))
        return None if record is None else bytes(record["tx"])

    return lookup


@dataclass(frozen=True, slots=True)
class ErasureReport:
    tx_hash: bytes
    height: int
    batches: int
    streams: tuple[str, ...]
    whole: bool


def _shred(path: Path) -> None:
    """Overwrite a file with zeros and remove it (best effort against undelete)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    with open(path, "r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    path.unlink(missing_ok=True)


def scrub_sqlite(db: sqlite3.Connection) -> None:
    """Leave no deleted content in the file: zero it, truncate the WAL, release free pages."""
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class ErasureService:
    def __init__(self, node: Node, vault: Vault, *, outbox: sqlite3.Connection | None = None,
                 readers: Sequence[Any] = ()) -> None:
        self.node = node
        self.vault = vault
        self.outbox = outbox
        #: Access services whose in-memory batch caches must drop erased batches.
        self.readers = list(readers)
        # Every later delete in the vault database is zeroed in place.
        self.vault._q("PRAGMA secure_delete=ON")

    def request(self, patient: bytes, keys: Sequence[PrivateKey], streams: Sequence[str],
                start_ms: int | None = None, end_ms: int | None = None) -> SignedTx:
        body = {"streams": sorted(streams), "from": start_ms, "to": end_ms}
        return sign(Transaction(self.node.chain, "erase", body, patient,
                                self.node.next_nonce(patient)), keys)

    def erase_as(self, patient: bytes, keys: Sequence[PrivateKey], streams: Sequence[str],
                 start_ms: int | None = None, end_ms: int | None = None) -> ErasureReport:
        """``erase`` of a request signed here with custodial keys, built and ordered under the
        patient's account lock (``Node.account_lock``). Raises as ``erase`` does."""
        with self.node.account_lock(patient):
            return self.erase(self.request(patient, keys, streams, start_ms, end_ms).raw)

    def erase(self, envelope: bytes) -> ErasureReport:
        """Order the erasure, then destroy what it covers. Raises RejectedError if refused."""
        stx = SignedTx.decode(envelope)
        with self.vault.ordering():  # no batch wrapped between the order and the key step
            receipt = self.node.submit([stx.raw])[0]
            if not receipt.ok:
                raise RejectedError(f"erasure refused: {receipt.result.message}",
                                    code=receipt.result.code)
            record = self.node.state.get(erasure_key(stx.tx_hash))
            _destroy_keys(self.vault, record, finishing=False)
            self.vault.erasures_done.add(erasure_key(stx.tx_hash))
        self._destroy(record)
        return ErasureReport(stx.tx_hash, receipt.height, len(record["batches"]),
                             tuple(record["streams"]), record["whole"])

    def _destroy(self, record: dict) -> None:  # type: ignore[type-arg]
        """Steps 3-5 (and the readers' caches)."""
        patient = record["patient"]
        for reader in self.readers:
            reader.forget(record["batches"])
        for ct in record["batches"]:
            if isinstance(self.vault.blobs, FsBlobStore):
                _shred(self.vault.blobs.path(ct))
            self.vault.blobs.delete(ct)
        self.vault.forget(record["batches"])  # last: a row left means "not finished"
        if self.outbox is not None:
            lo = 0 if record["from"] is None else record["from"]
            hi = (1 << 62) if record["to"] is None else record["to"]
            marks = ",".join("?" * len(record["streams"]))
            self.outbox.execute("PRAGMA secure_delete=ON")
            self.outbox.execute(
                f"DELETE FROM outbox WHERE patient = ? AND stream IN ({marks}) AND "
                "start_ms >= ? AND start_ms < ?", (patient, *record["streams"], lo, hi))
            scrub_sqlite(self.outbox)
        try:
            with self.vault._lock:
                scrub_sqlite(self.vault._db)
        except sqlite3.Error as exc:
            raise StorageError(f"could not scrub the vault database: {exc}") from None

    def finish(self) -> int:
        """Finish every recorded erasure a crash interrupted (a batch of it still has a row
        or a blob): destroy what it covers again (idempotent); return how many."""
        n = 0
        for key in list(self.node.state.keys("erasure/")):
            record = self.node.state.get(key)
            if any(_has_row(self.vault, ct) for ct in record["batches"]):  # (rows go last)
                with self.vault.ordering():
                    _destroy_keys(self.vault, record, finishing=True)
                self._destroy(record)
                n += 1
            self.vault.erasures_done.add(key)  # none left: its key step was done before
        return n


def destroy_erased_keys(node: Node, vault: Vault) -> None:
    """Carry out step 2 of every erasure the ledger holds that this process has not seen
    done: called under ``vault.ordering()`` before anything is wrapped or salted under a
    stream key (an ingest group, a day's zero-knowledge commitment). What ``erase`` killed
    between ordering and destroying left; otherwise nothing (the key it targets is gone,
    and a key made since is spared: ``_erased_key_is_current``). Each erasure is looked at
    once per process."""
    node.refresh(wait=True)  # an erasure another process ordered is seen before we wrap
    done = vault.erasures_done
    for key in node.state.keys("erasure/"):
        if key in done:
            continue
        _destroy_keys(vault, node.state.get(key), finishing=True)
        done.add(key)


def _destroy_keys(vault: Vault, record: dict, *, finishing: bool  # type: ignore[type-arg]
                  ) -> None:
    """Step 2: a whole stream's key; when ``finishing`` (the erasure was ordered earlier,
    maybe by another process), only the generation the erasure targets. Under the ordering
    lock."""
    if record["whole"]:
        for stream in record["streams"]:
            if not finishing or _erased_key_is_current(vault, record, stream):
                vault.erase(record["patient"], stream)


def _erased_key_is_current(vault: Vault, record: dict, stream: str  # type: ignore[type-arg]
                           ) -> bool:
    """Whether the stream key the vault holds now is the one the erasure targets: the key
    that wraps an erased batch's data key (their rows, deleted last, are still there while
    an erasure is unfinished). Not so when the key was destroyed before the kill and another
    process made a new one since, for new uploads: that one stays."""
    if vault.existing_kek(record["patient"], stream) is None:
        return False
    for ct in record["batches"]:
        try:
            row = vault.by_ct(ct)
        except NotFoundError:
            continue
        if row.stream == stream and vault.wrapped_under_current_kek(row):
            return True
    return False


def _has_row(vault: Vault, ct: bytes) -> bool:
    try:
        vault.by_ct(ct)
        return True
    except NotFoundError:
        return False


def left_after_erasure(vault: Vault, ct: bytes) -> str | None:
    """What of an erased batch is still in ``vault`` ("row", "blob"), or None (``verify``;
    ``finish`` looks at the rows only, which an erasure deletes last)."""
    if _has_row(vault, ct):
        return "row"
    return "blob" if vault.blobs.exists(ct) else None

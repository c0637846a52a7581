"""The ingest service: signed uploads in, sealed blobs and ``data.commit`` transactions out.

Path of one upload (``IngestService.upload``, or ``upload_wire`` for bytes):

1. parse and validate (``Upload.from_value`` / the glucose package, done before we are called;
   or ``vault.batch.check_wire`` on the bytes: a one-pass CGM path, and for groups of at least
   256 uploads or 1 MiB it runs on worker processes, which also verify the device signatures;
   a signature a worker verified is entered in this process's verified-signature memo, so
   the state machine's own check of it costs a lookup);
2. check the uploader against the current state: registered, bound to this patient, not
   revoked, sequence above the last accepted, signed by its key (refusals raise
   ``RejectedError`` with the state machine's reason code, or ``SignatureError``);
3. seal the batch under a fresh data key, wrap the key (node KEK, or HPKE to the patient);
4. group commit: a queue collects uploads from every thread; one thread at a time writes the
   blobs and the pending index rows, submits all their ``data.commit`` transactions in one
   ``Node.submit`` (one block), and settles: accepted batches are marked committed, refused
   ones lose their blob and row. The state machine re-checks everything in step 2
   deterministically; the early check only spares the work. The group's blobs are made
   durable with one sync before anything refers to them.

Exactly once: an upload is named by (uploader, seq). A retry of the same upload (same salted
root) while it is in flight waits for the first; after it was committed it returns the first
receipt (``duplicate=True``); the same sequence with other content is refused as a replay.
A refused upload leaves nothing: no blob, no index row, no accepted transaction, the sequence
unchanged. A crash between writing and ordering leaves "pending" rows that ``recover`` (run at
start) settles against the ledger, or drops once nobody is left who could order them
(node/presence.py).

``data.commit`` is sent from the node's own account (kind "node", created at genesis) and
signed by the node key; it consumes no nonce (the uploader's sequence is the replay guard).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import codec
from ..crypto import PrivateKey, sha256
from ..crypto.hashing import hmac_sha256
from ..errors import (
    GlucoledgerError,
    InputError,
    NotFoundError,
    OutOfRangeError,
    RejectedError,
    SignatureError,
)
from ..glucose.ingest import parse_jsonl
from ..glucose.readings import MAX_CLOCK_SKEW_MS, Batch, Record
from ..ledger.tx import Transaction
from ..state.access import holds_batches
from ..state.accounts_model import account_id, account_key, single_key_policy
from ..state.data import HOUR_MS, MAX_SPAN_HOURS, TRUST_LEVELS, VOUCHED, check_span, hour_range
from ..state.devices import custody_key, device_key
from ..vault.batch import Checked, Upload, check_wires, prepare_upload
from ..vault.store import BatchRow, Sealed, Vault
from .erasure import destroy_erased_keys
from .logcheck import check_vault_present, check_vault_rows, refuse_if_mismatched
from .pool import checking_pool
from .presence import Presence
from .registry import Label
from .service import Node

__all__ = ["IngestReceipt", "IngestService", "open_vault", "split_batch"]


def _receipt_of(row: BatchRow) -> IngestReceipt:
    assert row.tx_index is not None
    return IngestReceipt(row.patient, row.stream, row.uploader, row.seq, row.count, row.ct,
                         row.trust, row.tx_hash, row.tx_index, duplicate=True)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

#: Below this many uploads (and bytes), parsing in this process beats shipping to workers.
_PARALLEL_MIN = 256
_PARALLEL_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class IngestReceipt:
    patient: bytes
    stream: str
    uploader: bytes
    seq: int
    count: int
    ct: bytes
    trust: str
    tx_hash: bytes
    tx_index: int
    duplicate: bool = False


@dataclass(eq=False, slots=True)
class _Job:
    upload: Checked
    sealed: Sealed
    trust: str
    tx_hash: bytes
    envelope: bytes
    tags: tuple[bytes, ...] = ()
    #: Set, under ``IngestService._settled``, once the group is through (receipt or error).
    finished: bool = False
    receipt: IngestReceipt | None = None
    error: GlucoledgerError | None = None

    def row(self, wrapped_key: bytes) -> BatchRow:
        """The vault row, with the data key wrapped as ``Vault.wrap`` did at ordering."""
        up = self.upload
        start, end = up.hours
        return BatchRow(self.sealed.ct, up.patient, up.stream, up.uploader, up.seq, start,
                        end, up.count, up.root, self.sealed.custody, wrapped_key, self.trust,
                        self.tx_hash, None, "pending")


def open_vault(node: Node, *, fsync: bool = True) -> Vault:
    """The node's vault. A node ordering in its own log whose ledger committed batches
    refuses (``missing_vault``) when vault.db is gone, rather than make an empty one: every
    read would fail and every new upload would hide the loss (a consortium member holds
    only the batches uploaded through it)."""
    if node.config.orderer is None:
        refuse_if_mismatched(check_vault_present(
            node.data_dir, holds_batches=holds_batches(node.state)), node.data_dir)
    return Vault(node.data_dir, node.master, node.chain, fsync=fsync)


def split_batch(batch: Batch, size: int) -> list[Batch]:
    """Cut a batch into batches of at most ``size`` records, in time order, each within the
    longest span a ``data.commit`` covers (``state.data.MAX_SPAN_HOURS`` hours)."""
    items = batch.items
    parts: list[list[Record]] = []
    for r in items:
        part = parts[-1] if parts else None
        if (part is None or len(part) >= size
                or _hours(part[0].time_ms, r.time_ms) > MAX_SPAN_HOURS):
            parts.append([r])
        else:
            part.append(r)
    return [Batch(batch.stream, tuple(p), p[0].time_ms, p[-1].time_ms, len(p)) for p in parts]


def _hours(first_ms: int, last_ms: int) -> int:
    start, end = hour_range(first_ms, last_ms)
    return (end - start) // HOUR_MS


class IngestService:
    def __init__(self, node: Node, vault: Vault, *, max_group: int = 4096,
                 workers: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self._clock = clock
        self._workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self.vault = vault
        self.max_group = max_group
        self.account = account_id("node", single_key_policy(node.node_key.public))
        self._mu = threading.Lock()
        self._queue: list[_Job] = []
        self._inflight: dict[tuple[bytes, int], _Job] = {}
        #: Notified when a group is through (``_Job.finished``): one condition for every
        #: waiter, not an Event a job (whose making was 5 % of a single upload's CPU).
        self._settled = threading.Condition(threading.Lock())
        self._committing = False
        #: A commit failed after its rows were written (storage or ordering): the next
        #: commit first settles them against the ledger (``recover``), and refuses while
        #: that fails (fail-stop: nothing acknowledged on top of an unknown outcome).
        self._unsettled = False
        self._recover_mu = threading.Lock()
        #: Called after each group is acknowledged with (patient, stream, start ms, end ms)
        #: of its committed batches; a listener only records them (node/zkdaily.py queues
        #: the days to commit for a worker thread), so the upload path does not wait on it.
        self.listeners: list[Callable[[list[tuple[bytes, str, int, int]]], None]] = []
        #: This service's mark on the folder: ``recover`` drops a row nobody can order any
        #: more only when no other service, in any process, holds one (node/presence.py).
        self.presence = Presence(node.data_dir)
        self.recover()

    # --- checks against the current state -------------------------------------------------
    def _state(self, key: str) -> dict | None:  # type: ignore[type-arg]
        raw = self.node.state.get_raw(key)  # one dict read: safe while the committer writes
        return None if raw is None else dict(codec.decode_trusted(raw))  # state: our bytes

    def _check(self, up: Checked) -> str:
        """Refuse early what the state machine would refuse; return the trust level."""
        if up.chain != self.node.chain:
            raise InputError(f"upload is for chain {up.chain!r}, this node keeps "
                             f"{self.node.chain!r}")
        u = Label(self.node.data_dir, up.uploader)  # its serial or name, when formatted
        check_span(*up.hours)  # the ledger's rule (rule set 2), before anything is stored
        ahead = up.end_ms - int(self._clock() * 1000)
        if ahead > MAX_CLOCK_SKEW_MS:
            raise OutOfRangeError(
                f"the batch of {u} (seq {up.seq}) ends {ahead // 1000} s in the future, more "
                f"than the {MAX_CLOCK_SKEW_MS // 60_000} min allowed clock skew; check the "
                "device clock")
        rec = self._state(device_key(up.uploader))
        if rec is None:
            raise RejectedError(f"unknown device or gateway {u}: the maker registers it and "
                                "the patient binds it before it uploads", code="unknown_device")
        kind = rec["kind"]
        if rec["status"] != "active":
            raise RejectedError(f"{kind} {u} was revoked; its uploads are refused",
                                code="revoked_device")
        if rec["patient"] is None:
            raise RejectedError(f"{kind} {u} is not bound to any patient: the patient binds "
                                "it first", code="unbound_device")
        if rec["patient"] != up.patient:
            raise RejectedError(f"{kind} {u} is bound to another patient, not "
                                f"{Label(self.node.data_dir, up.patient)}", code="wrong_patient")
        if up.seq == rec["seq"]:
            raise RejectedError(f"sequence {up.seq} of {kind} {u} was already accepted (a "
                                "replay with other content)", code="replayed_seq")
        if up.seq < rec["seq"]:
            raise RejectedError(f"sequence {up.seq} is below the last accepted "
                                f"({rec['seq']}) for {kind} {u}: a replayed or reordered "
                                "upload", code="reordered_seq")
        if up.vouched:  # one of our own gateways: our data.commit signature vouches (format 2)
            self._check_vouched(kind, up, u)
            return TRUST_LEVELS[kind]
        if kind == "device":
            if up.key.to_value() != rec["key"]:
                raise SignatureError(f"upload signed with a key that is not device {u}'s "
                                     "registered key")
        else:
            acct = self.node.account(up.uploader)
            if up.key.key_id not in acct.keys:
                raise SignatureError(f"upload signed with a key that is not gateway {u}'s")
        try:
            up.check_signature(self.node.trust)
        except SignatureError:
            raise SignatureError(f"the upload signature of {kind} {u} (seq {up.seq}) does not "
                                 "verify: the batch was altered or signed by another key"
                                 ) from None
        return TRUST_LEVELS[kind]

    def _check_vouched(self, kind: str, up: Checked, u: Label) -> None:
        """What the machine checks of a format-2 commit (state/data.py ``_vouched``)."""
        if kind != "gateway":
            raise RejectedError(f"device {u}'s upload needs the device's own signature",
                                code="unsigned_upload")
        if self._sponsor(up.uploader) != self._sponsor(self.account):
            raise RejectedError(f"gateway {u} is not run by this node's organization: its "
                                "uploads carry its own signature", code="not_custodian")

    def _sponsor(self, account: bytes) -> bytes | None:
        """The organization that sponsored an account: its record read, no policy parsed."""
        record = self._state(account_key(account))
        if record is None:
            raise NotFoundError(f"no account {account.hex()}")
        return record.get("sponsor")

    def _existing(self, up: Checked) -> IngestReceipt | None:
        row = self.vault.find(up.uploader, up.seq)
        if row is None and self.vault.find(up.uploader, up.seq, status="pending") is not None:
            self.recover()  # a retry after a failed settle: its commit may be on the ledger
            row = self.vault.find(up.uploader, up.seq)
        if row is None:
            return None
        if row.root != up.root:
            raise RejectedError(f"sequence {up.seq} of {Label(self.node.data_dir, up.uploader)} "
                                "was already used for another batch: a replay",
                                code="replayed_seq")
        assert row.tx_index is not None
        return IngestReceipt(row.patient, row.stream, row.uploader, row.seq, row.count, row.ct,
                             row.trust, row.tx_hash, row.tx_index, duplicate=True)

    # --- the write path -------------------------------------------------------------------
    def _prepare(self, up: Checked) -> _Job | IngestReceipt:
        rec = self._state(device_key(up.uploader))
        # Only a sequence number already used can name a committed batch (a commit advances
        # the uploader's sequence): new uploads skip the vault lookup.
        if rec is None or up.seq <= rec["seq"]:
            existing = self._existing(up)
            if existing is not None:
                return existing
        trust = self._check(up)
        custody = self._state(custody_key(up.patient))
        sealed = self.vault.seal(up, None if custody is None else custody["x25519"])
        start, end = up.hours
        body = {"patient": up.patient, "stream": up.stream, "start": start, "end": end,
                "count": up.count, "root": up.root, "ct": sealed.ct,
                "uploader": up.uploader, "seq": up.seq, "trust": trust,
                "custody": sealed.custody}
        if up.vouched:  # format 2: this transaction's node signature is the only one
            body["v"] = VOUCHED
        else:
            body["key"], body["sig"] = up.key.to_value(), up.sig
        stx = self.node.trust.sign_tx(
            Transaction(self.node.chain, "data.commit", body, self.account, up.seq),
            [self.node.node_key])
        return _Job(up, sealed, trust, stx.tx_hash, stx.raw)

    def upload(self, up: Upload | Checked) -> IngestReceipt:
        """Ingest one upload; return its receipt or raise why it was refused."""
        return self.wait(self.submit(up))

    def upload_many(self, uploads: Iterable[Upload | Checked | GlucoledgerError]
                    ) -> list[IngestReceipt | GlucoledgerError]:
        """Ingest many uploads in one group; each gets a receipt or the error refusing it.

        An error in the input (from ``check_wires``) is passed through as that upload's answer.
        """
        pending: list[_Job | IngestReceipt | GlucoledgerError] = []
        try:
            for up in uploads:
                if isinstance(up, GlucoledgerError):
                    pending.append(up)
                    continue
                try:
                    pending.append(self.submit(up, commit=False))
                except GlucoledgerError as exc:
                    pending.append(exc)
        finally:
            self.drain()  # even when the input failed part-way: settle what was queued
        out: list[IngestReceipt | GlucoledgerError] = []
        for p in pending:
            if isinstance(p, _Job):
                try:
                    out.append(self.wait(p))
                except GlucoledgerError as exc:
                    out.append(exc)
            else:
                out.append(p)
        return out

    def upload_wire(self, wires: Sequence[bytes]) -> list[IngestReceipt | GlucoledgerError]:
        """Ingest uploads received as bytes (canonical CBOR of ``Upload.to_value``).

        Parsing, validation, salted leaves and the device-signature check run on worker
        processes when the group is large enough to pay for them (``check_wires``); what they
        found is then checked against the state and committed here, as ``upload_many`` does.
        """
        return self.upload_many(self._check_wires(list(wires)))

    def _check_wires(self, wires: list[bytes]) -> Iterator[Checked | GlucoledgerError]:
        """Results in input order, yielded as the workers finish each part: the caller
        checks and seals the first uploads while the workers still verify later ones."""
        size = sum(len(w) for w in wires)
        if self._workers < 2 or (len(wires) < _PARALLEL_MIN and size < _PARALLEL_BYTES):
            yield from check_wires(wires)
            return
        pool = self._get_pool()
        step = max(1, -(-len(wires) // (self._workers * 8)))
        parts = [wires[k:k + step] for k in range(0, len(wires), step)]
        for part in pool.map(check_wires, parts):
            yield from part

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._mu:
            if self._pool is None:
                self._pool = checking_pool(self._workers)
            return self._pool

    def close(self) -> None:
        """Stop the worker processes and give up this service's mark on the folder (the node
        and the vault stay open); a closed service is not used again. A group still being
        committed keeps the mark until the process ends: its rows may yet be ordered."""
        with self._mu:
            pool, self._pool = self._pool, None
            busy = bool(self._inflight)
        if not busy:
            self.presence.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, up: Upload | Checked, *, commit: bool = True,
               tags: Sequence[bytes] = ()) -> _Job | IngestReceipt:
        """Queue one upload (and commit the queue unless ``commit=False``).

        ``tags`` are idempotency tags stored with the batch (``Vault.tagged`` finds them),
        in the same transaction as its row: only a batch that is kept keeps them.
        """
        if isinstance(up, Upload):
            up = up.checked()
        if self._unsettled or self.node.fault is not None:
            self.recover()  # fail-stop: refuse (raise) until the last failure is settled
        key = (up.uploader, up.seq)
        with self._mu:
            twin = self._inflight.get(key)
        if twin is not None:
            return self._twin(twin, up)
        prepared = self._prepare(up)
        if isinstance(prepared, IngestReceipt):
            return prepared
        prepared.tags = tuple(tags)
        with self._mu:
            twin = self._inflight.get(key)
            if twin is None:
                self._inflight[key] = prepared
                self._queue.append(prepared)
        if twin is not None:
            return self._twin(twin, up)
        if commit:
            self.drain()
        return prepared

    def _twin(self, twin: _Job, up: Checked) -> IngestReceipt:
        if twin.upload.root != up.root:
            raise RejectedError(f"sequence {up.seq} of {Label(self.node.data_dir, up.uploader)} "
                                "is already being ingested with other content: a replay",
                                code="replayed_seq")
        receipt = self.wait(twin)
        return dataclasses.replace(receipt, duplicate=True)

    def wait(self, job: _Job | IngestReceipt) -> IngestReceipt:
        """The receipt of a submitted upload, once its group is committed; or its refusal."""
        if isinstance(job, IngestReceipt):
            return job
        # Commit at once if nobody is committing (a lone upload must not idle); while someone
        # is, later jobs queue up and go together in the next group.
        self.drain()
        while True:
            with self._settled:
                if self._settled.wait_for(lambda: job.finished, 0.05):
                    break
            self.drain()
        if job.error is not None:
            raise job.error
        assert job.receipt is not None
        return job.receipt

    def drain(self) -> None:
        """Become the committer if nobody is; commit queued jobs until the queue is empty."""
        with self._mu:
            if self._committing:
                return
            self._committing = True
        try:
            while True:
                with self._mu:
                    group = self._queue[:self.max_group]
                    del self._queue[:self.max_group]
                    if not group:
                        self._committing = False
                        return
                self._commit(group)
        except BaseException:
            with self._mu:
                self._committing = False
            raise

    def _commit(self, group: list[_Job]) -> None:
        try:
            with self.vault.ordering():  # a day commitment sees all of a group or none
                done = self._order(group)
            if done and self.listeners:
                arrived = [(j.upload.patient, j.upload.stream, j.upload.start_ms,
                            j.upload.end_ms) for j, _ in done]
                for listener in self.listeners:
                    listener(arrived)
        except GlucoledgerError as exc:
            for job in group:
                if job.receipt is None and job.error is None:
                    job.error = exc
        finally:
            with self._mu:
                for job in group:
                    self._inflight.pop((job.upload.uploader, job.upload.seq), None)
                    if job.receipt is None and job.error is None:
                        job.error = GlucoledgerError("ingest failed unexpectedly; retry")
            with self._settled:
                for job in group:
                    job.finished = True
                self._settled.notify_all()

    def _order(self, group: list[_Job]) -> list[tuple[_Job, IngestReceipt]]:
        """Store, order and settle one group (under the vault's ordering lock); the
        jobs acknowledged with their receipts. A job that failed has its error set."""
        if self._unsettled:  # fail-stop: settle what the last failure left first
            self.recover()
        destroy_erased_keys(self.node, self.vault)  # before a data key is wrapped
        rows = {id(j): j.row(key) for j, key in zip(group, self.vault.wrap(
            [(j.upload.patient, j.upload.stream, j.sealed) for j in group]), strict=True)}
        written: list[_Job] = []
        try:
            self.vault.blobs.put_many([j.sealed.blob for j in group])
            written = list(group)
        except GlucoledgerError:
            for job in group:  # one by one, to know which failed
                try:
                    self.vault.blobs.put(job.sealed.blob)
                    written.append(job)
                except GlucoledgerError as exc:
                    job.error = exc
        try:
            self.vault.add_pending([rows[id(j)] for j in written],
                                   [(t, j.sealed.ct) for j in written for t in j.tags])
        except GlucoledgerError:
            for j in written:  # nothing refers to them: never ordered
                self.vault.blobs.delete(j.sealed.ct)
            raise
        try:
            receipts = self.node.submit([j.envelope for j in written])
        except GlucoledgerError as exc:
            # Maybe ordered, maybe not: the rows and blobs stay until recover() knows.
            self._unsettled = True
            for j in written:
                j.error = exc
            return []
        committed: list[tuple[bytes, int]] = []
        dropped: list[bytes] = []
        done: list[tuple[_Job, IngestReceipt]] = []
        for job, r in zip(written, receipts, strict=True):
            up = job.upload
            if r.ok:
                committed.append((job.sealed.ct, r.index))
                done.append((job, IngestReceipt(up.patient, up.stream, up.uploader, up.seq,
                                                 up.count, job.sealed.ct, job.trust,
                                                 job.tx_hash, r.index)))
            else:
                dropped.append(job.sealed.ct)
                job.error = RejectedError(r.result.message, code=r.result.code)
        try:
            self.vault.settle(committed, dropped)
        except GlucoledgerError:
            self._unsettled = True  # on the ledger but not readable yet: not acknowledged
            raise
        for ct in dropped:  # refused by the ledger: no reference remains
            self.vault.blobs.delete(ct)
        for job, receipt in done:  # acknowledged: ordered, stored, and readable
            job.receipt = receipt
        return done

    def recover(self) -> int:
        """Settle "pending" rows left by a crash or a failed commit; return how many.

        The node first stores every ordered block (``Node.sync``; it raises while it cannot,
        and then nothing is settled). A row whose ``data.commit`` is accepted in the store is
        committed. A row is dropped (row, tags and blob) only when its commit can never be
        accepted any more:

        - the uploader's sequence has reached the row's (another commit, or this one
          refused, consumed it); or
        - it was never ordered and nobody is left to order it: the node orders in its own
          log (not etcd, where a dead process's append may still be cut), the log holds no
          transactions waiting for a cut, this service is not committing the row, and no
          other ingest service, in this process or another, is alive on the folder
          (``Presence``). That is the row a kill between the vault write and the log append
          leaves when its uploader never sends that sequence again.

        Otherwise it may still be ordered (another process on this folder is committing it)
        and it stays pending: never delete the data of a transaction that may be ordered.
        """
        with self._recover_mu:
            return self._recover()

    def _recover(self) -> int:
        pending = self.vault.batches(status="pending")
        # In this order: rows written after the liveness check belong to a live writer,
        # and a job of ours finished after the snapshot is in the store when looked up.
        alone = (bool(pending) and self.node.config.orderer is None
                 and not self.presence.others_alive())
        with self._mu:
            ours = set(self._inflight)
        top = self.vault.max_committed_index()
        if pending or self._unsettled or self.node.fault is not None or (
                top is not None and top >= self.node.store.tx_count()):
            self.node.sync()  # (a consortium member's loop syncs by itself otherwise)
        refuse_if_mismatched(check_vault_rows(self.node.store, top), self.node.data_dir)
        if not pending:
            self._unsettled = False
            return 0
        alone = alone and not self.node.open_pending  # an uncut entry may still be ordered
        committed: list[tuple[bytes, int]] = []
        dropped: list[bytes] = []
        found = self.node.store.find_results([row.tx_hash for row in pending])
        for row in pending:
            ok = [t for t in found.get(row.tx_hash, []) if t.decoded_result().ok]
            rec = self._state(device_key(row.uploader))
            if ok:
                committed.append((row.ct, ok[0].idx))
            elif rec is not None and int(rec["seq"]) >= row.seq:
                dropped.append(row.ct)
            elif alone and (row.uploader, row.seq) not in ours:
                dropped.append(row.ct)  # never ordered, and nobody left who could order it
        self.vault.settle(committed, dropped)
        for ct in dropped:
            self.vault.blobs.delete(ct)
        self._unsettled = False
        return len(committed) + len(dropped)

    # --- conveniences for the CLI and the demo (the uploader side, simulated) -------------
    def next_seq(self, uploader: bytes) -> int:
        rec = self._state(device_key(uploader))
        if rec is None:
            raise NotFoundError(f"no device or gateway {Label(self.node.data_dir, uploader)}")
        return int(rec["seq"]) + 1

    def ingest_batches(self, batches: Sequence[Batch], *, patient: bytes, uploader: bytes,
                       signer: PrivateKey, batch_size: int = 288) -> list[IngestReceipt]:
        """Sign (as the uploader) and ingest batches, cut to ``batch_size`` records each.

        Idempotent by content: each part has a content identity (uploader, stream, time
        range) and a content digest (``_identity``). A part already stored answers its
        original receipt (``duplicate=True``) and stores nothing; a part whose identity is
        stored with other readings raises RejectedError ``ingest_conflict`` (nothing of the
        file is stored then). So rerunning a file, after a crash that hid the receipts or
        not, neither loses nor doubles a reading.

        Raises the first refusal (earlier batches stay committed; each is its own upload).
        """
        parts = [part for b in batches for part in split_batch(b, batch_size)]
        tags = [self._identity(uploader, patient, part) for part in parts]
        owners = self.committed_owners([t for pair in tags for t in pair])
        out: list[IngestReceipt | None] = []
        for part, (ident, content, begin) in zip(parts, tags, strict=True):
            same, other = owners.get(content), owners.get(ident) or owners.get(begin)
            if same is not None:
                out.append(_receipt_of(same))
            elif other is not None:
                raise RejectedError(
                    f"the {part.stream} readings of {Label(self.node.data_dir, uploader)} from "
                    f"{_iso(part.start_ms)} to {_iso(part.end_ms)} were already ingested with "
                    f"other values (batch seq {other.seq}, log index {other.tx_index}): the "
                    "file was changed after it was ingested; nothing of it was stored. Ingest "
                    "only the new readings, or correct them through the device's next upload",
                    code="ingest_conflict")
            else:
                out.append(None)
        fresh = [i for i, r in enumerate(out) if r is None]
        if fresh:  # tags a crashed attempt's pending rows hold go to this one (add_pending)
            seq = self.next_seq(uploader)
            jobs: list[_Job | IngestReceipt | GlucoledgerError] = []
            try:
                for k, i in enumerate(fresh):
                    up = prepare_upload(self.node.chain, patient, uploader, seq + k, parts[i],
                                        signer)
                    try:
                        jobs.append(self.submit(up, commit=False, tags=tags[i]))
                    except GlucoledgerError as exc:
                        jobs.append(exc)
            finally:
                self.drain()
            for i, job in zip(fresh, jobs, strict=True):
                if isinstance(job, GlucoledgerError):
                    raise job
                out[i] = self.wait(job)
        return [r for r in out if r is not None]

    def _identity(self, uploader: bytes, patient: bytes,
                  part: Batch) -> tuple[bytes, bytes, bytes]:
        """(identity tag, content tag, start tag) of a part: HMACs under a key derived from
        the master key, so vault.db does not let anyone test guesses of readings against
        them. The start tag (uploader, stream, first time) makes a part that begins where a
        stored one began but ends elsewhere (a file that grew at its end) a conflict rather
        than a second copy of the shared readings."""
        key = hmac_sha256(self.node.master, b"glucoledger ingest identity v1")
        ident = hmac_sha256(key, b"id|" + codec.encode(
            [uploader, patient, part.stream, part.start_ms, part.end_ms]))
        begin = hmac_sha256(key, b"start|" + codec.encode(
            [uploader, patient, part.stream, part.start_ms]))
        digest = sha256(codec.encode([r.to_value() for r in part.items]))
        return ident, hmac_sha256(key, b"content|" + ident + digest), begin

    def committed_owners(self, tags: Sequence[bytes]) -> dict[bytes, BatchRow]:
        """The committed batch holding each of ``tags`` that one holds. Pending rows are
        settled first (``recover``): a crash may have hidden a commit the ledger accepted.
        A row still pending after that is an attempt whose commit never held (a crash, a
        full disk, a lost quorum): nothing of it was acknowledged, so its content is not a
        repeat, and a new attempt takes its tags over (``Vault.add_pending``)."""
        owners = self.vault.tag_owners(tags)
        if any(r.status != "committed" for r in owners.values()):
            self.recover()
            owners = self.vault.tag_owners(tags)
        return {t: r for t, r in owners.items() if r.status == "committed"}

    def ingest_jsonl(self, path: Path, *, patient: bytes, uploader: bytes, signer: PrivateKey,
                     batch_size: int = 288,
                     clock: Callable[[], float] = time.time) -> list[IngestReceipt]:
        """Ingest a JSON-lines file (docs/ingest-format.md). All or nothing per file parse."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        batches = parse_jsonl(text.splitlines(), now_ms=int(clock() * 1000))
        return self.ingest_batches(batches, patient=patient, uploader=uploader, signer=signer,
                                   batch_size=batch_size)

"""The node: the service layer every edge (CLI, HTTP) calls.

It wires the orderer, the chain store, the replica and the node key together, and does all
the input and output the pure core must not: it reads the clock (for cut entries), talks to
the orderer and the database, and spreads signature checks over the machine's cores.

Write path: ``submit(envelopes)`` appends the transactions and a cut entry to the orderer in
one durable append, then ``sync()`` reads the log, derives blocks with the replica, signs a
checkpoint for each block and stores it, and the receipts say what happened to each
transaction (``ok`` or the reason it was refused).

A consortium member (``glucoledger node``) runs the write path in two threads instead
(``start_group_commit``): submits hand their entries to one writer thread
(``groupcommit``) that packs concurrent submits into full appends, each ending in a cut,
and then wait, without the node's lock, until the member loop (the only caller of
``sync`` there) has stored the block holding their last entry. Acknowledged only then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, overload

from .. import state
from ..crypto import PrivateKey, PublicKey, generate
from ..errors import (
    ConsistencyError,
    GlucoledgerError,
    MalformedError,
    NotFoundError,
    OrderingError,
    RejectedError,
    StorageError,
)
from ..files import atomic_write_json, read_json
from ..ledger import merkle
from ..ledger.block import BlockHeader, Result
from ..ledger.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from ..ledger.log import (
    KIND_CUT,
    KIND_TX,
    MAX_CUT_AHEAD_MS,
    Cut,
    decode_entry,
    encode_cut,
    encode_tx_entry,
)
from ..ledger.trust import TrustCache
from ..ledger.tx import SignedTx, Transaction, sign
from ..ordering.base import Orderer
from ..ordering.embedded import EmbeddedOrderer
from ..ordering.etcd import MAX_BATCH_ENTRIES, EtcdOrderer
from ..state.accounts import NEW_ACCESS_RECORDS, NEW_RULES
from ..state.accounts_model import Account, find_account, single_key_policy
from ..state.governance import writers_in_force
from ..state.replica import Block, Replica, ReplicaFailedError, precheck
from .chainstore import ChainStore
from .groupcommit import GroupCommit
from .keystore import Wallet, create_master_key, load_master_key
from .logcheck import ETCD_HINT, LogMismatch, check_chain, check_log, refuse_if_mismatched
from .pool import checking_pool
from .setup import build_atomically
from .verify import VerifyReport, verify_store

__all__ = ["FutureCutError", "GenesisMismatchError", "Node", "NodeConfig", "Receipt",
           "verify_folder"]

_PARALLEL_MIN = 256  # below this many transactions, checking in-process is faster
_CHUNK = 2048
_CUT = bytes([KIND_CUT])
_TX = bytes([KIND_TX])
log = logging.getLogger(__name__)


class GenesisMismatchError(ConsistencyError):
    """Block 0 is not the genesis in the member's genesis.json
    (``genesis_file.check_genesis``)."""

    code = "genesis_mismatch"


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: bytes | None
    index: int  # leaf index in the global log
    height: int
    result: Result

    @property
    def ok(self) -> bool:
        return self.result.ok


@dataclass(frozen=True, slots=True)
class NodeConfig:
    chain: str
    name: str
    #: ``etcd://host:port,...`` for a consortium node; None: the embedded orderer.
    orderer: str | None = None

    @classmethod
    def load(cls, data_dir: Path) -> NodeConfig:
        path = data_dir / "node.json"
        doc = read_json(path, what="the node's settings",
                        missing=f"no node in {data_dir}: run `glucoledger init --data "
                                f"{data_dir}` (or `demo`)")
        try:
            url = doc.get("orderer")
            return cls(str(doc["chain"]), str(doc["name"]), None if url is None else str(url))
        except (AttributeError, KeyError):
            raise StorageError(f"{path} is damaged: it must hold chain and name; restore it "
                               "from a backup") from None

    def save(self, data_dir: Path) -> None:
        doc: dict[str, str] = {"chain": self.chain, "name": self.name}
        if self.orderer is not None:
            doc["orderer"] = self.orderer
        atomic_write_json(data_dir / "node.json", doc)

    def open_orderer(self, data_dir: Path) -> Orderer:
        """The orderer this node was set up with (embedded unless node.json names etcd)."""
        if self.orderer is None:
            return EmbeddedOrderer(data_dir / "orderer.db")
        return EtcdOrderer.from_url(self.orderer, etcd_chain_key(self.chain), writer=self.name)


def etcd_chain_key(chain: str) -> str:
    """The etcd key prefix name of a chain (etcd keys allow fewer characters than origins)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in chain)[:64]


def _pool_precheck(envelopes: list[bytes]) -> list[bool | None]:
    return precheck(envelopes)


class _LazyChecks:
    """Signature-check results that arrive from worker processes part by part."""

    def __init__(self, part_of: dict[int, int],
                 parts: list[tuple[list[int], Future[list[bool | None]]]],
                 known: dict[int, bool | None] | None = None,
                 started: dict[int, tuple[_LazyChecks, int]] | None = None) -> None:
        self._part_of = part_of
        self._parts = parts
        self._done: dict[int, bool | None] = dict(known or {})
        #: Items whose check an earlier call started (``Node.submit``): (checks, their index).
        self._started = started or {}

    def get(self, i: int) -> bool | None:
        part = self._part_of.get(i)
        if part is None:
            earlier = self._started.get(i)
            if earlier is not None:
                return earlier[0].get(earlier[1])
            return self._done.get(i)
        if i not in self._done:
            chunk, fut = self._parts[part]
            self._done.update(zip(chunk, fut.result(), strict=True))
        return self._done[i]


class _LazySequence(Sequence[bool | None]):
    """``_LazyChecks`` read as a sequence of ``n`` results."""

    def __init__(self, checks: _LazyChecks, n: int) -> None:
        self._checks = checks
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> bool | None: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[bool | None]: ...

    def __getitem__(self, i: int | slice) -> bool | None | Sequence[bool | None]:
        if isinstance(i, slice):
            return [self._checks.get(k) for k in range(self._n)[i]]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._checks.get(i % self._n)


class FutureCutError(ReplicaFailedError):
    """A cut that would close the open block lies further ahead of this node's clock than
    members' clocks may differ: the node derives nothing from it (``Node.sync``)."""

    code = "cut_from_future"


def _when(time_ms: int) -> str:
    try:
        return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{time_ms} ms after 1970"


class Node:
    """A running node over one data folder."""

    def __init__(self, data_dir: Path, *, orderer: Orderer | None = None,
                 workers: int | None = None, clock: Callable[[], float] = time.time,
                 log_check: bool = True) -> None:
        """Open the node in ``data_dir``. Before anything can be appended the store is
        checked against its ordered log, embedded or etcd (``logcheck``): a store ahead of
        its log, or of another history, refuses to start (StorageError naming both ends and
        what to do); so does an etcd log that cannot be read (fail closed). ``log_check=False``
        is for ``ConsortiumNode``, which makes the same check itself and refuses as a member
        (status, peers, 503) instead of not starting."""
        self.data_dir = Path(data_dir)
        self.config = NodeConfig.load(self.data_dir)
        self.master = load_master_key(self.data_dir)
        self.wallet = Wallet(self.data_dir, self.master)
        self.node_key = self.wallet.load("node")
        #: The key that signs the checkpoint of block ``height``. A consortium member's node
        #: key rotates at a height governance states (``node.consortium`` replaces this).
        self.key_for_height: Callable[[int], PrivateKey] = lambda _height: self.node_key
        self.store = ChainStore(self.data_dir / "chain.db")
        found = check_chain(self.store, self.config.chain)
        if found:
            self.store.close()
            refuse_if_mismatched(found, self.data_dir)
        embedded = orderer is None and self.config.orderer is None
        if embedded and not (self.data_dir / "orderer.db").exists():
            # Opening would create an empty log under a store that holds blocks.
            found = check_log(self.store, None, log_name="orderer.db", log_missing=True)
            if found:
                self.store.close()
                refuse_if_mismatched(found, self.data_dir)
        self.orderer = orderer or self.config.open_orderer(self.data_dir)
        #: Entries per append the orderer takes (etcd: 127); submit() splits batches to fit.
        self._batch = MAX_BATCH_ENTRIES if isinstance(self.orderer, EtcdOrderer) else 0
        if isinstance(self.orderer, EmbeddedOrderer) or log_check:
            # The log and the store check each other before anything is appended.
            found = self.log_mismatches()
            if found:
                self.store.close()
                self.orderer.close()
                refuse_if_mismatched(found, self.data_dir)
        self._clock = clock
        #: How far ahead of this node's clock a cut may lie (``ledger.log.MAX_CUT_AHEAD_MS``);
        #: None with the embedded orderer, whose only writer is this node.
        self.cuts_ahead_ms: int | None = (None if isinstance(self.orderer, EmbeddedOrderer)
                                          else MAX_CUT_AHEAD_MS)
        #: Whether entries count only when their writer is a member in force (``_counted``).
        self._by_writer = not isinstance(self.orderer, EmbeddedOrderer)
        self._in_force: tuple[int, frozenset[str] | None] | None = None
        self._skipped: dict[str, int] = {}
        self._lock = threading.RLock()
        self._workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: Executor | None = None
        #: Checks ``submit`` started before ordering, by envelope (``_check_early``).
        self._early: dict[bytes, tuple[_LazyChecks, int]] = {}
        #: What this node already established (verified signatures, its own envelopes,
        #: envelopes decoded once); handed to its replica and services, never process-wide.
        self.trust = TrustCache()
        try:
            self.replica = self._load_replica()
        except (MalformedError, ValueError) as exc:
            self.close()
            raise StorageError(
                f"the chain store in {self.data_dir} is damaged ({exc}); run `glucoledger verify` "
                "to find where, and restore it from another node or a backup",
                code="damaged_store") from None
        last = self.replica.last
        self._read_pos = last.cut + 1 if last else 0
        #: Transactions left in the open block at the end of the log by the last sync().
        self.open_pending = 0
        #: Whether the last sync() reached the end of the log (not stopped by max_reads).
        self.caught_up = True
        #: Cut position of the last stored block; waiters hear of each new one.
        self.applied_cut = last.cut if last else -1
        self._applied = threading.Condition()
        self._waiters = 0
        self._writer: GroupCommit | None = None
        #: Called (by the syncing thread) after new blocks are stored, before waiting
        #: submits are released.
        self.on_blocks: Callable[[], None] | None = None
        #: Called (by the syncing thread, under the node's lock) with each block once it is
        #: stored: cheap and never raising (a service's view of what changed, e.g. the
        #: Nightscout feed's document versions).
        self.block_observers: list[Callable[[Block], None]] = []
        self._follower: int | None = None
        #: Why this node stopped working (None while it works): set by ``halt``.
        self.halted: str | None = None
        self._account_locks: dict[bytes, threading.RLock] = {}
        self._account_locks_mu = threading.Lock()
        #: Where block 0 must come from when others write the log (``_check_genesis_entry``):
        #: the member's genesis.json; None with the embedded orderer (this node wrote it).
        self.genesis_file: Path | None = (None if isinstance(self.orderer, EmbeddedOrderer)
                                          else self.data_dir / "genesis.json")
        #: Whether block 0 of this store was found to be genesis.json's envelope (derived
        #: here, imported, or checked in the store by ``ConsortiumNode`` at start).
        self.genesis_checked = False
        #: Set when a block could not be stored (fail-stop): the replica in memory may be
        #: ahead of the store, so nothing is appended or acknowledged until ``sync`` has
        #: re-derived, from the log, every block the store lacks (see ``_reestablish``).
        self.fault: StorageError | None = None

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def init(cls, data_dir: Path, *, chain: str = "glucoledger/local", name: str = "node-1",
             seed: Callable[[Node], object] | None = None,
             access_records: int = NEW_ACCESS_RECORDS, rules: int = NEW_RULES,
             **kwargs: Any) -> Node:
        """Create a new single-organization chain in ``data_dir`` and return its node.
        ``access_records``: the chain's access record format (state/access.py; 1 is the
        format of chains founded before 2, kept for tests that compare the two).
        ``rules``: the chain's state rule set (state/accounts.py ``RULES``; likewise).

        Atomic (``setup.build_atomically``): everything (settings, master key, wallet,
        genesis block and, with ``seed``, what ``seed(node)`` adds, such as the demo's
        people and data) is built in a temporary sibling folder, made durable, and renamed
        to ``data_dir`` last. A crash leaves no ``data_dir`` (rerun the same command) or a
        complete node, never a half-made one.
        """
        data_dir = Path(data_dir)
        if "orderer" in kwargs:
            raise ValueError("Node.init makes a node with its own embedded log; a consortium "
                             "member is set up from a genesis file")

        def build(tmp: Path) -> None:
            NodeConfig(chain, name).save(tmp)
            create_master_key(tmp)
            wallet = Wallet(tmp, load_master_key(tmp))
            node_key, org_key = generate("ed25519"), generate("ed25519")
            wallet.save("node", node_key)
            wallet.save("org", org_key)
            with cls(tmp, **kwargs) as node:
                receipts = node.submit([genesis_envelope(chain, [(name, org_key, node_key)], 1,
                                                         access_records=access_records,
                                                         rules=rules)])
                if not receipts[0].ok:  # pragma: no cover - a fresh chain accepts its genesis
                    raise StorageError(f"genesis refused: {receipts[0].result.message}")
                if seed is not None:
                    seed(node)

        build_atomically(data_dir, build)
        return cls(data_dir, **kwargs)

    def log_mismatches(self) -> list[LogMismatch]:
        """Where the store and its ordered log disagree (``logcheck.check_log``); empty when
        they agree. An etcd log that cannot be read is an ``unreadable_log`` mismatch."""
        if isinstance(self.orderer, EmbeddedOrderer):
            return check_log(self.store, self.orderer, log_name=self.orderer.path.name)
        name = f"the etcd log of chain {self.config.chain!r}"
        return check_log(self.store, self.orderer, log_name=name, hint=ETCD_HINT)

    def start_group_commit(self) -> None:
        """Hand submits to a writer thread (``groupcommit``); from now on another thread (the
        member loop) must call ``sync()`` continually, and submits never sync themselves."""
        if self._writer is None:
            self._writer = GroupCommit(self.orderer, lambda: self.replica.next_height,
                                       self._clock, max_entries=self._batch or 1_000)

    def follow_here(self) -> None:
        """Mark the calling thread as the follower: its submits take the direct path."""
        self._follower = threading.get_ident()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if hasattr(self, "orderer"):
                self.orderer.close()
            if hasattr(self, "store"):
                self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing --------------------------------------------------------------------------
    def submit(self, envelopes: Sequence[bytes], *, timeout: float = 30.0,
               retry: bool = False) -> list[Receipt]:
        """Order ``envelopes``, wait until they are in blocks, and say what became of each.

        On an orderer that takes at most N entries per append (etcd: 127) the batch goes in
        chunks; other writers' entries may fall between chunks, and a cut gone stale (another
        writer closed that height first) is simply cut again.

        ``retry=True`` (a client submitting again after an OrderingError, not knowing whether
        the first attempt landed): an envelope already accepted is not appended again, and
        each receipt names the first accepted occurrence, so a retried append that landed
        twice reads as applied once (the copy is refused as a replayed nonce). Without it
        every envelope is ordered, and a replay gets its own (refused) receipt.

        Raises OrderingError when the orderer cannot take them.
        """
        if not envelopes:
            return []
        early = self._check_early(envelopes)
        try:
            return self._submit(envelopes, timeout, retry)
        finally:
            self._forget_early(early)

    def _submit(self, envelopes: Sequence[bytes], timeout: float, retry: bool
                ) -> list[Receipt]:
        hashes = [_tx_hash(self.trust, e) for e in envelopes]
        writer = self._writer
        if writer is not None and threading.get_ident() != self._follower:
            return self._submit_grouped(writer, envelopes, hashes, timeout, retry)
        with self._lock:
            self.sync()
            todo = self._to_order(hashes, retry)
            positions: dict[int, int] = {}
            if todo:
                entries = [encode_tx_entry(envelopes[i]) for i in todo]
                step = self._batch or len(entries) + 1
                for k in range(0, len(entries), step):
                    chunk = entries[k:k + step]
                    if len(chunk) < step:  # room left in the last chunk: the cut goes with it
                        chunk.append(encode_cut(self.replica.next_height, self._now_ms()))
                    first = self.orderer.append(chunk)
                    for j in range(min(step, len(entries) - k)):
                        positions[todo[k + j]] = first + j
                if len(entries) % step == 0:
                    self.orderer.append([encode_cut(self.replica.next_height, self._now_ms())])
            deadline = time.monotonic() + timeout
            while True:
                self.sync()
                receipts = self._stored_receipts(hashes, positions, retry)
                if receipts is not None:
                    return receipts
                if time.monotonic() > deadline:
                    raise OrderingError("transactions were ordered but no block closed them in "
                                        f"{timeout:.0f} s; they will be applied when one does")
                # Another writer interleaved and our cut went stale: cut again.
                if self.open_pending:
                    self.orderer.append([encode_cut(self.replica.next_height, self._now_ms())])
                else:
                    time.sleep(0.005)

    def _submit_grouped(self, writer: GroupCommit, envelopes: Sequence[bytes],
                        hashes: list[bytes | None], timeout: float, retry: bool
                        ) -> list[Receipt]:
        """submit() through the group-commit writer: no lock held while etcd and the
        follower work; acknowledged once the block holding the last entry is stored here."""
        if self.fault is not None:
            raise self.fault
        deadline = time.monotonic() + timeout
        todo = self._to_order(hashes, retry)
        positions: dict[int, int] = {}
        with self._applied:
            self._waiters += 1
        try:
            if todo:
                got = writer.append([encode_tx_entry(envelopes[i]) for i in todo], timeout)
                positions = dict(zip(todo, got, strict=True))
            upto = max(positions.values(), default=-1)
            with self._applied:
                while self.applied_cut < upto:
                    if self.halted is not None:
                        raise OrderingError(f"this node stopped: {self.halted}; submit to "
                                            "another member", code="node_halted")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise OrderingError(
                            "transactions were ordered but no block closed them in "
                            f"{timeout:.0f} s; they will be applied when one does")
                    self._applied.wait(min(left, 0.5))
        finally:
            with self._applied:
                self._waiters -= 1
        receipts = self._stored_receipts(hashes, positions, retry)
        if receipts is None:  # pragma: no cover - every position up to applied_cut is stored
            raise OrderingError("transactions were ordered but their receipts are missing; "
                                "submit again with retry to read them")
        return receipts

    def _to_order(self, hashes: list[bytes | None], retry: bool) -> list[int]:
        """The indexes of the envelopes to append: all of them, or with ``retry`` all but
        those already *accepted* (one refused before, a nonce gap say, may be valid now and
        is ordered again). The hashes are looked up together, not one query each."""
        found = self.store.find_results([h for h in hashes if h is not None]) if retry else {}
        known = {h for h, rows in found.items() if any(r.decoded_result().ok for r in rows)}
        return [i for i, h in enumerate(hashes) if h is None or h not in known]

    def _stored_receipts(self, hashes: list[bytes | None], positions: dict[int, int],
                         retry: bool) -> list[Receipt] | None:
        """Each envelope's receipt from the store, or None while one is not stored yet.

        One query for the rows at this submit's positions and, with ``retry``, one for the
        rows of its hashes: never one a transaction."""
        at = (self.store.results_at_positions(min(positions.values()), max(positions.values()))
              if positions else {})
        found = self.store.find_results([h for h in hashes if h is not None]) if retry else {}
        out: list[Receipt] = []
        for i, h in enumerate(hashes):
            rows = found.get(h, []) if h is not None else []
            mine = positions.get(i)
            if mine is not None and not any(r.pos == mine for r in rows):
                rows = at.get(mine, [])
            if not rows:
                return None
            ok = [r for r in rows if r.decoded_result().ok] if retry else []
            pick = ok[0] if ok else next((r for r in rows if r.pos == mine), rows[0])
            out.append(Receipt(pick.hash, pick.idx, pick.height, pick.decoded_result()))
        return out

    def _load_replica(self) -> Replica:
        last = self.store.last_header()
        tree = merkle.CompactTree(last.log_size, self.store.frontier()) if last else None
        return Replica(self.config.chain, state.State(self.store.load_state()), tree, last,
                       self.trust)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def now_ms(self) -> int:
        """The node's clock, in epoch ms: the clock block times come from (a test seam)."""
        return self._now_ms()

    def sync(self, max_reads: int | None = None) -> int:
        """Apply every ordered entry not yet applied; return how many blocks were made.

        Transactions of a block still open at the end of the log are not kept in memory: they
        are read again from the log once their cut arrives, so a crash loses nothing.
        ``max_reads``: return after that many reads from the orderer even if the log goes on
        (a follower under load must also get to sign and collect; the next call continues).
        """
        made = 0
        reads = 0
        with self._lock:
            if self.fault is not None:
                self._reestablish()
            while max_reads is None or reads < max_reads:
                reads += 1
                entries = self.orderer.read(self._read_pos, _CHUNK)
                sig_ok = self._precheck(entries)
                for i, entry in enumerate(entries):
                    try:
                        if self._read_pos + i == 0 and self.genesis_file is not None:
                            self._check_genesis_entry(entry)
                        if self._by_writer:
                            entry = self._counted(self._read_pos + i, entry)
                        if entry[:1] == _CUT and self.cuts_ahead_ms is not None:
                            self._check_cut(self._read_pos + i, entry)
                    except (OrderingError, FutureCutError, GenesisMismatchError):
                        self._rewind()  # nothing derived from here: read again next time
                        if made:
                            self._notify_applied()  # the blocks stored before it stand
                        raise
                    block = self.replica.feed(self._read_pos + i, entry, sig_ok=sig_ok.get(i))
                    if block is not None:
                        try:
                            self._store_block(block)
                        except StorageError as exc:
                            raise self._fail_stop(exc) from None
                        made += 1
                self._read_pos += len(entries)
                if made:
                    self._notify_applied()
                # An orderer may answer with fewer entries than asked (etcd: 1000 a read):
                # only an empty answer means the end of the log.
                if not entries:
                    self.caught_up = True
                    self.fault = None  # every ordered block is stored again
                    self.open_pending = self.replica.pending
                    if self.open_pending and self._writer is not None and self._waiters:
                        # Our transactions may sit behind a stale cut: cut at the open height.
                        self._writer.request_cut(self._read_pos)
                    if self.replica.pending:
                        self._rewind()
                    return made
            self.open_pending = self.replica.pending
            self.caught_up = False
            return made

    def _check_genesis_entry(self, entry: bytes) -> None:
        """Position 0 of a log others write must be exactly the genesis envelope of this
        member's genesis.json (``genesis_file.check_genesis``, the check a rejoin makes):
        whoever appends first would otherwise choose the members, the threshold and whose
        requests count. Raises GenesisMismatchError naming the writer of position 0 and
        what to do; nothing is derived."""
        from .genesis_file import check_genesis

        assert self.genesis_file is not None
        writer = self.orderer.writer_of(0)
        by = f"member {writer!r}" if writer else "an unknown writer"
        chain = etcd_chain_key(self.config.chain)
        check_genesis(
            self.data_dir, entry[1:] if entry[:1] == _TX else None,
            f"position 0 of the ordered log (appended by {by})",
            f"another genesis was placed first. This node derives and signs nothing from "
            f"this log and reconciles no etcd users by it. Tell the consortium's operators: "
            f"revoke the etcd user of {by} (`glucoledger consortium etcd-user --revoke`), "
            f"delete the chain's keys (etcdctl del --prefix /glucoledger/{chain}/), run "
            "`glucoledger consortium init` again with the signed genesis file, then restart "
            "the nodes")
        self.genesis_checked = True

    def refresh(self, *, wait: bool = False) -> int:
        """Catch up with what another process on this folder ordered (a command run next to
        ``serve``: a recovery that rotated a key out, a new uploader's gateway, a grant), so
        that what this process reads of the state is current; return how many blocks were
        made. Costs one SQLite pragma when nobody else appended. Does nothing for a
        consortium member (its loop follows etcd); while another thread of this process
        holds the node (it is writing, and syncs as it does), nothing either, unless
        ``wait``: then it waits for that thread (for a caller that must not miss what was
        ordered before it looked: ``erasure.destroy_erased_keys``)."""
        if self._writer is not None or not isinstance(self.orderer, EmbeddedOrderer):
            return 0
        if not self._lock.acquire(blocking=wait):
            return 0
        try:
            return self.sync() if self.orderer.others_appended() else 0
        finally:
            self._lock.release()

    def _rewind(self) -> None:
        """Forget the open block's transactions and read the log again from the first
        position after the last block (they are read again once their cut arrives)."""
        self.replica.discard_pending()
        last = self.replica.last
        self._read_pos = last.cut + 1 if last else 0

    def _counted(self, position: int, entry: bytes) -> bytes:
        """The entry as the replica takes it: itself when its writer is a member in force at
        the open height (``state.governance.writers_in_force``), otherwise an empty entry,
        which every replica skips. Every node reads the same writer from the same etcd key
        and the same member set from the same state, so all skip alike; a removed member
        whose etcd user still works (the root holder's node was down) or a writer outside
        the consortium orders nothing: not a transaction, not a cut."""
        height = self.replica.next_height
        if self._in_force is None or self._in_force[0] != height:
            self._in_force = (height, writers_in_force(self.replica.state, height))
        allowed = self._in_force[1]
        if allowed is None:
            return entry
        writer = self.orderer.writer_of(position)
        if writer is None:  # never skip what another node may count: stop this round
            raise OrderingError(f"the ordered log does not say who wrote position {position}; "
                                "it is read again on the next round")
        if writer in allowed:
            return entry
        seen = self._skipped[writer] = self._skipped.get(writer, 0) + 1
        if seen == 1 or seen % 1000 == 0:
            log.warning("log position %d: skipped %d entries of %s, not a member in force "
                        "at block %d", position, seen, writer, height)
        return b""

    def _check_cut(self, position: int, entry: bytes) -> None:
        """Refuse a cut that would close the open block at a time too far ahead of this
        node's clock. Nothing is derived from it (the caller rewinds to the last block), so
        the node derives on from there once the cause is removed (its clock set right, or
        the log restored to before the cut)."""
        assert self.cuts_ahead_ms is not None
        try:
            cut = decode_entry(entry)
        except MalformedError:
            return  # skipped by the replica as every node skips it
        if (not isinstance(cut, Cut) or cut.height != self.replica.next_height
                or not self.replica.pending):
            return  # ignored by the replica: it closes nothing
        now = self._now_ms()
        if cut.time_ms <= now + self.cuts_ahead_ms:
            return
        writer = self.orderer.writer_of(position)
        by = f"appended by member {writer!r}" if writer else "appended by an unknown writer"
        who = repr(writer) if writer else "its writer"
        ahead = timedelta(milliseconds=cut.time_ms - now)
        raise FutureCutError(
            f"the cut closing block {cut.height} at log position {position} ({by}) says "
            f"{_when(cut.time_ms)}, {str(ahead).split('.')[0]} ahead of this node's clock "
            f"(at most {self.cuts_ahead_ms // 60_000} min allowed): nothing was derived from "
            "it. If this machine's clock is behind, set it right (NTP) and restart the node; "
            "otherwise a member wrote a cut from the future: tell the consortium's operators "
            f"to restore the etcd cluster from a snapshot taken before position {position} "
            f"and to remove {who} by governance")

    def halt(self, reason: str) -> None:
        """Stop serving: submits waiting for a block fail at once with ``reason``."""
        self.halted = reason
        with self._applied:
            self._applied.notify_all()

    def _fail_stop(self, exc: StorageError) -> StorageError:
        """A block could not be stored: stop appending and acknowledging until ``sync``
        has stored every ordered block again. The store is still at the previous block
        boundary (one SQLite transaction a block); the replica in memory is not."""
        fault = self.fault = StorageError(
            f"{exc.message}. The node stopped accepting writes: it retries on the next "
            "request and accepts again once every ordered block is stored; what was ordered "
            "before the failure (this request, if it got that far) takes effect then, so look "
            "(`glucoledger blocks`, the patient's audit) before sending it again",
            code=exc.code)
        try:
            self._reestablish()
        except GlucoledgerError:
            pass  # the next sync retries; the fault stands until then
        return fault

    def _reestablish(self) -> None:
        """Rebuild the replica from what the store holds, and read the log again from the
        first position after its last block: the blocks the store lacks are derived again,
        identical (the same log in gives the same blocks out), never skipped."""
        try:
            replica = self._load_replica()
        except (MalformedError, ValueError) as exc:
            raise StorageError(f"the chain store in {self.data_dir} is damaged ({exc}); run "
                               "`glucoledger verify`", code="damaged_store") from None
        except GlucoledgerError as exc:
            assert self.fault is not None
            raise StorageError(f"{self.fault.message} (re-reading the store failed: "
                               f"{exc.message})", code=self.fault.code) from None
        self.replica = replica
        last = replica.last
        self._read_pos = last.cut + 1 if last else 0

    def _notify_applied(self) -> None:
        last = self.replica.last
        if self.on_blocks is not None:
            self.on_blocks()  # e.g. the member's status file, before anyone is acknowledged
        with self._applied:
            self.applied_cut = last.cut if last else -1
            self._applied.notify_all()

    def _precheck(self, entries: list[bytes]) -> _LazyChecks:
        """Start signature checks of the transaction entries on the worker processes.

        Returns at once; the replica asks for each result as it reaches that entry, so the
        main process applies early transactions while the workers check later ones. An
        envelope whose check ``submit`` already started (``_check_early``) is not sent again.
        """
        idx = [i for i, e in enumerate(entries) if e[:1] == _TX]
        started: dict[int, tuple[_LazyChecks, int]] = {}
        if self._early:
            for i in idx:
                found = self._early.get(entries[i][1:])
                if found is not None:
                    started[i] = found
            if started:
                idx = [i for i in idx if i not in started]
        if len(idx) < _PARALLEL_MIN or self._workers < 2:
            return _LazyChecks({}, [], started=started)
        mine = {i for i in idx if self.trust.signed_here(entries[i][1:])}
        idx = [i for i in idx if i not in mine]
        known: dict[int, bool | None] = dict.fromkeys(mine, True)
        if len(idx) < _PARALLEL_MIN:
            return _LazyChecks({}, [], known, started)
        return self._on_workers({i: entries[i][1:] for i in idx}, known, started)

    def _on_workers(self, envelopes: dict[int, bytes], known: dict[int, bool | None],
                    started: dict[int, tuple[_LazyChecks, int]]) -> _LazyChecks:
        """Send the envelopes (by index) to the worker processes in parts, about four a
        worker, so the first results come back while the rest are checked."""
        pool = self._get_pool()
        idx = list(envelopes)
        step = max(64, len(idx) // (self._workers * 4))
        parts = []
        for k in range(0, len(idx), step):
            chunk = idx[k:k + step]
            parts.append((chunk, pool.submit(_pool_precheck, [envelopes[i] for i in chunk])))
        return _LazyChecks({i: n for n, (chunk, _) in enumerate(parts) for i in chunk}, parts,
                           known, started)

    def _check_early(self, envelopes: Sequence[bytes]) -> list[bytes]:
        """Start the worker checks of envelopes this node is about to order, so the workers
        check them while this thread decodes, appends and applies the ones before (``sync``
        finds each by its bytes). Returns the envelopes noted; the caller forgets them with
        ``_forget_early`` once they are applied or refused."""
        if len(envelopes) < _PARALLEL_MIN or self._workers < 2:
            return []
        todo = [e for e in envelopes if e not in self._early and not self.trust.signed_here(e)]
        if len(todo) < _PARALLEL_MIN:
            return []
        checks = self._on_workers(dict(enumerate(todo)), {}, {})
        for i, envelope in enumerate(todo):
            self._early[envelope] = (checks, i)
        return todo

    def _forget_early(self, envelopes: list[bytes]) -> None:
        for envelope in envelopes:
            self._early.pop(envelope, None)

    def _precheck_lazily(self, envelopes: list[bytes]) -> Sequence[bool | None]:
        """Start the checks on the workers and return at once; reading an item waits only
        for the part that holds it (``verify`` overlaps them with its replay)."""
        if len(envelopes) < _PARALLEL_MIN or self._workers < 2:
            return precheck(envelopes)
        return _LazySequence(self._precheck([b"\x01" + e for e in envelopes]), len(envelopes))

    def precheck_envelopes(self, envelopes: list[bytes]) -> list[bool | None]:
        """Check many envelopes' signatures, spread over the worker processes."""
        if len(envelopes) < _PARALLEL_MIN or self._workers < 2:
            return precheck(envelopes)
        found = self._precheck([b"\x01" + e for e in envelopes])
        return [found.get(i) for i in range(len(envelopes))]

    def verify(self, *, from_checkpoint: bytes | None = None,
               node_keys: Sequence[NoteVerifier] | None = None,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Re-derive the whole chain from the store; raise IntegrityError naming every bad
        spot, the sealed side files (wallet keys, research secret and profiles) included.

        ``node_keys`` are the keys the caller trusts for checkpoints (default: this node's own
        key, which an attacker with the folder cannot forge without the master key).
        """
        from .verifyfolder import side_file_findings, with_side_files  # import cycle

        side = side_file_findings(self.data_dir, self.master)  # wallet, research files
        with self._lock:
            keys = list(node_keys) if node_keys else [self.verifier()]
            return with_side_files(side, lambda: verify_store(
                self.store, self.chain, verifiers=keys, orderer=self.orderer,
                from_checkpoint=from_checkpoint, checkpoint_verifiers=keys,
                prechecker=self._precheck_lazily, progress=progress))

    def _get_pool(self) -> Executor:
        if self._pool is None:
            self._pool = checking_pool(self._workers)
        return self._pool

    def _store_block(self, block: Block, frontier: Sequence[bytes] | None = None) -> None:
        """Sign (cosignature/v1) and store ``block``; ``frontier``: the Merkle frontier after
        it (default: the replica's, when the block is its last)."""
        h = block.header
        cp = Checkpoint(self.config.chain, h.log_size, h.log_root, h.height, block.hash, h.time)
        note = sign_checkpoint(cp, self.key_for_height(h.height), self.config.name).encode()
        self.store.write_block(block, note,
                               self.replica.tree.frontier if frontier is None else frontier)
        for observe in self.block_observers:
            observe(block)

    # --- reading --------------------------------------------------------------------------
    @property
    def chain(self) -> str:
        return self.config.chain

    @property
    def state(self) -> state.State:
        return self.replica.state

    def account(self, account_id: bytes) -> Account:
        with self._lock:
            return find_account(self.replica.state, account_id)

    def next_nonce(self, account_id: bytes) -> int:
        try:
            return self.account(account_id).nonce
        except NotFoundError:
            return 0

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.config.name, self.node_key.public)

    def checkpoint(self) -> bytes:
        with self._lock:
            self.sync()
            note = self.store.latest_checkpoint()
        if note is None:
            raise NotFoundError("the chain has no block yet")
        return note

    def last_header(self) -> BlockHeader | None:
        return self.replica.last

    def node_keys(self) -> list[NoteVerifier]:
        """The checkpoint signers named in the chain's genesis."""
        info = self.replica.state.get("chain/genesis") or {"nodes": []}
        return [NoteVerifier(n["name"], PublicKey.from_value(n["key"])) for n in info["nodes"]]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        with self._lock:
            n = self.replica.tree.size if size is None else size
            return merkle.inclusion_proof(self.store, index, n)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        with self._lock:
            n = self.replica.tree.size if size2 is None else size2
            return merkle.consistency_proof(self.store, size1, n)

    # --- convenience for clients that hold keys in the node's wallet ------------------------
    def build(self, type_: str, body: dict[str, Any], account: bytes,
              keys: Sequence[PrivateKey], nonce: int | None = None) -> SignedTx:
        n = self.next_nonce(account) if nonce is None else nonce
        return self.trust.sign_tx(Transaction(self.chain, type_, body, account, n), keys)

    def account_lock(self, account: bytes) -> threading.RLock:
        """The lock that serializes one account's custodial transactions.

        A transaction built here takes the account's next nonce, which advances only once the
        transaction is in a block: two requests of one account built at once would both take
        nonce N and the second would be refused as a replay. Every path that signs for an
        account with keys this node holds builds and submits under this lock (``send`` does;
        a caller that builds and submits in separate steps holds it around both).
        """
        with self._account_locks_mu:
            lock = self._account_locks.get(account)
            if lock is None:
                lock = self._account_locks[account] = threading.RLock()
            return lock

    def send(self, type_: str, body: dict[str, Any], account: bytes,
             keys: Sequence[PrivateKey]) -> tuple[SignedTx, Receipt]:
        """Build ``type_`` with the account's next nonce, sign, submit: one account's sends
        one at a time. Raises RejectedError (the machine's reason code) if refused, and
        OrderingError as ``submit`` does."""
        with self.account_lock(account):
            stx = self.build(type_, body, account, keys)
            receipt = self.submit([stx.raw])[0]
        if not receipt.ok:
            raise RejectedError(receipt.result.message, code=receipt.result.code)
        return stx, receipt


def _tx_hash(trust: TrustCache, envelope: bytes) -> bytes | None:
    try:
        return trust.decode(envelope).tx_hash
    except MalformedError:
        return None


def genesis_envelope(chain: str, orgs: Sequence[tuple[str, PrivateKey, PrivateKey]],
                     threshold: int, *, access_records: int = NEW_ACCESS_RECORDS,
                     rules: int = NEW_RULES) -> bytes:
    """The chain's first transaction: (name, organization key, node key) per founder.
    ``access_records``: the chain's access record format (state/access.py), ``rules`` its state
    rule set (state/accounts.py ``RULES``); new chains the newest of each."""
    from ..state.accounts_model import account_id

    body: dict[str, Any] = {
        "orgs": [{"name": name, "policy": single_key_policy(org.public),
                  "node": node.public.to_value()} for name, org, node in orgs],
        "threshold": threshold,
    }
    if access_records != 1:
        body["access_records"] = access_records
    if rules != 1:
        body["rules"] = rules
    first = account_id("organization", body["orgs"][0]["policy"])
    return sign(Transaction(chain, "chain.genesis", body, first, 0),
                [node for _, _, node in orgs]).raw




from .verifyfolder import verify_folder  # noqa: E402  re-exported from its old home (import cycle)

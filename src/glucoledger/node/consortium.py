"""A consortium member node: follow the etcd log, cosign checkpoints, report divergence.

One ``ConsortiumNode`` per organization wraps a ``Node`` whose orderer is the consortium's
etcd cluster (named in node.json). Its loop (``step``), run by ``glucoledger node``, is the
node's only follower of the log (submits reach etcd through the node's group-commit writer
and wait for this loop, see ``node.groupcommit``):

1. read new log entries (at most ``_READS_PER_ROUND`` reads a round, so that under load
   the node still signs and collects between reads) and derive blocks (the replica
   validates every transaction; every node derives byte-identical blocks), each signed
   with the node key into the local store;
2. publish the node's signed note for its newest heights under ``sig/<name>/<height>``
   and its ``stored/<name>`` report in one etcd transaction (``ordering.etcd_kv``), and
   read the other members' notes (per member in force, only the heights from the final
   one to ours), health and stored reports in one read transaction (each note's signature
   is verified once and the outcome cached); what a member wrote that breaks the layout is
   skipped and shown in ``status.misbehaving`` by its name;
3. ``ledger.finality.decide``: the highest height whose note ``threshold`` member keys
   signed identically is final: stored (meta ``final``) and shown; a member whose signed
   note differs, or who reports its store damaged, is reported as diverged with the
   height and both roots;
4. report ``stored/<name>`` (last stored block and its cut position); once every member
   has stored past a position, entries below it are compacted (``compact_every``).

At open, ``integrity.quick_check`` runs over the whole store; a damaged store makes the node
refuse: it derives and signs nothing, and publishes ``health/<name>`` with the height and
the root it now derives, so the others report it.

A node whose next log position was compacted away fetches the missing blocks from a peer
(``ctl/<name>`` URLs, or an export file), and accepts them only after checking them:
the peer's final checkpoint must carry ``threshold`` member signatures, the headers must
chain to it from this node's last block, and re-deriving every block from its transactions
must give exactly those headers (``blockexport.import_blocks``).

Invariants: a node never signs a block it did not derive itself; it never signs when its
store failed the integrity check; finality needs ``threshold`` distinct member keys over
one note text.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..crypto import PrivateKey
from ..errors import (
    GlucoledgerError,
    OrderingError,
    StorageError,
)
from ..ledger.checkpoint import Checkpoint, NoteVerifier, parse_note
from ..ledger.finality import (
    FinalCheckpoint,
    MemberSchedule,
    decide,
)
from ..ordering.etcd import MEMBER_MISBEHAVED, EtcdOrderer
from ..ordering.etcd_kv import EtcdKV
from ..ordering.etcd_rbac import EtcdAdmin
from ..ordering.etcd_watch import KeyWatch
from ..state.accounts import COMPRESSED_LOG, GENESIS_KEY, rules
from ..state.governance import member_schedule, tls_changes
from ..state.replica import ReplicaFailedError
from . import tlsrotation
from .integrity import StoreDamagedError, quick_check, reported_damage, state_check
from .peerauth import NOBODY, Peers, peers_at
from .service import GenesisMismatchError, Node, NodeConfig, etcd_chain_key

__all__ = ["ConsortiumNode", "Status", "StatusFile"]

log = logging.getLogger("glucoledger.consortium")

_PUBLISH_RECENT = 64  # notes published per round at most (the newest heights)
_KEEP_SIGS = 16  # own notes kept in etcd below the final height
#: Own notes deleted together once this many more fell below the kept ones: each delete is
#: a write through etcd's Raft log (a WAL sync on every member), one a block was about 7 %
#: of a loaded consortium's etcd requests. Fewer than ``_KEEP_SIGS + _GC_EVERY`` of them
#: below the final height stay.
_GC_EVERY = 16
_LAGGING_WAIT = 0.005  # s between rounds while a stored block is not final yet
#: Longest wait of a watching node with nothing to do (anchoring is due by time; status.json
#: shows the node alive): an idle round reads nothing from etcd.
_IDLE_ROUND = 2.0
_STATUS_HEARTBEAT = 1.0  # s: status.json is rewritten at least this often while the loop runs
_READS_PER_ROUND = 2  # log reads (up to 1000 entries each) per round before signing
_CACHE = 1024  # notes kept verified / own note texts kept, before pruning


@dataclass
class Status:
    name: str
    height: int = 0
    log_size: int = 0
    final_height: int = -1
    final_root: str = ""
    final_signers: list[str] = field(default_factory=list)
    diverged: list[dict[str, Any]] = field(default_factory=list)
    refusing: str | None = None
    error: str | None = None
    #: This node derived its genesis block, so it knows who the members are (and whom its
    #: control endpoint accepts); until then signed requests get 503 "not ready".
    members_known: bool = False
    control: str | None = None
    #: The last TLS change applied (``node.tlsrotation``) and what its operator must do.
    tls: str | None = None
    #: The members in force at this node's height (whom its control endpoint accepts).
    members: list[str] = field(default_factory=list)
    #: Set when this node's own member was removed by governance: why it is shut out.
    removed: str | None = None
    #: The last failure to bring etcd's users to the member set (RBAC duty), until it works.
    rbac: str | None = None
    #: What members wrote under their own etcd keys that breaks the layout (a malformed
    #: report, a key that names no height, an oversized value), as of the last round that
    #: read it: each names the member; the node skips it and goes on.
    misbehaving: list[str] = field(default_factory=list)
    updated: float = 0.0


class StatusFile:
    """status.json, rewritten when something in it changed and at least every ``heartbeat``
    seconds (its ``updated`` shows the loop alive).

    A loaded node runs hundreds of rounds a second; writing and renaming the file at each was
    3-8 % of its CPU (py-spy on ``bench.consortium``). Readers (``consortium status``, the
    development cluster, the benchmark's finality poller) see every change as before."""

    def __init__(self, path: Path, heartbeat: float = _STATUS_HEARTBEAT) -> None:
        self.path, self.heartbeat = path, heartbeat
        self._written: dict[str, Any] | None = None  # what the file holds, ``updated`` aside
        self._at = -math.inf

    def write(self, status: Status) -> bool:
        """Write ``status`` unless the file already says the same and is fresh; True if
        written. (A deep copy is kept: the status's lists change in place.)"""
        fields = dict(status.__dict__)
        fields.pop("updated")
        now = time.monotonic()
        if fields == self._written and now - self._at < self.heartbeat:
            return False
        status.updated = time.time()
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(status.__dict__, indent=2))
        os.replace(tmp, self.path)
        self._written, self._at = copy.deepcopy(fields), now
        return True


class ConsortiumNode:
    def __init__(self, data_dir: Path, *, workers: int | None = 1,
                 compact_every: int = 20_000, stop: threading.Event | None = None) -> None:
        self.data_dir = Path(data_dir)
        #: Set to give up waiting at start (``_log_agrees``) for a log a member broke.
        self._stop = stop
        config = NodeConfig.load(self.data_dir)
        if config.orderer is None:
            raise GlucoledgerError(f"{data_dir} is not a consortium member (node.json names no "
                                   "etcd orderer): run `glucoledger consortium init`")
        self.name = config.name
        key = etcd_chain_key(config.chain)
        self.orderer = EtcdOrderer.from_url(config.orderer, key, writer=config.name)
        self.kv = EtcdKV.from_url(config.orderer, key)
        # The store is checked against the etcd log in check_integrity (a member refuses,
        # tells its peers and answers 503, rather than not starting).
        self.node = Node(self.data_dir, orderer=self.orderer, workers=workers, log_check=False)
        self.compact_every = compact_every
        self.status = Status(self.name)
        #: What the refusal is about (``check_integrity``'s finding, a LogMismatch kind, an
        #: error code): ``control`` tells callers what the operator must do by it.
        self.refused_what = ""
        self._published = -1
        self._reported: tuple[int, int] | None = None
        self._seen = 0
        self._orderer_url = config.orderer
        self._watch: KeyWatch | None = None
        self._watched = -1  # the watch's generation before the last round's reads
        self._watched_log = self._watched_side = -1  # its log and side generations then
        self._verified: dict[tuple[str, bytes, bytes], Any] = {}
        self._ours: dict[int, bytes] = {}
        self._gc_below = 0
        self._first = 0  # the log's first position, as last read (it only grows)
        self._tls_height = -1  # the newest height whose TLS bundle was applied
        self._genesis_cas: dict[str, bytes] | None = None
        self._status_lock = threading.Lock()
        self._status_file = StatusFile(data_dir / "status.json")
        self._lock = threading.Lock()
        self.final: FinalCheckpoint | None = None
        note = self.node.store.get_meta("final")
        if isinstance(note, bytes):
            self.final = _as_final(note)
        #: The members in force at our height and the keys that left (``node.peerauth``):
        #: who may call node-to-node endpoints. Replaced whole by the loop, read by requests.
        self.peers: Peers = NOBODY
        self._rbac = _admin(self.data_dir, config.orderer)
        self._rbac_names: frozenset[str] = frozenset()
        self._members_now(self.schedule())
        #: This member's node keys in its wallet, by key id: ``node`` and rotated ones.
        self._keys: dict[bytes, PrivateKey] = {}
        self._load_own_keys()
        self.node.key_for_height = self._key_for_height
        if self.schedule() is not None:
            try:  # requests and the integrity check use the key in force now
                self._key_for_height(self.node.store.height())
            except StorageError as exc:
                log.error("%s", exc.message)
        last = self.node.last_header()
        if last is not None:  # status shows this run's height even before etcd answers
            self.status.height, self.status.log_size = last.height, last.log_size
        self.check_integrity()
        self.node.on_blocks = self._blocks_stored

    def _blocks_stored(self) -> None:
        """New blocks are stored: say so in status.json, and judge callers by the members
        now in force, before their submits are answered."""
        last = self.node.last_header()
        if last is not None:
            self.status.height, self.status.log_size = last.height, last.log_size
            if self.peers.height != self.node.store.height():
                self._members_now(self.schedule())
            self._write_status()

    # --- node keys (rotated by governance at a stated height) -----------------------------
    def _load_own_keys(self) -> None:
        for key in self.node.wallet.node_keys():
            self._keys[key.public.key_id] = key

    def _key_for_height(self, height: int) -> PrivateKey:
        """The key that signs block ``height``: the one the member set in force at that
        height names for this member (``gov.rotate_key`` changes it from its ``at``), found
        in the wallet. From the newest height on it also signs this node's requests.

        Raises StorageError when the wallet lacks it: the node then stops (it must not sign
        with a key the consortium no longer counts) and says which key to add.
        """
        if self.node.state.get(GENESIS_KEY) is None:
            return self.node.node_key
        mine = [v for v in member_schedule(self.node.state).at(height)[0]
                if v.name == self.name]
        if not mine:  # not a member at that height: its notes count for nothing
            return self.node.node_key
        want = mine[0].key.key_id
        if want not in self._keys:
            self._load_own_keys()  # saved since start (`consortium node-key`)
        key = self._keys.get(want)
        if key is None:
            raise StorageError(
                f"block {height} must be signed with {self.name}'s node key {mine[0].vkey()} "
                "(set by governance), and this node's wallet does not hold it: make the "
                "rotation's key with `glucoledger consortium node-key` in this folder, or "
                "restore the wallet it was made in, then restart the node")
        if key is not self.node.node_key and height >= self.node.store.height():
            log.info("signing with the rotated node key %s from block %d", mine[0].vkey(),
                     height)
            self.node.node_key = key
        return key

    # --- integrity ------------------------------------------------------------------------
    def check_integrity(self) -> None:
        """Check the store (``integrity.quick_check``) and re-derive the state
        (``integrity.state_check``); on damage refuse, and tell the peers."""
        start = time.perf_counter()
        if not self._log_agrees() or not self._genesis_agrees():
            return
        try:
            blocks = quick_check(self.node.store, self.node.chain,
                                 [NoteVerifier(self.name, k.public) for k in self._keys.values()])
            entries = state_check(self.node.store, self.node.chain)
        except StoreDamagedError as exc:
            self.refuse(exc.message, exc.height, exc.signed_root, exc.derived_root,
                        exc.finding.what)
            return
        log.info("integrity check: %d blocks, %d state entries in %.3f s", blocks, entries,
                 time.perf_counter() - start)
        self._publish_health({"ok": True})

    def _genesis_agrees(self) -> bool:
        """A stored block 0 must be genesis.json's envelope (``genesis_file.check_genesis``,
        as when it is derived or imported); otherwise refuse (False)."""
        from .genesis_file import check_genesis

        if self.node.store.height() == 0:
            return True  # checked when block 0 is derived or imported
        txs = self.node.store.txs_of_block(0)
        try:
            check_genesis(self.data_dir, txs[0].envelope if txs else None,
                          "block 0 in this node's store",
                          "this store holds another chain's history: restore it "
                          "(`glucoledger consortium rejoin --genesis FILE`)")
        except GenesisMismatchError as exc:
            self.refuse(exc.message, 0, what=exc.code)
            return False
        self.node.genesis_checked = True
        return True

    def _log_agrees(self, wait: float = 30.0) -> bool:
        """The store against the etcd log (``Node.log_mismatches``), before anything is
        derived or appended: a store ahead of the log or of another history refuses (False).
        An unreachable cluster is asked again for ``wait`` seconds, then the member does not
        start (StorageError): nothing is appended unchecked."""
        deadline = time.monotonic() + wait
        while True:
            found = self.node.log_mismatches()
            if found and found[0].cause == MEMBER_MISBEHAVED:
                # Another member broke the log on its own keys: nothing can be checked or
                # appended until it is put right, and exiting would only repeat at every
                # restart. Wait, named in status.json and the log.
                if found[0].message != self.status.error:
                    log.error("%s; waiting until it is put right", found[0].message)
                self.status.error = found[0].message
                self._write_status()
                if self._stop is not None and self._stop.wait(1.0):
                    self.node.close()
                    raise StorageError(f"{self.name} stopped while waiting at start: "
                                       f"{found[0].message}", code=found[0].kind)
                if self._stop is None:
                    time.sleep(1.0)
                deadline = time.monotonic() + wait
                continue
            if not found or found[0].kind != "unreadable_log" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.status.error = None
        if found and found[0].kind == "unreadable_log":
            self.node.close()
            raise StorageError(f"{self.name} cannot start: {found[0].message}; nothing was "
                               "appended; start it again when the etcd cluster answers",
                               code=found[0].kind)
        if found:
            last = self.node.last_header()
            self.refuse("; ".join(m.message for m in found), last.height if last else 0,
                        what=found[0].kind)
            return False
        return True

    def refuse(self, reason: str, height: int, signed_root: bytes = b"",
               derived_root: bytes = b"", what: str = "") -> None:
        """Stop deriving, signing and serving: status, peers (``health/``) and every waiting
        or new request learn ``reason`` at once."""
        self.status.refusing = reason
        self.refused_what = what or reason
        self.node.halt(reason)
        log.error("refusing to work: %s", reason)
        self._publish_health({"ok": False, "height": height, "reason": reason,
                              "signed_root": signed_root.hex(),
                              "derived_root": derived_root.hex(), "what": what or reason})
        self._write_status()

    def _publish_health(self, doc: dict[str, Any]) -> None:
        try:
            self.kv.put(f"health/{self.name}", json.dumps(doc).encode())
        except OrderingError as exc:
            self.status.error = exc.message

    # --- the loop -------------------------------------------------------------------------
    def start_watch(self) -> None:
        """Follow etcd by one watch (``ordering.etcd_watch``) instead of polling: from now on
        a round waits until the log head or a side key changed, and reads nothing while
        nothing did. Without it (or while the watch is down) ``step`` polls as before."""
        if self._watch is None:
            self._watch = KeyWatch.for_chain(self._orderer_url, self.kv.prefix,
                                             on_log=self.orderer.head_moved).start()

    def _watch_round(self) -> tuple[bool, bool] | bool | None:
        """With a healthy watch: wait for a change. False when nothing changed (an idle
        round); else (read the log, read the notes): the log only after a log change or
        while entries wait, the notes only after a change to them. None without a healthy
        watch (the round reads both)."""
        watch = self._watch
        if watch is None or not watch.healthy:
            return None
        seen = watch.generation
        if seen == self._watched and self.node.caught_up:
            seen = watch.wait_change(self._watched, _IDLE_ROUND)
        if seen == self._watched and self.node.caught_up:
            return False
        # Each taken before this round's reads: a later change wakes the next round.
        self._watched = seen
        log, side = watch.log_generation, watch.side_generation
        wake = (log != self._watched_log or not self.node.caught_up,
                side != self._watched_side)
        self._watched_log, self._watched_side = log, side
        return wake

    def step(self, wait: float = 0.0) -> Status:
        """One round: wait for entries (up to ``wait`` s), derive, publish, collect.

        With the watch started, the wait is for a change under the chain's keys instead
        (at most ``_IDLE_ROUND`` s), and a round with no change reads nothing; a round woken
        by notes alone does not read the log, one woken by the log alone does not read the
        notes (its own note, published in it, wakes the next). Without it, while some
        stored block is not final yet the wait is short: the round after a block is mostly
        spent collecting the other members' notes for it.
        """
        try:
            watched = self._watch_round()
            if watched is False:
                self.maybe_anchor()
                self._write_status()
                return self.status
            read_log, read_notes = watched if isinstance(watched, tuple) else (True, True)
            if watched is not None:
                pass  # something changed (or entries wait): read it now
            elif not self.node.caught_up:
                pass  # entries are known to be waiting: no wait
            elif self.status.final_height < self.status.height:
                # Notes for a stored block are due: poll briefly (a watch on the head would
                # not see them, and setting one up costs more than this round's reads).
                time.sleep(_LAGGING_WAIT)
            elif wait > 0:
                self._seen = self.orderer.wait(self._seen, wait)
            if self.status.refusing is None:
                if read_log:
                    try:
                        self._derive()
                    except (ReplicaFailedError, StorageError) as exc:
                        self.refuse(exc.message, self.node.store.height(), what=exc.code)
                        raise
                self._publish_notes()
            if read_notes:
                self._collect()
            if self.status.refusing is None:
                self.maybe_anchor()
            self.status.error = None
        except GlucoledgerError as exc:
            # What this round failed to read is read again next round.
            self._watched = self._watched_log = self._watched_side = -1
            self.status.error = exc.message
            log.warning("%s", exc.message)
        except Exception as exc:
            # Not a failure this code expects: a bug here, or peer data read unchecked. The
            # loop goes on (peers must not be able to stop it), the round is retried, and
            # the failure stays in status.json and, with its traceback, in the log.
            self._watched = self._watched_log = self._watched_side = -1
            message = (f"internal error in the follow loop: {type(exc).__name__}: {exc} "
                       "(a bug: the traceback is in the node's log; report it)")
            if message != self.status.error:
                log.exception("%s", message)
            else:
                log.error("%s", message)
            self.status.error = message
        self._write_status()
        return self.status

    def _derive(self) -> None:
        try:
            self.node.sync(max_reads=_READS_PER_ROUND)
        except GenesisMismatchError as exc:  # not our consortium's chain: stop for good
            self.refuse(exc.message, 0, what=exc.code)
            return
        except OrderingError as exc:
            first = self.orderer.first()
            if self.node._read_pos >= first:
                raise
            log.warning("log compacted below %d (we need %d): fetching blocks from a peer",
                        first, self.node._read_pos)
            try:
                self.catch_up_from_peers()
            except OrderingError as failed:  # say what the log said: it names the member
                raise OrderingError(f"{exc.message}; {failed.message}") from None
            self.node.sync()
        last = self.node.last_header()
        if last is not None:
            self.status.height, self.status.log_size = last.height, last.log_size
        if self.peers.height != self.node.store.height():  # new blocks: who may call us now
            self._members_now(self.schedule())
        # From state rule set 5 on, this member writes its batches compressed: every member
        # of the chain then runs a glucoledger that reads them (gov.upgrade).
        self.orderer.compress = rules(self.node.state) >= COMPRESSED_LOG
        self._apply_tls()

    def _apply_tls(self) -> None:
        """Bring ``tls/`` to the trust bundle and own identity in force at the newest
        height (``node.tlsrotation``; a no-op without TLS or without a recorded change)."""
        newest = self.node.store.height() - 1
        if newest == self._tls_height or not (self.data_dir / "tls").is_dir():
            return
        self._tls_height = newest
        schedule = self.schedule()
        if schedule is None:
            return
        try:  # also without rotations: a removed member's CA leaves the bundle
            if self._genesis_cas is None:
                self._genesis_cas = tlsrotation.genesis_cas(self.data_dir)
            changed = tlsrotation.apply_in_force(
                self.data_dir, self.name, self._genesis_cas, tls_changes(self.node.state),
                [v.name for v in schedule.at(newest)[0]], newest)
        except (GlucoledgerError, OSError) as exc:
            self._tls_height = -1  # try again next round
            message = exc.message if isinstance(exc, GlucoledgerError) else str(exc)
            self.status.tls = f"TLS change at block {newest} not applied: {message}"
            log.error("%s", self.status.tls)
            return
        if changed:
            self.status.tls = (f"block {newest}: applied {'; '.join(changed)}; restart this "
                               "member's etcd with tls/trust.pem and tls/ca.pem (etcd reads "
                               "its trusted CAs only at start)")
            log.warning("%s", self.status.tls)

    def _publish_notes(self) -> None:
        """Put this node's notes for its new heights and its ``stored/`` report, in one
        etcd transaction (nothing when nothing changed)."""
        items: dict[str, bytes] = {}
        last = self.node.last_header()
        if last is not None and (last.height, last.cut) != self._reported:
            items[f"stored/{self.name}"] = json.dumps(
                {"height": last.height, "cut": last.cut}).encode()
            self._reported = (last.height, last.cut)
        top = self.node.store.height() - 1
        lo = max(self._published + 1, top - _PUBLISH_RECENT + 1, 0)
        for h in range(lo, top + 1):
            items[f"sig/{self.name}/{h:020d}"] = self.node.store.checkpoint_at(h)
        if items:
            self.kv.put_many(items)
        self._published = max(self._published, top)

    def schedule(self) -> MemberSchedule | None:
        """Checkpoint signer sets by height, as this node's state records them (None before
        this node derived the genesis block)."""
        if self.node.state.get(GENESIS_KEY) is None:
            return None
        return member_schedule(self.node.state)

    def etcd_requests(self) -> dict[str, int]:
        """This node's requests to etcd so far, by kind: the log's (``EtcdOrderer``) and the
        side keys' (notes, reports). The watch's stream is not a request."""
        return self.orderer.request_counts() | self.kv.request_counts()

    @property
    def current_members(self) -> dict[bytes, NoteVerifier]:
        """Node keys (by key id) of the members in force at our height."""
        return self.peers.current

    def _members_now(self, schedule: MemberSchedule | None) -> None:
        self.peers = peers_at(schedule, self.node.store.height())
        self.status.members_known = bool(self.peers.current)
        self.status.members = self.peers.names
        gone = [f.message() for f in self.peers.former.values()
                if f.name == self.name and f.removed]
        if gone and gone[0] != self.status.removed:
            log.error("%s", gone[0])
        self.status.removed = gone[0] if gone else None  # None again once re-added

    def _collect(self) -> None:
        schedule = self.schedule()
        if schedule is None:
            return  # no genesis derived yet: nothing to judge
        top = self.node.store.height()
        self._members_now(schedule)
        self._revoke_removed()
        # Notes from the final height to ours only (each member's own bounded range): a
        # change in a block this node has not derived yet may take effect at any later
        # height, and below the final height nothing is left to decide.
        lo = self.final.checkpoint.height if self.final is not None else 0
        lo = min(lo, top)
        names = sorted({v.name for first, signers, _ in schedule.entries
                        for v in signers if lo < first <= top}
                       | {v.name for v in schedule.at(lo)[0]})
        side = self.kv.read_members(names, lo, top + 1)
        problems = list(side.problems)
        published = side.notes
        ours = {h: self._our_text(h) for h in published if h < top}
        final, diverged = decide(published, schedule, ours, self._verified)
        members = set(self.peers.names)  # a removed member's old report is not news
        diverged += reported_damage({k: v for k, v in side.health.items() if k in members},
                                    self.name, self.node.store, problems)
        if final is not None and (self.final is None
                                  or final.checkpoint.height > self.final.checkpoint.height):
            mine = ours.get(final.checkpoint.height)
            if mine is None or mine == parse_note(final.note).text:
                self.final = final
                self.node.store.set_meta("final", final.note)
        if self.final is not None:
            cp = self.final.checkpoint
            self.status.final_height, self.status.final_root = cp.height, cp.root.hex()
            self.status.final_signers = list(self.final.signers)
            self._gc(cp.height)
        self.status.diverged = [
            {"node": d.node, "height": d.height, "our_root": d.our_root.hex(),
             "their_root": d.their_root.hex(), "detail": d.detail, "text": d.describe()}
            for d in diverged]
        for d in diverged:
            log.warning("%s", d.describe())
        self._forget(published)
        self._maybe_compact(list(schedule.at(top)[0]), side.stored, problems)
        if problems != self.status.misbehaving:
            for p in problems:
                if p not in self.status.misbehaving:
                    log.warning("%s", p)
            self.status.misbehaving = problems

    def _revoke_removed(self) -> None:
        """With the RBAC duty (an ``etcd-admin`` folder), make etcd's member users match the
        members in force now: a member removed by governance loses its etcd access once
        this node derived the block from which the removal holds. Retried every round until
        etcd accepts it."""
        names = frozenset(self.peers.names)
        if self._rbac is None or not names or names == self._rbac_names:
            return
        if not self.node.genesis_checked or self.status.refusing is not None:
            return  # never from a chain whose block 0 is not our genesis, nor while stopped
        try:
            revoked = self._rbac.reconcile(names)
        except OrderingError as exc:  # finality goes on; the revocation is retried
            self.status.rbac = (f"revoking removed members' etcd users failed: {exc.message}; "
                                "retried every round")
            log.error("%s", self.status.rbac)
            return
        for gone in revoked:
            log.warning("revoked the etcd access of %s: no longer a member", gone)
        self._rbac_names = names
        self.status.rbac = None

    def _our_text(self, height: int) -> bytes:
        """This node's note text at ``height`` (stored blocks never change: cached)."""
        text = self._ours.get(height)
        if text is None:
            text = self._ours[height] = parse_note(self.node.store.checkpoint_at(height)).text
        return text

    def _forget(self, published: dict[int, dict[str, bytes]]) -> None:
        """Drop cache entries for notes no longer published (collected away)."""
        if len(self._verified) > 4 * _CACHE:
            live = {(n, raw) for notes in published.values() for n, raw in notes.items()}
            self._verified = {k: v for k, v in self._verified.items() if k[:2] in live}
        if len(self._ours) > _CACHE:
            low = min(published, default=0)
            self._ours = {h: t for h, t in self._ours.items() if h >= low}

    def _gc(self, final_height: int) -> None:
        below = final_height - _KEEP_SIGS
        if below > 0 and below >= self._gc_below + _GC_EVERY:
            self.kv.delete_range(f"sig/{self.name}/", f"sig/{self.name}/{below:020d}")
            self._gc_below = below

    def _maybe_compact(self, members: list[Any], reports: dict[str, bytes],
                       problems: list[str]) -> None:
        cuts = []
        for m in members:
            raw = reports.get(m.name)
            if raw is None:
                return
            try:
                doc = json.loads(raw)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                doc = None
            cut = doc.get("cut") if isinstance(doc, dict) else None
            if type(cut) is not int or cut < 0:
                # Its log position is unknown: nothing is compacted until it reports one.
                problems.append(f"member {m.name!r} wrote a malformed stored/ report "
                                f"({bytes(raw[:80])!r}); skipped, and the log is not "
                                "compacted meanwhile")
                return
            cuts.append(cut)
        below = min(cuts) + 1
        if below - self._first < self.compact_every:
            return
        # Known from the last look: read it only now. Each member deletes its own batches
        # (``ordering.etcd``, layout 2), so the floor that matters here is this member's.
        self._first = self.orderer.own_first()
        if below - self._first >= self.compact_every:
            self.orderer.compact(below)
            self._first = below
            log.info("compacted the log below %d (every member stored past it)", below)

    def set_anchoring(self, endpoint: str, every: float) -> None:
        """Anchor the latest final checkpoint every ``every`` s (one member per consortium
        should have this duty; ``endpoint`` as ``node.anchor.connect`` takes it)."""
        from .anchor import Anchorer, connect

        self._anchorer: Any = Anchorer(connect(endpoint))
        self._anchor_every = every
        self._anchored = (-1, 0.0)

    def maybe_anchor(self) -> None:
        from ..state.accounts_model import account_id, single_key_policy
        from ..state.governance import anchor_counter
        from .anchor import record_tx

        if getattr(self, "_anchorer", None) is None or self.final is None:
            return
        height, at = self._anchored
        if self.final.checkpoint.height <= height or time.monotonic() - at < self._anchor_every:
            return
        schedule = self.schedule()
        if schedule is None:
            return
        receipt = self._anchorer.anchor(self.final.note, schedule)
        info = self.node.state.get("chain/genesis") or {}
        org_key = self.node.wallet.load("org")
        org = account_id("organization", single_key_policy(org_key.public))
        stx = record_tx(self.node.chain, receipt, org_key,
                        int(info.get(anchor_counter(self.node.state, org), 0)))
        result = self.node.submit([stx.raw])[0].result
        log.info("anchored block %d in chain %d tx %s: %s", receipt.height, receipt.chain_id,
                 receipt.tx_hash.hex(), result.code)
        self._anchored = (receipt.height, time.monotonic())

    def _write_status(self) -> None:
        with self._status_lock:  # the loop and a syncing control request may both write
            self._status_file.write(self.status)

    # --- catching up past compaction ------------------------------------------------------
    def catch_up_from_peers(self) -> int:
        """Fetch, verify and store blocks from the first peer that has them."""
        from .blockexport import import_blocks
        from .control import fetch_blocks

        errors = []
        for name, url in self.kv.scan("ctl/").items():
            if name == self.name:
                continue
            try:
                target = url.decode()
            except UnicodeDecodeError:
                errors.append(f"{name}: its ctl/ value is not a URL (not UTF-8)")
                continue
            try:
                data = fetch_blocks(target, self.node.store.height(),
                                    self.node.node_key, tls=self.data_dir / "tls")
                return import_blocks(self.node, data)
            except GlucoledgerError as exc:
                errors.append(f"{name}: {exc.message}")
        raise OrderingError("the log was compacted past this node and no peer could supply "
                            "verified blocks (" + "; ".join(errors or ["no peer listed"]) +
                            "); import an export file: `glucoledger consortium import`")

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self.node.close()
        self.kv.close()
        if self._rbac is not None:
            self._rbac.close()


def _admin(data_dir: Path, orderer_url: str) -> EtcdAdmin | None:
    """etcd's root, when this member holds the RBAC duty (``<data>/etcd-admin``)."""
    folder = data_dir / "etcd-admin"
    if not (folder / "etcd-user.json").exists():
        return None
    try:
        return EtcdAdmin.from_folder(orderer_url, folder)
    except ValueError as exc:
        raise GlucoledgerError(f"{folder} is unusable ({exc})") from None


def _as_final(note: bytes) -> FinalCheckpoint | None:
    try:
        parsed = parse_note(note)
        return FinalCheckpoint(Checkpoint.parse_body(parsed.text), note,
                               tuple(s[0] for s in parsed.signatures))
    except GlucoledgerError:
        return None

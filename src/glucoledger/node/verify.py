"""``verify``: re-derive everything from the raw store and name every bad spot.

A fresh replica replays every stored transaction, block by block, exactly as the node did
(signatures, authorization, results, Merkle leaves and roots, block links, state). What the
store says is then compared with what was derived:

- per transaction: the envelope against the ordered log's entry at its position (when the
  log is at hand), the stored hash and result against the derived ones;
- per block: the stored block hash, every header field, and the signed checkpoint (its
  signature under the node key, and its size, root, height, block hash and time);
- at the end: the state table, the stored Merkle nodes and the frontier;
- against a checkpoint the caller kept (``from_checkpoint``): the store must still hold that
  block, with that root, and the current log must be consistent with it (RFC 9162 2.1.4):
  otherwise the store was rolled back or forked.

Past the first damaged block or transaction the replay cannot go on (later results, roots
and state depend on it), but every later block is still checked on its own (``_independent``:
header hash and link, transactions against the log, their hashes, signatures and Merkle
leaves, checkpoint signatures), so every damaged item is named.

It raises IntegrityError (a ConsistencyError) carrying the first Finding and the list of them
all (``findings``, ``unchecked``: what the break left unchecked), or returns a VerifyReport.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

from ..crypto import sha256
from ..errors import ConsistencyError, GlucoledgerError, MalformedError
from ..ledger import merkle
from ..ledger.block import GENESIS_PREV, BlockHeader, Result, results_hash
from ..ledger.checkpoint import Checkpoint, NoteVerifier, parse_note
from ..ledger.log import encode_cut, encode_tx_entry
from ..ledger.tx import SignedTx
from ..ordering.base import Orderer
from ..state.replica import Block, Replica, precheck
from .chainstore import ChainStore, StoredTx
from .logcheck import ETCD_HINT, check_chain, check_log, last_header

__all__ = ["Finding", "IntegrityError", "VaultIntegrityError", "VaultReport", "VerifyReport",
           "short", "verify_store", "verify_vault"]

#: The header's fields, compared one by one to name the first that differs.
_HEADER_FIELDS = tuple(f.name for f in fields(BlockHeader))

#: Checks the signatures of a block's envelopes. It may return a lazy sequence whose items
#: are computed elsewhere (worker processes) and block only when read: ``verify_store``
#: starts the next block's checks before it replays the current one, so the two overlap.
Prechecker = Callable[[list[bytes]], Sequence[bool | None]]


@dataclass(frozen=True, slots=True)
class Finding:
    #: "tamper", "rollback", "fork", "log", "config" (node.json), or "erasure" (one
    #: interrupted: finish it)
    kind: str
    what: str  # the field or object that differs
    expected: str
    found: str
    height: int | None = None
    tx_index: int | None = None
    tx_hash: str | None = None
    #: A whole sentence for findings that are not one field against another (the log).
    detail: str | None = None

    def describe(self) -> str:
        if self.detail is not None:
            return f"{self.kind}: {self.detail}"
        where = []
        if self.height is not None:
            where.append(f"block {self.height}")
        if self.tx_index is not None:
            where.append(f"transaction {self.tx_index}")
        if self.tx_hash:
            where.append(f"(hash {self.tx_hash[:16]})")
        place = " ".join(where) or "store"
        return (f"{self.kind}: {place}: {self.what} differs: expected {self.expected}, "
                f"found {self.found}")

    def to_value(self) -> dict[str, object]:
        """The finding as JSON for ``POST /api/verify`` (every field, and the sentence)."""
        return {"kind": self.kind, "what": self.what, "expected": self.expected,
                "found": self.found, "height": self.height, "tx_index": self.tx_index,
                "tx_hash": self.tx_hash, "detail": self.detail, "message": self.describe()}


class IntegrityError(ConsistencyError):
    code = "integrity"

    def __init__(self, finding: Finding, *, findings: Sequence[Finding] = (),
                 unchecked: Sequence[str] = ()) -> None:
        hint = {
            "tamper": "the store was altered; restore it from another node or a backup",
            "rollback": "the store is older than a checkpoint you hold; it was truncated or "
                        "rolled back",
            "fork": "the store disagrees with a checkpoint you hold; its history was rewritten",
        }.get(finding.kind, "")
        if finding.detail is not None:
            hint = ""
        super().__init__(f"{finding.describe()}. {hint}".rstrip())
        self.finding = finding
        #: Every damaged item found, the first one first (the chain replay goes on past a
        #: break with the checks that do not need it).
        self.findings: tuple[Finding, ...] = tuple(findings) or (finding,)
        #: The checks that could not be made because of an earlier break.
        self.unchecked: tuple[str, ...] = tuple(unchecked)

    def to_value(self) -> dict[str, object]:
        """Every finding and what was left unchecked, as the HTTP edge answers them (the
        CLI prints the same list as a table)."""
        return {"ok": False, "findings": [f.to_value() for f in self.findings],
                "unchecked": list(self.unchecked)}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    blocks: int
    transactions: int
    rejected: int
    log_size: int
    log_root: bytes
    seconds: float
    checkpoint_height: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def tx_per_second(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0


def short(b: bytes | None) -> str:
    """Hashes in full; longer values by a digest, so two different values never look alike."""
    if b is None:
        return "none"
    if len(b) <= 32:
        return b.hex()
    return f"{len(b)} bytes, sha256 {sha256(b).hex()[:24]}"


def _fail(kind: str, what: str, expected: object, found: object, **where: object) -> None:
    raise IntegrityError(Finding(kind, what, str(expected), str(found), **where))  # type: ignore[arg-type]


def verify_store(
    store: ChainStore,
    chain: str,
    *,
    verifiers: Sequence[NoteVerifier],
    orderer: Orderer | None = None,
    from_checkpoint: bytes | None = None,
    checkpoint_verifiers: Sequence[NoteVerifier] | None = None,
    prechecker: Prechecker | None = None,
    progress: Callable[[int, int], None] | None = None,
    need: int = 1,
    log_missing: bool = False,
) -> VerifyReport:
    """``need``: how many of ``checkpoint_verifiers`` must have signed ``from_checkpoint``
    (a consortium's threshold, to require a final, cosigned checkpoint).

    First the log and the store must agree (``logcheck``): a missing log
    (``log_missing``), a log shorter than the store, or a log of another history is a
    "log" finding that says what to restore."""
    start = time.perf_counter()
    notes: list[str] = []
    for m in check_chain(store, chain):  # node.json of another chain: not an altered store
        raise IntegrityError(Finding("config", m.kind, "", "", detail=m.message))
    if orderer is not None or log_missing:
        path = getattr(orderer, "path", None)
        etcd = orderer is not None and path is None  # a consortium's shared log
        name = "the ordered log" + (f" ({path.name})" if path is not None else
                                    " (orderer.db)" if log_missing else " (etcd)")
        for m in check_log(store, None if log_missing else orderer, log_name=name,
                           log_missing=log_missing, hint=ETCD_HINT if etcd else None):
            if m.kind == "unreadable_log":  # the store is still verified on its own
                notes.append(f"{m.message}: the store was not checked against the log")
                orderer = None
                break
            raise IntegrityError(Finding("log", m.kind, "", "", detail=m.message))
        notes.extend(_log_ahead(store, orderer))
    held: Checkpoint | None = None
    if from_checkpoint is not None:
        note = parse_note(from_checkpoint)
        note.verify(checkpoint_verifiers or verifiers, need=need)
        held = Checkpoint.parse_body(note.text)
        if held.origin != chain:
            raise ConsistencyError(f"checkpoint is for {held.origin!r}, this store is {chain!r}")
    total_blocks = store.height()
    replica = Replica(chain)
    derived_nodes: list[tuple[int, int, bytes]] = []  # (level, index, hash), as blocks give them
    rejected = txs = 0
    cp_block: BlockHeader | None = None
    check = prechecker or precheck
    findings: list[Finding] = []
    broken_at: int | None = None
    prev_hash: bytes | None = None  # the stored hash of the block before
    prev_raw: bytes | None = None  # and its stored header

    def decoded(raw: bytes | None) -> BlockHeader | None:
        try:
            return None if raw is None else BlockHeader.decode(raw)
        except MalformedError:
            return None

    def replay(height: int, bhash: bytes, raw_header: bytes, note_bytes: bytes,
               stored: list[StoredTx], sig_ok: Sequence[bool | None],
               ordered: dict[int, bytes]) -> Block:
        if height != replica.next_height:
            _fail("tamper", "block height sequence", replica.next_height, height)
        try:
            header = BlockHeader.decode(raw_header)
        except MalformedError as exc:
            _fail("tamper", "header encoding", "a canonical block header", exc.message,
                  height=height)
        for i, t in enumerate(stored):
            if t.idx != replica.tree.size + i:
                _fail("tamper", "transaction index", replica.tree.size + i, t.idx, height=height)
            entry = encode_tx_entry(t.envelope)
            logged = ordered.get(t.pos)
            if logged is not None and logged != entry:
                _compare_with_log(logged, t, height)  # names the difference
            replica.feed(t.pos, entry, sig_ok=sig_ok[i])
        block = replica.feed(header.cut, encode_cut(height, header.time))
        if block is None:
            _fail("tamper", "block contents", f"{header.tx_count} transactions",
                  f"{len(stored)} stored transactions (or a bad cut)", height=height)
        assert block is not None
        _compare_block(block, stored, header, bhash, height)
        _check_checkpoint(note_bytes, block, chain, verifiers, height)
        return block

    def started(item: _StoredBlock | None) -> tuple[_StoredBlock, Sequence[bool | None]] | None:
        if item is None:
            return None
        stored = item[4]
        return item, (check([t.envelope for t in stored]) if len(stored) >= 64
                      else [None] * len(stored))

    blocks = _blocks_with_txs(store)
    upcoming = started(next(blocks, None))
    while upcoming is not None:
        (height, bhash, raw_header, note_bytes, stored), sig_ok = upcoming
        # The workers check the next block's signatures while this one is replayed.
        upcoming = started(next(blocks, None))
        ordered = _ordered_entries(orderer, stored)
        if broken_at is None:
            try:
                block = replay(height, bhash, raw_header, note_bytes, stored, sig_ok, ordered)
            except IntegrityError as exc:
                # Go on with what can be checked without the replay (``_independent``).
                broken_at = height
                first = exc.finding
                findings.append(first)
                findings.extend(
                    f for f in _independent(height, bhash, raw_header, note_bytes, stored,
                                            prev_hash, decoded(prev_raw), ordered, sig_ok, check,
                                            chain, verifiers, skip_roots=first.tx_index is not None)
                    if not _same_spot(f, first))
            else:
                derived_nodes.extend(block.nodes)
                rejected += sum(1 for r in block.results if not r.ok)
                txs += len(stored)
                if held is not None and height == held.height:
                    cp_block = block.header
        else:
            findings.extend(_independent(height, bhash, raw_header, note_bytes, stored,
                                         prev_hash, decoded(prev_raw), ordered, sig_ok, check,
                                         chain, verifiers))
        prev_hash, prev_raw = bhash, raw_header
        if progress is not None:
            progress(height + 1, total_blocks)
    if broken_at is not None:
        unchecked = [
            f"after the break at block {broken_at}, these could not be checked (they need "
            "every earlier transaction replayed): the results of later transactions and the "
            "log root and size of later blocks, the state table, the stored Merkle nodes and "
            "frontier" + (", and the store against your checkpoint" if held is not None
                          else "")]
        raise IntegrityError(findings[0], findings=findings, unchecked=unchecked)
    _compare_state(store, replica)
    _compare_nodes(store, derived_nodes)
    if store.frontier() != list(replica.tree.frontier):
        _fail("tamper", "stored Merkle frontier", "the derived frontier", "a different one")
    if held is not None:
        _check_held(held, cp_block, replica, store)
    return VerifyReport(
        blocks=replica.next_height, transactions=txs, rejected=rejected,
        log_size=replica.tree.size, log_root=replica.tree.root(),
        seconds=time.perf_counter() - start,
        checkpoint_height=held.height if held else None, notes=tuple(notes),
    )


def _same_spot(a: Finding, b: Finding) -> bool:
    """Two findings of one damage (the replay's and an independent check's)."""
    return a.height == b.height and (a.tx_index == b.tx_index if b.tx_index is not None
                                     else a.tx_index is None)


def _independent(height: int, bhash: bytes, raw_header: bytes, note_bytes: bytes,
                 stored: Sequence[StoredTx], prev_hash: bytes | None,
                 prev_header: BlockHeader | None, ordered: dict[int, bytes],
                 sig_ok: Sequence[bool | None], check: Prechecker, chain: str,
                 verifiers: Sequence[NoteVerifier], *, skip_roots: bool = False
                 ) -> list[Finding]:
    """What one block shows without replaying the ones before it: its header's encoding,
    hash and link to the block before, its transactions against the ordered log, their
    hashes, signatures (an accepted transaction must carry valid ones) and Merkle leaves
    (the header's ``tx_root``), the results hash and the signed checkpoint against the
    stored header. ``skip_roots``: a transaction of this block is already named, so the
    roots over them are not named again."""
    out: list[Finding] = []

    def add(what: str, expected: object, found: object, tx: StoredTx | None = None) -> None:
        out.append(Finding("tamper", what, str(expected), str(found), height=height,
                           tx_index=None if tx is None else tx.idx,
                           tx_hash=None if tx is None or tx.hash is None else tx.hash.hex()))

    results: list[Result] | None = []
    for i, t in enumerate(stored):
        if t.pos in ordered:
            try:
                _compare_with_log(ordered[t.pos], t, height)
            except IntegrityError as exc:
                out.append(exc.finding)
                continue
        try:
            stx: SignedTx | None = SignedTx.decode(t.envelope)
        except MalformedError:
            stx = None
        if stx is not None and t.hash is not None and stx.tx_hash != t.hash:
            add("transaction hash", short(stx.tx_hash), short(t.hash), t)
            continue
        try:
            result = t.decoded_result()
        except (MalformedError, GlucoledgerError):
            add("transaction result", "a decodable result", "an undecodable result", t)
            results = None
            continue
        if results is not None:
            results.append(result)
        if result.ok:
            ok = sig_ok[i] if sig_ok[i] is not None else check([t.envelope])[0]
            if ok is not True:
                add("transaction signature", "signatures that verify (the stored result says "
                    "accepted)", "a malformed envelope" if ok is None else
                    "a signature that does not verify", t)
    tx_named = skip_roots or bool(out)
    try:
        header = BlockHeader.decode(raw_header)
    except MalformedError as exc:
        add("header encoding", "a canonical block header", exc.message)
        header = None
    if header is not None:
        if header.height != height:
            add("header field 'height'", height, header.height)
        if bhash != header.hash():
            add("stored block hash", short(header.hash()), short(bhash))
        links = ({GENESIS_PREV} if height == 0 else
                 {h for h in (prev_hash, prev_header.hash() if prev_header else None) if h})
        if links and header.prev not in links:
            add("header field 'prev' (the link to the block before)",
                " or ".join(sorted(short(h) for h in links)), short(header.prev))
        if header.tx_count != len(stored):
            add("header field 'tx_count'", len(stored), header.tx_count)
        elif not tx_named:
            root = merkle.root_of([merkle.leaf_hash(t.envelope) for t in stored])
            if root != header.tx_root:
                add("header field 'tx_root' (the Merkle leaves of its transactions)",
                    short(root), short(header.tx_root))
            if results is not None and results_hash(results) != header.results:
                add("header field 'results' (the hash of its transactions' stored results)",
                    short(results_hash(results)),
                    short(header.results))
        if prev_header is not None and prev_header.log_size + header.tx_count != header.log_size:
            add("header field 'log_size'", prev_header.log_size + header.tx_count,
                header.log_size)
    try:
        note = parse_note(note_bytes)
        note.verify(verifiers)
        cp = Checkpoint.parse_body(note.text)
    except (MalformedError, GlucoledgerError) as exc:
        add("signed checkpoint", "a checkpoint signed by the node key",
            exc.message if isinstance(exc, GlucoledgerError) else str(exc))
        return out
    # The block hash in it against the header's (when the stored hash is already named, a
    # second finding would repeat it).
    signed_hash = header.hash() if header is not None and header.hash() == bhash else cp.block_hash
    if header is not None and cp != Checkpoint(chain, header.log_size, header.log_root,
                                               header.height, signed_hash, header.time):
        add("signed checkpoint contents", "the stored header's size/root/hash",
            "different values")
    return out


def _log_ahead(store: ChainStore, orderer: Orderer | None) -> list[str]:
    """A note when the log goes on past the store's last block (not damage: the node
    derives those blocks when it next runs)."""
    last = last_header(store)
    if orderer is None or last is None:
        return []
    extra = orderer.size() - (last.cut + 1)
    if extra <= 0:
        return []
    return [(f"the ordered log holds {extra} entries past the store's last block (height "
            f"{last.height}): the node derives them when it next runs")]


_StoredBlock = tuple[int, bytes, bytes, bytes, list[StoredTx]]


def _blocks_with_txs(store: ChainStore) -> Iterator[_StoredBlock]:
    for height, bhash, header, note in store.iter_blocks():
        yield height, bhash, header, note, store.txs_of_block(height)


def _ordered_entries(orderer: Orderer | None, stored: Sequence[StoredTx]) -> dict[int, bytes]:
    """The ordered log's entries at the block's positions, read in one range."""
    if orderer is None or not stored:
        return {}
    lo = min(t.pos for t in stored)
    hi = max(t.pos for t in stored)
    if lo < orderer.first() or hi - lo > 100_000:
        return {}  # compacted away (or absurd): the header chain and checkpoints still cover it
    out: dict[int, bytes] = {}
    pos = lo
    while pos <= hi:  # backends cap one read (etcd: 1000 entries)
        entries = orderer.read(pos, hi - pos + 1)
        if not entries:
            break
        out.update((pos + i, e) for i, e in enumerate(entries))
        pos += len(entries)
    return out


def _compare_with_log(entry: bytes, t: StoredTx, height: int) -> None:
    if entry != encode_tx_entry(t.envelope):
        _fail("tamper", "transaction envelope",
              f"the ordered entry at position {t.pos} ({short(merkle.leaf_hash(entry[1:]))})",
              f"stored bytes with leaf hash {short(merkle.leaf_hash(t.envelope))}",
              height=height, tx_index=t.idx, tx_hash=None if t.hash is None else t.hash.hex())


def _compare_block(block: Block, stored: Sequence[StoredTx], header: BlockHeader,
                   bhash: bytes, height: int) -> None:
    for i, t in enumerate(stored):
        where = {"height": height, "tx_index": t.idx,
                 "tx_hash": None if block.tx_hashes[i] is None else block.tx_hashes[i].hex()}  # type: ignore[union-attr]
        if t.hash != block.tx_hashes[i]:
            _fail("tamper", "transaction hash", short(block.tx_hashes[i]), short(t.hash), **where)
        try:
            found: Result | str = t.decoded_result()
        except (MalformedError, GlucoledgerError):
            found = "an undecodable result"
        if found != block.results[i]:
            _fail("tamper", "transaction result", block.results[i].code,
                  getattr(found, "code", found), **where)
    derived = block.header
    for name in _HEADER_FIELDS:
        a, b = getattr(derived, name), getattr(header, name)
        if a != b:
            fmt = short if isinstance(a, bytes) else str
            _fail("tamper", f"header field '{name}'", fmt(a), fmt(b), height=height)
    if bhash != block.hash:
        _fail("tamper", "stored block hash", short(block.hash), short(bhash), height=height)


def _check_checkpoint(note_bytes: bytes, block: Block, chain: str,
                      verifiers: Sequence[NoteVerifier], height: int) -> None:
    try:
        note = parse_note(note_bytes)
        note.verify(verifiers)
        cp = Checkpoint.parse_body(note.text)
    except (MalformedError, GlucoledgerError) as exc:
        _fail("tamper", "signed checkpoint", "a checkpoint signed by the node key",
              exc.message if isinstance(exc, GlucoledgerError) else str(exc), height=height)
        return
    h = block.header
    expected = Checkpoint(chain, h.log_size, h.log_root, h.height, block.hash, h.time)
    if cp != expected:
        _fail("tamper", "signed checkpoint contents", "the derived block's size/root/hash",
              "different values", height=height)


def _compare_state(store: ChainStore, replica: Replica) -> None:
    """Every differing state entry is named (the first in full, the others by key)."""
    stored = store.load_state()
    derived = replica.state.snapshot()
    if stored == derived:  # one comparison in C; the entries are named only when they differ
        return
    bad = [k for k in sorted(set(stored) | set(derived)) if stored.get(k) != derived.get(k)]
    if bad:
        key = bad[0]
        more = f" (and {len(bad) - 1} more: {', '.join(bad[1:])})" if len(bad) > 1 else ""
        _fail("tamper", f"state entry '{key}'{more}",
              short(derived.get(key)) if key in derived else "absent",
              short(stored.get(key)) if key in stored else "absent")


def _compare_nodes(store: ChainStore, derived_nodes: list[tuple[int, int, bytes]]) -> None:
    """Every differing stored Merkle node is named.

    The stored rows, in (level, index) order, are compared with the derived nodes sorted
    the same way, as two lists; only when they differ is each node looked up, to name
    them."""
    rows = store.node_rows()
    if rows == sorted(derived_nodes):
        return
    derived = {(level, index): h for level, index, h in derived_nodes}
    seen = 0
    bad: list[tuple[int, int, bytes]] = []
    for r in rows:
        level, index, h = int(r[0]), int(r[1]), bytes(r[2])
        seen += 1
        if derived.get((level, index)) != h:
            bad.append((level, index, h))
    if bad:
        level, index, h = bad[0]
        more = (" (and " + ", ".join(f"({lv}, {ix})" for lv, ix, _ in bad[1:]) + ")"
                if len(bad) > 1 else "")
        _fail("tamper", f"Merkle node (level {level}, index {index}){more}",
              short(derived.get((level, index))), short(h))
    if seen != len(derived):
        _fail("tamper", "number of stored Merkle nodes", len(derived), seen)


def _check_held(held: Checkpoint, at: BlockHeader | None, replica: Replica,
                store: ChainStore) -> None:
    if at is None or held.size > replica.tree.size:
        _fail("rollback", f"block {held.height} of your checkpoint",
              f"a log of at least {held.size} transactions",
              f"a store that ends at height {replica.next_height - 1} with "
              f"{replica.tree.size} transactions")
    assert at is not None
    if at.hash() != held.block_hash or at.log_root != held.root or at.log_size != held.size:
        _fail("fork", f"block {held.height}", f"root {short(held.root)} as in your checkpoint",
              f"root {short(at.log_root)} in the store", height=held.height)
    try:
        proof = merkle.consistency_proof(store, held.size, replica.tree.size)
        merkle.verify_consistency(held.size, replica.tree.size, proof, held.root,
                                  replica.tree.root())
    except GlucoledgerError as exc:
        _fail("fork", "consistency proof from your checkpoint", "a valid RFC 9162 proof",
              exc.message)


from .vaultcheck import VaultIntegrityError, VaultReport, verify_vault  # noqa: E402

"""A fast integrity check a consortium node runs at open, before it signs anything.

``verify`` re-executes every transaction (signatures, state machine, state table) and takes
seconds per hundred thousand transactions. At start a node only needs to know that the blocks
it would build on are the ones it signed, so this check hashes instead of re-executing:

- every stored header decodes, hashes to its stored hash, links to the previous one, and
  its heights are 0, 1, 2, ...;
- every stored checkpoint verifies under this node's key and names that header;
- every block's stored envelopes hash to its ``tx_root``, its stored results to its
  ``results`` hash, and the leaves of all blocks, appended in order, give each header's
  ``log_size``/``log_root`` (RFC 9162); the stored Merkle frontier is the derived one.

A changed byte in any envelope, result, header or checkpoint is caught. Cost: one SHA-256
per envelope and one signature check per block (not yet benchmarked at scale). Raises
StoreDamagedError (an IntegrityError) naming the height and the root this store now derives,
or returns the number of blocks checked.

Headers carry no state root, so ``state_check`` re-derives the state: it replays every
stored transaction, in order, through a fresh replica (signatures of accepted transactions
are not checked again: their outcomes are bound by the results hash that ``quick_check``
checked against the signed headers) and compares every block it derives with the stored
header and the final state with the stored state table, key by key. A changed, missing or
extra state entry is caught before the node serves a request that would read it. Cost: one
execution of every transaction (the same work as following the log once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from ..errors import GlucoledgerError, MalformedError
from ..ledger import merkle
from ..ledger.block import GENESIS_PREV, BlockHeader, results_hash
from ..ledger.checkpoint import Checkpoint, NoteVerifier, parse_note
from ..ledger.finality import Divergence
from ..ledger.log import encode_cut, encode_tx_entry
from ..state.replica import Replica
from .chainstore import ChainStore
from .verify import Finding, IntegrityError

__all__ = ["StoreDamagedError", "quick_check", "reported_damage", "state_check"]



class StoreDamagedError(IntegrityError):
    def __init__(self, finding: Finding, height: int, signed_root: bytes,
                 derived_root: bytes) -> None:
        super().__init__(finding)
        self.height = height
        self.signed_root = signed_root
        self.derived_root = derived_root


def _damaged(height: int, what: str, signed: bytes, derived: bytes,
             expected: str = "", found: str = "") -> StoreDamagedError:
    return StoreDamagedError(
        Finding("tamper", what, expected or signed.hex(), found or derived.hex(), height=height),
        height, signed, derived)


def quick_check(store: ChainStore, chain: str,
                verifier: NoteVerifier | Sequence[NoteVerifier]) -> int:
    """``verifier``: this node's key, or its keys (a consortium node's key rotates at a
    stated height: each stored note must carry a signature by one of them)."""
    own = [verifier] if isinstance(verifier, NoteVerifier) else list(verifier)
    tree = merkle.CompactTree()
    prev = GENESIS_PREV
    count = 0
    for height, bhash, raw, note_raw in store.iter_blocks():
        try:
            header = BlockHeader.decode(raw)
        except MalformedError as exc:
            raise _damaged(height, "block header encoding", b"", tree.root(),
                           "a canonical header", exc.message) from None
        if height != count or header.height != height:
            raise _damaged(height, "block height", header.log_root, tree.root(),
                           str(count), str(header.height))
        if header.hash() != bhash or header.prev != prev:
            raise _damaged(height, "block hash chain", header.log_root, tree.root(),
                           bhash.hex(), header.hash().hex())
        try:
            note = parse_note(note_raw)
            note.verify(own)
            cp = Checkpoint.parse_body(note.text)
        except GlucoledgerError as exc:
            raise _damaged(height, "signed checkpoint", header.log_root, tree.root(),
                           "a checkpoint signed by this node's key", exc.message) from None
        if cp != Checkpoint(chain, header.log_size, header.log_root, height, bhash, header.time):
            raise _damaged(height, "signed checkpoint contents", cp.root, header.log_root)
        txs = store.txs_of_block(height)
        leaves = [merkle.leaf_hash(t.envelope) for t in txs]
        for i, t in enumerate(txs):
            if t.idx != tree.size + i:
                raise _damaged(height, "transaction index", header.log_root, tree.root(),
                               str(tree.size + i), str(t.idx))
        for leaf in leaves:
            tree.append(leaf)
        try:
            res = results_hash([t.decoded_result() for t in txs])
        except GlucoledgerError:
            res = b""
        if (len(txs) != header.tx_count or merkle.root_of(leaves) != header.tx_root
                or res != header.results or tree.size != header.log_size
                or tree.root() != header.log_root):
            raise _damaged(height, "block contents (transactions or results)",
                           header.log_root, tree.root())
        prev = bhash
        count += 1
    if store.frontier() != list(tree.frontier):
        raise _damaged(count - 1, "stored Merkle frontier", tree.root(), b"")
    return count


def _digest(items: dict[str, bytes]) -> bytes:
    h = hashlib.sha256()
    for k in sorted(items):
        h.update(len(k).to_bytes(4, "big") + k.encode() + len(items[k]).to_bytes(8, "big")
                 + items[k])
    return h.digest()


def state_check(store: ChainStore, chain: str) -> int:
    """Re-derive the state from the stored blocks and compare it with the stored state.

    Run after ``quick_check``. Raises StoreDamagedError naming the first differing key (the
    "roots" are SHA-256 digests of the stored and the derived state), or returns the number
    of state entries checked.
    """
    replica = Replica(chain)
    for height, bhash, _, _ in store.iter_blocks():
        cut = 0
        for t in store.txs_of_block(height):
            try:
                ok = t.decoded_result().ok
            except GlucoledgerError:
                ok = False  # re-checked here; quick_check already bound the results
            replica.feed(t.pos, encode_tx_entry(t.envelope), sig_ok=True if ok else None)
            cut = t.pos
        header = BlockHeader.decode(store.block_row(height)[1])
        try:
            block = replica.feed(header.cut, encode_cut(height, header.time))
        except GlucoledgerError as exc:
            raise _damaged(height, "re-deriving the block", header.log_root, b"",
                           "a block", exc.message) from None
        if block is None or block.hash != bhash:
            raise _damaged(height, "re-derived block", header.log_root,
                           block.header.log_root if block else b"", bhash.hex(),
                           block.hash.hex() if block else f"no block (last tx at {cut})")
    derived = replica.state.snapshot()
    stored = store.load_state()
    if stored != derived:
        key = min(k for k in stored.keys() | derived.keys() if stored.get(k) != derived.get(k))
        what = ("missing" if key not in stored else "not derived from any transaction"
                if key not in derived else "changed")
        last = replica.last
        raise _damaged(last.height if last else 0, f"state entry {key!r} ({what})",
                       _digest(derived), _digest(stored), "the state the blocks derive",
                       f"state entry {key!r} {what}")
    return len(stored)


_MAX_HEIGHT = (1 << 63) - 1  # SQLite integers: a larger height is no block of ours


def reported_damage(health: dict[str, bytes], me: str, store: ChainStore,
                    problems: list[str] | None = None) -> list[Divergence]:
    """The other members' ``health/<name>`` reports of a damaged store (published by their
    failed integrity check), as divergences with the height, our root there and the root
    they derive; healthy reports are skipped. A report that is not the JSON object a node
    writes (``ok`` a boolean, ``height`` an integer 0..2^63-1) is skipped too, and named in
    ``problems`` (the member wrote it under its own key: peer data, never our failure)."""
    out = []
    for name, raw in health.items():
        if name == me:
            continue
        try:
            doc = json.loads(raw)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            doc = None
        height = doc.get("height", 0) if isinstance(doc, dict) else None
        if (not isinstance(doc, dict) or not isinstance(doc.get("ok", True), bool)
                or type(height) is not int or not 0 <= height <= _MAX_HEIGHT):
            if problems is not None:
                problems.append(f"member {name!r} wrote a malformed health/ report "
                                f"({bytes(raw[:80])!r}); skipped")
            continue
        if doc.get("ok", True):
            continue
        try:
            ours = BlockHeader.decode(store.block_row(height)[1]).log_root
        except GlucoledgerError:
            ours = b""
        try:
            theirs = bytes.fromhex(doc.get("derived_root", ""))
        except (TypeError, ValueError):
            theirs = b""
        reason = str(doc.get("reason") or doc.get("what", "?"))[:300]
        out.append(Divergence(name, height, ours, theirs,
                              f"it stopped: {reason}; it refuses to sign or serve"))
    return out

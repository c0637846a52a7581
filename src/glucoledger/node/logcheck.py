"""The ordered log, the chain store and the vault check each other (issue 12, "Durability").

The store is derived from the log; the vault's committed rows name transactions of the
store. Acknowledged means durable in all three, so at start (``Node``, ``IngestService``) and
in ``verify`` they must agree:

- the log holds every position the store was derived from: its size is past the cut of the
  store's last block, and the entry at that cut is the cut of that block (height and time);
  otherwise the log lost its tail, was deleted, or belongs to another history;
- the store may be *behind* its log (a crash between ordering and storing, or a store
  restored from an older backup): the node re-derives the missing blocks from the log at
  start, identical; ``verify`` reports it as a note, not as damage;
- node.json names the chain the store's genesis is of (a node.json edited, or copied from
  another node, made every signature and checkpoint look altered);
- every committed vault row names a transaction the store holds;
- a node that orders in its own log holds every batch its ledger committed, so its vault
  (``vault.db``) exists once the ledger has accepted a ``data.commit``: a missing one was
  deleted or moved, and an empty one made in its place would hide that every batch is gone.

Each disagreement is a :class:`LogMismatch` that says which side is short and what to do.
The node refuses to start (and so to append) until it is resolved. Pure reads: nothing here
writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import GlucoledgerError, StorageError
from ..ledger import merkle
from ..ledger.block import BlockHeader
from ..ledger.log import Cut, decode_entry, encode_cut, encode_tx_entry
from ..ledger.tx import SignedTx
from ..ordering.base import Orderer
from .chainstore import ChainStore, StoredTx

__all__ = ["ETCD_HINT", "LogMismatch", "check_chain", "check_log", "check_vault_present",
           "check_vault_rows", "last_header", "refuse_if_mismatched"]


@dataclass(frozen=True, slots=True)
class LogMismatch:
    #: "missing_log", "short_log", "other_log", "vault_ahead", "missing_vault", "other_chain",
    #: or "unreadable_log" (the log
    #: could not be read: etcd unreachable; nothing is known, nothing may be appended)
    kind: str
    message: str
    #: The error code behind an ``unreadable_log`` (``MEMBER_MISBEHAVED``: a member broke the
    #: log's layout on its own keys, not an outage).
    cause: str = ""


def _restore_hint(log: str) -> str:
    return (f"restore {log} from the backup taken together with chain.db (or, in a "
            "consortium, from another member); the node refuses to append until the log "
            "holds every position the store was derived from")


#: What a consortium member whose store disagrees with the etcd log does: the cluster is the
#: consortium's shared truth, so it is this member's store that is restored, never the log.
ETCD_HINT = ("the etcd cluster's log is the consortium's shared order: if it was wiped or "
             "restored from an older snapshot, restore the etcd snapshot taken with this "
             "store; otherwise this member's chain.db is not of this consortium's log: move "
             "it aside and rebuild it with `glucoledger consortium rejoin` (genesis file, "
             "this member's keys, one peer); the node refuses to append until then")


def check_log(store: ChainStore, orderer: Orderer | None, *, log_name: str = "the log",
              log_missing: bool = False, hint: str | None = None) -> list[LogMismatch]:
    """What disagrees between ``store`` and ``orderer`` (empty: they agree).

    ``log_missing``: the log's file does not exist (then ``orderer`` is not consulted).
    ``hint``: what to do, instead of restoring the log's file (``ETCD_HINT`` for members).
    A store whose last header does not decode is not judged here: ``verify`` names it.
    """
    last = last_header(store)
    if last is None:
        return []
    if log_missing or orderer is None:
        return [LogMismatch(
            "missing_log",
            f"{log_name} is missing while the store holds blocks 0 to {last.height} "
            f"(derived from log positions 0 to {last.cut}): {_restore_hint(log_name)}")]
    try:
        size = orderer.size()
        first = orderer.first()
        entry = orderer.read(last.cut, 1) if size > last.cut and first <= last.cut else None
    except GlucoledgerError as exc:
        return [LogMismatch("unreadable_log" if hint else "missing_log",
                            f"{log_name} cannot be read ({exc.message})", exc.code)]
    todo = hint or _restore_hint(log_name)
    if size <= last.cut:
        return [LogMismatch(
            "short_log",
            f"{log_name} ends at position {size - 1} ({size} entries), the store at block "
            f"{last.height}, cut at position {last.cut}: the store is ahead of its log (the "
            f"log lost its tail or was restored from an older backup); {todo}")]
    # The store's side is read outside the log's error handling: a damaged chain.db is
    # named as such (its own StorageError), never as an unreadable log.
    stored = _last_block_txs(store, last, first) if entry is not None else []
    try:
        differs = entry is not None and (not _cut_closes(entry, last, store)
                                         or _last_block_differs(stored, orderer, last))
    except GlucoledgerError as exc:
        return [LogMismatch("unreadable_log" if hint else "missing_log",
                            f"{log_name} cannot be read ({exc.message})", exc.code)]
    if differs:
        return [LogMismatch(
            "other_log",
            f"{log_name} at positions up to {last.cut} does not hold the store's block "
            f"{last.height} (its cut or its transactions differ): the log and the store "
            f"belong to different histories; {todo}")]
    return []


def _cut_closes(entry: list[bytes], last: BlockHeader, store: ChainStore) -> bool:
    """Whether ``entry`` (the log at the last block's cut) is the cut that closed it.

    A block's time is its cut's time, or its predecessor's when the cut's is earlier
    (``Replica._close``: block times never go back): a clock stepped back between two
    blocks (an NTP correction, a virtual machine restored from a snapshot, a process
    restarted on another clock) leaves a cut with an earlier time under a block with its
    predecessor's. That is the same history; only another height, or a time the block could
    not have been given, is another."""
    if entry == [encode_cut(last.height, last.time)]:
        return True
    try:
        cut = decode_entry(entry[0]) if len(entry) == 1 else None
    except GlucoledgerError:
        return False
    if not isinstance(cut, Cut) or cut.height != last.height or cut.time_ms >= last.time \
            or last.height == 0:
        return False
    try:
        _, raw, _ = store.block_row(last.height - 1)
        previous = BlockHeader.decode(raw).time
    except (GlucoledgerError, ValueError):
        return False
    return last.time == previous and entry == [encode_cut(last.height, cut.time_ms)]


def _last_block_txs(store: ChainStore, last: BlockHeader, first: int) -> list[StoredTx]:
    """The store's last block's transactions still in the log (from ``first``), or none
    when they do not hash to that block's signed ``tx_root``: an altered stored envelope is
    damage of the store (``verify`` and ``integrity.quick_check`` name it, with its
    position), not a log of another history."""
    txs = store.txs_of_block(last.height)
    if merkle.root_of([merkle.leaf_hash(t.envelope) for t in txs]) != last.tx_root:
        return []
    return [t for t in txs if t.pos >= first]


def _last_block_differs(stored: list[StoredTx], orderer: Orderer, last: BlockHeader) -> bool:
    """Whether the log's entries at the positions of the store's last block's transactions
    (``stored``, those not compacted away) differ from them (two histories can share a cut
    entry: every genesis cut is (0, 0))."""
    if not stored:
        return False
    lo = min(t.pos for t in stored)
    got: list[bytes] = []
    while lo + len(got) < last.cut:  # backends cap one read (etcd: 1000 entries)
        part = orderer.read(lo + len(got), last.cut - lo - len(got))
        if not part:
            break
        got.extend(part)
    return any(t.pos - lo >= len(got) or got[t.pos - lo] != encode_tx_entry(t.envelope)
               for t in stored)


def last_header(store: ChainStore) -> BlockHeader | None:
    """The store's last header, or None if it has none or it does not decode."""
    try:
        return store.last_header()
    except (GlucoledgerError, ValueError):
        return None


def check_vault_rows(store: ChainStore, max_committed_index: int | None) -> list[LogMismatch]:
    """The vault's committed rows must name transactions the store holds."""
    if max_committed_index is None:
        return []
    count = store.tx_count()
    if max_committed_index >= count:
        return [LogMismatch(
            "vault_ahead",
            f"the vault holds a committed batch at log index {max_committed_index}, the store "
            f"only {count} transactions: the store or its log was rolled back (restored from "
            "an older backup); restore orderer.db and chain.db from the backup taken with "
            "vault.db, or from another member")]
    return []


def check_chain(store: ChainStore, chain: str) -> list[LogMismatch]:
    """The store's first transaction (the genesis) must be of ``chain`` (node.json's)."""
    try:
        stored = SignedTx.decode(store.tx_at(0).envelope).tx.chain
    except (GlucoledgerError, ValueError, KeyError, TypeError):
        return []  # none (compacted, empty) or damaged: the store's own checks say so
    if stored == chain:
        return []
    return [LogMismatch(
        "other_chain",
        f"node.json names chain {chain!r} but the chain store holds chain {stored!r}: "
        "node.json was edited, or copied from another node; restore it from a backup (its "
        f"chain is {stored!r})")]


def check_vault_present(data_dir: Path, *, holds_batches: bool) -> list[LogMismatch]:
    """A ledger that accepted batches (``holds_batches``) needs the vault that holds them."""
    if not holds_batches or (data_dir / "vault.db").exists():
        return []
    return [LogMismatch(
        "missing_vault",
        f"vault.db is missing from {data_dir} but the ledger has committed batches: the "
        "vault was deleted or moved; restore vault.db and blobs/ from the backup taken with "
        "chain.db and orderer.db (or move them back), then run `glucoledger verify`")]


def refuse_if_mismatched(found: list[LogMismatch], data_dir: Path) -> None:
    """Raise StorageError naming every disagreement (the node must not append)."""
    if found:
        raise StorageError(f"the node in {data_dir} cannot start: "
                           + "; ".join(m.message for m in found), code=found[0].kind)

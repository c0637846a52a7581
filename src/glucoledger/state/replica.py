"""The replica: ordered log entries in, blocks out. Pure and deterministic.

Every node (and ``verify``) runs the same replica over the same entries and gets byte-identical
blocks: transactions accumulate until a cut entry for the open height closes the block; each
transaction becomes a leaf of the global RFC 9162 log whatever its result; the state machine
decides each result. A cut for another height, or one that would close an empty block, is
ignored (see ``ledger.log``).

A replica whose apply raised unexpectedly is ``failed``: it refuses further use, because its
state is no longer known to match the other nodes' (STYLE.md practice 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import GlucoledgerError, MalformedError
from ..ledger import merkle
from ..ledger.block import GENESIS_PREV, BlockHeader, Result, encode_results
from ..ledger.log import Cut, TxEntry, decode_entry
from ..ledger.trust import TrustCache
from ..ledger.tx import SignedTx
from .machine import Context, StopNode, apply
from .store import State

__all__ = ["Block", "Replica", "ReplicaFailedError"]


class ReplicaFailedError(GlucoledgerError):
    code = "replica_failed"


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    hash: bytes
    envelopes: tuple[bytes, ...]
    #: Positions of the transactions in the orderer's log.
    positions: tuple[int, ...]
    results: tuple[Result, ...]
    tx_hashes: tuple[bytes | None, ...]
    #: The RFC 9162 leaf index of the first transaction in the global log.
    first_index: int
    #: Interior perfect-subtree nodes (level 1 and up) completed by this block: (level,
    #: index, hash). A leaf's hash is derived from its transaction where it is needed.
    nodes: tuple[tuple[int, int, bytes], ...]
    #: State writes made by this block: key -> bytes, or None for a delete.
    changes: dict[str, bytes | None] = field(repr=False)
    #: Each result's canonical bytes (encoded once: hashed into the header and stored).
    result_bytes: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass(slots=True, init=False)
class _Pending:
    envelope: bytes
    sig_ok: bool | None
    position: int

    def __init__(self, envelope: bytes, sig_ok: bool | None, position: int) -> None:
        self.envelope = envelope
        self.sig_ok = sig_ok
        self.position = position


class Replica:
    def __init__(
        self,
        chain: str,
        state: State | None = None,
        tree: merkle.CompactTree | None = None,
        last: BlockHeader | None = None,
        trust: TrustCache | None = None,
    ) -> None:
        """``trust``: the owning node's memo (None for ``verify``, which establishes all)."""
        self.chain = chain
        self.trust = trust
        self.state = state if state is not None else State()
        self.tree = tree if tree is not None else merkle.CompactTree()
        self.last = last
        self._pending: list[_Pending] = []
        self.failed: str | None = None

    @property
    def next_height(self) -> int:
        return 0 if self.last is None else self.last.height + 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def discard_pending(self) -> None:
        """Forget transactions of the open block (they will be fed again from the log)."""
        self._pending = []

    def feed(self, position: int, entry: bytes, *, sig_ok: bool | None = None) -> Block | None:
        """Take the log entry at ``position``; return the block it closes, if it closes one.

        ``sig_ok`` is the result of a signature check already done elsewhere (in parallel)
        for a transaction entry; None means "check here".
        """
        if self.failed:
            raise ReplicaFailedError(f"replica stopped after a failure: {self.failed}")
        try:
            item = decode_entry(entry)
        except MalformedError:
            return None  # unknown entry kinds are not transactions: they are skipped alike
        if isinstance(item, TxEntry):
            self._pending.append(_Pending(item.envelope, sig_ok, position))
            return None
        assert isinstance(item, Cut)
        if item.height != self.next_height or not self._pending:
            return None
        return self._close(item, position)

    def _close(self, cut: Cut, position: int) -> Block:
        time_ms = max(cut.time_ms, self.last.time if self.last else 0)
        height = self.next_height
        first = self.tree.size
        results: list[Result] = []
        hashes: list[bytes | None] = []
        leaves: list[bytes] = []
        nodes: list[tuple[int, int, bytes]] = []
        chain, trust, state, tree = self.chain, self.trust, self.state, self.tree
        leaf_hash = merkle.leaf_hash
        try:
            for i, p in enumerate(self._pending):
                ctx = Context(chain, height, time_ms, first + i, trust)
                # A failed pre-check is re-checked here so the message is the same as when
                # no pre-check ran: results (and their hash) never depend on the pipeline.
                result, stx = apply(state, p.envelope, ctx, signatures_checked=p.sig_ok is True)
                results.append(result)
                hashes.append(stx.tx_hash if stx is not None else None)
                leaf = leaf_hash(p.envelope)
                leaves.append(leaf)
                nodes.extend(tree.append_inner(leaf))
        except StopNode as exc:
            self.failed = f"block {height}: {exc}"
            raise ReplicaFailedError(f"block {height}: {exc}") from exc
        except Exception as exc:
            self.failed = f"block {height}: {type(exc).__name__}: {exc}"
            raise ReplicaFailedError(
                f"applying block {height} failed unexpectedly ({type(exc).__name__}); this node "
                "stopped rather than run on in an unknown state. Restart it to replay from its "
                "last stored block."
            ) from exc
        result_bytes, results_digest = encode_results(results)
        header = BlockHeader(
            chain=self.chain,
            height=height,
            prev=self.last.hash() if self.last else GENESIS_PREV,
            time=time_ms,
            tx_count=len(leaves),
            tx_root=merkle.root_of(leaves),
            log_size=self.tree.size,
            log_root=self.tree.root(),
            results=results_digest,
            cut=position,
        )
        block = Block(
            header=header,
            hash=header.hash(),
            envelopes=tuple(p.envelope for p in self._pending),
            positions=tuple(p.position for p in self._pending),
            results=tuple(results),
            tx_hashes=tuple(hashes),
            first_index=first,
            nodes=tuple(nodes),
            changes=self.state.take_changes(),
            result_bytes=result_bytes,
        )
        self.last = header
        self._pending = []
        return block


def precheck(envelopes: Sequence[bytes]) -> list[bool | None]:
    """Check signatures of many envelopes (runs in worker processes).

    True: well-formed and every signature verifies. False: a signature fails. None: malformed
    (the replica reports why).
    """
    out: list[bool | None] = []
    for env in envelopes:
        try:
            stx = SignedTx.decode(env)
        except MalformedError:
            out.append(None)
            continue
        try:
            stx.check_signatures()
            out.append(True)
        except GlucoledgerError:
            out.append(False)
    return out

"""Block exports: a member's verified history as one CBOR value, and its checked import.

``export_blocks`` writes blocks up to the final checkpoint (what ``GET /blocks`` serves to a
peer catching up past compaction, and `consortium export` writes to a file);
``import_blocks`` stores them only after verifying them against the genesis (an empty
store) or this node's last block, re-deriving every block, and checking a final checkpoint
cosigned by the threshold of the members in force at its height. Trust advances only after
verification: a refused import stores nothing.
"""

from __future__ import annotations

from typing import Any

from .. import codec
from ..errors import ConsistencyError, MalformedError
from ..ledger.block import BlockHeader
from ..ledger.checkpoint import Checkpoint, parse_note
from ..ledger.finality import verify_final_at
from ..ledger.log import encode_cut, encode_tx_entry
from ..state.governance import member_schedule
from .service import Node

__all__ = ["export_blocks", "import_blocks"]


def export_blocks(node: Node, start: int, end: int | None = None) -> bytes:
    """Blocks ``start``.. (up to the final checkpoint, if one is stored) as one CBOR value."""
    final = node.store.get_meta("final")
    top = node.store.height() - 1
    if isinstance(final, bytes):
        top = min(top, Checkpoint.parse_body(parse_note(final).text).height)
    if end is not None:
        top = min(top, end)
    blocks = []
    for h in range(start, top + 1):
        _, header, _ = node.store.block_row(h)
        txs = node.store.txs_of_block(h)
        blocks.append({"header": header, "envelopes": [t.envelope for t in txs],
                       "positions": [t.pos for t in txs]})
    return codec.encode({"chain": node.chain, "final": final if isinstance(final, bytes)
                         else None, "blocks": blocks})


def import_blocks(node: Node, data: bytes) -> int:
    """Verify exported blocks and store them: rejoin, from an empty store or from our last block.

    Trust advances only after verification. The root of trust is this node's own last block,
    or, for an empty store, the genesis file in its folder (``genesis.json``, whose envelope
    every founding member signed): block 0 must carry exactly that envelope. Then, before
    anything is stored: the headers must chain from there; re-deriving every block from its
    transactions must give exactly those headers; and the export's final checkpoint must be
    cosigned by the threshold of the member set **in force at its height**, as the derived
    blocks' governance records it (``state.governance.member_schedule``), and name the
    derived block at that height.

    Raises ConsistencyError or MalformedError, storing nothing; returns the blocks stored.
    """
    doc = codec.decode(data, max_size=1 << 30)
    if not isinstance(doc, dict) or doc.get("chain") != node.chain:
        raise MalformedError("not a block export of this chain")
    if not isinstance(doc.get("final"), bytes):
        raise ConsistencyError("the export carries no final checkpoint: blocks cannot be "
                               "trusted without one; export from a member whose status shows "
                               "a final height")
    blocks = doc.get("blocks")
    if not isinstance(blocks, list):
        raise MalformedError("a block export holds a list of blocks")
    try:
        headers = [BlockHeader.decode(b["header"]) for b in blocks]
    except (KeyError, TypeError) as exc:
        raise MalformedError(f"a block export entry is malformed ({exc})") from None
    prev = node.last_header()
    from_genesis = prev is None
    if from_genesis:
        _check_genesis(node, blocks)
    for h in headers:
        if h.height != (prev.height + 1 if prev else 0) or h.prev != (
                prev.hash() if prev else bytes(32)):
            raise ConsistencyError(f"exported block {h.height} does not link to the previous")
        prev = h
    with node._lock:
        try:
            derived = _derive_exported(node, blocks, headers)
            final = verify_final_at(doc["final"], member_schedule(node.replica.state))
            last = derived[-1][0].header if derived else node.last_header()
            if (last is None or last.height != final.height or last.hash() != final.block_hash
                    or last.log_root != final.root):
                raise ConsistencyError("the exported blocks do not end in the cosigned "
                                       "checkpoint")
        except BaseException:  # a half-fed replica must not survive a refused import
            node.replica = node._load_replica()
            raise
        for block, frontier in derived:
            node._store_block(block, frontier)
        if derived and from_genesis:  # block 0 passed _check_genesis
            node.genesis_checked = True
        last = node.replica.last
        node._read_pos = last.cut + 1 if last else 0
    node._notify_applied()
    return len(derived)


def _check_genesis(node: Node, blocks: list[Any]) -> None:
    from .genesis_file import check_genesis

    envelopes = blocks[0].get("envelopes") if blocks and isinstance(blocks[0], dict) else None
    first = envelopes[0] if isinstance(envelopes, list) and envelopes else None
    check_genesis(node.data_dir, first if isinstance(first, bytes) else None,
                  "the export's block 0", "it is another chain's history")


def _derive_exported(node: Node, blocks: list[Any],
                     headers: list[BlockHeader]) -> list[tuple[Any, list[bytes]]]:
    """Feed the exported transactions to the replica; each block must match its header."""
    out = []
    for block_doc, header in zip(blocks, headers, strict=True):
        try:
            pairs = list(zip(block_doc["envelopes"], block_doc["positions"], strict=True))
        except (KeyError, TypeError, ValueError):
            raise MalformedError(f"exported block {header.height} is malformed") from None
        for env, pos in pairs:
            node.replica.feed(pos, encode_tx_entry(env))
        block = node.replica.feed(header.cut, encode_cut(header.height, header.time))
        if block is None or block.hash != header.hash():
            raise ConsistencyError(f"re-deriving block {header.height} gave another block: "
                                   "the export is not the consortium's history")
        out.append((block, list(node.replica.tree.frontier)))
    return out

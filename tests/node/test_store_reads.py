"""Receipts and "did it land" checks read a transaction's place in the log and its result,
not its envelope (``ChainStore.find_results``, ``results_at_positions``; issue 16, though it
measured no faster). What they read is exactly what the full rows hold, and a receipt still
names the row it came from: the accepted one, or, for a replay, its own refused row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from glucoledger.bench.ledger import account_envelopes
from glucoledger.node.chainstore import StoredResult
from glucoledger.node.service import Node


def _fields(rows: Sequence[StoredResult]) -> list[tuple[int, int, int, bytes | None, bytes]]:
    return [(t.idx, t.height, t.pos, t.hash, t.result) for t in rows]


def test_results_are_the_stored_rows_without_their_envelopes(tmp_path: Path) -> None:
    with Node.init(tmp_path / "node", workers=0) as node:
        envelopes = account_envelopes(node.chain, 5)
        first = node.submit(envelopes)
        replays = node.submit(envelopes[:2])  # no retry: ordered again, refused as replays
        assert all(r.ok for r in first) and not any(r.ok for r in replays)
        hashes = [r.tx_hash for r in first if r.tx_hash is not None]
        assert len(hashes) == 5
        full = node.store.find_txs(hashes)
        lean = node.store.find_results([*hashes, bytes(32)])
        assert set(lean) == set(hashes)  # a hash never stored has no entry
        assert [len(lean[h]) for h in hashes] == [2, 2, 1, 1, 1]
        for h in hashes:
            assert _fields(lean[h]) == _fields(full[h])
            assert not any(hasattr(t, "envelope") for t in lean[h])
            assert full[h][0].envelope in envelopes

        # By orderer position: every row of the range, each under its own position.
        rows = [t for h in hashes for t in full[h]]
        low, high = min(t.pos for t in rows), max(t.pos for t in rows)
        at = node.store.results_at_positions(low, high)
        assert sorted(at) == sorted(t.pos for t in rows)
        assert all(len(v) == 1 and v[0].pos == p for p, v in at.items())
        assert node.store.results_at_positions(high + 1, high + 100) == {}

        # The receipts come from those rows: the accepted row, then each replay's own row.
        for r, h in zip(first, hashes, strict=True):
            accepted = full[h][0]
            assert (r.index, r.height) == (accepted.idx, accepted.height)
        for r, h in zip(replays, hashes[:2], strict=True):
            refused = full[h][1]
            assert (r.index, r.height, r.result.code) == (
                refused.idx, refused.height, refused.decoded_result().code)
        # With retry, an envelope already accepted is not ordered again: its accepted row.
        size = node.store.tx_count()
        again = node.submit(envelopes[:1], retry=True)
        assert node.store.tx_count() == size
        assert (again[0].index, again[0].ok) == (full[hashes[0]][0].idx, True)

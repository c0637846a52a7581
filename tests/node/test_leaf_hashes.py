"""The chain store keeps a transaction once: its leaf's hash is hashed from the stored
envelope when a proof needs it, not stored as a level 0 Merkle node (issue 16: one SQLite
row fewer a transaction). Proofs and ``verify`` give what they gave, on a store written
this way and on one written before, whose level 0 rows nothing reads any more."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from glucoledger.bench.ledger import account_envelopes
from glucoledger.ledger import merkle
from glucoledger.ledger.block import BlockHeader
from glucoledger.node.service import Node


def _check_proofs(node: Node) -> int:
    """Every transaction's inclusion proof at every block, and consistency between blocks,
    checked against the roots the block headers hold. Returns the log size."""
    heads = [BlockHeader.decode(raw) for _, _, raw, _ in node.store.iter_blocks()]
    sizes = {h.log_size: h.log_root for h in heads}
    size = max(sizes)
    envelopes = [node.store.tx_at(i).envelope for i in range(size)]
    for n, root in sizes.items():
        for i in range(n):
            merkle.verify_inclusion(merkle.leaf_hash(envelopes[i]), i, n,
                                    node.inclusion_proof(i, n), root)
        for m, old_root in sizes.items():
            if 0 < m <= n:
                merkle.verify_consistency(m, n, merkle.consistency_proof(node.store, m, n),
                                          old_root, root)
    return size


def test_no_leaf_is_stored_and_every_proof_still_verifies(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "node", workers=0)
    try:
        envs = account_envelopes(node.chain, 45)
        for a, b in ((0, 13), (13, 20), (20, 45)):  # blocks of 13, 7, 25 after genesis
            assert all(r.ok for r in node.submit(envs[a:b]))
        db = sqlite3.connect(tmp_path / "node" / "chain.db")
        levels = dict(db.execute("SELECT level, COUNT(*) FROM nodes GROUP BY level"))
        db.close()
        assert 0 not in levels and levels[1] > 0
        assert _check_proofs(node) == 46
        assert node.verify().transactions == 46
    finally:
        node.close()


def test_a_store_written_before_keeps_its_leaf_rows_unread(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "node", workers=0)
    try:
        assert all(r.ok for r in node.submit(account_envelopes(node.chain, 20)))
        size = node.store.tx_count()
        # A store of the code before held every leaf as a level 0 row; here, a wrong one:
        # nothing reads it, so proofs and verify are what they are without it.
        db = sqlite3.connect(tmp_path / "node" / "chain.db")
        db.executemany("INSERT INTO nodes VALUES (0, ?, zeroblob(32))",
                       [(i,) for i in range(size)])
        db.commit()
        db.close()
        assert _check_proofs(node) == size
        assert node.verify().transactions == size
    finally:
        node.close()

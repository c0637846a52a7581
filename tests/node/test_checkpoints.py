"""The chain store checkpoints its WAL from a thread of its own (sqlitetx.Checkpointer), so
the thread that stores blocks never waits for a checkpoint's writes and fsyncs (issue 16:
commit slowed as the chain grew). A node's blocks reach the database file through it, the
store opened read-only starts none, and a closed node leaves no thread and no WAL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from glucoledger.bench.ledger import account_envelopes
from glucoledger.node.chainstore import ChainStore
from glucoledger.node.service import Node

from ..servers import wait_until


def test_a_node_checkpoints_its_chain_store_from_its_own_thread(
        tmp_path: Path, checkpoint_threads: Callable[[], list[str]]) -> None:
    node = Node.init(tmp_path / "node", workers=0)
    db_file = tmp_path / "node" / "chain.db"
    try:
        assert checkpoint_threads() == ["checkpoint chain.db"]
        writer = node.store._db  # the connection that stores blocks: a backstop only
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16_000
        before = db_file.stat().st_size
        assert all(r.ok for r in node.submit(account_envelopes(node.chain, 300)))
        wait_until(lambda: db_file.stat().st_size != before, 20,
                   "the thread to copy the stored block back")
        other = sqlite3.connect(db_file, isolation_level=None)
        count = other.execute("SELECT COUNT(*) FROM txs").fetchone()[0]
        other.close()
        assert count == node.store.tx_count() > 300
        ro = ChainStore(db_file, readonly=True)
        assert checkpoint_threads() == ["checkpoint chain.db"]  # a read-only store starts none
        assert ro.tx_count() == count
        ro.close()
    finally:
        node.close()
    assert checkpoint_threads() == []
    assert not Path(f"{db_file}-wal").exists()
    node = Node(tmp_path / "node", workers=0)  # reopens what it stored
    try:
        assert node.store.tx_count() == count
        assert node.verify().blocks == node.store.height()
    finally:
        node.close()

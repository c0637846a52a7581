"""Rollback, fork, determinism and checkpoints against the real store."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from glucoledger import crypto
from glucoledger.ledger import merkle
from glucoledger.ledger.checkpoint import Checkpoint, parse_note
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import IntegrityError
from glucoledger.state.accounts_model import account_id, single_key_policy


def add_accounts(node: Node, n: int) -> None:
    envs = []
    for _ in range(n):
        k = crypto.generate()
        pol = single_key_policy(k.public)
        envs.append(sign(Transaction(node.chain, "account.create",
                                     {"kind": "patient", "policy": pol},
                                     account_id("patient", pol), 0), [k]).raw)
    assert all(r.ok for r in node.submit(envs))


@pytest.fixture
def grown(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A node at height k (copied aside), then grown further; returns both and a checkpoint."""
    a = tmp_path / "a"
    node = Node.init(a, workers=1)
    with node:
        for _ in range(3):
            add_accounts(node, 3)
    early = tmp_path / "early"
    shutil.copytree(a, early)
    with Node(a, workers=1) as node:
        for _ in range(3):
            add_accounts(node, 3)
        cp = node.checkpoint()
    return a, early, cp


def test_checkpoint_verifies_with_only_the_node_key(grown: tuple[Path, Path, bytes]) -> None:
    a, _, cp = grown
    with Node(a, workers=1) as node:
        vkey = node.verifier()
        note = parse_note(cp)
        note.verify([vkey])
        body = Checkpoint.parse_body(note.text)
        assert body.size == node.replica.tree.size and body.root == node.replica.tree.root()


def test_extension_of_a_held_checkpoint_passes(grown: tuple[Path, Path, bytes]) -> None:
    a, _, cp = grown
    with Node(a, workers=1) as node:
        add_accounts(node, 2)
    report = verify_folder(a, from_checkpoint=cp, workers=1)
    assert report.checkpoint_height == Checkpoint.parse_body(parse_note(cp).text).height


def test_rollback_is_caught(grown: tuple[Path, Path, bytes]) -> None:
    _, early, cp = grown
    with pytest.raises(IntegrityError) as info:
        verify_folder(early, from_checkpoint=cp, workers=1)
    assert info.value.finding.kind == "rollback"
    assert "rolled back" in str(info.value)


def test_truncated_store_is_caught(grown: tuple[Path, Path, bytes]) -> None:
    a, _, cp = grown
    db = sqlite3.connect(a / "chain.db")
    top = db.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
    db.execute("DELETE FROM blocks WHERE height >= ?", (top - 1,))
    db.execute("DELETE FROM txs WHERE height >= ?", (top - 1,))
    db.commit()
    db.close()
    with pytest.raises(IntegrityError):
        verify_folder(a, from_checkpoint=cp, workers=1)


def test_fork_is_caught(grown: tuple[Path, Path, bytes]) -> None:
    """The early copy rewritten with other transactions after height k: same keys, new history."""
    _, early, cp = grown
    with Node(early, workers=1) as node:
        for _ in range(4):
            add_accounts(node, 3)
    with pytest.raises(IntegrityError) as info:
        verify_folder(early, from_checkpoint=cp, workers=1)
    assert info.value.finding.kind == "fork"


def test_replay_gives_byte_identical_blocks_and_checkpoints(tmp_path: Path) -> None:
    a = tmp_path / "a"
    with Node.init(a, workers=1) as node:
        for i in range(4):
            add_accounts(node, 2 + i)
        node.submit([b"\x01junk"])
    b = tmp_path / "b"
    b.mkdir()
    for name in ("node.json", "master.key", "orderer.db"):
        shutil.copy(a / name, b / name)
    shutil.copytree(a / "wallet", b / "wallet")
    with Node(b, workers=2) as replayed:  # parallel signature checks must not change a byte
        replayed.sync()
    rows = "SELECT height, hash, header, checkpoint FROM blocks ORDER BY height"
    txs = "SELECT idx, height, pos, envelope, hash, result FROM txs ORDER BY idx"
    da, db_ = sqlite3.connect(a / "chain.db"), sqlite3.connect(b / "chain.db")
    assert da.execute(rows).fetchall() == db_.execute(rows).fetchall()
    assert da.execute(txs).fetchall() == db_.execute(txs).fetchall()
    assert da.execute("SELECT * FROM state ORDER BY key").fetchall() == \
        db_.execute("SELECT * FROM state ORDER BY key").fetchall()


def test_inclusion_and_consistency_proofs_from_the_store(grown: tuple[Path, Path, bytes]) -> None:
    a, _, cp = grown
    with Node(a, workers=1) as node:
        size, root = node.replica.tree.size, node.replica.tree.root()
        for idx in range(size):
            t = node.store.tx_at(idx)
            merkle.verify_inclusion(merkle.leaf_hash(t.envelope), idx, size,
                                    node.inclusion_proof(idx), root)
        old = Checkpoint.parse_body(parse_note(cp).text)
        merkle.verify_consistency(3, size, node.consistency_proof(3),
                                  _root_at(node, 3), root)
        assert old.size <= size


def _root_at(node: Node, size: int) -> bytes:
    return merkle.root_of([merkle.leaf_hash(node.store.tx_at(i).envelope) for i in range(size)])


def test_replay_in_another_process_with_another_hash_seed(tmp_path: Path) -> None:
    """Set and dict order must never leak into results: a replica with another
    PYTHONHASHSEED must derive the same bytes, refusals with several reasons included."""
    import os
    import subprocess
    import sys

    a = tmp_path / "a"
    with Node.init(a, workers=1) as node:
        add_accounts(node, 3)
        k1, k2 = crypto.generate(), crypto.generate()
        strangers = [crypto.generate() for _ in range(4)]
        pol = single_key_policy(k1.public)
        pid = account_id("patient", pol)
        node.submit([sign(Transaction(node.chain, "account.create",
                                      {"kind": "patient", "policy": pol},
                                      pid, 0), [k1]).raw])
        bad = {"cosigners": [{"key": k.public.to_value(), "w": {"a": 0, "b": 0, "c": 0}}
                             for k in (k1, k2)],
               "thresholds": {"default": 1, "a": 2, "b": 2, "c": 2}}
        node.submit([node.build("account.update", {"policy": bad}, pid, [k1]).raw,
                     node.build("account.update", {"policy": pol}, pid, [k1, *strangers]).raw])
    b = tmp_path / "b"
    b.mkdir()
    for name in ("node.json", "master.key", "orderer.db"):
        shutil.copy(a / name, b / name)
    shutil.copytree(a / "wallet", b / "wallet")
    code = ("import sys; from glucoledger.node.service import Node; "
            "n = Node(sys.argv[1], workers=1); n.sync(); n.close()")
    for seed in ("1", "2"):
        if (b / "chain.db").exists():
            (b / "chain.db").unlink()
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        subprocess.run([sys.executable, "-c", code, str(b)], check=True, env=env, timeout=120)
        rows = "SELECT height, hash, header, checkpoint FROM blocks ORDER BY height"
        da, db_ = sqlite3.connect(a / "chain.db"), sqlite3.connect(b / "chain.db")
        assert da.execute(rows).fetchall() == db_.execute(rows).fetchall()
        da.close()
        db_.close()

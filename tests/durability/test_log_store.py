"""The ordered log, the chain store and the vault check each other, at start and in verify.

A shorter log, a missing log, a log of another history, or a vault ahead of its store must
be named as such, with what to restore; the node must refuse to start (so nothing is
appended or acknowledged) until it is resolved. A store *behind* its log is not damage: the
node re-derives the missing blocks, identical, and verify notes it.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from glucoledger.errors import StorageError
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import IntegrityError

from ..cli.test_cli import run
from .helpers import add_uploads, make_node


def _drop_log_tail(folder: Path, rows: int) -> None:
    db = sqlite3.connect(folder / "orderer.db")
    db.execute("DELETE FROM log WHERE pos >= (SELECT MAX(pos) + 1 - ? FROM log)", (rows,))
    db.commit()
    db.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_log_that_lost_its_tail_is_named_at_start_and_by_verify(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder)
    _drop_log_tail(folder, 10)
    before = _files(folder)
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    assert info.value.finding.kind == "log" and info.value.finding.what == "short_log"
    assert "the store is ahead of its log" in info.value.message
    assert "restore the ordered log (orderer.db)" in info.value.message
    with pytest.raises(StorageError, match="the store is ahead of its log") as start:
        Node(folder, workers=1)
    assert start.value.code == "short_log"
    assert _files(folder) == before  # verify and a refused start wrote nothing
    # The command line: verify fails and names it, ingest refuses; no traceback.
    r = run("verify", "--data", str(folder))
    assert r.returncode != 0 and "ahead of its log" in r.stderr and "Traceback" not in r.stderr
    r = run("simulate", "--patients", "1", "--days", "1", "--data", str(folder))
    assert r.returncode != 0 and "ahead of its log" in r.stderr and "Traceback" not in r.stderr
    assert _files(folder) == before


def test_a_deleted_log_is_named_and_not_recreated(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder)
    for name in ("orderer.db", "orderer.db-wal", "orderer.db-shm"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(IntegrityError, match="orderer.db|ordered log") as info:
        verify_folder(folder, workers=1)
    assert info.value.finding.what == "missing_log"
    with pytest.raises(StorageError, match="orderer.db is missing") as start:
        Node(folder, workers=1)
    assert start.value.code == "missing_log"
    assert not (folder / "orderer.db").exists()  # an empty log was not made under the store


def test_a_log_of_another_history_is_named(tmp_path: Path) -> None:
    make_node(tmp_path / "a")
    make_node(tmp_path / "b")
    for name in ("orderer.db", "orderer.db-wal", "orderer.db-shm"):
        (tmp_path / "a" / name).unlink(missing_ok=True)
        if (tmp_path / "b" / name).exists():
            shutil.copy(tmp_path / "b" / name, tmp_path / "a" / name)
    with pytest.raises(StorageError, match="different histories"):
        Node(tmp_path / "a", workers=1)


def test_a_store_rolled_back_is_rederived_and_a_vault_ahead_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    first = make_node(folder, uploads=3)
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in ("chain.db", "orderer.db"):
        shutil.copy(folder / name, backup / name)  # closed cleanly: no -wal to copy
    later = add_uploads(folder, range(4, 8))
    # 1. The store alone rolled back: the log still holds everything; verify notes it, and
    #    the node re-derives the lost blocks at start, identical (the receipts still hold).
    for suffix in ("", "-wal", "-shm"):
        (folder / f"chain.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup / "chain.db", folder / "chain.db")
    report = verify_folder(folder, workers=1)
    assert report.notes and "past the store's last block" in report.notes[0]
    with Node(folder, workers=1) as node:
        node.sync()
        for r in first + later:
            assert node.store.tx_at(r.tx_index).hash == r.tx_hash
    assert not verify_folder(folder, workers=1).notes
    # 2. Store and log both rolled back, the vault not: its committed rows name
    #    transactions the ledger no longer holds: refused, named, nothing changed.
    for name in ("chain.db", "orderer.db"):
        for suffix in ("", "-wal", "-shm"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
        shutil.copy(backup / name, folder / name)
    with Node(folder, workers=1) as node:
        vault = open_vault(node)
        try:
            with pytest.raises(StorageError, match="the vault holds a committed batch") as info:
                IngestService(node, vault, workers=1)
            assert info.value.code == "vault_ahead"
        finally:
            vault.close()


def test_a_clock_stepped_back_between_blocks_is_the_same_history(tmp_path: Path) -> None:
    """A host clock stepped back (NTP, a restored virtual machine, a restart on another
    clock) gives a cut an earlier time than the block before it; the block keeps its
    predecessor's time (block times never go back). The node must still start, verify must
    pass, and a log whose cut names another time or height must still be refused."""
    from glucoledger.bench.ledger import account_envelopes
    from glucoledger.ledger.log import decode_entry, encode_cut

    folder = tmp_path / "node"
    t0 = 1_800_000_000.0
    node = Node.init(folder, workers=1, clock=lambda: t0)
    chain = node.chain
    node.submit(account_envelopes(chain, 2))
    first = node.store.last_header()
    node.close()
    with Node(folder, workers=1, clock=lambda: t0 - 3600) as node:  # an hour back
        node.submit(account_envelopes(chain, 2))
        last = node.store.last_header()
    assert first is not None and last is not None and last.height == first.height + 1
    assert last.time == first.time  # clamped: the block did not go back in time
    db = sqlite3.connect(folder / "orderer.db")
    (raw,) = db.execute("SELECT entry FROM log WHERE pos = ?", (last.cut,)).fetchone()
    db.close()
    cut = decode_entry(bytes(raw))
    assert cut.time_ms == int((t0 - 3600) * 1000) < last.time  # type: ignore[union-attr]
    with Node(folder, workers=1) as node:  # starts: the same history
        node.submit(account_envelopes(chain, 1))
    verify_folder(folder, workers=1)
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    # A cut that could not have closed that block is still another history.
    with Node(folder, workers=1) as node:
        last = node.store.last_header()
    assert last is not None
    db = sqlite3.connect(folder / "orderer.db")
    db.execute("UPDATE log SET entry = ? WHERE pos = ?",
               (encode_cut(last.height, last.time + 1), last.cut))
    db.commit()
    db.close()
    with pytest.raises(StorageError) as start:
        Node(folder, workers=1)
    assert start.value.code == "other_log"


def test_a_deleted_vault_is_named_and_not_recreated_empty(tmp_path: Path) -> None:
    """vault.db gone under a ledger that committed batches: verify fails naming it, and the
    node refuses to open an empty vault in its place (reads and new uploads would hide that
    every batch is lost); a node that never committed a batch still opens one."""
    folder = tmp_path / "node"
    make_node(folder, uploads=2)
    (folder / "vault.db").unlink()
    before = _files(folder)
    r = run("verify", "--data", str(folder))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "vault.db is missing" in r.stderr and "Traceback" not in r.stderr
    with Node(folder, workers=1) as node, pytest.raises(StorageError) as info:
        open_vault(node)
    assert info.value.code == "missing_vault"
    assert "restore vault.db and blobs/" in info.value.message
    r = run("batches", "--patient", "alice", "--data", str(folder))
    assert r.returncode == 3 and "vault.db is missing" in r.stderr, r.stdout + r.stderr
    assert _files(folder) == before and not (folder / "vault.db").exists()
    fresh = tmp_path / "fresh"
    Node.init(fresh, workers=1).close()
    with Node(fresh, workers=1) as node:
        open_vault(node).close()
    assert run("verify", "--data", str(fresh)).returncode == 0


def test_two_processes_on_one_folder_store_each_block_once(tmp_path: Path) -> None:
    """Two openers of one folder (a command while `serve` runs, two commands) derive the same
    blocks from the same log: the second to store one found it there and failed ("UNIQUE
    constraint failed: blocks.height"), stopping its node. The identical block is now taken as
    stored; both go on writing."""
    from glucoledger.crypto import generate
    from glucoledger.node.devices import create_keyed_account

    folder = tmp_path / "node"
    make_node(folder, uploads=1)
    with Node(folder, workers=1) as a, Node(folder, workers=1) as b:
        create_keyed_account(a, "patient", [generate("ed25519")])  # a stores the next block
        b.sync()  # b derives that block from the shared log and stores it: already there
        assert b.store.height() == a.store.height()
        create_keyed_account(b, "patient", [generate("ed25519")])  # b still writes
        a.sync()
        assert a.store.height() == b.store.height()
        top = a.store.height()
    assert verify_folder(folder, workers=1).blocks == top

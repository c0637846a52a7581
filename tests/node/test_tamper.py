"""Tampering with any stored byte is caught by verify, which names the spot."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from glucoledger import crypto
from glucoledger.errors import GlucoledgerError, StorageError
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import IntegrityError
from glucoledger.state.accounts_model import account_id, single_key_policy

COLUMNS = [
    ("blocks", "header", "height"),
    ("blocks", "hash", "height"),
    ("blocks", "checkpoint", "height"),
    ("txs", "envelope", "idx"),
    ("txs", "hash", "idx"),
    ("txs", "result", "idx"),
    ("state", "value", "key"),
    ("nodes", "hash", "rowid"),
    ("meta", "value", "key"),
]


def build_chain(folder: Path, blocks: int = 6, per_block: int = 4) -> None:
    node = Node.init(folder, workers=1)
    with node:
        for _ in range(blocks):
            envs = []
            for _ in range(per_block):
                k = crypto.generate()
                pol = single_key_policy(k.public)
                envs.append(sign(Transaction(node.chain, "account.create",
                                             {"kind": "patient", "policy": pol},
                                             account_id("patient", pol), 0), [k]).raw)
            envs.append(b"\x00garbage")  # a rejected one too
            node.submit(envs)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chain") / "node"
    build_chain(folder)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _flip(db_path: Path, table: str, column: str, key: str, rng: random.Random) -> str:
    db = sqlite3.connect(db_path)
    if table == "nodes":
        rows = db.execute("SELECT level, idx, hash FROM nodes").fetchall()
        level, idx, value = rng.choice(rows)
        where, args = "level = ? AND idx = ?", (level, idx)
    else:
        rows = db.execute(f"SELECT {key}, {column} FROM {table} "
                          f"WHERE {column} IS NOT NULL").fetchall()
        k, value = rng.choice(rows)
        where, args = f"{key} = ?", (k,)
    data = bytearray(value)
    pos = rng.randrange(len(data))
    data[pos] ^= 1 << rng.randrange(8)
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (bytes(data), *args))
    db.commit()
    db.close()
    return f"{table}.{column} row {args} byte {pos}"


@pytest.mark.parametrize("seed", range(45))
def test_flipped_stored_byte_is_caught(pristine: Path, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    table, column, key = COLUMNS[seed % len(COLUMNS)]
    folder = _copy(pristine, tmp_path / "n")
    where = _flip(folder / "chain.db", table, column, key, rng)
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    f = info.value.finding
    assert f.kind == "tamper", where
    assert f.what and f.expected != f.found, where
    if table in ("txs", "blocks"):
        assert f.height is not None, (where, f)
    if table == "txs":
        assert f.tx_index is not None, (where, f)


def test_pristine_store_verifies(pristine: Path, tmp_path: Path) -> None:
    node = Node(_copy(pristine, tmp_path / "n"), workers=1)
    with node:
        report = node.verify()
    assert report.blocks == 7 and report.transactions == 31 and report.rejected == 6


@pytest.mark.parametrize("seed", range(20))
def test_random_file_byte_flip_never_passes_silently(pristine: Path, tmp_path: Path,
                                                     seed: int) -> None:
    """A flip anywhere in the file is caught, or breaks SQLite, or hit unused space."""
    folder = _copy(pristine, tmp_path / "n")
    path = folder / "chain.db"
    before = _dump(path)
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    pos = rng.randrange(100, len(data))  # past SQLite's file header
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        after = _dump(path)
    except sqlite3.DatabaseError:
        return  # SQLite itself reports the file corrupt
    if after == before:
        return  # the byte was in free space: nothing stored changed
    with pytest.raises((IntegrityError, StorageError, GlucoledgerError)):
        verify_folder(folder, workers=1)


def _dump(path: Path) -> list[object]:
    db = sqlite3.connect(path)
    try:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("meta", "blocks", "txs", "nodes", "state")]
    finally:
        db.close()


def _flip_at(db_path: Path, table: str, column: str, key: str, k: int) -> None:
    db = sqlite3.connect(db_path)
    (value,) = db.execute(f"SELECT {column} FROM {table} WHERE {key} = ?", (k,)).fetchone()
    data = bytearray(value)
    data[len(data) // 2] ^= 0x10
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (bytes(data), k))
    db.commit()
    db.close()


def _tx_at(db_path: Path, height: int, nth: int) -> int:
    db = sqlite3.connect(db_path)
    (idx,) = db.execute("SELECT idx FROM txs WHERE height = ? ORDER BY idx LIMIT 1 OFFSET ?",
                        (height, nth)).fetchone()
    db.close()
    return int(idx)


def test_two_damaged_envelopes_in_two_blocks_are_both_named(pristine: Path,
                                                            tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path / "n")
    first, second = _tx_at(folder / "chain.db", 2, 1), _tx_at(folder / "chain.db", 5, 2)
    _flip_at(folder / "chain.db", "txs", "envelope", "idx", first)
    _flip_at(folder / "chain.db", "txs", "envelope", "idx", second)
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    exc = info.value
    assert exc.finding == exc.findings[0]
    named = {(f.height, f.tx_index) for f in exc.findings}
    assert (2, first) in named and (5, second) in named, exc.findings
    assert all(f.kind == "tamper" and f.expected != f.found for f in exc.findings)
    assert len(exc.findings) == 2, exc.findings  # each damage once, none invented
    assert exc.unchecked and "block 2" in exc.unchecked[0]
    # The message is the first finding's, as when verify stopped there.
    assert str(exc).startswith(exc.finding.describe())


def test_two_damaged_headers_are_both_named(pristine: Path, tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path / "n")
    for height in (1, 4):
        _flip_at(folder / "chain.db", "blocks", "header", "height", height)
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    heights = {f.height for f in info.value.findings}
    assert info.value.finding.height == 1
    assert {1, 4} <= heights, info.value.findings
    assert heights <= {1, 4, 5}, info.value.findings  # 5: at most its link to the damaged 4


def test_one_damage_is_one_finding(pristine: Path, tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path / "n")
    _flip_at(folder / "chain.db", "txs", "envelope", "idx", _tx_at(folder / "chain.db", 3, 0))
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    assert len(info.value.findings) == 1, info.value.findings

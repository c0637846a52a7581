"""A damaged node folder exits 3 from every command, as ``verify`` does (issue 13).

One pristine node (a patient, a device, six committed batches) is copied and damaged six
ways: a flipped bit in a block header, in a transaction envelope, garbage over SQLite pages
of chain.db, the ordered log's tail lost, another node's master key, and a node.json naming
another chain. Every read command then exits 3 with one message that names the damage and
says what to do (``verify`` to list every bad spot, or what to restore), no traceback, and
the folder is left exactly as it was. On the pristine copy the same commands exit 0, so the
table proves the damage is what they refuse.
"""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ..durability.helpers import make_node
from .test_cli import run

WIDE = ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
COMMANDS: list[tuple[str, ...]] = [
    ("blocks",), ("checkpoint",), ("account", "list"), ("device", "list"),
    ("grants", "--patient", "alice"), ("audit", "--patient", "alice"),
    ("batches", "--patient", "alice"),
    ("readings", "--patient", "alice", "--from", WIDE[0], "--to", WIDE[1]),
    ("read", "--as", "alice", "--patient", "alice", "--view", "raw", "--format", "json"),
    ("export-fhir", "alice", "--as", "alice"),
    ("verify-vault",),  # checks the ledger it trusts before the vault against it
    ("verify",),
]


def _flip(db: Path, table: str, column: str, where: str) -> None:
    con = sqlite3.connect(db)
    try:
        key, value = con.execute(f"SELECT rowid, {column} FROM {table} WHERE {where} "
                                 "ORDER BY rowid LIMIT 1").fetchone()
        data = bytearray(value)
        data[len(data) // 2] ^= 0x10
        con.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (bytes(data), key))
        con.commit()
    finally:
        con.close()


def _pages(folder: Path) -> None:
    path = folder / "chain.db"
    data = bytearray(path.read_bytes())
    for off in range(4096, len(data), 8192):  # every other page after the first
        data[off + 100:off + 400] = bytes((i * 37 + 11) % 256 for i in range(300))
    path.write_bytes(bytes(data))


def _log_tail(folder: Path) -> None:
    con = sqlite3.connect(folder / "orderer.db")
    try:
        con.execute("DELETE FROM log WHERE pos >= (SELECT MAX(pos) - 4 FROM log)")
        con.commit()
    finally:
        con.close()


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "header": (lambda f: _flip(f / "chain.db", "blocks", "header", "height = 3"),
               "glucoledger verify"),
    "envelope": (lambda f: _flip(f / "chain.db", "txs", "envelope", "height = 4"),
                 "glucoledger verify"),
    "sqlite pages": (_pages, "restore"),
    "log tail lost": (_log_tail, "orderer.db"),
    # another node's master key: its wallet does not open (was "cannot open sealed
    # wallet-key: wrong key, or the data was altered", naming neither the key nor a fix)
    "another master key": (lambda f: (f / "master.key").write_bytes(
        base64.b64encode(bytes(range(32))) + b"\n"), "master.key"),
    # node.json of another chain: every signature and checkpoint looked altered ("restore
    # chain.db", "checkpoint contents differs: expected X, found X")
    "node.json of another chain": (lambda f: (f / "node.json").write_text(
        '{"chain": "another/chain", "name": "node-1"}'), "node.json"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("damaged") / "node"
    make_node(folder)
    for name in ("chain.db", "orderer.db"):  # one file each: copies carry no WAL
        con = sqlite3.connect(folder / name)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_the_commands_work_on_the_pristine_folder(pristine: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(pristine, tmp_path / "n")
    for cmd in COMMANDS:
        r = run(*cmd, "--data", str(folder))
        assert r.returncode == 0, (cmd, r.stderr[-1500:])


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_every_command_exits_3_on_a_damaged_folder(pristine: Path, tmp_path: Path,
                                                    damage: str) -> None:
    folder = shutil.copytree(pristine, tmp_path / "n")
    hurt, advice = DAMAGES[damage]
    hurt(folder)
    before = _files(folder)
    for cmd in COMMANDS:
        r = run(*cmd, "--data", str(folder))
        where = f"{damage}: {' '.join(cmd)}: {r.stderr[-1500:]}"
        assert r.returncode == 3, where
        assert "Traceback" not in r.stderr + r.stdout, where
        assert advice in r.stderr.replace("\n", " ") or cmd[0].startswith("verify"), where
        assert _files(folder) == before, f"{where}: the refused command changed the folder"
    assert os.path.exists(folder / "chain.db")

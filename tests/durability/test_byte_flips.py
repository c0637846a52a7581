"""Byte flips across every file of a node folder, and edits of every vault index column.

Contract: after any damage, ``verify`` or ``verify-vault`` (each run read-only, without
starting the node) reports it whenever the damage changes a value a read can return (block
headers, transactions and results, state, the batch index, the readings of every batch);
neither ever raises anything but the error tree; and every damaged item is named.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from glucoledger.errors import GlucoledgerError
from glucoledger.node.chainstore import ChainStore
from glucoledger.node.keystore import Wallet, load_master_key
from glucoledger.node.research_store import ResearchStore
from glucoledger.node.service import NodeConfig, verify_folder
from glucoledger.node.vaultcheck import VaultIntegrityError, verify_vault_folder
from glucoledger.node.verify import IntegrityError
from glucoledger.vault.blobstore import FsBlobStore
from glucoledger.vault.store import Vault

from ..cli.test_cli import run
from .helpers import PROFILE, make_node
from .smallfs import small_fs

PARTICIPANT = b"\x07" * 32


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("flips") / "node"
    make_node(folder, uploads=5)
    research = ResearchStore(folder, load_master_key(folder))  # the sealed side files too
    research.secret()
    research.set_profile(PARTICIPANT, PROFILE)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def read_view(folder: Path) -> Any:
    """Everything a read can return, or the error a read answers."""
    try:
        config = NodeConfig.load(folder)
        master = load_master_key(folder)
        store = ChainStore(folder / "chain.db", readonly=True)
        try:
            blocks = [(h, bh, hdr, [(t.idx, t.pos, t.envelope, t.hash, t.result)
                                    for t in store.txs_of_block(h)])
                      for h, bh, hdr, _note in store.iter_blocks()]
            state = sorted(store.load_state().items())
        finally:
            store.close()
        vault = Vault(folder, master, config.chain, readonly=True,
                      blobs=FsBlobStore(folder / "blobs", fsync=False))
        try:
            batches = []
            for row in vault.batches():
                try:
                    _salt, batch = vault.open(row)
                    batches.append((row.as_tuple(), [r.to_value() for r in batch.items]))
                except GlucoledgerError as exc:
                    batches.append((row.as_tuple(), type(exc).__name__))
        finally:
            vault.close()
        wallet = Wallet(folder, master)
        keys = []
        for f in sorted((folder / "wallet").glob("*.key")):
            try:
                keys.append((f.stem, wallet.load(f.stem).public.to_value()))
            except GlucoledgerError as exc:
                keys.append((f.stem, type(exc).__name__))
        research = ResearchStore(folder, master)
        side: list[Any] = []
        for read in (research.secret, lambda: research.profile(PARTICIPANT).to_value()):
            try:
                side.append(read())
            except GlucoledgerError as exc:
                side.append(type(exc).__name__)
        return (config, blocks, state, batches, keys, side)
    except GlucoledgerError as exc:
        return type(exc).__name__


def check(folder: Path) -> list[str]:
    """What verify and verify-vault report ([] = both OK); only the error tree may escape."""
    reports: list[str] = []
    for fn in (lambda: verify_folder(folder, workers=1), lambda: verify_vault_folder(folder)):
        try:
            fn()
        except VaultIntegrityError as exc:
            assert len(exc.findings) >= 1 and exc.message.count("tamper") == len(exc.findings)
            reports.append(exc.message)
        except GlucoledgerError as exc:
            assert exc.message, "an error without a message"
            reports.append(exc.message)
    return reports


def _files(folder: Path) -> list[Path]:
    # The names registry (directory.json) is a local address book, not data a read of the
    # ledger or the vault returns; it is flipped too (no crash allowed) but not judged.
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_200_random_byte_flips_are_caught_or_harmless(pristine: Path, tmp_path: Path) -> None:
    assert check(pristine) == []
    base = read_view(pristine)
    files = _files(pristine)
    rng = random.Random(2026)
    changed = caught = 0
    silent: list[str] = []
    for trial in range(200):
        folder = _copy(pristine, tmp_path / "n")
        target = rng.choice(files)
        path = folder / target.relative_to(pristine)
        data = bytearray(path.read_bytes())
        if not data:
            continue
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        reports = check(folder)  # never raises outside the error tree
        view = read_view(folder)
        judged = target.name != "directory.json"
        if view != base and judged:
            changed += 1
            if reports:
                caught += 1
            else:
                silent.append(f"trial {trial}: {target.name} byte {at}")
    assert not silent, f"damage a read returns passed verify and verify-vault: {silent}"
    print(f"{changed} of 200 flips changed a read; all caught")
    assert changed >= 40, f"only {changed} of 200 flips changed a read: the trial proved little"
    assert caught == changed


COLUMNS = {"start": "start + 1", "end": "end - 1", "count": "count + 1",
           "custody": "'self'", "trust": "'gateway-attested'", "tx_hash": "zeroblob(32)",
           "tx_index": "tx_index + 1", "status": "'pending'", "seq": "seq + 100",
           "root": "zeroblob(32)", "stream": "'smbg'", "patient": "zeroblob(32)"}


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_every_vault_index_column_is_covered(pristine: Path, tmp_path: Path,
                                              column: str) -> None:
    folder = _copy(pristine, tmp_path / "n")
    db = sqlite3.connect(folder / "vault.db")
    (ct,) = db.execute("SELECT ct FROM batches ORDER BY seq LIMIT 1 OFFSET 2").fetchone()
    db.execute(f"UPDATE batches SET {column} = {COLUMNS[column]} WHERE ct = ?", (ct,))
    db.commit()
    db.close()
    with pytest.raises(VaultIntegrityError) as info:
        verify_vault_folder(folder)
    assert column in info.value.message


def test_every_damaged_item_is_named(pristine: Path, tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path / "n")
    db = sqlite3.connect(folder / "vault.db")
    cts = [bytes(r[0]) for r in db.execute("SELECT ct FROM batches ORDER BY seq")]
    db.execute("UPDATE batches SET start = start + 3600000 WHERE ct = ?", (cts[0],))
    db.execute("UPDATE batches SET trust = 'gateway-attested' WHERE ct = ?", (cts[1],))
    db.execute("DELETE FROM batches WHERE ct = ?", (cts[2],))
    db.commit()
    db.close()
    blobs = FsBlobStore(folder / "blobs", fsync=False)
    blobs.delete(cts[3])
    blobs.close()
    with pytest.raises(VaultIntegrityError) as info:
        verify_vault_folder(folder)
    found = info.value.findings
    assert len(found) == 4, info.value.message
    assert {f.tx_index for f in found} == {f.tx_index for f in found if f.tx_index is not None}
    r = run("verify-vault", "--data", str(folder))
    assert r.returncode != 0 and "4 damaged item(s)" in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr


def test_verify_runs_on_a_read_only_folder(pristine: Path, tmp_path: Path) -> None:
    with small_fs(tmp_path / "ro", 16384) as ro:
        folder = _copy(pristine, ro / "node")
        import subprocess

        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        try:
            r = run("verify", "--data", str(folder))
            assert r.returncode == 0, r.stderr
            assert "OK" in r.stdout and "Traceback" not in r.stderr
            assert verify_vault_folder(folder).batches == 5
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(ro)], check=False)
    with pytest.raises(IntegrityError):
        folder = _copy(pristine, tmp_path / "n")
        (folder / "orderer.db").unlink()
        verify_folder(folder, workers=1)


def test_verify_names_every_damaged_state_entry(pristine: Path, tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path / "n")
    db = sqlite3.connect(folder / "chain.db")
    keys = [str(r[0]) for r in db.execute("SELECT key FROM state ORDER BY key LIMIT 3")]
    for k in keys:
        db.execute("UPDATE state SET value = x'00' WHERE key = ?", (k,))
    db.commit()
    db.close()
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    assert all(k in info.value.message for k in keys), info.value.message
    assert "and 2 more" in info.value.message


def test_verify_names_every_damaged_merkle_node_and_a_missing_or_extra_one(
        pristine: Path, tmp_path: Path) -> None:
    """``verify`` compares the stored Merkle nodes with the derived ones as two sorted lists,
    and names each node only when they differ: every damaged or added one is named, and a
    missing one is caught by the count."""
    folder = _copy(pristine, tmp_path / "n")
    db = sqlite3.connect(folder / "chain.db")
    rows = db.execute("SELECT level, idx FROM nodes ORDER BY level, idx LIMIT 2").fetchall()
    for level, idx in rows:
        db.execute("UPDATE nodes SET hash = zeroblob(32) WHERE level = ? AND idx = ?",
                   (level, idx))
    db.commit()
    db.close()
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    (a_level, a_idx), (b_level, b_idx) = rows
    assert f"Merkle node (level {a_level}, index {a_idx}) (and ({b_level}, {b_idx}))" in \
        info.value.message, info.value.message
    assert "0" * 64 in info.value.message  # what is stored: the zeroed hash
    for change, named in (
            ("DELETE FROM nodes WHERE (level, idx) = (SELECT level, idx FROM nodes "
             "ORDER BY level DESC, idx DESC LIMIT 1)", "number of stored Merkle nodes"),
            ("INSERT INTO nodes VALUES (60, 0, zeroblob(32))", "Merkle node (level 60, index 0)")):
        folder = _copy(pristine, tmp_path / f"n{len(named)}")
        db = sqlite3.connect(folder / "chain.db")
        db.execute(change)
        db.commit()
        db.close()
        with pytest.raises(IntegrityError) as info:
            verify_folder(folder, workers=1)
        assert named in info.value.message, info.value.message

"""The research side files (node/research_store.py) are covered by ``verify`` and ``rejoin``.

``research.key`` (every pseudonym a release carried depends on it) and
``research-profiles.bin`` (what participants told the node) are sealed under the master key
beside the stores. A damaged one is listed among verify's findings, with the store's own
findings when there are some (from the folder, from a running node and from the CLI, exit 3);
``consortium rejoin`` carries them over from the member's backup and refuses, before writing
anything, a backup whose research files do not open under its master key.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from glucoledger.errors import InputError
from glucoledger.node.genesis_file import Genesis, create_member, member_of
from glucoledger.node.keystore import load_master_key
from glucoledger.node.rejoin import restore_folder
from glucoledger.node.research_store import KEY_FILE, PROFILES_FILE, ResearchStore
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import IntegrityError

from ..cli.test_cli import run
from .helpers import PROFILE, make_node


def _with_research(folder: Path) -> ResearchStore:
    store = ResearchStore(folder, load_master_key(folder))
    store.secret()
    store.set_profile(b"\x07" * 32, PROFILE)
    return store


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("side") / "node"
    make_node(folder, uploads=2)
    _with_research(folder)
    return folder


def _copy(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "node"))


def test_intact_research_files_verify_ok_and_nothing_is_written(pristine: Path,
                                                                tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert verify_folder(folder, workers=1).blocks >= 3
    assert ResearchStore(folder, load_master_key(folder)).damaged() == []
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before


@pytest.mark.parametrize("name", [KEY_FILE, PROFILES_FILE])
def test_a_flipped_byte_in_a_research_file_is_a_finding(pristine: Path, tmp_path: Path,
                                                        name: str) -> None:
    folder = _copy(pristine, tmp_path)
    _flip(folder / name, 20)
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    (finding,) = info.value.findings
    assert finding.what == "research side file" and name in finding.describe()
    assert "restore it from a backup" in finding.describe()
    value = info.value.to_value()
    assert value["ok"] is False and name in str(value["findings"])
    # The running node's verify (what POST /api/verify calls) lists it too.
    with Node(folder, workers=1) as node, pytest.raises(IntegrityError) as live:
        node.verify()
    assert [f.describe() for f in live.value.findings] == [finding.describe()]
    r = run("verify", "--data", str(folder))
    assert r.returncode == 3 and name in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_every_damaged_item_is_listed_store_first(pristine: Path, tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path)
    _flip(folder / KEY_FILE, 30)
    _flip(folder / PROFILES_FILE, 40)
    db = sqlite3.connect(folder / "chain.db")
    (idx, env) = db.execute("SELECT idx, envelope FROM txs ORDER BY idx DESC LIMIT 1"
                            ).fetchone()
    bad = bytearray(env)
    bad[len(bad) // 2] ^= 1
    db.execute("UPDATE txs SET envelope = ? WHERE idx = ?", (bytes(bad), idx))
    db.commit()
    db.close()
    with pytest.raises(IntegrityError) as info:
        verify_folder(folder, workers=1)
    found = info.value.findings
    assert found[0].what != "research side file"  # the store's finding first
    side = [f.describe() for f in found if f.what == "research side file"]
    assert len(side) == 2 and KEY_FILE in side[0] and PROFILES_FILE in side[1], side
    r = run("verify", "--data", str(folder))
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert f"every bad spot ({len(found)})" in r.stderr, r.stderr
    assert KEY_FILE in r.stderr and PROFILES_FILE in r.stderr, r.stderr


def test_a_profile_that_no_longer_parses_is_named(pristine: Path, tmp_path: Path) -> None:
    folder = _copy(pristine, tmp_path)
    store = ResearchStore(folder, load_master_key(folder))
    store._write({"07" * 32: {"name": "no other field"}})  # sealed, but not a profile
    (problem,) = store.damaged()
    assert PROFILES_FILE in problem and "does not parse" in problem


def _member(base: Path) -> tuple[Path, Genesis]:
    folder = base / "org-a"
    member = create_member(folder, "org-a")
    name, wallet = member_of(folder)
    genesis = Genesis("glucoledger/side", 1, (member,), {}).sign(name, wallet.load("node"))
    return folder, genesis


def test_rejoin_carries_the_research_files_and_refuses_damaged_ones(tmp_path: Path) -> None:
    backup, genesis = _member(tmp_path)
    _with_research(backup)
    target = tmp_path / "rejoined"
    restore_folder(target, genesis, "http://127.0.0.1:27199", keys_from=backup)
    for name in (KEY_FILE, PROFILES_FILE):
        assert (target / name).read_bytes() == (backup / name).read_bytes()
    store = ResearchStore(target, load_master_key(target))
    assert store.damaged() == [] and store.profile(b"\x07" * 32) == PROFILE

    _flip(backup / KEY_FILE, 5)
    again = tmp_path / "again"
    with pytest.raises(InputError) as info:
        restore_folder(again, genesis, "http://127.0.0.1:27199", keys_from=backup)
    assert KEY_FILE in info.value.message and "backup" in info.value.message
    assert not again.exists()  # refused before anything was written

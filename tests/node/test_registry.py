"""The one registry of names (node/registry.py): merge of the old address book and simulator
directory, refusals that write nothing, atomic concurrent adds, one namespace for accounts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from glucoledger.errors import InputError, MalformedError, NotFoundError
from glucoledger.node.accounts import AddressBook, Identity, create_account, identity
from glucoledger.node.registry import FILE, Registry
from glucoledger.node.service import Node
from glucoledger.node.world import World

A = "aa" * 32
B = "bb" * 32
M = "cc" * 32
D = "dd" * 32


def _old_folder(d: Path, *, sim_name: str = "sim-1", sim_id: str = B) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "addressbook.json").write_text(json.dumps(
        {"alice": {"id": A, "kind": "patient", "keys": ["alice.1", "alice.2"]}}))
    (d / "directory.json").write_text(json.dumps(
        {"maker": {"maker": M}, "patients": {sim_name: sim_id}, "devices": {"SIM-0001": D},
         "bindings": {"SIM-0001": sim_name}}))


def test_an_old_folder_is_merged_once_and_its_files_kept_aside(tmp_path: Path) -> None:
    _old_folder(tmp_path)
    reg = Registry(tmp_path)
    doc = reg.load()
    assert doc["accounts"] == {
        "alice": {"id": A, "kind": "patient", "keys": ["alice.1", "alice.2"]},
        "sim-1": {"id": B, "kind": "patient", "keys": ["patient-sim-1"]}}
    assert doc["devices"] == {"SIM-0001": {"id": D, "model": None}}
    assert reg.maker() == bytes.fromhex(M)
    assert json.loads((tmp_path / FILE).read_text()) == doc
    assert not (tmp_path / "addressbook.json").exists()
    assert (tmp_path / "addressbook.json.migrated").exists()
    assert (tmp_path / "directory.json.migrated").exists()
    assert Registry(tmp_path).load() == doc  # a second open reads, does not migrate again


def test_a_name_clash_is_refused_with_a_message_and_nothing_is_written(tmp_path: Path) -> None:
    _old_folder(tmp_path, sim_name="alice", sim_id=B)
    with pytest.raises(MalformedError, match="rename one of them"):
        Registry(tmp_path).load()
    assert not (tmp_path / FILE).exists()
    assert (tmp_path / "addressbook.json").exists() and (tmp_path / "directory.json").exists()


@pytest.mark.parametrize(("text", "words"), [
    ('{"format": 2, "accounts": {}, "devices": {}}', "newer glucoledger"),
    ("{not json", "not valid JSON"),
    ('{"format": 1}', "damaged"),
    ("[]", "not a names file"),
])
def test_damaged_or_newer_files_are_refused_not_overwritten(tmp_path: Path, text: str,
                                                            words: str) -> None:
    (tmp_path / FILE).write_text(text)
    with pytest.raises(MalformedError, match=words):
        Registry(tmp_path).load()
    with pytest.raises(MalformedError):
        Registry(tmp_path).update(lambda doc: None)
    assert (tmp_path / FILE).read_text() == text


def test_concurrent_adds_all_land(tmp_path: Path) -> None:
    reg = Registry(tmp_path)

    def add(i: int) -> None:
        reg.update(lambda doc: doc["accounts"].__setitem__(
            f"p{i}", {"id": f"{i:064x}", "kind": "patient", "keys": [f"p{i}.1"]}))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(Registry(tmp_path).accounts()) == sorted(f"p{i}" for i in range(16))


def test_a_failed_change_writes_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.update(lambda doc: doc["devices"].__setitem__("X", {"id": D, "model": "M"}))
    before = (tmp_path / FILE).read_bytes()

    def bad(doc: dict[str, object]) -> None:
        doc["devices"] = {}
        raise InputError("no")

    with pytest.raises(InputError):
        reg.update(bad)
    assert (tmp_path / FILE).read_bytes() == before


def test_one_namespace_simulated_patients_are_accounts(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "n")
    try:
        create_account(node, "rosa", "trusted")
        world = World.create(node)
        sim = world.add_patient("sim-1")
        # A simulated patient is an account: found by name, with the key she signs with.
        ident = identity(node, "sim-1")
        assert (ident.id, ident.kind) == (sim.id, "patient")
        assert world.patient("sim-1").key.public.key_id == sim.key.public.key_id
        # ... and a custodial patient is a patient of the world (she gets devices).
        create_account(node, "alice", "patient", trusted="rosa")
        assert world.patient("alice").id == identity(node, "alice").id
        # One name, one thing, across kinds.
        with pytest.raises(InputError, match="taken"):
            world.add_patient("rosa")
        with pytest.raises(InputError, match="already exists"):
            create_account(node, "sim-1", "clinician")
        with pytest.raises(InputError, match="taken"):
            AddressBook(node).add(Identity("alice", bytes(32), "gateway", ("x",)))
        assert world.next_simulated() == 2
        dev = world.add_device("CGM-9", model="G7")
        assert world.device("CGM-9").id == dev.id and world.device("CGM-9").model == "G7"
    finally:
        node.close()


def test_no_maker_yet_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="device register"):
        Registry(tmp_path).maker()

"""Messages a person reads name patients and devices (the registry, node/registry.py), not
hex ids (issue 13, "words for people"): a replayed device sequence, a proof asked for a time
with no reading, and ``verify-vault``'s findings. An id with no local name keeps a short hex
form, marked as an id.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from glucoledger.errors import GlucoledgerError, NotFoundError
from glucoledger.node.proofs import prove_reading
from glucoledger.node.registry import Label, Registry
from glucoledger.node.vaultcheck import VaultIntegrityError, verify_vault_folder
from glucoledger.vault.batch import prepare_upload

from ..durability.helpers import cgm_batch, ingesting, make_node

HEX16 = re.compile(r"\b[0-9a-f]{16,}\b")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("names") / "node"
    make_node(f, uploads=2)
    return f


def test_labels_come_from_the_registry(folder: Path) -> None:
    reg = Registry(folder)
    alice = bytes.fromhex(reg.accounts()["alice"]["id"])
    device = bytes.fromhex(reg.devices()["SN-1"]["id"])
    assert reg.label(alice) == "alice" and reg.label(device) == "SN-1"
    assert reg.label(b"\x01" * 32) == "id 010101010101"
    assert f"{Label(folder, alice)}" == "alice" and str(Label(folder, device)) == "SN-1"


def test_a_replayed_sequence_names_the_device(folder: Path) -> None:
    with ingesting(folder) as (node, world, _vault, ingest):
        alice, dev = world.patient("alice"), world.device("SN-1")
        with pytest.raises(GlucoledgerError) as info:  # seq 1 again, other readings
            ingest.upload(prepare_upload(node.chain, alice.id, dev.id, 1, cgm_batch(7),
                                         dev.key))
    assert "SN-1" in info.value.message and not HEX16.search(info.value.message), \
        info.value.message


def test_a_proof_for_a_time_with_no_reading_names_the_patient(folder: Path) -> None:
    with ingesting(folder) as (node, world, vault, _ingest):
        with pytest.raises(NotFoundError) as info:
            prove_reading(node, vault, world.patient("alice").id, "cgm", 1)
    assert "patient alice" in info.value.message and not HEX16.search(info.value.message)


def test_vault_findings_name_the_patient_and_the_device(folder: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(folder, tmp_path / "n")
    db = sqlite3.connect(copy / "vault.db")
    db.execute("UPDATE batches SET count = count + 1")
    db.commit()
    db.close()
    with pytest.raises(VaultIntegrityError) as info:
        verify_vault_folder(copy)
    assert len(info.value.findings) == 2
    for f in info.value.findings:
        assert "patient alice" in f.what and "uploader SN-1" in f.what, f.what
        assert not HEX16.search(f.what), f.what

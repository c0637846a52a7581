"""``verify`` checks that both commitments of a day open to the same readings: every accepted
``zk.day`` is recomputed from the readings of the ``data.commit`` batches it covers (opened
with the node's keys) and compared; a day committed from altered readings is found and
named; an erased patient's days are not checkable, which is not damage. Real node, real
vault, real Poseidon; no toolchain needed (no proof is made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger.cli.main import run
from glucoledger.node.erasure import ErasureService, erased_by
from glucoledger.node.ingest import IngestService
from glucoledger.node.vaultcheck import VaultIntegrityError, verify_vault, verify_vault_folder
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims
from glucoledger.zk.windows import commit_slots

from .helpers import NOW, ingest_days


def _ingest(world: World, ingest: IngestService, name: str, serial: str) -> bytes:
    return ingest_days(world, ingest, name, serial,
                       [[90 + 7 * i + d for i in range(10)] for d in range(3)], offset_ms=30_000)


def _forge(world: World, zk: ZkClaims, patient: bytes, start: int, end: int) -> None:
    """A node that commits a day from other readings than the batches hold: the day's true
    slots with one reading changed, under the right salt (so only the readings differ)."""
    slots = zk.slots(patient, start, end)
    slots[3] += 40
    commit = commit_slots(slots, zk.salt(patient, start), zk.profile.per)
    body = {"patient": patient, "start": start, "end": end, "slots": zk.profile.slots,
            "per": zk.profile.per, "commit": commit.to_bytes(32, "big")}
    world.node.send("zk.day", body, zk.account, [world.node.node_key])


def test_honest_days_open_to_the_same_readings(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    assert len(zk.commit_days(alice, 3, NOW)) == 3
    report = verify_vault(world.node.store, ingest.vault, erased=erased_by(world.node))
    assert report.zk_days == 3 and report.zk_unchecked == ()


def test_a_day_committed_from_altered_readings_is_caught(
        world: World, ingest: IngestService, zk: ZkClaims, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    windows = zk.period(alice, 3, NOW)
    zk.commit_window(alice, *windows[0])
    _forge(world, zk, alice, *windows[1])
    zk.commit_window(alice, *windows[2])
    with pytest.raises(VaultIntegrityError) as exc:
        verify_vault(world.node.store, ingest.vault, erased=erased_by(world.node),
                     label=lambda ident: "alice" if ident == alice else ident.hex()[:12])
    (f,) = exc.value.findings  # one day, the forged one; the honest two pass
    assert "zk.day of patient alice for the day starting 2025-12-02 00:00 UTC" in f.what
    assert f.tx_index == zk.record(alice, windows[1][0])["index"]
    assert "do not open to the same readings" in f.found
    # the same through the CLI's verify (read-only, on the folder), with the patient's name
    data = world.node.data_dir
    ingest.vault.close()
    world.node.close()
    with pytest.raises(VaultIntegrityError) as exc:
        verify_vault_folder(data)
    assert "for the day starting 2025-12-02" in str(exc.value)
    assert run(["verify", "--data", str(data)]) != 0
    printed = capsys.readouterr()
    assert "2025-12-02" in printed.err and "Traceback" not in printed.err


def test_an_erased_patients_days_are_not_checkable_not_damaged(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    bob = _ingest(world, ingest, "bob", "SN-B")
    zk.commit_days(alice, 3, NOW)
    zk.commit_days(bob, 2, NOW)
    ErasureService(world.node, ingest.vault).erase_as(alice, [world.patient("alice").key],
                                                      ["cgm"])
    report = verify_vault(world.node.store, ingest.vault, erased=erased_by(world.node))
    assert report.zk_days == 2  # bob's
    assert len(report.zk_unchecked) == 3
    assert all("not checkable" in line and "erased" in line for line in report.zk_unchecked)

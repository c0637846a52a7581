"""The vault at rest: no reading without the master key; tampering is caught and named."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from glucoledger import codec
from glucoledger.crypto.hpke import generate_x25519
from glucoledger.errors import NotFoundError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.glucose.simulate import simulate_patient
from glucoledger.node.devices import set_custody
from glucoledger.node.ingest import IngestService
from glucoledger.node.verify import IntegrityError, verify_vault
from glucoledger.node.world import World
from glucoledger.vault.batch import leaf_hashes, reading_salt
from glucoledger.vault.store import BatchIntegrityError

T0 = 1_700_000_012_345


def _ingest_two_days(world: World, ingest: IngestService) -> list[CgmReading]:
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    recs = [r for r in simulate_patient(7, 2, T0)["cgm"] if isinstance(r, CgmReading)]
    batch = Batch("cgm", tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))
    ingest.ingest_batches([batch], patient=alice.id, uploader=dev.id, signer=dev.key,
                          batch_size=288)
    # a few single-reading uploads too (start = end = the reading's time)
    singles = [CgmReading(recs[-1].time_ms + k * 300_000, 0, 77 + k, "Flat") for k in (1, 2)]
    for r in singles:
        ingest.ingest_batches([Batch("cgm", (r,), r.time_ms, r.time_ms, 1)], patient=alice.id,
                              uploader=dev.id, signer=dev.key)
    return recs + singles


def _needles(readings: list[CgmReading]) -> list[bytes]:
    out: list[bytes] = [b"mgdl", b"time_ms", b"tz_offset_min", b"trend"]
    for r in readings:
        v = r.to_value()
        out.append(codec.encode(v))
        out.append(json.dumps(v).encode())
        out.append(codec.encode({"time_ms": r.time_ms}))
        t = r.time_ms
        out += [str(t).encode(), t.to_bytes(8, "big"), t.to_bytes(6, "big"),
                t.to_bytes(8, "little"), str(t // 1000).encode(),
                datetime.fromtimestamp(t / 1000, UTC).isoformat()[:19].encode(),
                f'"mgdl": {r.mgdl}'.encode(), f"{r.mgdl} mg/dL".encode()]
    return out


def test_a_copy_without_the_master_key_holds_no_reading(world: World, ingest: IngestService,
                                                         tmp_path: Path) -> None:
    readings = _ingest_two_days(world, ingest)
    trends = {r.trend for r in readings if r.trend} - {None}
    copy = tmp_path / "copy"
    shutil.copytree(world.node.data_dir, copy, ignore=shutil.ignore_patterns("master.key"))
    assert not (copy / "master.key").exists()
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert any(p.name == "vault.db" for p in files) and any("blobs" in p.parts for p in files)
    needles = _needles(readings) + [t.encode() for t in trends]
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {path.relative_to(copy)}"


def test_flipping_any_blob_byte_is_caught_by_verify_and_by_decryption(
        world: World, ingest: IngestService) -> None:
    _ingest_two_days(world, ingest)
    vault = ingest.vault
    rows = vault.batches()
    assert verify_vault(world.node.store, vault).decrypted == len(rows)
    for row in rows:
        # The file that holds the blob (a pack of the ingest group) and where in it.
        path, offset, length = vault.blobs.locate(row.ct)  # type: ignore[attr-defined]
        whole = path.read_bytes()
        original = whole[offset:offset + length]
        step = max(1, len(original) // 23)
        for pos in [*range(0, len(original), step), len(original) - 1]:
            bad = bytearray(original)
            bad[pos] ^= 0x01
            path.write_bytes(whole[:offset] + bytes(bad) + whole[offset + length:])
            with pytest.raises(IntegrityError) as info:
                verify_vault(world.node.store, vault)
            msg = info.value.message
            assert row.patient.hex()[:12] in msg and "stream cgm" in msg
            assert f"transaction {row.tx_index}" in msg
            with pytest.raises(BatchIntegrityError) as dec:
                vault.decrypt(row, bytes(bad))
            assert row.patient.hex()[:16] in dec.value.message and f"seq {row.seq}" in (
                dec.value.message)
            with pytest.raises(BatchIntegrityError):
                vault.open(row)
        path.write_bytes(whole)
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        verify_vault(world.node.store, vault)


def test_salts_disclose_nothing_about_each_other(world: World, ingest: IngestService) -> None:
    _ingest_two_days(world, ingest)
    row = ingest.vault.batches()[0]
    salt_key, batch = ingest.vault.open(row)
    salts = [reading_salt(salt_key, i) for i in range(batch.count)]
    assert len(set(salts)) == batch.count
    assert leaf_hashes(salt_key, [r.to_value() for r in batch.items])  # root recomputes
    # one salt is not a prefix, a key, or a step away from the next
    assert all(salts[i] not in salts[i + 1] for i in range(len(salts) - 1))


def test_self_custody_wraps_data_keys_to_the_patient(world: World,
                                                      ingest: IngestService) -> None:
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    pair = generate_x25519()
    set_custody(world.node, alice.id, [alice.key], pair.public)
    r = CgmReading(T0, 60, 123, "Flat")
    ingest.ingest_batches([Batch("cgm", (r,), T0, T0, 1)], patient=alice.id, uploader=dev.id,
                          signer=dev.key)
    row = ingest.vault.batches()[0]
    assert row.custody == "self"
    with pytest.raises(NotFoundError):
        ingest.vault.open(row)
    with pytest.raises(BatchIntegrityError):
        ingest.vault.open(row, x25519_private=generate_x25519().private)
    _, batch = ingest.vault.open(row, x25519_private=pair.private)
    assert batch.items == (r,)
    assert verify_vault(world.node.store, ingest.vault).self_custody == 1


def test_erasing_a_stream_key_makes_its_batches_unreadable(world: World,
                                                           ingest: IngestService) -> None:
    _ingest_two_days(world, ingest)
    row = ingest.vault.batches()[0]
    ingest.vault.erase(row.patient, row.stream)
    with pytest.raises(BatchIntegrityError):
        ingest.vault.open(row)

"""Erasure: after it, no erased value is found in the database files, blobs or key store;
verify passes and names the erasing transaction; reads no longer cover the batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger import codec
from glucoledger.errors import RejectedError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node.access import RawRelease
from glucoledger.node.alerts import AlertService
from glucoledger.node.devices import bind_device
from glucoledger.node.erasure import ErasureService, erased_by
from glucoledger.node.proposals import upgrade
from glucoledger.node.verify import verify_vault
from glucoledger.state.access import batches_in
from glucoledger.vault.store import Vault

from .conftest import DAY, HOUR, NOW, Care, build_care


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _needles(care: Care) -> list[bytes]:
    """Encodings of erased readings as they would sit in plaintext: CBOR values and runs."""
    cgm = [r for r in care.readings["cgm"] if isinstance(r, CgmReading)]
    return [codec.encode(r.to_value()) for r in cgm[:200:7]]


def test_erasing_a_stream_leaves_nothing(care: Care) -> None:
    alerts = AlertService(care.node, care.vault)
    care.grant(care.carer, alerts=True)
    assert alerts.scan(care.alice.id)
    # Plaintext exists somewhere before (it is decryptable), so the search would find it if
    # the master key leaked: prove we can see it through the vault first.
    row = care.vault.batches(care.alice.id, "cgm")[0]
    assert care.vault.open(row)[1].items
    care.grant(care.nurse)
    care.access.read(care.request(care.nurse).raw)  # warms the batch cache
    erasure = ErasureService(care.node, care.vault, outbox=alerts.db, readers=[care.access])
    report = erasure.erase(erasure.request(care.alice.id, care.alice.keys[:1], ["cgm"]).raw)
    assert report.batches == 14 and report.whole
    folder = care.node.data_dir
    blob = _all_bytes(folder)
    for needle in _needles(care):
        assert needle not in blob
    # no blob, no wrapped data key, no KEK, no notification for the erased stream
    assert care.vault.batches(care.alice.id, "cgm") == []
    assert care.vault._q("SELECT COUNT(*) FROM keks WHERE patient = ? AND stream = 'cgm'",
                         (care.alice.id,))[0][0] == 0
    assert not any(care.vault.blobs.exists(ct) for ct in
                   care.node.state.get(f"erasure/{report.tx_hash.hex()}")["batches"])
    assert alerts.pending() == []
    # the freed pages hold nothing either: the database files carry no wrapped key of them
    for ct in care.node.state.get(f"erasure/{report.tx_hash.hex()}")["batches"]:
        assert ct not in (folder / "vault.db").read_bytes()
    # other streams still open
    assert care.vault.open(care.vault.batches(care.alice.id, "insulin")[0])
    # verify: the chain re-derives; the vault reports the erasure, not tampering
    assert care.node.verify().blocks > 0
    vr = verify_vault(care.node.store, care.vault, erased=erased_by(care.node))
    assert len(vr.erased) == 14 and all(tx == report.tx_hash for _, tx in vr.erased)
    assert "erased by transaction" in vr.describe_erasures()[0]
    # without the erasure knowledge the same gap would be called tampering
    with pytest.raises(Exception, match="missing|none"):
        verify_vault(care.node.store, care.vault)
    # a reader with a grant gets nothing of the erased stream (not even from the cache)
    rel = care.access.read(care.request(care.nurse).raw)
    assert rel.records == () and rel.grounds.batches == ()


def test_erasing_a_time_range_erases_overlapping_batches_only(care: Care) -> None:
    rows = care.vault.batches(care.alice.id, "cgm")
    lo, hi = rows[3].start + 1, rows[5].start + 1
    erasure = ErasureService(care.node, care.vault)
    report = erasure.erase(erasure.request(care.alice.id, care.alice.keys[:1], ["cgm"],
                                           lo, hi).raw)
    left = {r.ct for r in care.vault.batches(care.alice.id, "cgm")}
    gone = {r.ct for r in rows} - left
    # batches are erased whole: every batch whose (hour-rounded) range overlaps the range
    expected = {r.ct for r in rows if r.start < hi and r.end > lo}
    assert {rows[3].ct, rows[4].ct, rows[5].ct} <= expected
    assert gone == expected and report.batches == len(expected) < len(rows)
    for ct in gone:
        assert not care.vault.blobs.exists(ct)
    assert care.vault.open(care.vault.by_ct(rows[0].ct))  # the KEK survives a range erasure


def test_erasure_by_someone_else_is_refused(care: Care) -> None:
    erasure = ErasureService(care.node, care.vault)
    with pytest.raises(RejectedError) as info:
        erasure.erase(erasure.request(care.alice.id, care.nurse.keys, ["cgm"]).raw)
    assert info.value.code == "not_cosigner"
    assert len(care.vault.batches(care.alice.id, "cgm")) == 14


def test_erased_vault_copy_cannot_be_reopened(care: Care, tmp_path: Path) -> None:
    erasure = ErasureService(care.node, care.vault)
    erasure.erase(erasure.request(care.alice.id, care.alice.keys[:1],
                                  ["cgm", "insulin", "carbs"]).raw)
    reopened = Vault(care.node.data_dir, care.node.master, care.node.chain, fsync=False)
    try:
        assert reopened.batches(care.alice.id) == []
    finally:
        reopened.close()


@pytest.mark.parametrize("rules", [3, 4])
def test_erasing_part_of_a_batch_takes_it_out_of_every_hour_it_held(tmp_path: Path,
                                                                     rules: int) -> None:
    """An erasure of an hour of a day batch erases the whole batch. Rule set 4 takes it out
    of every hour of the index it was filed under; a chain of rule set 3 replays as it did
    (the batch stays listed under its other hours), and its reads of those hours release
    what is left instead of failing on a batch whose blob is gone ("no batch with
    ciphertext hash ... in the vault", until 2026-12-05)."""
    care = build_care(tmp_path, days=2, rules=rules)
    try:
        x = NOW - 10 * DAY
        dev = care.world.add_device("CGM-DAY")
        bind_device(care.node, care.alice.id, care.alice.keys[:1], dev.id)
        day = tuple(CgmReading(x + i * 300_000, 0, 100 + i % 50) for i in range(288))
        care.ingest.ingest_batches([Batch("cgm", day, x, day[-1].time_ms, 288)],
                                   patient=care.alice.id, uploader=dev.id, signer=dev.key)
        [entry] = batches_in(care.node.state, care.alice.id, ["cgm"], x, x + DAY)
        report = ErasureService(care.node, care.vault).erase_as(
            care.alice.id, care.alice.keys[:1], ["cgm"], x + 13 * HOUR, x + 14 * HOUR)
        assert report.batches == 1
        listed = [e[0] for e in batches_in(care.node.state, care.alice.id, ["cgm"], x, x + DAY)]
        assert listed == ([] if rules >= 4 else [entry[0]])
        rel = care.access.read(care.request(care.alice, window={"from": x, "to": x + DAY}).raw)
        assert isinstance(rel, RawRelease) and rel.records == ()
        assert erased_by(care.node)(entry[0]) == report.tx_hash
        if rules < 4:  # upgraded, the next erasure there tidies the index, erases nothing new
            upgrade(care.node, care.node.wallet.load("org"), {"rules": 4})
            again = ErasureService(care.node, care.vault).erase_as(
                care.alice.id, care.alice.keys[:1], ["cgm"], x + 15 * HOUR, x + 16 * HOUR)
            assert again.batches == 0
            assert batches_in(care.node.state, care.alice.id, ["cgm"], x, x + DAY) == []
            assert erased_by(care.node)(entry[0]) == report.tx_hash  # still the first
    finally:
        care.vault.close()
        care.node.close()

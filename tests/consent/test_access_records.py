"""Access record formats: a format-2 chain commits to what a read released (count and digest)
instead of listing every batch, and releases exactly what a format-1 chain lists.

The node rebuilds the list from the batch index: the permitted window's batches whose
``data.commit`` was ordered before the access. Attacks on that rebuilding: a batch committed
after the access inside the window (it must not be released by it), a batch erased between
the access and the release (nothing is released), a genesis naming an unknown format.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger import codec
from glucoledger.crypto import generate
from glucoledger.errors import NotFoundError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.ledger.tx import SignedTx, Transaction, sign
from glucoledger.node import accounts
from glucoledger.node.access import AccessService, RawRelease
from glucoledger.node.audit import audit_trail
from glucoledger.node.erasure import ErasureService
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.keystore import Wallet, create_master_key, load_master_key
from glucoledger.node.service import Node, NodeConfig, genesis_envelope, verify_folder
from glucoledger.node.world import World
from glucoledger.state.access import access_key, released_count
from glucoledger.state.accounts import access_records
from glucoledger.state.consent import Request

MIN = 60_000
HOUR = 60 * MIN
#: Half past an hour, at least two and a half hours ago: the first 6 readings (5 minutes
#: apart) fall in that hour and the next ones in the following hour, whatever the time now
#: (batches are filed, and erased, by hour-rounded range).
T0 = int(time.time() * 1000) // HOUR * HOUR - 3 * HOUR + 30 * MIN


class _Site:
    def __init__(self, folder: Path, fmt: int) -> None:
        self.node = Node.init(folder, workers=1, access_records=fmt)
        world = World.create(self.node)
        accounts.create_account(self.node, "rosa", "trusted")
        accounts.create_account(self.node, "alice", "patient", trusted="rosa")
        a = accounts.identity(self.node, "alice")
        self.alice, self.keys = a.id, accounts.keys_of(self.node, a)
        self.device = world.add_device("CGM-1", model="Dexcom G7", patient=world.patient("alice"))
        self.vault = open_vault(self.node, fsync=False)
        self.ingest = IngestService(self.node, self.vault, workers=1)
        self.access = AccessService(self.node, self.vault)

    def upload(self, first: int, n: int) -> None:
        """``n`` readings, 5 minutes apart from ``first``, each its own batch."""
        readings = tuple(CgmReading(first + i * 5 * MIN, 0, 100 + i % 50) for i in range(n))
        self.ingest.ingest_batches([Batch("cgm", readings, readings[0].time_ms,
                                          readings[-1].time_ms, n)],
                                   patient=self.alice, uploader=self.device.id,
                                   signer=self.device.key, batch_size=1)

    def request(self) -> SignedTx:
        req = Request(self.alice, ("cgm",), "raw", {"from": T0, "to": T0 + 180 * MIN})
        return self.access.request(self.alice, self.keys[:1], req)

    def record(self, stx: SignedTx) -> dict:  # type: ignore[type-arg]
        return self.node.state.get(access_key(stx.tx_hash))  # type: ignore[return-value]

    def close(self) -> None:
        self.ingest.close()
        self.vault.close()
        self.node.close()


@pytest.fixture(params=[1, 2])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Site]:
    s = _Site(tmp_path / f"f{request.param}", request.param)
    yield s
    s.close()


def _read(site: _Site) -> tuple[RawRelease, dict]:  # type: ignore[type-arg]
    stx = site.request()
    rel = site.access.read(stx.raw)
    assert isinstance(rel, RawRelease)
    return rel, site.record(stx)


def test_both_formats_release_the_same_and_format_2_records_a_fixed_size(
        tmp_path: Path) -> None:
    sites = [_Site(tmp_path / "f1", 1), _Site(tmp_path / "f2", 2)]
    try:
        out = []
        for s in sites:
            s.upload(T0, 24)
            rel, record = _read(s)
            out.append(([r.to_value() for r in rel.records], len(rel.grounds.batches),
                        len(codec.encode(record)), record))
            assert access_records(s.node.state) == s.node.state.get(
                "chain/genesis").get("access_records", 1)  # type: ignore[union-attr]
        (records1, n1, size1, rec1), (records2, n2, size2, rec2) = out
        assert records1 == records2 and len(records1) == 24 and n1 == n2 == 24
        assert rec1["batches"] and "digest" not in rec1
        assert "batches" not in rec2 and rec2["released"] == 24
        for s in sites:  # a read over ten times as many batches
            s.upload(T0 + 24 * 5 * MIN, 4)
        big = [len(codec.encode(_read(s)[1])) for s in sites]
        assert big[0] > size1 + 200  # format 1 grows with every batch (about 68 bytes each)
        assert big[1] == size2  # format 2 does not
        assert size2 < 800 < size1
        for s in sites:  # the patient's audit trail counts them in both formats
            assert audit_trail(s.node, s.alice)[0].detail.endswith("; 28 batches")
            assert verify_folder(s.node.data_dir, workers=1).blocks > 0
    finally:
        for s in sites:
            s.close()


def test_a_batch_committed_after_the_access_is_not_released_by_it(site: _Site) -> None:
    site.upload(T0, 10)
    stx = site.request()
    receipt = site.node.submit([stx.raw])[0]  # the access is ordered ...
    assert receipt.ok
    site.upload(T0 + 10 * 5 * MIN, 3)  # ... then three more batches inside its window
    record = site.record(stx)
    assert released_count(record) == 10
    if "digest" in record:
        commits, batches = site.access._released(record, stx.tx_hash, receipt.index)
        assert len(batches) == len(commits) == 10
        assert len(site.access.read(site.request().raw).records) == 13  # a new read: all


def test_a_batch_erased_after_the_access_refuses_the_release(site: _Site) -> None:
    site.upload(T0, 10)
    stx = site.request()
    receipt = site.node.submit([stx.raw])[0]
    erasure = ErasureService(site.node, site.vault, readers=[site.access])
    # whole batches whose hour-rounded range meets the period: the 6 of T0's hour
    report = erasure.erase_as(site.alice, site.keys[:1], ["cgm"], T0, T0 + 2 * 5 * MIN)
    assert report.batches == 6
    record = site.record(stx)
    if "digest" in record:
        with pytest.raises(NotFoundError, match="erased after the read was ordered"):
            site.access._released(record, stx.tx_hash, receipt.index)
    assert len(site.access.read(site.request().raw).records) == 10 - report.batches


@pytest.mark.parametrize("value", [3, 0, True, "2"])
def test_a_genesis_naming_an_unknown_format_is_refused(tmp_path: Path, value: object) -> None:
    folder = tmp_path / "n"
    folder.mkdir()
    NodeConfig("glucoledger/local", "node-1").save(folder)
    create_master_key(folder)
    wallet = Wallet(folder, load_master_key(folder))
    node_key, org_key = generate("ed25519"), generate("ed25519")
    wallet.save("node", node_key)
    tx = SignedTx.decode(genesis_envelope("glucoledger/local", [("org", org_key, node_key)],
                                          1)).tx
    forged = sign(Transaction(tx.chain, tx.type, {**tx.body, "access_records": value},
                              tx.account, 0), [node_key])
    with Node(folder, workers=1) as node:
        r = node.submit([forged.raw])[0]
        assert not r.ok and r.result.code == "bad_genesis", r.result
        assert node.state.get("chain/genesis") is None
        assert node.submit([genesis_envelope("glucoledger/local", [("org", org_key, node_key)],
                                             1)])[0].ok  # the same founders, format 2
        assert access_records(node.state) == 2

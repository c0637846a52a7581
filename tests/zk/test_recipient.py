"""To whom a patient disclosed a claim is sealed for her node (``node/zkrecipient.py``).

The consortium replicates every ``zk.disclose``; the recipient she names ("my insurer") is
hers alone. The ledger holds only a sealed box of one size whatever she wrote; her node
reads it back for her disclosures list and audit trail; a node without her vault key (as
another member's), her node once her key is erased, and a box moved to another disclosure
read nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from glucoledger.crypto.seal import new_key
from glucoledger.errors import InputError
from glucoledger.node.audit import audit_trail
from glucoledger.node.erasure import ErasureService
from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims
from glucoledger.node.zkrecipient import open_recipient
from glucoledger.state.zkdays import SEALED_TO_BYTES, zk_disclosure_key
from glucoledger.vault.store import Vault

from .helpers import NOW, ingest_days

RECIPIENT = "Acme Life Insurance, underwriting"


def _alice(world: World, ingest: IngestService) -> bytes:
    return ingest_days(world, ingest, "alice", "SN-A", [[100 + i for i in range(10)]] * 3,
                       offset_ms=0)


def _raw_bytes(folder: Path) -> bytes:
    """Every byte the node's ledger files hold (the chain store and the ordered log)."""
    out = b""
    for name in ("chain.db", "orderer.db"):
        db = sqlite3.connect(f"file:{folder / name}?mode=ro", uri=True)
        try:
            for (sql,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                for row in db.execute(f"SELECT * FROM {sql}"):  # noqa: S608 - our own tables
                    out += b"".join(v if isinstance(v, bytes) else str(v).encode()
                                    for v in row)
        finally:
            db.close()
    return out


def test_the_ledger_holds_no_recipient_and_her_node_reads_it(
        world: World, ingest: IngestService, zk: ZkClaims, tmp_path: Path) -> None:
    alice = _alice(world, ingest)
    key = world.patient("alice").key
    named = zk.disclose(alice, [key], "tir>=70", 3, NOW, to=RECIPIENT)
    nobody = zk.disclose(alice, [key], "tbr54=0", 3, NOW)
    assert (named.to, nobody.to) == (RECIPIENT, "")
    recs = [world.node.state.get(zk_disclosure_key(d.id)) for d in (named, nobody)]
    assert [len(r["to"]) for r in recs] == [SEALED_TO_BYTES] * 2  # one size, named or not
    raw = _raw_bytes(world.node.data_dir)
    assert zk.disclosure(alice, named.id).to == RECIPIENT  # sanity: the files are read
    for needle in (RECIPIENT, "Acme", "underwriting"):
        assert needle.encode() not in raw
    trail = [e.detail for e in audit_trail(world.node, alice, vault=zk.vault)
             if e.kind == "zk_disclosure"]
    assert any(f"to {RECIPIENT}" in d for d in trail)
    # Without her vault (another member's node reads the same state): sealed, said so.
    elsewhere = [e.detail for e in audit_trail(world.node, alice) if e.kind == "zk_disclosure"]
    assert all("to whom is sealed for her node" in d and "Acme" not in d for d in elsewhere)
    (tmp_path / "other").mkdir()
    other = Vault(tmp_path / "other", new_key(), world.node.chain)  # another node's vault
    try:
        assert open_recipient(other, alice, recs[0]) is None
    finally:
        other.close()
    # A sealed recipient moved into another disclosure of hers does not open there.
    assert open_recipient(zk.vault, alice, {**recs[1], "to": recs[0]["to"]}) is None
    assert open_recipient(zk.vault, alice, {**recs[0], "days": 2}) is None


def test_erasing_her_key_erases_the_recipient(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _alice(world, ingest)
    key = world.patient("alice").key
    d = zk.disclose(alice, [key], "tir>=70", 3, NOW, to=RECIPIENT)
    erasure = ErasureService(world.node, zk.vault)
    erasure.erase(erasure.request(alice, [key], ["cgm"]).raw)
    assert zk.disclosure(alice, d.id).to is None
    trail = [e.detail for e in audit_trail(world.node, alice, vault=zk.vault)
             if e.kind == "zk_disclosure"]
    assert trail and all("Acme" not in t for t in trail)


def test_a_recipient_too_long_or_unprintable_is_refused_and_nothing_is_sent(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _alice(world, ingest)
    key = world.patient("alice").key
    before = (dict(world.node.state.snapshot()), world.node.store.height())
    for to in ("x" * 81, "a\nb"):
        with pytest.raises(InputError, match="at most 80 printable characters"):
            zk.disclose(alice, [key], "tir>=70", 3, NOW, to=to)
    assert (dict(world.node.state.snapshot()), world.node.store.height()) == before
    assert zk.disclose(alice, [key], "tir>=70", 3, NOW, to="x" * 80).to == "x" * 80

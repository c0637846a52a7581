"""The patient's signed disclosure (``zk.disclose``) before her node proves a claim for her:
on the ledger, in her audit trail (node, CLI), required by ``prove_claim``; every refusal
changes nothing. The contract is applied directly (no node) and through a real node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glucoledger.cli.main import run
from glucoledger.errors import PermissionDeniedError, RejectedError
from glucoledger.node.audit import audit_trail
from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims
from glucoledger.state.zkdays import SEALED_TO_BYTES, ZkDisclose

from .helpers import D0, DAY, NOW, ingest_days

#: A recipient as the body carries it: any bytes of the sealed size (only her node opens it).
SEALED = bytes(SEALED_TO_BYTES)


def _ingest(world: World, ingest: IngestService, name: str, serial: str) -> bytes:
    return ingest_days(world, ingest, name, serial,
                       [[100 + i for i in range(10)]] * 3, offset_ms=0)


def _ledger(world: World) -> dict[str, Any]:
    """The whole state and the log's size: what a refusal must leave as it was (a refused
    transaction is still ordered, so the state is compared; a refusal at the node's door,
    before anything is sent, also leaves the log alone)."""
    return {"state": dict(world.node.state.snapshot()), "log": world.node.store.height()}


def test_disclosure_is_on_the_ledger_and_in_her_audit_trail(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    key = world.patient("alice").key
    d = zk.disclose(alice, [key], "TIR >= 70 %", 3, NOW, to="  Trial ABC screening  ")
    assert (d.claim, d.days, d.start, d.to) == ("tir>=70", 3, D0, "Trial ABC screening")
    assert d.end == D0 + 2 * DAY + 10 * 300_000  # the test profile's last window
    rec = world.node.state.get(f"zkdisclose/{d.id.hex()}")
    assert rec["patient"] == alice and rec["claim"] == "tir>=70"
    assert zk.disclosure(alice, d.id.hex()[:10]) == d  # by an abbreviated id, as audit shows
    assert zk.disclosures(alice) == [d]
    trail = [e for e in audit_trail(world.node, alice, vault=zk.vault) if e.kind == "zk_disclosure"]
    assert len(trail) == 1
    e = trail[0]
    assert (e.tx_hash, e.who, e.outcome, e.height) == (d.id, alice, "disclosed", d.height)
    assert "tir>=70 over 3 days" in e.detail and "to Trial ABC screening" in e.detail
    assert "2025-12-01 00:00 UTC" in e.detail


def test_no_proof_without_her_disclosure_and_nothing_changes(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    bob = _ingest(world, ingest, "bob", "SN-B")
    theirs = zk.disclose(bob, [world.patient("bob").key], "tir>=70", 3, NOW)
    before = _ledger(world)
    for ident in (bytes(32), theirs.id, theirs.id.hex(), "0123abcd", "zz"):
        with pytest.raises(PermissionDeniedError) as exc:
            zk.prove_claim(alice, ident)
        assert exc.value.code == "no_disclosure"
        assert "signs one first" in exc.value.message
    assert _ledger(world) == before  # no zk.day was committed, nothing was ordered
    assert not [k for k in before["state"] if k.startswith("zkday/")]


def test_only_the_patient_signs_her_disclosure(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    bob = world.add_patient("bob")
    before = _ledger(world)["state"]
    with pytest.raises(RejectedError) as exc:  # bob's key on alice's account
        zk.disclose(alice, [bob.key], "tir>=70", 3, NOW)
    assert exc.value.code in ("not_cosigner", "insufficient_signatures")
    with pytest.raises(RejectedError) as exc:  # the node's own account
        world.node.send("zk.disclose", {"claim": "tir>=70", "start": D0, "end": D0 + DAY,
                                        "days": 1, "to": SEALED}, zk.account,
                        [world.node.node_key])
    assert exc.value.code in ("not_patient", "insufficient_signatures")
    for bad in ({"claim": "TIR>=70"}, {"days": 0}, {"days": 91}, {"end": D0},
                {"to": "Trial ABC"}, {"to": SEALED[:-1]}, {"to": SEALED + b"\0"},
                {"claim": "tir>70"}):
        body = {"claim": "tir>=70", "start": D0, "end": D0 + DAY, "days": 1, "to": SEALED,
                **bad}
        with pytest.raises(RejectedError) as exc:
            world.node.send("zk.disclose", body, alice, [world.patient("alice").key])
        assert exc.value.code == "malformed", bad
    assert _ledger(world)["state"] == before  # every refusal changed nothing
    assert not [e for e in audit_trail(world.node, alice) if e.kind == "zk_disclosure"]


def test_body_round_trips() -> None:
    body = {"claim": "mean in 100..160", "start": D0, "end": D0 + DAY, "days": 1,
            "to": SEALED}
    assert ZkDisclose.parse(body).to_body() == body
    with pytest.raises(RejectedError):
        ZkDisclose.parse({**body, "extra": 1})


def test_cli_prove_claim_signs_first_and_audit_lists_it(
        world: World, ingest: IngestService, zk: ZkClaims, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without the toolchain the proof itself may fail; the disclosure, its refusals and
    the audit listing do not depend on it."""
    _ingest(world, ingest, "alice", "SN-A")
    data = str(world.node.data_dir)
    ingest.vault.close()
    world.node.close()
    out = tmp_path / "c.json"
    assert run(["prove-claim", "--patient", "alice", "--out", str(out), "--data", data,
                "--profile", "test"]) == 2  # neither --claim nor --disclosure
    assert run(["prove-claim", "--patient", "alice", "--disclosure", "deadbeefdeadbeef",
                "--out", str(out), "--data", data, "--profile", "test"]) != 0
    err = capsys.readouterr().err
    assert "no_disclosure" in err and "signs one first" in err and "Traceback" not in err
    assert not out.exists()
    run(["prove-claim", "--patient", "alice", "--claim", "tbr54=0", "--days", "2",
         "--to", "licensing authority", "--out", str(out), "--data", data, "--profile",
         "test"])
    printed = capsys.readouterr()
    assert "signed disclosure" in printed.out and "Traceback" not in printed.err
    assert run(["audit", "--patient", "alice", "--json", "--data", data]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["event"] == "proof disclosed"]
    assert len(rows) == 1 and rows[0]["who"] == "alice" and rows[0]["outcome"] == "disclosed"
    assert "tbr54<=0 over 2 days" in rows[0]["what"]
    assert "licensing authority" in rows[0]["what"]

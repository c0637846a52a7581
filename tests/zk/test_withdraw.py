"""The patient withdraws a disclosure (``zk.withdraw``): her node proves nothing more under
it; only she can, once; each refusal changes nothing; her audit trail, the CLI, the REST API
and the portal show it. The contract is applied through a real node (SQLite store, vault)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from glucoledger.cli.main import run
from glucoledger.errors import PermissionDeniedError, RejectedError
from glucoledger.node.audit import audit_trail
from glucoledger.node.ingest import IngestService
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims
from glucoledger.state.zkdays import ZkWithdraw

from .helpers import NOW, ingest_days


def _ingest(world: World, ingest: IngestService, name: str, serial: str) -> bytes:
    return ingest_days(world, ingest, name, serial,
                       [[100 + i for i in range(10)]] * 3, offset_ms=0)


def _state(world: World) -> dict[bytes, Any]:
    return dict(world.node.state.snapshot())


def test_a_withdrawn_disclosure_proves_nothing_more_and_her_trail_says_so(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    key = world.patient("alice").key
    d = zk.disclose(alice, [key], "tir>=70", 3, NOW, to="Trial ABC")
    assert not d.withdrawn
    gone = zk.withdraw(alice, [key], d.id.hex()[:12])  # by the id her audit trail shows
    assert gone.withdrawn and gone.withdrawn_height is not None
    assert gone.withdrawn_height > d.height
    assert (gone.id, gone.claim, gone.days, gone.to) == (d.id, d.claim, d.days, d.to)
    before = _state(world)
    with pytest.raises(PermissionDeniedError) as exc:
        zk.prove_claim(alice, d.id)
    assert exc.value.code == "disclosure_withdrawn"
    assert f"withdrew this disclosure at height {gone.withdrawn_height}" in exc.value.message
    assert "signs a new one" in exc.value.message
    assert _state(world) == before  # refused before any day was committed
    trail = audit_trail(world.node, alice, vault=zk.vault)
    kinds = [e.kind for e in trail if e.kind.startswith("zk_")]
    assert kinds == ["zk_withdrawal", "zk_disclosure"]  # newest first
    w = trail[[e.kind for e in trail].index("zk_withdrawal")]
    assert (w.outcome, w.who, w.height) == ("withdrawn", alice, gone.withdrawn_height)
    assert d.id.hex()[:16] in w.detail and "tir>=70 over 3 days" in w.detail
    assert "to Trial ABC" in w.detail and "stay proofs" in w.detail
    shown = trail[[e.kind for e in trail].index("zk_disclosure")]
    assert f"withdrawn at height {gone.withdrawn_height}" in shown.detail
    # a new disclosure of the same claim is hers to sign, and is not withdrawn
    again = zk.disclose(alice, [key], "tir>=70", 3, NOW, to="Trial ABC")
    assert again.id != d.id and not again.withdrawn


def test_only_she_withdraws_her_own_once_and_refusals_change_nothing(
        world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    bob = _ingest(world, ingest, "bob", "SN-B")
    akey, bkey = world.patient("alice").key, world.patient("bob").key
    d = zk.disclose(alice, [akey], "tbr54=0", 2, NOW)
    before = _state(world)
    # bob, through the service: her id is not one of his (the same answer as no id at all)
    for ident in (d.id, d.id.hex(), bytes(32)):
        with pytest.raises(PermissionDeniedError) as exc:
            zk.withdraw(bob, [bkey], ident)
        assert exc.value.code == "no_disclosure"
    # bob on the ledger directly, signing for himself: the contract refuses alike
    with pytest.raises(RejectedError) as rej:
        world.node.send("zk.withdraw", {"disclosure": d.id}, bob, [bkey])
    assert rej.value.code == "unknown_disclosure"
    # bob's key on alice's account; the node's own account; malformed bodies
    with pytest.raises(RejectedError) as rej:
        world.node.send("zk.withdraw", {"disclosure": d.id}, alice, [bkey])
    assert rej.value.code in ("not_cosigner", "insufficient_signatures")
    with pytest.raises(RejectedError) as rej:
        world.node.send("zk.withdraw", {"disclosure": d.id}, zk.account, [world.node.node_key])
    assert rej.value.code in ("not_patient", "insufficient_signatures")
    for bad in ({}, {"disclosure": d.id[:31]}, {"disclosure": d.id.hex()},
                {"disclosure": d.id, "why": "x"}):
        with pytest.raises(RejectedError) as rej:
            world.node.send("zk.withdraw", bad, alice, [akey])
        assert rej.value.code == "malformed", bad
    assert _state(world) == before  # every refusal changed nothing
    assert zk.disclosure(alice, d.id) == d  # still in force
    # she withdraws it; a second time is refused and changes nothing
    zk.withdraw(alice, [akey], d.id)
    once = _state(world)
    with pytest.raises(RejectedError) as rej:
        zk.withdraw(alice, [akey], d.id)
    assert rej.value.code == "already_withdrawn"
    assert _state(world) == once
    with pytest.raises(RejectedError) as rej:  # on the ledger too
        world.node.send("zk.withdraw", {"disclosure": d.id}, alice, [akey])
    assert rej.value.code == "already_withdrawn"
    assert [e.kind for e in audit_trail(world.node, alice)].count("zk_withdrawal") == 1


def test_body_round_trips() -> None:
    body = {"disclosure": bytes(range(32))}
    assert ZkWithdraw.parse(body).to_body() == body
    with pytest.raises(RejectedError):
        ZkWithdraw.parse({**body, "extra": 1})


def test_cli_withdraw_claim(world: World, ingest: IngestService, zk: ZkClaims,
                            capsys: pytest.CaptureFixture[str]) -> None:
    alice = _ingest(world, ingest, "alice", "SN-A")
    d = zk.disclose(alice, [world.patient("alice").key], "gmi<7", 2, NOW, to="the insurer")
    data = str(world.node.data_dir)
    ingest.vault.close()
    world.node.close()
    for bad in ("xyz", "1234"):  # not hex; too short: usage errors, exit 2
        assert run(["withdraw-claim", "--patient", "alice", "--disclosure", bad, "--data",
                    data]) == 2
        err = capsys.readouterr().err
        assert "8 to 64 hex digits" in " ".join(err.split()) and "Traceback" not in err
    assert run(["withdraw-claim", "--patient", "alice", "--disclosure", "deadbeefdeadbeef",
                "--data", data]) == 4  # no such disclosure of hers: permission denied
    assert "no_disclosure" in capsys.readouterr().err
    assert run(["withdraw-claim", "--patient", "alice", "--disclosure", d.id.hex()[:12],
                "--data", data]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"withdrew disclosure {d.id.hex()[:16]}" in said and "gmi<7" in said
    assert "stay proofs" in said
    assert run(["withdraw-claim", "--patient", "alice", "--disclosure", d.id.hex(),
                "--data", data]) != 0
    err = capsys.readouterr().err
    assert "already_withdrawn" in err and "Traceback" not in err
    assert run(["audit", "--patient", "alice", "--json", "--data", data]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["event"] for r in rows if "disclos" in r["event"]] == [
        "disclosure withdrawn", "proof disclosed"]


def test_rest_and_portal(tmp_path: Path) -> None:
    """Her disclosures over REST, a withdrawal there and one from the portal's button; a
    clinician gets neither."""
    import warnings

    from glucoledger.node.accounts import identity, keys_of
    from glucoledger.node.zkclaims import ZkClaims as Claims
    from glucoledger.zk.toolchain import PROFILES, Toolchain

    from ..api.conftest import Site
    from ..api.rest import call
    from ..api.test_rest_claims import _portal_login

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    site = Site(tmp_path / "node")
    try:
        alice = identity(site.node, "alice")
        zk = Claims(site.node, site.ctx.svc.vault, Toolchain(PROFILES["test"]))
        keys = keys_of(site.node, alice)
        first = zk.disclose(alice.id, keys, "tir>=70", 2, site.node.now_ms(), to="trial")
        second = zk.disclose(alice.id, keys, "tbr54=0", 2, site.node.now_ms())
        with TestClient(site.app, base_url="https://testserver") as client:
            listed = call(client, site, "alice", "GET", "/api/claims/disclosures")
            assert listed.status_code == 200, listed.text
            got = listed.json()
            assert [d["id"] for d in got] == [second.id.hex(), first.id.hex()]
            assert got[1]["to"] == "trial" and got[1]["withdrawn_height"] is None
            assert call(client, site, "dr-lee", "GET",
                        "/api/claims/disclosures").status_code == 403
            r = call(client, site, "dr-lee", "POST",
                     f"/api/claims/disclosures/{first.id.hex()}/withdraw")
            assert r.status_code == 403 and zk.disclosure(alice.id, first.id) == first
            r = call(client, site, "alice", "POST",
                     f"/api/claims/disclosures/{first.id.hex()[:12]}/withdraw")
            assert r.status_code == 200, r.text
            assert r.json()["withdrawn_height"] is not None
            r = call(client, site, "alice", "POST",
                     f"/api/claims/disclosures/{first.id.hex()}/withdraw")
            assert r.status_code == 409 and r.json()["code"] == "already_withdrawn"
            r = call(client, site, "alice", "POST", "/api/claims/disclosures/zz/withdraw")
            assert r.status_code == 400, r.text
            # The portal: her list, a Withdraw button for the one in force
            _portal_login(client, "alice")
            page = client.get("/portal/claims").text
            assert "Your disclosures" in page and "withdrawn (block" in page
            assert page.count('action="/portal/claims/withdraw"') == 1
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf
            r = client.post("/portal/claims/withdraw", data={  # a forged form: no token
                "csrf": "x", "disclosure": second.id.hex()}, follow_redirects=False)
            assert r.status_code == 401 and not zk.disclosure(alice.id, second.id).withdrawn
            r = client.post("/portal/claims/withdraw", data={
                "csrf": csrf.group(1), "disclosure": second.id.hex()}, follow_redirects=False)
            assert r.status_code == 303, r.text[:300]
            page = client.get("/portal/claims").text
            assert page.count("withdrawn (block") == 2
            assert 'action="/portal/claims/withdraw"' not in page
    finally:
        site.close()

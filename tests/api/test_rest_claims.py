"""POST /api/claims and /api/claims/verify on the demo site, with the zero-knowledge test
profile (`glucoledger zk-setup --profile test`, as .ci/run makes it)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET
from glucoledger.node.zkclaims import verify_claim
from glucoledger.zk.toolchain import Toolchain

from ..zk import conftest as zk_conftest
from .conftest import cover_claim_days
from .rest import call

tc = zk_conftest.tc  # the toolchain fixture (or a skip saying how to set it up)


@pytest.fixture(autouse=True)
def _test_profile(tc: Toolchain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUCOLEDGER_ZK_PROFILE", "test")


def _cover(client: Any, site: Any, days: int) -> None:
    """Readings in each claimed day's window, whatever the time of day (conftest)."""
    def post(path: str, doc: Any) -> None:
        r = client.post(path, json=doc, headers={
            "api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()})
        assert r.status_code == 200, r.text

    cover_claim_days(site, days, post)


def test_patient_makes_a_claim_anyone_checks_it(client: Any, site: Any, tc: Toolchain) -> None:
    _cover(client, site, 2)
    r = call(client, site, "alice", "POST", "/api/claims", {"claim": "tbr54<=100", "days": 2,
                                                           "to": "the trial"})
    assert r.status_code == 200, r.text
    data = r.content
    vkey = NoteVerifier.parse(site.node.verifier().vkey())
    assert verify_claim(data, vkey, tc.keys()).claim == "tbr54<=100"  # offline
    checked = client.post("/api/claims/verify", content=data,
                          headers={"content-type": "application/json"})
    assert checked.status_code == 200, checked.text
    result = checked.json()
    assert set(result) == {"valid", "claim", "days", "period", "checkpoint"}
    assert result["claim"] == "tbr54<=100" and result["days"] == 2
    # her signed disclosure came first: on the ledger, in her audit trail, to whom she said
    trail = call(client, site, "alice", "GET", "/api/audit").json()
    shown = [e for e in trail if e["kind"] == "zk_disclosure"]
    assert len(shown) == 1 and shown[0]["outcome"] == "disclosed"
    assert "tbr54<=100 over 2 days" in shown[0]["detail"]
    assert "to the trial" in shown[0]["detail"]
    # and proving again under it needs no new signature; another id is refused
    again = call(client, site, "alice", "POST", "/api/claims",
                 {"disclosure": shown[0]["tx"][:12]})
    assert again.status_code == 200, again.text
    assert verify_claim(again.content, vkey, tc.keys()).claim == "tbr54<=100"

    doc = json.loads(data)
    doc["claim"] = "tbr54<=0.5"
    edited = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    refused = client.post("/api/claims/verify", content=edited,
                          headers={"content-type": "application/json"})
    assert refused.status_code == 422, refused.text
    assert client.post("/api/claims/verify", content=b"{}",
                       headers={"content-type": "application/json"}).status_code == 400


def test_only_a_patient_makes_claims_and_bad_words_are_refused(client: Any, site: Any) -> None:
    assert call(client, site, None, "POST", "/api/claims",
                {"claim": "tir>=70", "days": 2}).status_code == 401
    r = call(client, site, "alice", "POST", "/api/claims", {"claim": "tir>70", "days": 2})
    assert r.status_code == 400 and "tir>=P" in r.text
    r = call(client, site, "alice", "POST", "/api/claims", {"claim": "tir>=70", "days": 0})
    assert r.status_code in (400, 422)
    before = call(client, site, "alice", "GET", "/api/audit").json()
    for body in ({"disclosure": "deadbeefdeadbeef"}, {"days": 2},
                 {"claim": "tir>=70", "disclosure": "deadbeefdeadbeef"}):
        r = call(client, site, "alice", "POST", "/api/claims", body)
        assert r.status_code in (400, 403), r.text
        assert ("signs one first" in r.text) == ("claim" not in body and "disclosure" in body)
    r = call(client, site, "dr-lee", "POST", "/api/claims", {"claim": "tir>=70", "days": 2})
    assert r.status_code == 403, r.text  # a clinician signs no patient's disclosure
    assert call(client, site, "alice", "GET", "/api/audit").json() == before  # nothing changed


def _portal_login(client: Any, name: str) -> str:
    tok = re.search(r'name="csrf" value="([^"]+)"', client.get("/portal/login").text)
    assert tok
    r = client.post("/portal/login", data={"name": name, "csrf": tok.group(1),
                                           "password": f"{name}-demo-password"})
    assert r.status_code == 200, r.text[:300]
    page = client.get("/portal/claims")
    assert page.status_code == 200
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m
    return m.group(1)


def test_portal_share_a_proof_and_check_it(client: Any, site: Any) -> None:
    _cover(client, site, 2)
    csrf = _portal_login(client, "alice")
    page = client.get("/portal/claims").text
    assert "Share a proof" in page and "Check a proof" in page
    r = client.post("/portal/claims/make", data={"csrf": csrf, "claim": "tbr54<=100",
                                                 "days": "2", "to": "the pharmacy"})
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-disposition"].startswith("attachment")
    claim_file = r.content
    checked = client.post("/portal/claims/verify", data={"csrf": csrf},
                          files={"file": ("claim.json", claim_file, "application/json")})
    assert checked.status_code == 200, checked.text[:300]
    result = re.search(r'<section id="verified".*?</section>', checked.text, re.DOTALL)
    assert result, checked.text[:500]
    shown = result.group(0)
    assert "tbr54&lt;=100" in shown and "2 day(s)" in shown and 'id="verified-checkpoint"' in shown
    # names the claim, the period and the checkpoint, and nothing else
    assert len(re.findall(r"<dt>", shown)) == 3
    audit = client.get("/portal/audit")
    assert audit.status_code == 200
    entry = re.search(r'<li class="entry[^"]*" data-kind="zk_disclosure">.*?</li>', audit.text,
                      re.DOTALL)
    assert entry, audit.text[:500]
    assert "tbr54&lt;=100 over 2 days" in entry.group(0) and "Disclosed" in entry.group(0)
    assert "to the pharmacy" in entry.group(0) and "refused" not in entry.group(0)
    refused = client.post("/portal/claims/make", data={"csrf": "stale", "claim": "tir>=70",
                                                       "days": "2"})
    assert refused.status_code in (401, 403)

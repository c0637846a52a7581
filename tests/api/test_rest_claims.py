"""POST /api/claims and /api/claims/verify on the demo site, with the zero-knowledge test
profile (`glucoledger zk-setup --profile test`, as .ci/run makes it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.node.zkclaims import verify_claim
from glucoledger.zk.toolchain import PROFILES, Toolchain

from .rest import call


@pytest.fixture
def tc() -> Toolchain:
    chain = Toolchain(PROFILES["test"])
    if not chain.ready():
        pytest.skip("the zero-knowledge toolchain is not set up here: run "
                    "`glucoledger zk-setup --profile test` (needs Node.js and npm)")
    return chain


@pytest.fixture(autouse=True)
def _test_profile(tc: Toolchain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUCOLEDGER_ZK_PROFILE", "test")


def test_patient_makes_a_claim_anyone_checks_it(client: Any, site: Any, tc: Toolchain) -> None:
    r = call(client, site, "alice", "POST", "/api/claims", {"claim": "tbr54<=100", "days": 2})
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

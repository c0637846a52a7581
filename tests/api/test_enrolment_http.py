"""Enrolment by sponsorship over HTTP (issue 10): a patient invites her trusted party with a
one-time code; the sponsor issues codes for what it opened; recovery codes are a second
factor shown once, stored as Argon2id hashes, spent once. Refusals change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .rest import call, footprint, login


def _secret_nowhere(site: Any, secret: str) -> None:
    for path in Path(site.node.data_dir).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def _open_pair(client: Any, site: Any) -> None:
    assert call(client, site, "org", "POST", "/api/accounts",
                {"name": "tp1", "kind": "trusted"}).status_code == 201
    assert call(client, site, "org", "POST", "/api/accounts",
                {"name": "pat1", "kind": "patient", "trusted": "tp1",
                 "password": "pat1-password-1"}).status_code == 201


def test_the_patient_invites_her_trusted_party_who_chooses_her_password(client, site) -> None:  # type: ignore[no-untyped-def]
    _open_pair(client, site)
    before = footprint(site)
    r = call(client, site, "org", "POST", "/api/accounts/tp1/enrolment-code")
    assert (r.status_code, r.json()["code"]) == (403, "needs_invitation")
    assert "patient" in r.json()["message"]
    r = call(client, site, "alice", "POST", "/api/accounts/tp1/enrolment-code")
    assert (r.status_code, r.json()["code"]) == (403, "not_your_trusted")
    assert footprint(site) == before
    h = login(client, "pat1", "pat1-password-1")
    r = client.post("/api/accounts/tp1/enrolment-code", headers=h)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store", r.text
    code = r.json()["code"]
    _secret_nowhere(site, code)
    client.delete("/api/session")
    bad = client.post("/api/enrol", json={"name": "tp1", "code": code + "x",
                                          "password": "tp1-own-password"})
    assert bad.status_code == 401 and "enrolment code" in bad.json()["message"]
    ok = client.post("/api/enrol", json={"name": "tp1", "code": code,
                                         "password": "tp1-own-password"})
    assert ok.status_code == 200 and ok.json()["kind"] == "trusted", ok.text
    again = client.post("/api/enrol", json={"name": "tp1", "code": code,
                                            "password": "other-password-1"})
    assert again.status_code == 401  # spent
    login(client, "tp1", "tp1-own-password")
    _secret_nowhere(site, "tp1-own-password")


def test_the_sponsor_issues_codes_only_for_what_it_opened(client, site) -> None:  # type: ignore[no-untyped-def]
    assert call(client, site, "org", "POST", "/api/accounts",
                {"name": "clinic-b", "kind": "organization", "password": "clinic-b-password"}
                ).status_code == 201
    h = login(client, "clinic-b", "clinic-b-password")
    assert client.post("/api/accounts", json={"name": "dr-b", "kind": "clinician"},
                       headers=h).status_code == 201
    r = client.post("/api/accounts/dr-b/enrolment-code", headers=h)
    assert r.status_code == 201
    before = footprint(site)
    for target, code in (("dr-kim", "not_sponsor"), ("rosa", "needs_invitation")):
        r = client.put(f"/api/accounts/{target}/password", json={"password": "takeover-pw-1"},
                       headers=h)
        assert (r.status_code, r.json()["code"]) == (403, code), r.text
    r = call(client, site, "org", "PUT", "/api/accounts/dr-b/password",
             {"password": "takeover-pw-1"})  # the operator's key did not open dr-b
    assert (r.status_code, r.json()["code"]) == (403, "not_sponsor")
    assert footprint(site) == before
    events = [json.loads(x) for x in (Path(site.node.data_dir) / "security.log"
                                      ).read_text().splitlines()]
    assert events[-1]["code"] == "not_sponsor" and events[-1]["status"] == 403


ALICE = "alice-demo-password"


def test_a_program_signing_with_its_key_mints_codes_without_a_password(client, site) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "alice", "POST", "/api/recovery-codes")
    assert r.status_code == 201 and len(r.json()["codes"]) == 10, r.text


def test_recovery_codes_are_shown_once_hashed_and_spent_once(client, site) -> None:  # type: ignore[no-untyped-def]
    h = login(client, "alice")
    r = client.post("/api/recovery-codes", headers=h)  # a session alone does not mint them
    assert r.status_code == 400 and "password" in r.json()["message"]
    r = client.post("/api/recovery-codes", headers=h, json={"password": "not-her-password"})
    assert r.status_code == 401
    r = client.post("/api/recovery-codes", headers=h, json={"password": ALICE})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    codes = r.json()["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    for c in codes:
        _secret_nowhere(site, c)
        _secret_nowhere(site, c.replace("-", ""))
    client.delete("/api/session")
    typed = codes[3].lower().replace("-", " ")  # as a person types it from paper
    r = client.post("/api/session", json={"name": "alice", "recovery_code": typed})
    assert r.status_code == 200 and r.json()["recovery_codes_left"] == 9, r.text
    client.delete("/api/session")
    assert client.post("/api/session", json={"name": "alice", "recovery_code": codes[3]}
                       ).status_code == 401
    assert client.post("/api/session", json={"name": "dr-lee", "recovery_code": codes[4]}
                       ).status_code == 401  # alice's codes are hers only
    both = client.post("/api/session", json={"name": "alice", "password": "x" * 10,
                                             "recovery_code": codes[4]})
    assert both.status_code == 400
    r = client.post("/api/recovery-codes", headers=login(client, "alice"),
                    json={"password": ALICE})
    client.delete("/api/session")
    assert client.post("/api/session", json={"name": "alice", "recovery_code": codes[4]}
                       ).status_code == 401  # a new set replaces the old one
    assert client.post("/api/session", json={"name": "alice",
                                             "recovery_code": r.json()["codes"][0]}
                       ).status_code == 200


def test_the_portal_login_takes_a_recovery_code(client, site) -> None:  # type: ignore[no-untyped-def]
    import re

    code = client.post("/api/recovery-codes", headers=login(client, "alice"),
                       json={"password": ALICE}).json()["codes"][0]
    client.delete("/api/session")
    page = client.get("/portal/login")
    assert 'name="recovery_code"' in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/portal/login", data={"name": "alice", "csrf": token, "password": "",
                                           "recovery_code": "WRONG-CODE-0000-0000"},
                    follow_redirects=False)
    assert r.status_code == 401
    page = client.get("/portal/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/portal/login", data={"name": "alice", "csrf": token,
                                           "recovery_code": code}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/portal"
    assert client.get("/api/me").json()["name"] == "alice"

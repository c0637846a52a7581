"""Emergency access over HTTP: the clinician asks with her login, the trusted party decides
with hers (a session or her own RFC 9421-signed requests). Every refusal has its status
code and a message that says what to do, and changes nothing on the ledger.

A demo site served in-process; the node's clock is real time plus an offset (a seam) so a
request can expire without waiting an hour.
"""

from __future__ import annotations

import json
import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoledger.api.app import create_app
from glucoledger.api.context import ServerContext, ServerSettings
from glucoledger.crypto.httpsig import sign_request
from glucoledger.node.accounts import create_account, identity, keys_of
from glucoledger.node.demo_site import seed_demo
from glucoledger.node.people import Passwords
from glucoledger.node.service import Node

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

HOUR_S = 3600.0
ASK = {"patient": "alice", "hours": 4, "days": 3, "reason": "found unresponsive at clinic"}


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class EmergencySite:
    def __init__(self, folder: Path) -> None:
        self.clock = Clock()
        self.node = Node.init(folder, workers=1, clock=self.clock)
        self.ctx = ServerContext.create(self.node, ServerSettings())
        seed_demo(self.node, self.ctx.svc.nightscout, days=2)
        # tom: the trusted party of another patient, pat
        create_account(self.node, "tom", "trusted")
        create_account(self.node, "pat", "patient", trusted="tom")
        Passwords(self.node).set("tom", "tom-demo-password")
        self.app = create_app(self.node, context=self.ctx)
        self.clients: list[Any] = []

    def login(self, name: str) -> Any:
        c = TestClient(self.app, base_url="https://testserver")
        c.__enter__()
        self.clients.append(c)
        r = c.post("/api/session", json={"name": name, "password": f"{name}-demo-password"})
        assert r.status_code == 200, r.text
        c.headers["x-csrf-token"] = r.json()["csrf"]
        return c

    def frozen(self) -> tuple[int, dict[str, bytes]]:
        return self.node.store.height(), self.node.state.snapshot()

    def close(self) -> None:
        for c in self.clients:
            c.__exit__(None, None, None)
        self.ctx.close()
        self.node.close()


@pytest.fixture
def es(tmp_path: Path) -> Iterator[EmergencySite]:
    s = EmergencySite(tmp_path / "node")
    yield s
    s.close()


def _ask(es: EmergencySite, doc: Any) -> str:
    r = doc.post("/api/emergency", json=ASK)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    return str(r.json()["id"])


def _refused(es: EmergencySite, response: Any, status: int, code: str, words: str,
             before: tuple[int, dict[str, bytes]]) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert words in body["message"], body["message"]
    assert es.frozen() == before, "a refused request changed the ledger"


def test_clinician_asks_trusted_party_approves_in_her_own_session(es: EmergencySite) -> None:
    doc, rosa, alice = es.login("dr-kim"), es.login("rosa"), es.login("alice")
    rid = _ask(es, doc)
    r = doc.post("/api/reads", json={"patient": "alice", "streams": ["cgm"], "view": "raw"})
    assert r.status_code == 403 and r.json()["code"] == "no_grant"  # nothing open yet
    [item] = rosa.get("/api/emergency/requests").json()
    assert item["role"] == "decide" and item["id"] == rid
    assert (item["clinician_name"], item["patient_name"], item["reason"], item["hours"]) == (
        "dr-kim", "alice", ASK["reason"], 4)
    about = alice.get("/api/emergency/requests").json()
    assert [(i["role"], i["id"]) for i in about] == [("about_you", rid)]

    r = rosa.post(f"/api/emergency/requests/{rid}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["grant"] == rid
    assert rosa.get("/api/emergency/requests").json() == []
    r = doc.post("/api/reads", json={"patient": "alice", "streams": ["cgm"], "view": "raw"})
    assert r.status_code == 200, r.text
    assert r.json()["grounds"]["emergency"] and r.json()["records"]
    mine = doc.get(f"/api/emergency/requests/{rid}").json()
    assert mine["role"] == "asked" and mine["status"] == "approved"
    trail = alice.get("/api/audit").json()
    assert [e["kind"] for e in trail[:3]] == ["access", "emergency", "emergency_request"]
    assert all(e["emergency"] for e in trail[:3])
    assert trail[1]["who_name"] == "dr-kim" and trail[1]["decided_by_name"] == "rosa"
    assert trail[2]["outcome"] == "requested"


def test_trusted_party_approves_with_her_own_signed_requests(es: EmergencySite) -> None:
    doc = es.login("dr-kim")
    rid = _ask(es, doc)
    key = keys_of(es.node, identity(es.node, "rosa"))[0]
    c = TestClient(es.app, base_url="https://testserver")
    es.clients.append(c.__enter__())

    def signed(method: str, path: str) -> dict[str, str]:
        return sign_request(key, method=method, url=f"https://testserver{path}", body=b"",
                            nonce=secrets.token_hex(8))

    path = "/api/emergency/requests"
    assert [i["id"] for i in c.get(path, headers=signed("GET", path)).json()] == [rid]
    r = c.post(f"{path}/{rid}/approve", headers=signed("POST", f"{path}/{rid}/approve"))
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text


def test_the_old_password_form_is_gone(es: EmergencySite) -> None:
    doc = es.login("dr-kim")
    before = es.frozen()
    r = doc.post("/api/emergency", json={**ASK, "trusted": "rosa",
                                         "trusted_password": "rosa-demo-password"})
    assert r.status_code == 422 and "trusted" in r.json()["message"]
    assert es.frozen() == before


def test_refusals_have_a_status_a_reason_and_change_nothing(es: EmergencySite) -> None:
    doc, rosa, tom = es.login("dr-kim"), es.login("rosa"), es.login("tom")
    alice, lee = es.login("alice"), es.login("dr-lee")
    rid = _ask(es, doc)
    approve = f"/api/emergency/requests/{rid}/approve"
    before = es.frozen()
    _refused(es, tom.post(approve), 403, "not_trusted_party", "not a trusted party", before)
    assert tom.get("/api/emergency/requests").json() == []
    _refused(es, doc.post(approve), 403, "self_approval", "trusted party decides", before)
    _refused(es, lee.post(approve), 403, "not_trusted_party", "not a trusted party", before)
    _refused(es, alice.post(approve), 403, "not_trusted_party", "not a trusted party", before)
    for who in (rosa, alice):
        _refused(es, who.post("/api/emergency", json=ASK), 403, "denied",
                 "needs a clinician account", before)
    anonymous = TestClient(es.app, base_url="https://testserver")
    es.clients.append(anonymous.__enter__())
    _refused(es, anonymous.post(approve), 401, "unauthenticated", "log in first", before)
    _refused(es, rosa.post("/api/emergency/requests/" + "ab" * 32 + "/approve"), 404,
             "not_found", "list of pending requests", before)
    _refused(es, rosa.post("/api/emergency/requests/xyz/approve"), 400, "bad_input",
             "64 hex digits", before)
    _refused(es, tom.get(f"/api/emergency/requests/{rid}"), 403, "denied", "not yours", before)
    assert {e.code for e in es.ctx.seclog.recent(20) if e.status == 403} >= {
        "not_trusted_party", "self_approval", "denied"}
    # approving twice is harmless: the second one is refused and changes nothing
    assert rosa.post(approve).status_code == 200
    opened = es.frozen()
    _refused(es, rosa.post(approve), 409, "already_approved", "access is open", opened)


def test_request_expires_unapproved_after_an_hour(es: EmergencySite) -> None:
    doc, rosa = es.login("dr-kim"), es.login("rosa")
    rid = _ask(es, doc)
    es.clock.offset += HOUR_S + 60
    assert rosa.get("/api/emergency/requests").json() == []
    before = es.frozen()
    _refused(es, rosa.post(f"/api/emergency/requests/{rid}/approve"), 422, "expired",
             "the clinician must ask again", before)
    assert doc.get(f"/api/emergency/requests/{rid}").json()["status"] == "expired"
    assert _ask(es, doc) != rid  # she asks again


def test_second_ask_returns_the_waiting_request(es: EmergencySite) -> None:
    doc = es.login("dr-kim")
    rid = _ask(es, doc)
    height = es.node.store.height()
    r = doc.post("/api/emergency", json=ASK)
    assert r.status_code == 200 and r.json()["id"] == rid
    assert es.node.store.height() == height


def test_decline_opens_nothing(es: EmergencySite) -> None:
    doc, rosa = es.login("dr-kim"), es.login("rosa")
    rid = _ask(es, doc)
    r = rosa.post(f"/api/emergency/requests/{rid}/decline")
    assert r.status_code == 200 and r.json()["status"] == "declined"
    r = doc.post("/api/reads", json={"patient": "alice", "streams": ["cgm"], "view": "raw"})
    assert r.status_code == 403
    before = es.frozen()
    _refused(es, rosa.post(f"/api/emergency/requests/{rid}/approve"), 409, "already_declined",
             "asks again", before)


def test_portal_forms_need_the_csrf_token_and_take_two_logins(es: EmergencySite) -> None:
    doc, rosa = es.login("dr-kim"), es.login("rosa")
    page = doc.get("/portal").text
    assert 'name="trusted_password"' not in page and "never need her password" in page
    csrf = str(doc.headers["x-csrf-token"])
    form = {"patient": "alice", "reason": "collapsed in waiting room", "hours": "2",
            "days": "7"}
    before = es.frozen()
    r = doc.post("/portal/emergency", data=form, follow_redirects=False)
    assert r.status_code == 400 and "form is stale" in r.text and es.frozen() == before
    r = doc.post("/portal/emergency", data={**form, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 401 and "CSRF" in r.text and es.frozen() == before
    r = doc.post("/portal/emergency", data={**form, "csrf": csrf, "hours": "99"},
                 follow_redirects=False)  # a tampered form
    assert r.status_code == 400 and "hours" in r.text and es.frozen() == before
    r = doc.post("/portal/emergency", data={**form, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "trusted%20person%20must%20approve" in r.headers["location"]
    [item] = rosa.get("/api/emergency/requests").json()
    page = rosa.get("/portal").text
    assert "collapsed in waiting room" in page and f"/portal/emergency/{item['id']}/approve" in page
    rosa_csrf = str(rosa.headers["x-csrf-token"])
    r = doc.post(f"/portal/emergency/{item['id']}/approve", data={"csrf": csrf},
                 follow_redirects=False)
    assert r.status_code == 403 and "trusted party decides" in r.text
    r = rosa.post(f"/portal/emergency/{item['id']}/approve", data={"csrf": rosa_csrf},
                  follow_redirects=False)
    assert r.status_code == 303 and "open" in r.headers["location"]
    page = doc.get("/portal").text
    assert 'data-patient="alice"' in page and "emergency access" in page


def test_a_trusted_partys_key_never_authenticates_as_her_patient(tmp_path: Path) -> None:
    """Her key is a cosigner of the patient's account too; a signed request with it is hers,
    whatever the names' order in the address book."""
    node = Node.init(tmp_path / "n", workers=1)
    ctx = ServerContext.create(node, ServerSettings())
    try:
        create_account(node, "aaron", "trusted")
        create_account(node, "zoe", "patient", trusted="aaron")
        app = create_app(node, context=ctx)
        key = keys_of(node, identity(node, "aaron"))[0]
        with TestClient(app, base_url="https://testserver") as c:
            h = sign_request(key, method="GET", url="https://testserver/api/me", body=b"",
                             nonce=secrets.token_hex(8))
            assert c.get("/api/me", headers=h).json()["name"] == "aaron"
            body = json.dumps({"patient": "zoe", "streams": ["cgm"], "view": "raw"}).encode()
            h = sign_request(key, method="POST", url="https://testserver/api/reads", body=body,
                             nonce=secrets.token_hex(8))
            r = c.post("/api/reads", content=body,
                       headers={**h, "content-type": "application/json"})
            assert r.status_code == 403 and r.json()["code"] == "no_grant"
    finally:
        ctx.close()
        node.close()

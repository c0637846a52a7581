"""REST: the operator opens accounts and first passwords; a patient makes Nightscout
credentials. Refusals say why, change nothing, and 401/403 go to the security log."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from glucoledger.node.accounts import create_account

from .rest import call, footprint, key_of, login, state_of

NEW_PASSWORD = "bea-first-password-9"


def _secrets_nowhere(site: Any, *secrets: str) -> None:
    """No plain secret in any file of the node's folder (logs, books, indexes)."""
    for path in Path(site.node.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for s in secrets:
                assert s.encode() not in data, (path, "holds a secret")


def _trusted_for_bea(client: Any, site: Any, by: str = "org") -> None:
    r = call(client, site, by, "POST", "/api/accounts", {"name": "bea-rosa", "kind": "trusted"})
    assert r.status_code == 201, r.text


def test_operator_opens_a_patient_who_then_logs_in(client, site) -> None:  # type: ignore[no-untyped-def]
    _trusted_for_bea(client, site)
    r = call(client, site, "org", "POST", "/api/accounts",
             {"name": "bea", "kind": "patient", "trusted": "bea-rosa", "password": NEW_PASSWORD})
    assert r.status_code == 201, r.text
    value = r.json()
    assert value["kind"] == "patient" and value["password_set"] is True
    assert NEW_PASSWORD not in r.text
    _secrets_nowhere(site, NEW_PASSWORD)
    shown = call(client, site, "org", "GET", "/api/accounts/bea").json()
    assert shown["account"] == value["account"] and len(shown["keys"]) == 3  # 2 + trusted
    rosa = call(client, site, "org", "GET", "/api/accounts/bea-rosa").json()
    assert rosa["keys"][0]["id"] in {k["id"] for k in shown["keys"]}
    login(client, "bea", NEW_PASSWORD)
    assert client.get("/api/me").json() == {"name": "bea", "kind": "patient",
                                            "account": value["account"], "via": "session"}


@pytest.mark.parametrize("kind", ["clinician", "maker", "trusted", "organization"])
def test_operator_opens_sponsored_and_self_registered_kinds(client, site, kind: str) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "org", "POST", "/api/accounts",
             {"name": f"new-{kind}", "kind": kind, "alg": "p256"})
    assert r.status_code == 201, r.text
    shown = call(client, site, "org", "GET", f"/api/accounts/new-{kind}").json()
    assert shown["kind"] == kind and shown["keys"][0]["alg"] == "p256"


def test_an_organization_account_opens_accounts_by_session(client, site) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "org", "POST", "/api/accounts",
             {"name": "clinic-b", "kind": "organization", "password": "clinic-b-password"})
    assert r.status_code == 201
    h = login(client, "clinic-b", "clinic-b-password")
    r = client.post("/api/accounts", json={"name": "dr-new", "kind": "clinician"}, headers=h)
    assert r.status_code == 201 and r.json()["kind"] == "clinician"


GOOD = {"name": "bea", "kind": "patient", "trusted": "bea-rosa", "password": NEW_PASSWORD}
REFUSALS = [
    # (what, caller, body, status, code, words in the message)
    ("no credential", None, GOOD, 401, "unauthenticated", "log in"),
    ("a clinician", "dr-lee", GOOD, 403, "denied", "organization"),
    ("a patient", "alice", GOOD, 403, "denied", "organization"),
    ("patient without trusted party", "org", {**GOOD, "trusted": None}, 400, "bad_input",
     "trusted party"),
    ("trusted party not of kind trusted", "org", {**GOOD, "trusted": "dr-lee"}, 400,
     "bad_input", "kind trusted"),
    ("unknown trusted party", "org", {**GOOD, "trusted": "nobody"}, 404, "not_found",
     "account list"),
    ("trusted party for a clinician", "org", {**GOOD, "kind": "clinician"}, 400, "bad_input",
     "only a patient"),
    ("name taken", "org", {**GOOD, "name": "alice"}, 400, "bad_input", "already exists"),
    ("reserved name", "org", {**GOOD, "name": "org"}, 400, "bad_input", "node's own"),
    ("another patient's trusted party", "org", {**GOOD, "trusted": "rosa"}, 403,
     "trusted_taken", "one trusted-party account per patient"),
    ("a password for a trusted party", "org", {"name": "tp", "kind": "trusted",
                                               "password": NEW_PASSWORD}, 403,
     "needs_invitation", "invitation code"),
    ("hidden-file name", "org", {**GOOD, "name": ".."}, 422, "bad_input", "name"),
    ("option-like name", "org", {**GOOD, "name": "-rf"}, 422, "bad_input", "name"),
    ("padded name", "org", {**GOOD, "name": " bea "}, 422, "bad_input", "name"),
    ("newline in name", "org", {**GOOD, "name": "bea\n"}, 422, "bad_input", "name"),
    ("padded trusted name", "org", {**GOOD, "trusted": " bea-rosa"}, 422, "bad_input",
     "trusted"),
    ("device kind", "org", {**GOOD, "kind": "device"}, 422, "bad_input", "kind"),
    ("node kind", "org", {**GOOD, "kind": "node"}, 422, "bad_input", "kind"),
    ("short password", "org", {**GOOD, "password": "short-pw"}, 422, "bad_input", "password"),
    ("unknown field", "org", {**GOOD, "admin": True}, 422, "bad_input", "admin"),
    ("bad name", "org", {**GOOD, "name": "bea; DROP"}, 422, "bad_input", "name"),
]


@pytest.mark.parametrize(("what", "who", "body", "status", "code", "words"), REFUSALS,
                         ids=[c[0] for c in REFUSALS])
def test_refused_account_creation_changes_nothing(client, site, what: str, who: str | None,  # type: ignore[no-untyped-def]
                                                  body: dict[str, Any], status: int, code: str,
                                                  words: str) -> None:
    _trusted_for_bea(client, site)
    before = footprint(site)
    r = call(client, site, who, "POST", "/api/accounts",
             {k: v for k, v in body.items() if v is not None})
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert words in r.json()["message"]
    assert body.get("password", "") not in r.text or not body.get("password")
    assert footprint(site) == before
    if status in (401, 403):
        event = site.ctx.seclog.recent(1)[0]
        assert (event.status, event.route) == (status, "POST /api/accounts")
    _secrets_nowhere(site, NEW_PASSWORD)


def test_first_password_only_when_none_is_set(client, site) -> None:  # type: ignore[no-untyped-def]
    create_account(site.node, "dr-ng", "clinician")
    r = call(client, site, "dr-lee", "PUT", "/api/accounts/dr-ng/password",
             {"password": "dr-ng-password-1"})
    assert r.status_code == 403
    r = call(client, site, "org", "PUT", "/api/accounts/dr-ng/password",
             {"password": "dr-ng-password-1"})
    assert r.status_code == 200 and "dr-ng-password-1" not in r.text
    before = footprint(site)
    r = call(client, site, "org", "PUT", "/api/accounts/dr-ng/password",
             {"password": "takeover-password"})
    assert (r.status_code, r.json()["code"]) == (409, "password_set")
    assert "glucoledger password" in r.json()["message"]
    assert footprint(site) == before
    r = call(client, site, "org", "PUT", "/api/accounts/nobody/password",
             {"password": "some-password-1"})
    assert r.status_code == 404
    r = call(client, site, "org", "PUT", "/api/accounts/alice.ns-gw1/password",
             {"password": "gateway-password"})  # a program: it signs, it never logs in
    assert (r.status_code, r.json()["code"]) == (400, "bad_input")
    assert "no portal password" in r.json()["message"]
    assert footprint(site) == before
    login(client, "dr-ng", "dr-ng-password-1")  # the first one still works
    _secrets_nowhere(site, "dr-ng-password-1", "takeover-password")


def test_passwords_are_taken_exactly_as_typed(client, site) -> None:  # type: ignore[no-untyped-def]
    padded = "  spaced password  "
    r = call(client, site, "org", "POST", "/api/accounts",
             {"name": "dr-pad", "kind": "clinician", "password": padded})
    assert r.status_code == 201
    assert client.post("/api/session", json={"name": "dr-pad", "password": padded.strip()}
                       ).status_code == 401
    login(client, "dr-pad", padded)


def test_patient_makes_an_uploader_secret_that_uploads(client, site) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "alice", "POST", "/api/nightscout/uploaders")
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    secret, gateway = r.json()["api_secret"], r.json()["gateway"]
    sha1 = hashlib.sha1(secret.encode()).hexdigest()
    assert r.json()["api_secret_sha1"] == sha1 and gateway.startswith("alice.ns-gw")
    _secrets_nowhere(site, secret)
    now = int(time.time() * 1000)
    entry = [{"type": "sgv", "sgv": 131, "date": now - 120_000, "direction": "Flat"}]
    r = client.post("/api/v1/entries", json=entry, headers={"api-secret": sha1})
    assert r.status_code == 200, r.text
    devices = call(client, site, "alice", "GET", "/api/devices").json()
    mine = next(d for d in devices if d["name"] == gateway)
    assert (mine["kind"], mine["status"], mine["last_seq"]) == ("gateway", "active", 1)


def test_a_gateway_name_taken_by_another_account_is_skipped_and_its_key_kept(client, site) -> None:  # type: ignore[no-untyped-def]
    """An organization may open a clinician named like alice's next gateway: her uploaders
    take the next free name, and the clinician's key is not replaced."""
    # The demo's alice has one uploader (alice.ns-gw1): a count of her gateways named the
    # next one alice.ns-gw3 once a squatter held that name, and replaced the squatter's key.
    r = call(client, site, "org", "POST", "/api/accounts",
             {"name": "alice.ns-gw3", "kind": "clinician", "password": "squatter-password-1"})
    assert r.status_code == 201, r.text
    squatter = key_of(site, "alice.ns-gw3")
    for expected in ("alice.ns-gw2", "alice.ns-gw4", "alice.ns-gw5"):
        r = call(client, site, "alice", "POST", "/api/nightscout/uploaders")
        assert r.status_code == 201 and r.json()["gateway"] == expected, r.text
    assert key_of(site, "alice.ns-gw3").private_bytes() == squatter.private_bytes()
    r = call(client, site, "alice.ns-gw3", "GET", "/api/me")
    assert r.status_code == 200 and r.json()["kind"] == "clinician"


def test_a_revoked_or_unbound_uploader_secret_neither_reads_nor_uploads(client, site) -> None:  # type: ignore[no-untyped-def]
    """The secret read as the patient herself: after she revokes its gateway (a lost
    phone), it reads nothing more, and a refused request changes nothing."""
    r = call(client, site, "alice", "POST", "/api/nightscout/uploaders")
    secret, gw = r.json()["api_secret"], r.json()["account"]
    sha1 = hashlib.sha1(secret.encode()).hexdigest()
    now = int(time.time() * 1000)
    entry = [{"type": "sgv", "sgv": 131, "date": now - 120_000, "direction": "Flat"}]
    assert client.post("/api/v1/entries", json=entry, headers={"api-secret": sha1}
                       ).status_code == 200
    reads = ["/api/v1/entries.json?find[date][$gte]=0&count=1000",
             "/api/v1/treatments.json", "/api/v1/devicestatus.json"]
    for path in reads:
        assert client.get(path, headers={"api-secret": sha1}).status_code == 200, path
    r = call(client, site, "alice", "DELETE", f"/api/devices/{gw}/binding")
    assert r.status_code == 200
    for path in reads:
        r = client.get(path, headers={"api-secret": sha1})
        assert (r.status_code, r.json()["code"]) == (403, "unbound_device"), path
    assert call(client, site, "alice", "POST", f"/api/devices/{gw}/binding").status_code == 200
    assert client.get(reads[0], headers={"api-secret": sha1}).status_code == 200
    r = call(client, site, "alice", "POST", f"/api/devices/{gw}/revoke")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    before = state_of(site)
    for path in reads:
        r = client.get(path, headers={"api-secret": sha1})
        assert (r.status_code, r.json()["code"]) == (403, "revoked_device"), path
        assert "make a new uploader secret" in r.json()["message"]
    r = client.post("/api/v1/entries", json=entry, headers={"api-secret": sha1})
    assert (r.status_code, r.json()["code"]) == (403, "revoked_device")
    assert client.get(f"/api/v1/entries.json?token={secret}").status_code in (401, 403)
    assert state_of(site) == before  # refused: nothing ordered, nothing stored


def test_patient_invites_and_the_reader_mints_her_own_token(client, site) -> None:  # type: ignore[no-untyped-def]
    before = state_of(site)
    r = call(client, site, "alice", "POST", "/api/nightscout/readers", {"reader": "dr-kim"})
    assert r.status_code == 201 and r.json() == {"reader": "dr-kim", "status": "invited"}
    assert "token" not in r.json()  # a patient never gets a token that reads as someone else
    after = state_of(site)  # only the invitation file (second to last) changed
    assert after[:-2] == before[:-2] and after[-1] == before[-1]
    r = call(client, site, "dr-lee", "POST", "/api/nightscout/reader-tokens",
             {"patient": "alice"})  # not invited
    assert (r.status_code, r.json()["code"]) == (403, "not_invited")
    assert call(client, site, "dr-kim", "GET", "/api/nightscout/reader-invitations"
                ).json() == {"patients": ["alice"]}
    r = call(client, site, "dr-kim", "POST", "/api/nightscout/reader-tokens",
             {"patient": "alice"})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store", r.text
    token = r.json()["token"]
    assert r.json()["reader"] == "dr-kim"
    _secrets_nowhere(site, token)
    again = call(client, site, "dr-kim", "POST", "/api/nightscout/reader-tokens",
                 {"patient": "alice"})  # the invitation is spent
    assert (again.status_code, again.json()["code"]) == (403, "not_invited")
    assert client.get(f"/api/v1/entries.json?token={token}").status_code == 403
    r = call(client, site, "alice", "POST", "/api/grants",
             {"grantee": "dr-kim", "streams": ["cgm"], "view": "raw", "last_days": 7,
              "valid_days": 7})
    assert r.status_code == 201
    r = client.get(f"/api/v1/entries.json?token={token}&count=3")
    assert r.status_code == 200 and len(r.json()) == 3


@pytest.mark.parametrize(("who", "path", "body", "status"), [
    (None, "/api/nightscout/uploaders", None, 401),
    ("dr-lee", "/api/nightscout/uploaders", None, 403),
    ("org", "/api/nightscout/uploaders", None, 403),
    ("dr-lee", "/api/nightscout/readers", {"reader": "dr-lee"}, 403),
])
def test_only_the_patient_makes_nightscout_credentials(client, site, who: str | None,  # type: ignore[no-untyped-def]
                                                      path: str, body: Any, status: int) -> None:
    before = footprint(site)
    r = call(client, site, who, "POST", path, body)
    assert r.status_code == status and r.json()["message"]
    assert footprint(site) == before


def test_reader_token_for_an_unknown_reader_is_404_and_changes_nothing(client, site) -> None:  # type: ignore[no-untyped-def]
    before = state_of(site)
    r = call(client, site, "alice", "POST", "/api/nightscout/readers", {"reader": "nobody"})
    assert r.status_code == 404 and "account list" in r.json()["message"]
    r = call(client, site, "alice", "POST", "/api/nightscout/readers",
             {"reader": "alice.ns-gw1"})  # a program reads nothing
    assert r.status_code == 400
    assert state_of(site) == before

"""Bad input over HTTP: a 4xx with a clear message, never a 500, nothing stored."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from . import payloads

H = {"api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()}


def _now() -> int:
    return int(time.time() * 1000)


def _sgv(**kw):  # type: ignore[no-untyped-def]
    return [{"type": "sgv", "sgv": 120, "date": _now() - 60_000, "direction": "Flat", **kw}]


CASES = [  # the body as a whole is not a POST body: 400, nothing stored (Nightscout fails too)
    ("malformed json", b'[{"type": "sgv", "sgv": 12', 400),
    ("not json at all", b"<xml/>", 400),
    ("empty body", b"", 400),
    ("NaN", b'[{"type":"sgv","sgv":NaN,"date":1}]', 400),
    ("empty list", b"[]", 400),
]

#: One document of a POST: refused alone (answered in place, logged for the patient), or, as
#: Nightscout would, stored with what is suspect marked.
DOCS = [
    ("wrong type sgv", _sgv(sgv="high"), False),
    ("bool date", _sgv(date=True), False),
    ("absurd value", _sgv(sgv=9000), False),
    ("negative value", _sgv(sgv=-5), False),
    ("far future date", _sgv(date=_now() + 2 * 86_400_000), False),
    ("ancient date", _sgv(date=5), False),
    ("unknown direction", _sgv(direction="Sideways"), False),
    ("mongo operator key", _sgv(**{"$where": "sleep(1000)"}), False),
    ("dotted key", _sgv(**{"a.b": 1}), False),
    ("nested operator", _sgv(x={"$gt": ""}), False),
    ("sql injection string", _sgv(direction="'; DROP TABLE seen;--"), False),
    ("script injection", _sgv(type="<script>alert(1)</script>"), False),
    ("a number, not a document", [1], False),
    ("deep nesting", [json.loads("[" * 50 + "]" * 50)], False),
    ("sensor HIGH", _sgv(sgv=401), True),
    ("sensor LOW", _sgv(sgv=38), True),
    ("decimal mg/dL", _sgv(sgv=142.34), True),
    ("unknown type", _sgv(type="xyz"), True),
    ("a few minutes fast", _sgv(date=_now() + 600_000), True),
]


@pytest.mark.parametrize(("what", "body", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_bodies_are_refused_and_nothing_is_stored(client, site, what: str, body: bytes,
                                                      status: int) -> None:
    before = site.ctx.svc.vault.count()
    r = client.post("/api/v1/entries", content=body,
                    headers={**H, "content-type": "application/json"})
    assert r.status_code == status, (what, r.text)
    assert set(r.json()) == {"code", "message", "status"} and len(r.json()["message"]) > 10
    assert r.json()["status"] == status  # as Nightscout v1 (send-json-status.js)
    assert site.ctx.svc.vault.count() == before


@pytest.mark.parametrize(("what", "docs", "stored"), DOCS, ids=[d[0] for d in DOCS])
def test_each_document_is_judged_alone(client, site, what: str, docs: list[object],  # type: ignore[no-untyped-def]
                                       stored: bool) -> None:
    before = site.ctx.svc.vault.count()
    good = _sgv(date=_now() - 3_600_000 - len(what) * 1000)  # a reading that is fine
    r = client.post("/api/v1/entries", json=[*good, *docs], headers=H)
    assert r.status_code == 200, (what, r.text)
    first, second = r.json()
    assert "glucoledger" not in first
    if stored:
        assert "glucoledger" not in second
        # Any time (the DOCS are built at collection: "a few minutes fast" may be past the
        # clock skew, or not, by the time this runs), so no default 4-day window applies.
        got = client.get("/api/v1/entries.json", headers=H,
                         params={"find[_id]": second["_id"], "find[date][$gte]": "0"}).json()
        assert [d["_id"] for d in got] == [second["_id"]]
    else:
        assert second["glucoledger"]["stored"] is False
        assert len(second["glucoledger"]["reason"]) > 10
        assert site.ctx.svc.vault.count() == before + 1  # the good reading only


def test_huge_body_is_413(client, site) -> None:  # type: ignore[no-untyped-def]
    before = site.ctx.svc.vault.count()
    big = json.dumps(payloads.xdrip_sgv(_now(), 1) * 20_000).encode()
    assert len(big) > site.ctx.settings.max_body
    r = client.post("/api/v1/entries", content=big, headers={**H, "content-type":
                                                                 "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "too_large"
    assert site.ctx.svc.vault.count() == before


@pytest.mark.parametrize("body", [
    {"grantee": "dr-lee", "streams": ["cgm"], "view": "raw", "last_days": 7, "valid_days": 7,
     "extra": 1},
    {"grantee": "dr-lee", "streams": ["blood"], "view": "raw", "last_days": 7, "valid_days": 7},
    {"grantee": "dr-lee", "streams": ["cgm"], "view": "raw", "last_days": -1, "valid_days": 7},
    {"grantee": "'; DROP TABLE--", "streams": ["cgm"], "view": "raw", "last_days": 7,
     "valid_days": 7},
    {"grantee": "nobody", "streams": ["cgm"], "view": "raw", "last_days": 7, "valid_days": 7},
])
def test_bad_grant_bodies(client, body) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
    csrf = r.json()["csrf"]
    r = client.post("/api/grants", json=body, headers={"x-csrf-token": csrf})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["code"] in ("bad_input", "not_found")
    assert client.get("/api/grants").json() == []


def test_login_is_rate_limited_and_csrf_required(client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        assert client.post("/api/session", json={"name": "alice", "password": "wrong-one"}
                           ).status_code == 401
    r = client.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_cookie_without_csrf_token_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    client.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
    r = client.post("/api/grants", json={"grantee": "dr-lee", "streams": ["cgm"],
                                         "view": "raw", "last_days": 7, "valid_days": 7})
    assert r.status_code == 401


def test_clinician_cannot_grant_or_read_audit(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/session", json={"name": "dr-lee", "password": "dr-lee-demo-password"})
    csrf = r.json()["csrf"]
    r = client.post("/api/grants", json={"grantee": "dr-kim", "streams": ["cgm"],
                                         "view": "raw", "last_days": 7, "valid_days": 7},
                    headers={"x-csrf-token": csrf})
    assert r.status_code == 403
    assert client.get("/api/audit").status_code == 403


def test_erasure_needs_confirmation_then_destroys(client, site) -> None:  # type: ignore[no-untyped-def]
    csrf = client.post("/api/session", json={"name": "alice",
                                             "password": "alice-demo-password"}).json()["csrf"]
    h = {"x-csrf-token": csrf}
    r = client.post("/api/erase", json={"streams": ["cgm"], "confirm": "yes"}, headers=h)
    assert r.status_code == 422
    r = client.post("/api/erase", json={"streams": ["cgm"], "confirm": "erase"}, headers=h)
    assert r.status_code == 200, r.text
    r = client.post("/api/reads", json={"patient": "alice", "streams": ["cgm"], "view": "raw"},
                    headers=h)
    assert r.status_code == 200 and r.json()["records"] == []

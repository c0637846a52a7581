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


CASES = [
    ("malformed json", b'[{"type": "sgv", "sgv": 12', 400),
    ("not json at all", b"<xml/>", 400),
    ("empty body", b"", 400),
    ("NaN", b'[{"type":"sgv","sgv":NaN,"date":1}]', 400),
    ("wrong type sgv", json.dumps(_sgv(sgv="high")).encode(), 400),
    ("bool date", json.dumps(_sgv(date=True)).encode(), 400),
    ("absurd value", json.dumps(_sgv(sgv=9000)).encode(), 400),
    ("negative value", json.dumps(_sgv(sgv=-5)).encode(), 400),
    ("future date", json.dumps(_sgv(date=_now() + 86_400_000)).encode(), 400),
    ("ancient date", json.dumps(_sgv(date=5)).encode(), 400),
    ("unknown type", json.dumps(_sgv(type="xyz")).encode(), 400),
    ("unknown direction", json.dumps(_sgv(direction="Sideways")).encode(), 400),
    ("mongo operator key", json.dumps(_sgv(**{"$where": "sleep(1000)"})).encode(), 400),
    ("dotted key", json.dumps(_sgv(**{"a.b": 1})).encode(), 400),
    ("nested operator", json.dumps(_sgv(x={"$gt": ""})).encode(), 400),
    ("sql injection string", json.dumps(_sgv(direction="'; DROP TABLE seen;--")).encode(),
     400),
    ("script injection", json.dumps(_sgv(type="<script>alert(1)</script>")).encode(), 400),
    ("list of numbers", b"[1,2,3]", 400),
    ("empty list", b"[]", 400),
    ("deep nesting", ("[" * 50 + "]" * 50).encode(), 400),
]


@pytest.mark.parametrize(("what", "body", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_entries_are_refused_and_nothing_is_stored(client, site, what: str, body: bytes,
                                                       status: int) -> None:
    before = site.ctx.services["vault"].count()
    r = client.post("/api/v1/entries", content=body,
                    headers={**H, "content-type": "application/json"})
    assert r.status_code == status, (what, r.text)
    assert set(r.json()) == {"code", "message"} and len(r.json()["message"]) > 10
    assert site.ctx.services["vault"].count() == before


def test_huge_body_is_413(client, site) -> None:  # type: ignore[no-untyped-def]
    before = site.ctx.services["vault"].count()
    big = json.dumps(payloads.xdrip_sgv(_now(), 1) * 20_000).encode()
    assert len(big) > site.ctx.settings.max_body
    r = client.post("/api/v1/entries", content=big, headers={**H, "content-type":
                                                                 "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "too_large"
    assert site.ctx.services["vault"].count() == before


def test_one_bad_document_refuses_the_whole_upload(client, site) -> None:  # type: ignore[no-untyped-def]
    before = site.ctx.services["vault"].count()
    body = payloads.xdrip_sgv(_now()) + _sgv(sgv=1000)
    r = client.post("/api/v1/entries", json=body, headers=H)
    assert r.status_code == 400 and "1000" in r.json()["message"]
    assert site.ctx.services["vault"].count() == before


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

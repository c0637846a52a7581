"""Nightscout v1 compatibility: real uploader payloads in, python-nightscout reads back."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests

from glucoledger.node.demo_site import DEMO_READER_TOKEN, DEMO_UPLOADER_SECRET

from . import payloads

SHA1 = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
SHA512 = hashlib.sha512(DEMO_UPLOADER_SECRET.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def test_xdrip_sgv_array_is_stored_and_echoed_with_ids(client) -> None:  # type: ignore[no-untyped-def]
    body = payloads.xdrip_sgv(now_ms())
    r = client.post("/api/v1/entries", json=body, headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text
    docs = r.json()
    assert [d["sgv"] for d in docs] == [b["sgv"] for b in body]
    assert all(len(d["_id"]) == 24 for d in docs)
    # Deduplication as Nightscout does: the same entries again are echoed, not stored twice.
    again = client.post("/api/v1/entries.json", json=body, headers={"api-secret": SHA512})
    assert [d["_id"] for d in again.json()] == [d["_id"] for d in docs]


def test_loop_treatments_aaps_bolus_and_devicestatus(client, site) -> None:  # type: ignore[no-untyped-def]
    n = now_ms()
    before = site.ctx.services["vault"].count()
    r = client.post("/api/v1/treatments", json=payloads.loop_treatments(n),
                    headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text
    assert {d["eventType"] for d in r.json()} == {"Temp Basal", "Correction Bolus",
                                                  "Carb Correction"}
    r = client.post("/api/v1/treatments", json=payloads.aaps_bolus(n),
                    headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text
    assert r.json()[0]["pumpId"] == 4148
    r = client.post("/api/v1/devicestatus", json=payloads.loop_devicestatus(n),
                    headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text
    assert site.ctx.services["vault"].count() > before


def test_status_verifyauth_and_experiments(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/status.json").json()["status"] == "ok"
    assert client.get("/api/v1/verifyauth", headers={"api-secret": SHA1}).json()[
        "message"]["canWrite"] is True
    assert client.get("/api/v1/verifyauth", headers={"api-secret": "0" * 40}).status_code == 401
    assert client.get("/api/v1/experiments/test",
                      params={"token": DEMO_READER_TOKEN}).status_code == 200


def test_wrong_secret_is_401_and_logged(client, site) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/entries", json=payloads.xdrip_sgv(now_ms()),
                    headers={"api-secret": hashlib.sha1(b"guess").hexdigest()})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"
    assert site.ctx.seclog.recent(5)[0].status == 401


def test_uploader_secret_cannot_read(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/entries.json", headers={"api-secret": SHA1})
    assert r.status_code == 403


def _grant(client, **kw) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
    csrf = r.json()["csrf"]
    body = {"grantee": "dr-lee", "streams": ["cgm", "insulin", "carbs", "notes"],
            "view": "raw", "last_days": 14, "valid_days": 30, **kw}
    r = client.post("/api/grants", json=body, headers={"x-csrf-token": csrf})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_python_nightscout_reads_through_a_grant(served) -> None:  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nightscout
    site, srv = served
    n = now_ms()
    up = requests.post(f"{srv.url}/api/v1/treatments", json=payloads.loop_treatments(n),
                       headers={"api-secret": SHA1}, timeout=30)
    assert up.status_code == 200, up.text
    # No grant yet: 403, and the attempt is on the ledger in alice's audit trail.
    r = requests.get(f"{srv.url}/api/v1/entries/sgv.json", params={"token": DEMO_READER_TOKEN},
                     timeout=30)
    assert r.status_code == 403
    assert r.json()["code"] == "no_grant"
    from glucoledger.node.accounts import identity
    from glucoledger.node.audit import audit_trail

    alice = identity(site.node, "alice").id
    trail = audit_trail(site.node, alice)
    assert trail[0].decision == "deny" and trail[0].reason == "no_grant"
    # Alice grants; the python-nightscout client (api_secret = the reader token) reads.
    import httpx

    with httpx.Client(base_url=srv.url.replace("http://", "https://"), verify=False) as _:
        pass
    with requests.Session() as s:
        r = s.post(f"{srv.url}/api/session", json={"name": "alice",
                                                   "password": "alice-demo-password"},
                   timeout=30)
        csrf = r.json()["csrf"]
        sid = r.cookies.get("gl_session") or s.cookies.get("gl_session")
        r = s.post(f"{srv.url}/api/grants", json={
            "grantee": "dr-lee", "streams": ["cgm", "insulin", "carbs"], "view": "raw",
            "last_days": 14, "valid_days": 30}, headers={"x-csrf-token": csrf,
                                                         "cookie": f"gl_session={sid}"},
            timeout=30)
        assert r.status_code == 201, r.text
    api = nightscout.Api(srv.url, api_secret=DEMO_READER_TOKEN)
    sgvs = api.get_sgvs({"count": 20})
    assert 0 < len(sgvs) <= 20 and all(39 <= e.sgv <= 500 for e in sgvs)
    treatments = api.get_treatments({"count": 50, "find[created_at][$gte]":
                                     payloads.iso(n - 3_600_000)})
    events = {t.eventType for t in treatments}
    assert {"Temp Basal", "Correction Bolus", "Carb Correction"} <= events


@pytest.mark.parametrize("query", [
    "find[date][$gte]=0&count=5", "find[dateString][$gte]=2020-01-01T00:00:00Z",
    "count=0", "find[type]=sgv"])
def test_query_syntax(client, query: str) -> None:  # type: ignore[no-untyped-def]
    _grant(client)
    r = client.get(f"/api/v1/entries.json?token={DEMO_READER_TOKEN}&{query}")
    assert r.status_code == 200, r.text


def test_summary_grant_shows_no_raw_readings(client) -> None:  # type: ignore[no-untyped-def]
    _grant(client, view="summary")
    r = client.get(f"/api/v1/entries.json?token={DEMO_READER_TOKEN}")
    assert r.status_code == 403
    assert r.json()["code"] == "raw_under_summary"

"""Nightscout v1 compatibility: real uploader payloads in, python-nightscout reads back."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
import requests

from glucoledger.interop.nightscout import ADDED
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
    before = site.ctx.svc.vault.count()
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
    assert site.ctx.svc.vault.count() > before


def test_status_verifyauth_and_experiments(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/status.json").json()["status"] == "ok"
    assert client.get("/api/v1/verifyauth", headers={"api-secret": SHA1}).json()[
        "message"]["canWrite"] is True
    # Nightscout answers verifyauth 200 whatever the credential; the message says which.
    for headers in ({"api-secret": "0" * 40}, {}):
        r = client.get("/api/v1/verifyauth", headers=headers)
        assert r.status_code == 200
        assert r.json()["message"]["message"] == "UNAUTHORIZED"
        assert r.json()["message"]["canRead"] is False
    status = client.get("/api/v1/status.json").json()
    assert status["settings"]["thresholds"] == {"bgHigh": 250, "bgTargetTop": 180,
                                                "bgTargetBottom": 70, "bgLow": 54}
    assert client.get("/api/v1/experiments/test",
                      params={"token": DEMO_READER_TOKEN}).status_code == 200


def test_wrong_secret_is_401_and_logged(client, site) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/entries", json=payloads.xdrip_sgv(now_ms()),
                    headers={"api-secret": hashlib.sha1(b"guess").hexdigest()})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"
    assert site.ctx.seclog.recent(5)[0].status == 401


def test_uploader_secret_reads_its_patient_as_the_patient_audited(client, site) -> None:  # type: ignore[no-untyped-def]
    from glucoledger.node.accounts import identity
    from glucoledger.node.audit import audit_trail

    alice = identity(site.node, "alice").id
    before = len(audit_trail(site.node, alice))
    r = client.get("/api/v1/entries.json?count=3", headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text
    assert len(r.json()) == 3 and all("sgv" in d for d in r.json())
    trail = audit_trail(site.node, alice)
    assert len(trail) == before + 1
    assert trail[0].who == alice and trail[0].outcome == "permit"


def _grant(client, **kw) -> str:  # type: ignore[no-untyped-def]
    """Alice grants dr-lee (the reader token's account) a raw view; ``kw`` overrides."""
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


# --- lossless round trips: what an uploader POSTs, a reader GETs back ------------------------

ALL_STREAMS = ["cgm", "smbg", "insulin", "carbs", "notes", "settings"]
TABLE = payloads.ROUND_TRIP


def js(value: Any) -> str:
    """Canonical JSON: equal texts mean equal documents, an int still an int, a float a float."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def as_sent(got: dict[str, Any], sent: dict[str, Any], collection: str) -> bool:
    """``got`` is ``sent`` plus ``_id`` and the fields the server adds where they were absent."""
    added = set(got) - set(sent) - {"_id"}
    return (set(sent) <= set(got) and added <= set(ADDED[collection])
            and js({k: got[k] for k in sent}) == js(sent))


def read_all(get: Any, collection: str, since_ms: int) -> list[dict[str, Any]]:
    docs = get(f"/api/v1/{collection}.json", {"token": DEMO_READER_TOKEN, "count": "1000",
                                              "find[date][$gte]": str(since_ms)})
    assert isinstance(docs, list)
    return docs


def test_uploader_documents_read_back_as_sent(client) -> None:  # type: ignore[no-untyped-def]
    n = now_ms()
    echoes = []
    for collection, make in TABLE:
        body = make(n)
        r = client.post(f"/api/v1/{collection}", json=body, headers={"api-secret": SHA1})
        assert r.status_code == 200, (make.__name__, r.text)
        sent = body if isinstance(body, list) else [body]
        assert len(r.json()) == len(sent)
        echoes += [(collection, make.__name__, d, e) for d, e in zip(sent, r.json(), strict=True)]
    _grant(client, streams=ALL_STREAMS)

    def get(path: str, params: dict[str, str]) -> Any:
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    read = {c: read_all(get, c, n - 4 * 3_600_000) for c in ("entries", "treatments",
                                                              "devicestatus", "profile")}
    for collection, name, sent, echo in echoes:
        assert as_sent(echo, sent, collection), (name, echo)
        mine = [d for d in read[collection] if d["_id"] == echo["_id"]]
        assert [js(d) for d in mine] == [js(echo)], (name, sent, mine)  # GET == POST's echo


def test_python_nightscout_reads_documents_as_sent(served) -> None:  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nightscout
    _, srv = served
    n = now_ms()
    sent = payloads.loop_batch(n) + payloads.aaps_batch(n)
    for collection, body in (("treatments", sent), ("entries", payloads.xdrip_local_entries(n)),
                             ("profile", payloads.aaps_profile(n))):
        r = requests.post(f"{srv.url}/api/v1/{collection}", json=body,
                          headers={"api-secret": SHA1}, timeout=30)
        assert r.status_code == 200, r.text
    with requests.Session() as s:
        r = s.post(f"{srv.url}/api/session", json={"name": "alice",
                                                   "password": "alice-demo-password"},
                   timeout=30)
        # The session cookie is Secure and this server plain HTTP: send it by hand.
        cookie = f"gl_session={r.cookies.get('gl_session')}"
        r = s.post(f"{srv.url}/api/grants", json={
            "grantee": "dr-lee", "streams": ALL_STREAMS, "view": "raw", "last_days": 14,
            "valid_days": 30}, headers={"x-csrf-token": r.json()["csrf"], "cookie": cookie},
            timeout=30)
        assert r.status_code == 201, r.text
    api = nightscout.Api(srv.url, api_secret=DEMO_READER_TOKEN)
    treatments = api.get_treatments({"count": 100, "find[created_at][$gte]":
                                     payloads.iso(n - 4 * 3_600_000)})
    got = [t._json for t in treatments]
    for doc in sent:
        assert sum(as_sent(g, doc, "treatments") for g in got) == 1, doc
    meal = next(t for t in treatments if t.eventType == "Meal Bolus")
    assert (meal.insulin, meal.carbs) == (4.25, 52)  # one document, not its parts
    sgvs = api.get_sgvs({"count": 100, "find[date][$gte]": str(n - 3_600_000)})
    [low] = [e for e in sgvs if e.sgv == 39]
    assert low._json["direction"] == "NONE" and low._json["noise"] == 4
    profiles = api.get_profiles({"find[startDate][$gte]": payloads.iso(n - 4 * 3_600_000)})
    [mine] = profiles.profile_definitions
    assert as_sent(mine._json, payloads.aaps_profile(n), "profile")
    assert mine.get_default_profile().basal.entries[1].value == 1.05


def test_a_reader_sees_only_the_parts_of_a_document_it_is_granted(client) -> None:  # type: ignore[no-untyped-def]
    n = now_ms()
    meal = payloads.aaps_batch(n)[0]
    r = client.post("/api/v1/treatments", json=meal, headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text
    _grant(client, streams=["carbs"])
    r = client.get("/api/v1/treatments.json", params={
        "token": DEMO_READER_TOKEN, "find[eventType]": "Meal Bolus",
        "find[created_at][$gte]": meal["created_at"], "find[created_at][$lte]": meal["created_at"]})
    assert r.status_code == 200, r.text
    [doc] = r.json()
    assert doc["carbs"] == 52 and doc["pumpId"] == meal["pumpId"]
    assert not {"insulin", "type", "isSMB", "notes"} & set(doc)  # insulin and notes: not granted


def test_treatment_queries_clients_send(client) -> None:  # type: ignore[no-untyped-def]
    n = now_ms()
    aaps, loop = payloads.aaps_batch(n), payloads.loop_batch(n)
    for body in (aaps, loop):
        assert client.post("/api/v1/treatments", json=body,
                           headers={"api-secret": SHA1}).status_code == 200
    _grant(client, streams=ALL_STREAMS)

    def find(**params: str) -> list[dict[str, Any]]:
        r = client.get("/api/v1/treatments.json", params={"token": DEMO_READER_TOKEN, **params})
        assert r.status_code == 200, r.text
        return list(r.json())

    by = "openaps://AndroidAPS"
    got = find(**{"find[enteredBy]": by, "find[created_at][$gte]": aaps[1]["created_at"],
                  "find[created_at][$lte]": aaps[4]["created_at"]})
    assert [d["eventType"] for d in got] == ["Site Change", "BG Check", "Temp Basal",
                                             "Correction Bolus"]  # newest first
    got = find(**{"find[eventType]": "Temp Basal", "find[date][$gte]": str(n - 4 * 3_600_000)})
    assert {d.get("enteredBy") for d in got} >= {by, "loop://iPhone"}
    assert all(d["eventType"] == "Temp Basal" for d in got)
    got = find(**{"find[carbs][$exists]": "true", "find[enteredBy][$ne]": "glucoledger",
                  "find[created_at][$gt]": payloads.iso(n - 4 * 3_600_000)})  # Trio's query
    assert sorted(d["eventType"] for d in got) == ["Carb Correction", "Meal Bolus"]
    got = find(**{"find[insulin][$gt]": "1", "find[enteredBy]": by})
    assert [d["insulin"] for d in got] == [4.25]
    got = find(**{"find[enteredBy]": by, "count": "2"})
    assert [d["eventType"] for d in got] == ["Profile Switch", "Temporary Target"]


def test_an_upload_twice_is_stored_once(client, site) -> None:  # type: ignore[no-untyped-def]
    n = now_ms()
    body = payloads.aaps_batch(n)
    first = client.post("/api/v1/treatments", json=body, headers={"api-secret": SHA1})
    before = site.ctx.svc.vault.count()
    again = client.post("/api/v1/treatments", json=body, headers={"api-secret": SHA1})
    assert js(again.json()) == js(first.json())
    assert site.ctx.svc.vault.count() == before
    _grant(client, streams=ALL_STREAMS)
    r = client.get("/api/v1/treatments.json", params={
        "token": DEMO_READER_TOKEN, "find[enteredBy]": "openaps://AndroidAPS"})
    assert sorted(d["_id"] for d in r.json()) == sorted(d["_id"] for d in first.json())


def _note(**extra: Any) -> dict[str, Any]:
    return {"eventType": "Note", "created_at": payloads.iso(now_ms() - 60_000), "notes": "x",
            **extra}


BOUNDS = [
    ("annex too large", json.dumps(_note(a="x" * 3000, b="y" * 3000, c="z" * 3000)),
     "at most 8192"),
    ("too many keys", json.dumps(_note(**{f"k{i}": i for i in range(70)})), "at most 64"),
    ("nested too deep", json.dumps(_note(a={"b": {"c": {"d": 1}}})), "nests 3 levels"),
    ("infinity", json.dumps(_note()).replace('"x"}', '"x", "y": 1e400}'), "finite number"),
    ("NaN", json.dumps(_note()).replace('"x"}', '"x", "y": NaN}'), "not valid JSON"),
    ("beyond 64 bits", json.dumps(_note(y=2**64)), "64-bit"),
    ("lone surrogate", json.dumps(_note(notes="\ud800")), "Unicode"),
]


@pytest.mark.parametrize(("what", "body", "says"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_unkeepable_documents_are_refused_alone_and_logged(
        client, site, what: str, body: str, says: str) -> None:  # type: ignore[no-untyped-def]
    before = site.ctx.svc.vault.count()
    ok = json.dumps(payloads.careportal_note(now_ms()))
    r = client.post("/api/v1/treatments", content=f"[{ok}, {body}]",
                    headers={"api-secret": SHA1, "content-type": "application/json"})
    if what == "NaN":  # not JSON at all: no document can be read, Nightscout fails too
        assert r.status_code == 400, r.text
        assert says in r.json()["message"]
        assert site.ctx.svc.vault.count() == before
        return
    # One document cannot be kept: the other is stored, both are answered, in order.
    assert r.status_code == 200, r.text
    first, second = r.json()
    assert first["eventType"] == "Note" and "glucoledger" not in first
    assert second["glucoledger"]["stored"] is False and says in second["glucoledger"]["reason"]
    assert len(second["_id"]) == 24
    assert site.ctx.svc.vault.count() == before + 1
    from glucoledger.node.accounts import identity

    log = site.ctx.svc.nightscout.refusals.of(identity(site.node, "alice").id)
    assert log[-1].index == 1 and says in log[-1].reason

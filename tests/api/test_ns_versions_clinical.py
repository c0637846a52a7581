"""Clinical reads count every Nightscout document at its current version, over real HTTP.

An uploader (the Nightscout secret) posts a bolus, carbs and a temp basal, edits the bolus
twice, shortens the temp basal by a re-POST (Loop), moves the carbs in time by PUT with the
``_id`` (Loop), and deletes another bolus; CGM entries are edited and one is deleted. Then
the clinician's raw read (the records reports and the AGP draw on), her portal page's daily
insulin and carbohydrate totals, the signed summary and the FHIR export must show exactly
what a Nightscout reader sees now: one bolus at its last dose, the carbs only at their new
time, no deleted bolus or reading. The patient's own raw read still lists the earlier
versions, apart (``history``), and nobody else's does. Before the version rule was applied
to releases (node/access.py), the moved carbs counted twice and the deleted bolus and
reading still counted: these checks fail.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from glucoledger.api.portal_view import Fmt
from glucoledger.node.accounts import identity
from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from ..servers import UvicornThread
from .conftest import Site
from .payloads import iso

UP = {"api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()}
MIN = 60_000
DAY = 86_400_000


_OPEN: list[httpx.Client] = []


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    site = Site(tmp_path / "node", secure=False)  # plain http on loopback: cookies flow
    srv = UvicornThread(site.app)
    try:
        yield site, srv.url
    finally:
        while _OPEN:
            _OPEN.pop().close()
        srv.stop()
        site.close()


def _client(url: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60)
    _OPEN.append(c)
    return c


def _session(url: str, name: str) -> httpx.Client:
    c = _client(url)
    r = c.post("/api/session", json={"name": name, "password": f"{name}-demo-password"})
    assert r.status_code == 200, r.text
    c.headers["x-csrf-token"] = r.json()["csrf"]
    return c


def _send(c: httpx.Client, method: str, path: str, doc: Any) -> str:
    r = c.request(method, path, json=doc if isinstance(doc, list) else [doc], headers=UP)
    assert r.status_code == 200, r.text
    [answer] = r.json()
    assert answer.get("glucoledger", {}).get("stored", True), answer
    return str(answer["_id"])


def _read(c: httpx.Client, streams: list[str], view: str, days: int) -> dict[str, Any]:
    r = c.post("/api/reads", json={"patient": "alice", "streams": streams, "view": view,
                                   "last_days": days})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _in(records: list[dict[str, Any]], lo: int, hi: int, kind: str) -> list[dict[str, Any]]:
    return sorted((r for r in records if r["type"] == kind and lo <= r["time_ms"] < hi),
                  key=lambda r: r["time_ms"])


def test_summaries_reports_and_fhir_count_current_versions(http) -> None:  # type: ignore[no-untyped-def]
    site, url = http
    alice, lee = _session(url, "alice"), _session(url, "dr-lee")
    ns = _client(url)
    r = alice.post("/api/grants", json={
        "grantee": "dr-lee", "streams": ["carbs", "cgm", "insulin"], "view": "raw",
        "last_days": 14, "valid_days": 30})
    assert r.status_code == 201, r.text

    # --- treatments, today (odd seconds and ms: no simulated record shares an instant) -----
    t = int(time.time() * 1000) - 90 * MIN
    t -= t % MIN
    t += 7_123
    bolus = {"eventType": "Correction Bolus", "created_at": iso(t), "insulin": 2.0,
             "enteredBy": "loop://iPhone", "syncIdentifier": "v-bolus-1"}
    carbs = {"eventType": "Carb Correction", "created_at": iso(t + 10 * MIN), "carbs": 30,
             "enteredBy": "loop://iPhone", "syncIdentifier": "v-carbs-1"}
    basal = {"eventType": "Temp Basal", "created_at": iso(t + 5 * MIN), "temp": "absolute",
             "rate": 1.5, "absolute": 1.5, "duration": 30, "enteredBy": "loop://iPhone",
             "syncIdentifier": "v-basal-1"}
    doomed = {"eventType": "Correction Bolus", "created_at": iso(t + 40 * MIN),
              "insulin": 4.0, "enteredBy": "loop://iPhone", "syncIdentifier": "v-bolus-2"}
    bolus_id = _send(ns, "POST", "/api/v1/treatments", bolus)
    carbs_id = _send(ns, "POST", "/api/v1/treatments", carbs)
    _send(ns, "POST", "/api/v1/treatments", basal)
    doomed_id = _send(ns, "POST", "/api/v1/treatments", doomed)
    assert _send(ns, "PUT", "/api/v1/treatments", dict(bolus, insulin=2.5)) == bolus_id
    assert _send(ns, "PUT", "/api/v1/treatments", dict(bolus, insulin=3.0)) == bolus_id
    _send(ns, "POST", "/api/v1/treatments", dict(basal, duration=10))  # Loop's cancel
    moved = dict(carbs, created_at=iso(t + 25 * MIN), carbs=45, _id=carbs_id)
    assert _send(ns, "PUT", "/api/v1/treatments", moved) == carbs_id
    r = ns.delete(f"/api/v1/treatments/{doomed_id}", headers=UP)
    assert r.status_code == 200 and r.json() == {"n": 1, "ok": 1}, r.text

    lo, hi = t - MIN, t + 60 * MIN
    r = ns.get("/api/v1/treatments.json", headers=UP, params={
        "find[created_at][$gte]": iso(lo), "find[created_at][$lt]": iso(hi), "count": "1000"})
    assert r.status_code == 200, r.text
    nightscout = [d for d in r.json() if str(d.get("syncIdentifier", "")).startswith("v-")]
    assert sorted((d["syncIdentifier"], d.get("insulin"), d.get("carbs"), d.get("duration"))
                  for d in nightscout) == [("v-basal-1", None, None, 10),
                                           ("v-bolus-1", 3.0, None, None),
                                           ("v-carbs-1", None, 45, None)]
    ns_insulin = sum(float(d.get("insulin") or 0) for d in r.json())
    ns_carbs = sum(float(d.get("carbs") or 0) for d in r.json())

    # The clinician's raw release: what the daily views, the AGP report's treatments and the
    # CSV draw on. Totals equal Nightscout's; every one of the test's documents once.
    raw = _read(lee, ["carbs", "cgm", "insulin"], "raw", 3)
    assert raw["history"] == []  # only the patient sees earlier versions
    boluses = _in(raw["records"], lo, hi, "bolus")
    grams = _in(raw["records"], lo, hi, "carbs")
    basals = _in(raw["records"], lo, hi, "basal")
    assert sum(b["units_milli"] for b in boluses) == round(ns_insulin * 1000)
    assert sum(c["grams_tenths"] for c in grams) == round(ns_carbs * 10)
    assert [(b["time_ms"], b["units_milli"]) for b in boluses if b["time_ms"] % MIN] == [
        (t, 3000)]
    assert [(c["time_ms"], c["grams_tenths"]) for c in grams if c["time_ms"] % MIN] == [
        (t + 25 * MIN, 450)]
    assert [(b["time_ms"], b["duration_ms"]) for b in basals if b["time_ms"] % MIN] == [
        (t + 5 * MIN, 10 * MIN)]

    # The clinician's page: each day's insulin and carbohydrate totals (beside its chart and
    # in the table) are Nightscout's totals of that day's treatments now.
    page = lee.get("/portal/patients/alice")
    assert page.status_code == 200, page.text
    rows = {m[0]: (m[1], m[2]) for m in re.findall(
        r"<tr><td>([^<]+)</td>(?:<td>[^<]*</td>){5}<td>([^<]+)</td><td>([^<]+)</td></tr>",
        page.text)}
    fmt = Fmt()  # dr-lee's default view: mg/dL, UTC
    midnight = int(time.time() * 1000) // DAY * DAY
    checked = 0
    for start in (midnight, midnight - DAY):
        if fmt.day(start) not in rows:
            continue
        r = ns.get("/api/v1/treatments.json", headers=UP, params={
            "find[created_at][$gte]": iso(start), "find[created_at][$lt]": iso(start + DAY),
            "count": "1000"})
        day = r.json()
        units = sum(float(d.get("insulin") or 0) for d in day)
        carb_g = sum(float(d.get("carbs") or 0) for d in day)
        assert rows[fmt.day(start)] == (f"{units:g} U" if units else "none",
                                        f"{carb_g:g} g" if carb_g else "none"), fmt.day(start)
        checked += 1
    assert checked, rows  # the day of the test's treatments at least

    # The patient's own raw read lists the history apart: the first doses, the carbs at
    # their first time, the deleted bolus; none of it among the records that count.
    mine = _read(alice, ["carbs", "cgm", "insulin"], "raw", 3)
    old = {(h["type"], h["time_ms"], h.get("units_milli"), h.get("grams_tenths"))
           for h in mine["history"] if lo <= h["time_ms"] < hi}
    assert {("bolus", t, 2000, None), ("bolus", t, 2500, None),
            ("carbs", t + 10 * MIN, None, 300), ("bolus", t + 40 * MIN, 4000, None)} <= old
    assert _in(mine["records"], lo, hi, "bolus") == boluses
    assert _in(mine["records"], lo, hi, "carbs") == grams

    # --- CGM entries on a whole past local day, where the summary counts them -------------
    before = _read(lee, ["cgm"], "summary", 2)
    start, end = before["grounds"]["from"], before["grounds"]["to"]
    c0 = before["summary"]["count"]
    e = start + (end - start) // 2
    e -= e % MIN
    e += 7_123
    high = {"type": "sgv", "sgv": 350, "date": e, "dateString": iso(e), "device": "xDrip-v"}
    edited = {"type": "sgv", "sgv": 120, "date": e + 2 * MIN, "dateString": iso(e + 2 * MIN),
              "device": "xDrip-v"}
    high_id = _send(ns, "POST", "/api/v1/entries", high)
    _send(ns, "POST", "/api/v1/entries", edited)
    assert _read(lee, ["cgm"], "summary", 2)["summary"]["count"] == c0 + 2
    _send(ns, "PUT", "/api/v1/entries", dict(edited, sgv=130))
    _send(ns, "PUT", "/api/v1/entries", dict(edited, sgv=140))
    assert _read(lee, ["cgm"], "summary", 2)["summary"]["count"] == c0 + 2
    r = ns.delete(f"/api/v1/entries/{high_id}", headers=UP)
    assert r.status_code == 200 and r.json() == {"n": 1, "ok": 1}, r.text
    # A deletion adds no batch: the summary is computed again, not served from the cache.
    after = _read(lee, ["cgm"], "summary", 2)
    assert after["grounds"]["from"] == start and after["summary"]["count"] == c0 + 1

    # FHIR: the readings of a window around the edits are exactly Nightscout's entries.
    w0, w1 = e - 5 * MIN, e + 10 * MIN
    r = ns.get("/api/v1/entries.json", headers=UP, params={
        "find[date][$gte]": str(w0), "find[date][$lt]": str(w1), "count": "1000"})
    assert r.status_code == 200, r.text
    ns_cgm = sorted((int(d["date"]), int(d["sgv"])) for d in r.json() if d["type"] == "sgv")
    assert (e + 2 * MIN, 140) in ns_cgm and all(ms != e for ms, _ in ns_cgm)
    pid = identity(site.node, "alice").id.hex()
    r = lee.get(f"/fhir/Patient/{pid}/$cgm-bundle",
                params={"start": iso(w0), "end": iso(w1)})
    assert r.status_code == 200, r.text
    fhir_cgm = sorted(
        (int(datetime.fromisoformat(o["effectiveDateTime"]).timestamp() * 1000),
         int(o["valueQuantity"]["value"]))
        for o in (x["resource"] for x in r.json()["entry"])
        if o["resourceType"] == "Observation" and "effectiveDateTime" in o)
    assert fhir_cgm == ns_cgm


def test_a_deleted_document_stays_deleted_without_the_batch_cache(client, site) -> None:  # type: ignore[no-untyped-def]
    """The Nightscout read applies the rule to records it took from the batches; with no
    batch cache (or one that evicted them meanwhile) the batch is opened again and its
    records are new objects: a deleted document must stay deleted all the same."""
    site.ctx.svc.access._cache_size = 0
    t = int(time.time() * 1000) - 20 * MIN
    t -= t % MIN
    t += 3_217
    doc = {"eventType": "Correction Bolus", "created_at": iso(t), "insulin": 1.5,
           "enteredBy": "loop://iPhone", "syncIdentifier": "v-nocache"}
    r = client.post("/api/v1/treatments", json=[doc], headers=UP)
    assert r.status_code == 200, r.text
    doc_id = r.json()[0]["_id"]
    params = {"find[syncIdentifier]": "v-nocache", "find[created_at][$gte]": iso(t - MIN)}
    assert [d["_id"] for d in client.get("/api/v1/treatments.json", headers=UP,
                                         params=params).json()] == [doc_id]
    r = client.delete(f"/api/v1/treatments/{doc_id}", headers=UP)
    assert r.status_code == 200 and r.json() == {"n": 1, "ok": 1}, r.text
    r = client.get("/api/v1/treatments.json", headers=UP, params=params)
    assert r.status_code == 200 and r.json() == [], r.json()


def test_entries_not_uploaded_through_nightscout_are_deleted_and_edited_too(client, site) -> None:  # type: ignore[no-untyped-def]
    """The demo's readings came from a device, not through Nightscout (no annex): a
    Nightscout DELETE of one answered ``{"n": 1}`` and the reading stayed, for the apps and
    the clinical reads alike, and a PUT stored the new reading beside the old one, two
    documents under one ``_id``. Now every record belongs to the document it reads as
    (node/nsversions.py ``doc_refs``), and a PUT of one is its next version
    (node/nightscout.py ``_unnamed_heads``)."""
    now = int(time.time() * 1000)
    hour = now - now % (60 * MIN) - 30 * 60 * MIN
    params = {"find[date][$gte]": str(hour), "find[date][$lt]": str(hour + 60 * MIN),
              "count": "100"}

    def entries() -> dict[int, tuple[str, int]]:
        r = client.get("/api/v1/entries.json", headers=UP, params=params)
        assert r.status_code == 200, r.text
        got = [(int(d["date"]), (d["_id"], int(d["sgv"]))) for d in r.json()]
        assert len(got) == len(dict(got)), got  # one document an instant
        return dict(got)

    before = entries()
    assert len(before) >= 6, before
    (gone, (gone_id, _)), (kept, (kept_id, sgv)) = sorted(before.items())[1:3]
    r = client.delete(f"/api/v1/entries/{gone_id}", headers=UP)
    assert r.status_code == 200 and r.json() == {"n": 1, "ok": 1}, r.text
    r = client.delete(f"/api/v1/entries/{gone_id}", headers=UP)
    assert r.status_code == 200 and r.json() == {"n": 0, "ok": 1}, r.text
    edit = {"type": "sgv", "sgv": sgv + 100, "date": kept, "dateString": iso(kept),
            "device": "xDrip-edit"}
    r = client.put("/api/v1/entries", json=[edit], headers=UP)
    assert r.status_code == 200 and r.json()[0]["_id"] == kept_id, r.text
    after = entries()
    assert set(after) == set(before) - {gone} and after[kept] == (kept_id, sgv + 100)
    # the clinical reads agree: the patient's raw read and the records reports draw on
    pid = identity(site.node, "alice")
    from glucoledger.node.access import RawRelease
    from glucoledger.node.accounts import keys_of
    from glucoledger.state.consent import Request

    access = site.ctx.svc.access
    rel = access.read_as(pid.id, keys_of(site.node, pid, [0]), Request(
        pid.id, ("cgm",), "raw", {"from": hour, "to": hour + 60 * MIN}))
    assert isinstance(rel, RawRelease)
    mine = {r.time_ms: r.mgdl for r in rel.records}  # type: ignore[attr-defined]
    assert set(mine) == set(after) and mine[kept] == sgv + 100


def test_a_read_names_only_the_documents_it_returns(client, site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An ``_id`` is a keyed hash of the document's identity: a follower asking for the
    newest reading has one computed, not one for every reading of the window. A query on
    ``_id`` still sees every document's, and both give the ids POST answered."""
    from glucoledger.node import nightscout as node_ns

    t = int(time.time() * 1000) - 60 * MIN
    docs = [{"type": "sgv", "sgv": 100 + i, "date": t + i * 5 * MIN, "device": "xDrip-test",
             "direction": "Flat"} for i in range(8)]
    r = client.post("/api/v1/entries", json=docs, headers=UP)
    assert r.status_code == 200, r.text
    ids = {d["sgv"]: d["_id"] for d in r.json()}
    assert len(ids) == 8
    named: list[str] = []
    real = node_ns.identity_tag

    def counting(key: bytes, patient: bytes, collection: str, ident: str) -> bytes:
        named.append(ident)
        return real(key, patient, collection, ident)

    monkeypatch.setattr(node_ns, "identity_tag", counting)
    newest = client.get("/api/v1/entries/sgv.json", headers=UP,  # the demo has its own
                        params={"count": 1, "find[device]": "xDrip-test"}).json()
    assert [(d["sgv"], d["_id"]) for d in newest] == [(107, ids[107])]
    assert len(named) == 1, named
    named.clear()
    by_id = client.get("/api/v1/entries.json", headers=UP,
                       params={"find[_id]": ids[103], "count": 100}).json()
    assert [(d["sgv"], d["_id"]) for d in by_id] == [(103, ids[103])]
    assert len(named) >= 8  # the condition is on _id: every candidate is named to compare

"""The audit finding "a summary-only grant releases every raw reading", replayed over HTTP
against the demo server's app (/work/audit-http/findings/summary_window_leak.py).

dr-lee holds only a summary grant of alice's CGM. Before the fix, ``GET
/fhir/Patient/alice/$cgm-bundle?start=T-1s&end=T+1s`` returned a "mean glucose"
Observation (LOINC 97507-8) equal to the reading at T, for every T. Now a summary grant
releases whole, finished UTC days only (state/consent.py ``_check_days``): FHIR moves the
asked period inward to the whole days inside it (node/fhir_export.py), and refuses, as the
decision does, a period holding none (403 ``not_whole_days``, audited, saying what to ask
for); ``POST /api/reads`` and the portal ask such a reader for whole UTC days
(node/localdays.py ``reader_days``). Whole-day exports and reports still work.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from glucoledger.files import atomic_write_json
from glucoledger.node.accounts import identity

MEAN = "97507-8"
DAY = 86_400_000


def _login(client: Any, name: str) -> str:
    r = client.post("/api/session", json={"name": name, "password": f"{name}-demo-password"})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _day(ms: int) -> str:
    """The UTC midnight of ``ms``'s day, as the Observations' effectivePeriod writes it."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT00:00:00.000Z")


def _means(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and any(c["code"] == MEAN for c in e["resource"]["code"]["coding"])]


@pytest.fixture
def summary_only(client: Any, site: Any) -> list[dict[str, Any]]:
    """alice (her zone: Europe/Paris, so her local days are not UTC days) grants dr-lee a
    summary of 14 days; returns alice's own CGM readings (her raw read), then logs in as
    dr-lee."""
    alice = identity(site.node, "alice").id
    atomic_write_json(site.node.data_dir / "portal-prefs.json",
                      {alice.hex(): {"units": "mg/dL", "tz": "Europe/Paris"}})
    csrf = _login(client, "alice")
    r = client.post("/api/grants", json={"grantee": "dr-lee", "streams": ["cgm"],
                                         "view": "summary", "last_days": 14, "valid_days": 30},
                    headers={"x-csrf-token": csrf})
    assert r.status_code == 201, r.text
    own = client.post("/api/reads", json={"patient": "alice", "streams": ["cgm"],
                                          "view": "raw", "last_days": 3},
                      headers={"x-csrf-token": csrf})
    assert own.status_code == 200, own.text
    cgm = [x for x in own.json()["records"] if "mgdl" in x]
    assert len(cgm) > 500
    client.delete("/api/session", headers={"x-csrf-token": csrf})
    _login(client, "dr-lee")
    return cgm


def _audit(client: Any) -> list[dict[str, Any]]:
    """alice's audit trail (logged in as her)."""
    client.delete("/api/session", headers={"x-csrf-token": _login(client, "dr-lee")})
    _login(client, "alice")
    r = client.get("/api/audit")
    assert r.status_code == 200, r.text
    return list(r.json())


def test_fhir_windows_around_readings_release_nothing(client: Any, site: Any,
                                                     summary_only: list[dict[str, Any]]
                                                     ) -> None:
    times = [x["time_ms"] for x in summary_only[300:306]]
    raw = client.post("/api/reads", json={"patient": "alice", "streams": ["cgm"],
                                          "view": "raw", "last_days": 3},
                      headers={"x-csrf-token": _login(client, "dr-lee")})
    assert raw.status_code == 403 and raw.json()["code"] == "raw_under_summary"
    height = site.node.store.height()
    for t in times:
        r = client.get("/fhir/Patient/alice/$cgm-bundle",
                       params={"start": _iso(t - 1000), "end": _iso(t + 1000)})
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "not_whole_days"
        assert "ask for whole days: start at midnight UTC" in r.json()["message"]
        assert MEAN not in r.text
    # each refusal is one audited access on the ledger, nothing more
    assert site.node.store.height() - height == len(times)
    denied = [e for e in _audit(client)
              if e["kind"] == "access" and e["reason"] == "not_whole_days"]
    assert len(denied) == len(times)
    assert all(e["outcome"] == "deny" and e["view"] == "summary" for e in denied)


def test_fhir_shifted_windows_snap_to_the_same_whole_days(client: Any,
                                                          summary_only: list[dict[str, Any]]
                                                          ) -> None:
    """Two 2-day windows five minutes apart (differencing): both are moved inward to the
    same whole day, so their means are the same and their difference is nothing. (The day
    before yesterday: settled whatever the hour, node/settled.py.)"""
    now = int(time.time() * 1000)
    midnight = now - now % DAY - DAY
    bundles = []
    for shift in (5 * 60_000, 10 * 60_000):
        r = client.get("/fhir/Patient/alice/$cgm-bundle",
                       params={"start": _iso(midnight - 2 * DAY + shift),
                               "end": _iso(midnight + shift)})
        assert r.status_code == 200, r.text
        assert "99504-3" not in r.text  # no reading
        bundles.append(r.json())
    means = [_means(b) for b in bundles]
    assert len(means[0]) == 1 and means[0] == means[1]
    assert means[0][0]["effectivePeriod"] == {"start": _day(midnight - DAY),
                                              "end": _day(midnight)}


def test_fhir_and_reads_with_whole_days_work(client: Any,
                                             summary_only: list[dict[str, Any]]) -> None:
    now = int(time.time() * 1000)
    midnight = now - now % DAY
    r = client.get("/fhir/Patient/alice/$cgm-bundle",
                   params={"start": _iso(midnight - 2 * DAY), "end": _iso(midnight)})
    assert r.status_code == 200, r.text
    mean = _means(r.json())
    assert len(mean) == 1
    assert mean[0]["effectivePeriod"] == {"start": _day(midnight - 2 * DAY),
                                          "end": _day(midnight)}
    # no period: the grant's last 14 whole UTC days
    assert client.get("/fhir/Patient/alice/$cgm-bundle").status_code == 200
    # POST /api/reads: the last N whole UTC days
    csrf = _login(client, "dr-lee")
    for last_days in (2, None):
        body: dict[str, Any] = {"patient": "alice", "streams": ["cgm"], "view": "summary"}
        if last_days:
            body["last_days"] = last_days
        s = client.post("/api/reads", json=body, headers={"x-csrf-token": csrf})
        assert s.status_code == 200, s.text
        g = s.json()["grounds"]
        assert g["from"] % DAY == 0 and g["to"] == midnight
        assert s.json()["summary"]["count"] > 250


def test_portal_report_of_a_summary_grantee_covers_whole_utc_days(
        client: Any, site: Any, summary_only: list[dict[str, Any]]) -> None:
    """alice lives in Paris; dr-lee's report (summary grant) covers whole UTC days, the
    only ones the decision permits him, and says so."""
    client.cookies.clear()  # a portal session instead of the API one
    tok = re.search(r'name="csrf" value="([^"]+)"', client.get("/portal/login").text)
    assert tok
    r = client.post("/portal/login", data={"name": "dr-lee", "csrf": tok.group(1),
                                           "password": "dr-lee-demo-password"})
    assert r.status_code == 200
    page = client.get("/portal/patients/alice?days=14")
    assert page.status_code == 200, page.text[:500]
    assert "00:00 (UTC, 14 whole local days)" in page.text, page.text
    assert "Europe/Paris" not in page.text
    fhir = client.get("/portal/patients/alice/fhir.json?days=2")
    assert fhir.status_code == 200, fhir.text[:300]
    now = int(time.time() * 1000)
    mean = _means(json.loads(fhir.text))
    assert mean and mean[0]["effectivePeriod"]["end"] == _day(now)


def test_an_edit_or_a_late_entry_of_a_released_day_changes_nothing_for_a_summary_grant(
        client: Any, site: Any, summary_only: list[dict[str, Any]]) -> None:
    """dr-lee reads the summary of a finished day; then alice's uploader edits one of that
    day's entries (PUT, a new version), deletes another and posts a late one. His next
    summary is the same, to the last number (node/settled.py): before, the two summaries
    gave the edit, the deleted value and the late reading by difference. alice's own
    summary counts all three changes."""
    import hashlib

    from fastapi.testclient import TestClient

    from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

    up = {"api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()}
    now = int(time.time() * 1000)
    day = now - now % DAY - 2 * DAY  # finished a day ago at least: settled whatever the hour
    window = {"start": _iso(day), "end": _iso(day + DAY)}

    def mean() -> dict[str, Any]:
        r = client.get("/fhir/Patient/alice/$cgm-bundle", params=window)
        assert r.status_code == 200, r.text
        [m] = _means(r.json())
        return m

    def entry(at: int, sgv: int) -> dict[str, Any]:
        return {"type": "sgv", "sgv": sgv, "date": at, "dateString": _iso(at),
                "device": "xDrip-LimiTTer"}

    hour = 3_600_000
    early, doomed, late = day + 6 * hour + 77_007, day + 8 * hour + 77_007, day + 9 * hour + 7
    with TestClient(site.app, base_url="https://testserver") as ns:
        def send(method: str, doc: dict[str, Any]) -> str:
            r = ns.request(method, "/api/v1/entries", json=[doc], headers=up)
            assert r.status_code == 200, r.text
            return str(r.json()[0]["_id"])

        send("POST", entry(early, 155))  # uploaded in time: two entries of the day
        doomed_id = send("POST", entry(doomed, 301))
        first = mean()  # dr-lee's first read of the day fixes it
        send("PUT", entry(early, 355))  # an edit: version 2
        r = ns.delete(f"/api/v1/entries/{doomed_id}", headers=up)
        assert r.status_code == 200 and r.json()["n"] == 1, r.text
        send("POST", entry(late, 388))  # a late reading
    assert mean() == first
    # alice sees the changes at once
    client.delete("/api/session", headers={"x-csrf-token": _login(client, "dr-lee")})
    csrf = _login(client, "alice")
    own = client.post("/api/reads", json={"patient": "alice", "streams": ["cgm"],
                                          "view": "raw", "last_days": 4},
                      headers={"x-csrf-token": csrf})
    assert own.status_code == 200, own.text
    values = {x["time_ms"]: x["mgdl"] for x in own.json()["records"] if "mgdl" in x}
    assert (values[early], values[late], values.get(doomed)) == (355, 388, None)
    theirs = mean()  # the same FHIR read, as alice: the changed day's mean
    assert theirs["valueQuantity"]["value"] != first["valueQuantity"]["value"]

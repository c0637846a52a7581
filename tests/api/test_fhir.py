"""Every FHIR output validates with fhir.resources; exports go through consent."""

from __future__ import annotations

import pytest

from glucoledger.interop.fhir import validate


def _login(client, name: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/api/session", json={"name": name, "password": f"{name}-demo-password"})
    return str(r.json()["csrf"])


def _check(bundle) -> list[str]:  # type: ignore[no-untyped-def]
    validate(bundle)
    for e in bundle["entry"]:
        validate(e["resource"])
    return [e["resource"]["resourceType"] for e in bundle["entry"]]


def test_patient_exports_her_bundle(client) -> None:  # type: ignore[no-untyped-def]
    csrf = _login(client, "alice")
    client.post("/api/grants", json={"grantee": "dr-lee", "streams": ["cgm"], "view": "summary",
                                     "last_days": 14, "valid_days": 30},
                headers={"x-csrf-token": csrf})
    r = client.get("/fhir/Patient/alice/$cgm-bundle")
    assert r.status_code == 200, r.text
    kinds = _check(r.json())
    assert kinds.count("Observation") > 100 and "Consent" in kinds
    codes = {c["code"] for e in r.json()["entry"] if e["resource"]["resourceType"] ==
             "Observation" for c in e["resource"]["code"]["coding"]}
    assert {"99504-3", "107931-8", "106793-3", "97507-8", "97506-0", "104638-2", "104636-6",
            "104637-4"} <= codes
    mmol = client.get("/fhir/Patient/alice/$cgm-bundle", params={"units": "mmol/L"}).json()
    _check(mmol)
    assert "105272-9" in str(mmol)


def test_summary_grantee_gets_no_readings(client) -> None:  # type: ignore[no-untyped-def]
    csrf = _login(client, "alice")
    client.post("/api/grants", json={"grantee": "dr-lee", "streams": ["cgm"], "view": "summary",
                                     "last_days": 14, "valid_days": 30},
                headers={"x-csrf-token": csrf})
    client.delete("/api/session", headers={"x-csrf-token": csrf})
    _login(client, "dr-lee")
    r = client.get("/fhir/Patient/alice/$cgm-bundle")
    assert r.status_code == 200, r.text
    _check(r.json())
    assert "99504-3" not in str(r.json()) and "107931-8" in str(r.json())


def test_no_grant_no_export(client) -> None:  # type: ignore[no-untyped-def]
    _login(client, "dr-kim")
    r = client.get("/fhir/Patient/alice/$cgm-bundle")
    assert r.status_code == 403


@pytest.mark.parametrize("q", ["start=yesterday", "start=2026-01-02&end=2026-01-01",
                               "units=furlongs"])
def test_bad_export_queries(client, q: str) -> None:  # type: ignore[no-untyped-def]
    _login(client, "alice")
    r = client.get(f"/fhir/Patient/alice/$cgm-bundle?{q}")
    assert r.status_code in (400, 422), r.text


def test_summary_effective_period_is_the_requested_period(client) -> None:  # type: ignore[no-untyped-def]
    # The patient's data end around now; ask for a period that starts 32 days ago and ends
    # tomorrow: the summary covers exactly that period (issue 11), gaps at the edges included.
    import time
    from datetime import UTC, datetime, timedelta

    _login(client, "alice")
    today = datetime.fromtimestamp(time.time(), UTC).date()
    start, end = today - timedelta(days=32), today + timedelta(days=1)
    r = client.get("/fhir/Patient/alice/$cgm-bundle",
                   params={"start": start.isoformat(), "end": end.isoformat()})
    assert r.status_code == 200, r.text
    _check(r.json())
    periods = [e["resource"]["effectivePeriod"] for e in r.json()["entry"]
               if "effectivePeriod" in e["resource"]]
    assert len(periods) == 7
    assert all(p == {"start": f"{start.isoformat()}T00:00:00.000Z",
                     "end": f"{end.isoformat()}T00:00:00.000Z"} for p in periods), periods[0]

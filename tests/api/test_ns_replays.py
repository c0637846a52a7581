"""Each Nightscout app's request sequence, replayed against a real ``glucoledger serve``.

One server process (``python -m glucoledger serve --demo`` on a free loopback port)
for the module; each test replays what one app sends, rebuilt from its source, and checks
what that app checks. Sources (read, not copied):

- xDrip+ uploader: ``utilitymodels/NightscoutUploader.java`` (POST entries/devicestatus,
  PUT treatments, GET treatments.json?find[uuid], DELETE treatments/{id}, GET status.json);
- xDrip+ follower: ``cgm/nsfollow/NightscoutFollow.java`` (entries.json?count=&rr=,
  find[date][$gt], treatments, devicestatus.json?count=1; the hashed secret as api-secret);
- Loop: LoopKit NightscoutService ``Extensions/NightscoutUploader.swift`` (POST treatments,
  one ``_id`` per document sent, re-POST of a changed temp basal, DELETE by object id;
  devicestatus; profile/current);
- Trio: ``Services/Network/Nightscout/NightscoutAPI.swift`` (checkConnection's timeless Note,
  entries/sgv.json?count=1600&find[dateString][$gte], find[$and][i][enteredBy][$ne],
  Temporary+Target, DELETE treatments.json?find[id][$eq]);
- Nightguard: status.json, /api/v2/properties, entries.json?find[date][$gt]=<float>;
- Sugarmate-style widgets: entries/current.json, /pebble;
- python-nightscout, py-nightscout and nightscout-cli: the PyPI packages themselves, run
  against the server (the CLI as a subprocess).

The table in README.md ("Nightscout apps") has one row per test here, and per test in
test_ns_socket.py (AndroidAPS v1, socket.io) and test_ns_tconnectsync.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from glucoledger.node.demo_site import DEMO_READER_TOKEN, DEMO_UPLOADER_SECRET

from ..servers import ServeProcess
from . import payloads
from .payloads import iso

SECRET = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
UP = {"api-secret": SECRET}
FOLLOW = {"api-secret": hashlib.sha1(DEMO_READER_TOKEN.encode()).hexdigest()}


class Server:
    """``serve --demo`` (through workers too with GLUCOLEDGER_TEST_SERVE_ARGS="--workers 2"),
    stopped as a service manager stops it (SIGTERM); a ``requests`` session, as the apps'
    Python clients use."""

    def __init__(self, folder: Path) -> None:
        self.server = ServeProcess(folder, "--insecure-cookies", ready="/api/v1/status.json",
                                   timeout=180, stop_signal=signal.SIGTERM)
        self.url, self.port = self.server.url, self.server.port
        self.session = requests.Session()
        self.started = int(time.time() * 1000)  # after the demo's documents were stored

    def get(self, path: str, **kw: Any) -> requests.Response:
        """A read, as the apps read: a 429 (this module's tests share one credential and its
        read limit, 120 at once then 60 a minute) is waited out as its message says and the
        read sent again, a few times; any other answer is returned as it came."""
        for _ in range(5):
            r = self.session.get(self.url + path, timeout=60, **kw)
            if r.status_code != 429:
                return r
            time.sleep(float(r.headers.get("Retry-After", "1")))
        return r

    def send(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=60, **kw)

    def stop(self) -> None:
        self.session.close()
        self.server.stop(wait=20)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("replay") / "node")
    yield s
    s.stop()


def _patient(srv: Server) -> tuple[requests.Session, str]:
    s = requests.Session()
    r = s.post(f"{srv.url}/api/session", json={"name": "alice",
                                               "password": "alice-demo-password"}, timeout=30)
    assert r.status_code == 200, r.text
    return s, r.json()["csrf"]


def _grant(srv: Server, view: str = "raw") -> str:
    s, csrf = _patient(srv)
    r = s.post(f"{srv.url}/api/grants", headers={"x-csrf-token": csrf}, timeout=30, json={
        "grantee": "dr-lee", "streams": ["cgm", "smbg", "insulin", "carbs", "notes",
                                         "settings"],
        "view": view, "last_days": 14, "valid_days": 30})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _revoke(srv: Server, grant: str) -> None:
    s, csrf = _patient(srv)
    r = s.delete(f"{srv.url}/api/grants/{grant}", headers={"x-csrf-token": csrf}, timeout=30)
    assert r.status_code in (200, 204), r.text


def _now() -> int:
    return int(time.time() * 1000)


def _one_answer_each(r: requests.Response, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Loop and AndroidAPS check: 200, a JSON array, one element per document sent,
    each with a 24-hex ``_id``."""
    assert r.status_code == 200, r.text
    answer = r.json()
    assert isinstance(answer, list) and len(answer) == len(sent)
    assert all(isinstance(a.get("_id"), str) and len(a["_id"]) == 24 for a in answer)
    return answer


# --------------------------------------------------------------------------- uploaders


def test_xdrip_uploader(srv: Server) -> None:
    n = _now()
    assert srv.get("/api/v1/status.json", headers=UP).json()["status"] == "ok"
    # A batch with everything Nightscout takes and glucoledger used to refuse: an mmol/L
    # meter reading as decimal mg/dL, sensor LOW (38) and HIGH (401), a phone clock 10
    # minutes fast. One answer each, none refused.
    entries = payloads.xdrip_sgv(n, 3)
    entries += [{"type": "mbg", "mbg": 142.34, "date": n - 60_000, "device": "xDrip-BG"},
                dict(entries[0], sgv=38, date=n - 240_000, dateString=iso(n - 240_000)),
                dict(entries[0], sgv=401, date=n - 180_000, dateString=iso(n - 180_000)),
                dict(entries[0], sgv=131, date=n + 600_000, dateString=iso(n + 600_000))]
    answer = _one_answer_each(srv.send("POST", "/api/v1/entries", json=entries, headers=UP),
                              entries)
    assert not any("glucoledger" in a for a in answer)
    # devicestatus with only the battery and no time (Nightscout stamps it)
    r = srv.send("POST", "/api/v1/devicestatus", json={"uploaderBattery": 81}, headers=UP)
    assert r.status_code == 200 and r.json()[0]["glucoledgerServerTime"]["reason"] == \
        "no time sent"
    # treatments by PUT (upsert), found by uuid, deleted by _id
    t = n - 600_000
    note = {"eventType": "Note", "created_at": iso(t), "notes": "xDrip+ note",
            "enteredBy": "xdrip", "uuid": "5e4f0d3c-aaaa-4bbb-8ccc-0123456789ab"}
    [put] = _one_answer_each(srv.send("PUT", "/api/v1/treatments", json=[note], headers=UP),
                             [note])
    r = srv.get("/api/v1/treatments.json", headers=UP, params={"find[uuid]": note["uuid"]})
    assert r.status_code == 200 and [d["_id"] for d in r.json()] == [put["_id"]]
    assert srv.send("DELETE", f"/api/v1/treatments/{put['_id']}", headers=UP).status_code == 200
    r = srv.get("/api/v1/treatments.json", headers=UP, params={"find[uuid]": note["uuid"]})
    assert r.status_code == 200 and r.json() == []
    # The patient reads them back as sent (the uploader's own secret reads as her).
    r = srv.get("/api/v1/entries.json", headers=UP, params={
        "find[date][$gte]": str(n - 300_000), "count": "20"})
    by_date = {d["date"]: d for d in r.json()}
    assert by_date[n - 240_000]["sgv"] == 38 and by_date[n - 180_000]["sgv"] == 401
    assert by_date[n + 600_000]["sgv"] == 131  # the device's time, kept
    r = srv.get("/api/v1/entries/mbg.json", headers=UP, params={"count": "1"})
    assert r.json()[0]["mbg"] == 142.34


def test_loop(srv: Server) -> None:
    n = _now()
    sent = payloads.loop_treatments(n)
    answer = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=sent, headers=UP),
                              sent)
    # Two documents with one identity in one POST: still one answer each (Loop counts).
    twice = [sent[2], sent[2]]
    again = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=twice, headers=UP),
                             twice)
    assert again[0]["_id"] == again[1]["_id"] == answer[2]["_id"]
    # Loop cancels the temp basal after 10 minutes: the same identity, re-POSTed shorter.
    shorter = [dict(sent[0], duration=10)]
    _one_answer_each(srv.send("POST", "/api/v1/treatments", json=shorter, headers=UP), shorter)
    r = srv.get("/api/v1/treatments.json", headers=UP, params={
        "find[eventType]": "Temp Basal", "find[created_at][$gte]": sent[0]["created_at"]})
    # (the demo's simulated temp basals may fall in the same minutes: keep Loop's own)
    mine = [d for d in r.json() if d.get("syncIdentifier") == sent[0]["syncIdentifier"]]
    assert [d["duration"] for d in mine] == [10]
    # Delete the carbs by object id (Loop's deleteTreatmentsByObjectId)
    r = srv.send("DELETE", f"/api/v1/treatments/{answer[2]['_id']}", headers=UP)
    assert r.status_code == 200 and r.json()["n"] == 1
    r = srv.send("POST", "/api/v1/devicestatus", json=[payloads.loop_devicestatus(n)],
                 headers=UP)
    assert r.status_code == 200
    # Profile import: the uploader's secret reads the current profile.
    r = srv.send("POST", "/api/v1/profile", json=payloads.aaps_profile(n), headers=UP)
    assert r.status_code == 200, r.text
    r = srv.get("/api/v1/profile/current", headers=UP)
    assert r.status_code == 200 and "store" in r.json()


def test_trio(srv: Server) -> None:
    n = _now()
    # checkConnection: a Note with no time at all
    check = {"eventType": "Note", "enteredBy": "Trio", "notes": "Trio connected"}
    _one_answer_each(srv.send("POST", "/api/v1/treatments.json", json=check, headers=UP),
                     [check])
    r = srv.get("/api/v1/entries/sgv.json", headers=UP, params={
        "count": "1600", "find[dateString][$gte]": iso(n - 86_400_000)})
    assert r.status_code == 200 and len(r.json()) >= 200
    carbs = {"eventType": "Carb Correction", "carbs": 30, "created_at": iso(n - 400_000),
             "enteredBy": "Trio", "id": "0b9d3f6e-trio-carbs"}
    _one_answer_each(srv.send("POST", "/api/v1/treatments.json", json=[carbs], headers=UP),
                     [carbs])
    r = srv.get("/api/v1/treatments.json", headers=UP, params=[
        ("find[carbs][$exists]", "true"), ("find[$and][0][enteredBy][$ne]", "Trio"),
        ("find[created_at][$gt]", iso(n - 86_400_000))])
    assert r.status_code == 200 and all(d.get("enteredBy") != "Trio" for d in r.json())
    tt = {"eventType": "Temporary Target", "duration": 60, "targetTop": 120,
          "targetBottom": 120, "created_at": iso(n - 300_000), "enteredBy": "Trio"}
    _one_answer_each(srv.send("POST", "/api/v1/treatments.json", json=[tt], headers=UP), [tt])
    r = srv.get("/api/v1/treatments.json?find[eventType]=Temporary+Target"
                "&find[duration][$exists]=true", headers=UP)
    assert [d["targetTop"] for d in r.json()] == [120]
    r = srv.send("DELETE", "/api/v1/treatments.json", headers=UP,
                 params={"find[id][$eq]": carbs["id"]})
    assert r.status_code == 200 and r.json()["n"] == 1
    r = srv.get("/api/v1/treatments.json", headers=UP, params={"find[id]": carbs["id"]})
    assert r.json() == []


# --------------------------------------------------------------------------- followers


def test_xdrip_follower_through_consent(srv: Server) -> None:
    rr = str(_now())
    # without a grant: 403 with the reason
    r = srv.get("/api/v1/entries.json", headers=FOLLOW, params={"count": "10", "rr": rr})
    assert r.status_code == 403 and r.json()["code"] == "no_grant"
    summary = _grant(srv, "summary")
    r = srv.get("/api/v1/entries.json", headers=FOLLOW, params={"count": "10", "rr": rr})
    assert r.status_code == 403 and r.json()["code"] == "raw_under_summary"
    _revoke(srv, summary)
    raw = _grant(srv)
    r = srv.get("/api/v1/entries.json", headers=FOLLOW, params={"count": "10", "rr": rr})
    assert r.status_code == 200 and len(r.json()) == 10
    since = r.json()[-1]["date"]
    r = srv.get("/api/v1/entries.json", headers=FOLLOW, params={
        "count": "2880", "find[date][$gt]": str(since), "rr": rr})
    assert r.status_code == 200 and len(r.json()) == 9
    assert srv.get("/api/v1/treatments", headers=FOLLOW).status_code == 200
    assert srv.get("/api/v1/devicestatus.json?count=1", headers=FOLLOW).status_code == 200
    _revoke(srv, raw)
    r = srv.get("/api/v1/entries.json", headers=FOLLOW, params={"count": "10", "rr": rr})
    assert r.status_code == 403 and r.json()["code"] == "revoked"
    # every one of those reads is in alice's audit trail
    s, _ = _patient(srv)
    trail = s.get(f"{srv.url}/api/audit", timeout=30).json()
    text = str(trail)
    assert "no_grant" in text and "raw_under_summary" in text and "revoked" in text


def test_nightguard_sugarmate_and_pebble(srv: Server) -> None:
    grant = _grant(srv)
    token = {"token": DEMO_READER_TOKEN}
    assert srv.get("/api/v1/status.json").json()["settings"]["thresholds"]["bgHigh"] == 250
    r = srv.get("/api/v2/properties", params=token)
    assert r.status_code == 200 and isinstance(r.json()["bgnow"]["last"], int)
    since = r.json()["bgnow"]["mills"] - 3_600_000
    r = srv.get("/api/v1/entries.json", params={**token, "find[date][$gt]": f"{since}.0",
                                                 "count": "20"})
    assert r.status_code == 200 and len(r.json()) >= 12
    assert all(d["date"] > since for d in r.json())
    r = srv.get("/api/v1/entries/current.json", params=token)
    assert r.status_code == 200 and len(r.json()) == 1 and r.json()[0]["type"] == "sgv"
    r = srv.get("/pebble", params={**token, "count": "2"})
    assert r.status_code == 200 and len(r.json()["bgs"]) == 2
    assert isinstance(r.json()["bgs"][0]["sgv"], str)
    r = srv.get("/api/v1/entries.csv", params={**token, "count": "3"})
    assert r.status_code == 200 and len(r.text.split("\r\n")) == 3
    r = srv.get("/api/v1/verifyauth")
    assert r.status_code == 200 and r.json()["message"]["message"] == "UNAUTHORIZED"
    r = srv.get("/api/v1/verifyauth", params=token)
    assert r.json()["message"]["message"] == "OK"
    _revoke(srv, grant)


def test_loop_moves_a_carb_entry_in_time(srv: Server) -> None:
    """Loop's NightscoutService: carbs created are POSTed; an edited entry (new time, new
    grams) is PUT as one object carrying the ``_id`` the POST answered (NightscoutKit
    ``modifyTreatments`` -> ``putToNS``); deleted ones are DELETEd by that ``_id``. The time
    is part of a treatment's identity, yet every reader must see one entry, moved. (After
    the follower test: this one grants and revokes.)"""
    n = _now() - 3 * 3_600_000
    n -= n % 1000
    carbs = {"eventType": "Carb Correction", "timestamp": iso(n), "created_at": iso(n),
             "enteredBy": "loop://iPhone", "carbs": 20, "absorptionTime": 180,
             "userEnteredAt": iso(n), "syncIdentifier": "5ca1ab1e-move-0001"}
    [first] = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[carbs],
                                        headers=UP), [carbs])
    later = n + 30 * 60_000
    moved = dict(carbs, timestamp=iso(later), created_at=iso(later), carbs=25,
                 userLastModifiedAt=iso(later), _id=first["_id"])
    grant = _grant(srv)

    def seen(headers: dict[str, str]) -> list[dict[str, Any]]:
        r = srv.get("/api/v1/treatments.json", headers=headers, params={
            "find[created_at][$gte]": iso(n - 60_000), "find[created_at][$lte]": iso(later),
            "find[eventType]": "Carb Correction", "rr": str(_now())})
        assert r.status_code == 200, r.text
        return [d for d in r.json() if d.get("syncIdentifier") == carbs["syncIdentifier"]]

    for _ in range(2):  # Loop retries a PUT it got no answer to: still one version
        r = srv.send("PUT", "/api/v1/treatments", json=moved, headers=UP)
        assert r.status_code == 200, r.text
        assert r.json()[0]["_id"] == first["_id"] and "glucoledger" not in r.json()[0]
        for who in (UP, FOLLOW):  # the uploader's own read and a follower through consent
            [doc] = seen(who)
            assert (doc["_id"], doc["created_at"], doc["carbs"]) == (first["_id"], iso(later),
                                                                     25)
    # the old time shows nothing any more
    r = srv.get("/api/v1/treatments.json", headers=FOLLOW, params={
        "find[created_at]": iso(n), "find[eventType]": "Carb Correction"})
    assert r.status_code == 200 and r.json() == []
    # the patient sees both versions: the first upload and the move, by the gateway
    s, _ = _patient(srv)
    r = s.get(f"{srv.url}/api/nightscout/history/treatments/{first['_id']}", timeout=30)
    assert r.status_code == 200, r.text
    assert [(v["n"], v["doc"]["carbs"], v["doc"]["created_at"]) for v in r.json()] == [
        (1, 20, iso(n)), (2, 25, iso(later))]
    # A later plain POST of the moved entry (Loop re-uploads after a restart) is a repeat.
    again = {k: v for k, v in moved.items() if k != "_id"}
    [echo] = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[again],
                                       headers=UP), [again])
    assert echo["_id"] == first["_id"] and len(seen(FOLLOW)) == 1
    # Moving onto the identity of another entry is refused alone, both left as they were.
    other = dict(carbs, timestamp=iso(n + 3_600_000), created_at=iso(n + 3_600_000),
                 carbs=11, syncIdentifier="5ca1ab1e-move-0002")
    [kept] = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[other],
                                       headers=UP), [other])
    clash = dict(moved, created_at=other["created_at"], timestamp=other["timestamp"])
    r = srv.send("PUT", "/api/v1/treatments", json=[clash], headers=UP)
    assert r.status_code == 200 and r.json()[0]["glucoledger"]["stored"] is False
    assert "another document" in r.json()[0]["glucoledger"]["reason"]
    [doc] = seen(FOLLOW)
    assert doc["carbs"] == 25
    # Two changes of one document in one PUT: the first is stored, the second refused alone.
    twice = [dict(moved, carbs=26), dict(moved, carbs=27, created_at=iso(later + 60_000),
                                         timestamp=iso(later + 60_000))]
    r = srv.send("PUT", "/api/v1/treatments", json=twice, headers=UP)
    assert r.status_code == 200 and len(r.json()) == 2, r.text
    assert "glucoledger" not in r.json()[0] and r.json()[1]["glucoledger"]["stored"] is False
    [doc] = seen(FOLLOW)
    assert doc["carbs"] == 26
    r = srv.get("/api/v1/treatments.json", headers=FOLLOW, params={
        "find[syncIdentifier]": other["syncIdentifier"],
        "find[created_at][$gte]": iso(n)})
    assert [(d["_id"], d["carbs"]) for d in r.json()] == [(kept["_id"], 11)]
    # Deleted by the _id Loop holds: gone for every reader.
    r = srv.send("DELETE", f"/api/v1/treatments/{first['_id']}", headers=UP)
    assert r.status_code == 200 and r.json()["n"] == 1
    assert seen(FOLLOW) == [] and seen(UP) == []
    _revoke(srv, grant)


def test_python_nightscout(srv: Server) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nightscout  # type: ignore[import-untyped]
    grant = _grant(srv)
    api = nightscout.Api(srv.url, api_secret=DEMO_READER_TOKEN)
    sgvs = api.get_sgvs({"count": 20})
    assert len(sgvs) == 20 and all(isinstance(e.sgv, int) and 13 <= e.sgv for e in sgvs)
    treatments = api.get_treatments({"count": 5})
    assert all(t.eventType for t in treatments)
    _revoke(srv, grant)


def test_py_nightscout(srv: Server) -> None:
    """The py-nightscout package (aiohttp; Home Assistant's Nightscout integration) itself,
    with a follower's secret: status, sensor readings, treatments, device status."""
    import asyncio

    import py_nightscout  # type: ignore[import-untyped]

    async def follow() -> tuple[Any, list[Any], list[Any], dict[str, Any]]:
        api = py_nightscout.Api(srv.url, api_secret=DEMO_READER_TOKEN)
        status = await api.get_server_status()
        return (status, await api.get_sgvs(), await api.get_treatments(),
                await api.get_latest_devices_status())

    import aiohttp

    with pytest.raises(aiohttp.ClientResponseError) as denied:  # no grant yet: 403
        asyncio.run(follow())
    assert denied.value.status == 403
    grant = _grant(srv)
    try:
        status, sgvs, treatments, devices = asyncio.run(follow())
    finally:
        _revoke(srv, grant)
    assert status.status == "ok" and status.settings["thresholds"]["bgHigh"] == 250
    # LOW/HIGH as sent (xDrip+'s 38 and 401 above), each with the delta the client needs
    assert len(sgvs) == 10 and all(isinstance(e.sgv, int) and e.date.year >= 2024
                                   and isinstance(e.delta_mmol, float) for e in sgvs)
    assert sgvs[0].date >= sgvs[-1].date  # newest first, as Nightscout answers
    assert treatments and all(t.eventType for t in treatments)
    assert all(d.created_at.year >= 2024 for d in devices.values())


def _cli(srv: Server, home: Path, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    """nightscout-cli (the ``nightscout`` command of the PyPI package) against the server."""
    env = dict(os.environ, HOME=str(home), NIGHTSCOUT_HOST="127.0.0.1",
               NIGHTSCOUT_PORT=str(srv.port), NIGHTSCOUT_API_SECRET=secret)
    return subprocess.run([sys.executable, "-m", "nightscout_cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_nightscout_cli(srv: Server, tmp_path: Path) -> None:
    """nightscout-cli pushes a reading with the uploader's hashed secret, lists it with its
    ``_id``, deletes it by that ``_id``; a follower's ``get`` works through a grant only."""
    r = _cli(srv, tmp_path, SECRET, "push", "277", "--minutes-ago", "7", "--direction", "Flat")
    assert r.returncode == 0 and "Successfully pushed" in r.stdout, r.stderr

    def ours() -> list[str]:
        r = _cli(srv, tmp_path, SECRET, "list", "--count", "40")
        assert r.returncode == 0, r.stderr
        return [line.split(",")[0] for line in r.stdout.splitlines()[1:]
                if line.endswith(",277")]

    [pushed] = ours()
    assert len(pushed) == 24
    r = _cli(srv, tmp_path, SECRET, "delete", pushed)
    assert r.returncode == 0 and f"Deleted {pushed}" in r.stdout, r.stdout + r.stderr
    assert ours() == []
    follow = FOLLOW["api-secret"]
    r = _cli(srv, tmp_path, follow, "get", "3")
    assert r.returncode == 1 and "403" in r.stderr  # no grant: refused, nothing printed
    grant = _grant(srv)
    try:
        got = _cli(srv, tmp_path, follow, "get", "3")
        day = _cli(srv, tmp_path, follow, "history", "--days-ago", "1", "--jsonl")
    finally:
        _revoke(srv, grant)
    assert got.returncode == 0 and len(got.stdout.splitlines()) == 3, got.stderr
    assert all(line.split()[2] == "mg/dL" for line in got.stdout.splitlines())
    assert day.returncode == 0, day.stderr
    readings = [json.loads(line) for line in day.stdout.splitlines()]
    assert len(readings) >= 200 and all(isinstance(d["sgv"], int) for d in readings)


def test_a_batch_of_100_with_3_bad_stores_97_answers_100_retry_adds_nothing(
        srv: Server) -> None:
    n = _now() - 20 * 86_400_000  # a day of its own, before the demo's 14 days
    body: list[Any] = [{"type": "sgv", "sgv": 100 + i % 50, "date": n + i * 300_000,
                        "device": "xDrip-G7"} for i in range(100)]
    body[7] = {"type": "sgv", "sgv": "n/a", "date": n + 7 * 300_000}  # no number
    body[42] = {"type": "sgv", "sgv": 120, "date": 5}  # an unset clock: 1970
    body[99] = ["not", "a", "document"]
    r = srv.send("POST", "/api/v1/entries", json=body, headers=UP)
    answer = _one_answer_each(r, body)
    assert [i for i, a in enumerate(answer) if "glucoledger" in a] == [7, 42, 99]

    def stored() -> int:
        r = srv.get("/api/v1/count/entries/where", headers=UP, params={
            "find[date][$gte]": str(n), "find[date][$lt]": str(n + 100 * 300_000)})
        return int(r.json()[0]["count"])

    assert stored() == 97
    again = _one_answer_each(srv.send("POST", "/api/v1/entries", json=body, headers=UP), body)
    assert [a["_id"] for a in again] == [a["_id"] for a in answer]
    assert stored() == 97
    s, _ = _patient(srv)
    log = s.get(f"{srv.url}/api/nightscout/refusals", timeout=30).json()
    assert {e["index"] for e in log[:3]} == {7, 42, 99}
    assert all(e["reason"] for e in log)


def test_androidaps_nsclient_v3(srv: Server) -> None:
    r = srv.get(f"/api/v2/authorization/request/{DEMO_UPLOADER_SECRET}")
    assert r.status_code == 200, r.text
    jwt = r.json()["token"]
    assert DEMO_UPLOADER_SECRET not in jwt and r.json()["exp"] > r.json()["iat"]
    bearer = {"Authorization": f"Bearer {jwt}"}
    assert srv.get("/api/v3/status").status_code == 401
    assert srv.get("/api/v3/status", headers={"Authorization": f"Bearer {jwt}x"}
                   ).status_code == 401
    status = srv.get("/api/v3/status", headers=bearer).json()["result"]
    assert "c" in status["apiPermissions"]["treatments"] and status["srvDate"] > 0
    last = srv.get("/api/v3/lastModified", headers=bearer).json()["result"]["collections"]
    assert last["entries"] > 0
    r = srv.get("/api/v3/entries?sort$desc=date&type=sgv", headers=bearer)
    assert r.status_code == 200 and r.json()["result"][0]["identifier"]
    n = _now()
    t = n - 120_000
    bolus = {"eventType": "Correction Bolus", "insulin": 1.2, "date": t, "utcOffset": 60,
             "identifier": "2d3f54a4-aaps-4c6e-9c38-8f8a0b7d1e11", "isValid": True,
             "app": "AAPS", "type": "NORMAL", "isSMB": False, "pumpId": 4711,
             "pumpType": "OMNIPOD_DASH", "pumpSerial": "4241"}
    r = srv.send("POST", "/api/v3/treatments", json=bolus, headers=bearer)
    assert r.status_code == 201, r.text
    ident = r.json()["identifier"]
    assert ident == bolus["identifier"]  # the client's own name, kept
    r = srv.get(f"/api/v3/treatments/{ident}", headers=bearer)
    assert r.status_code == 200 and r.json()["result"]["insulin"] == 1.2
    assert r.json()["result"]["identifier"] == ident

    def changed(after: int) -> list[dict[str, Any]]:
        r = srv.get(f"/api/v3/treatments/history/{after}", headers=bearer,
                    params={"limit": "500"})
        assert r.status_code == 200, r.text
        return [d for d in r.json()["result"] if d["identifier"] == ident]

    [doc] = changed(0)
    assert doc["insulin"] == 1.2 and doc["isValid"] is True
    assert doc["srvModified"] >= n - 60_000
    # NSClientV3's updateTreatment: PATCH by identifier, date and utcOffset left out.
    r = srv.send("PATCH", f"/api/v3/treatments/{ident}", json={"insulin": 1.0,
                                                                "identifier": ident},
                 headers=bearer)
    assert r.status_code in (200, 201), r.text
    [doc] = changed(0)
    assert doc["insulin"] == 1.0 and doc["date"] == t
    # A PATCH of its date: Nightscout refuses it (update/validate.js: date is immutable),
    # which is why AndroidAPS leaves date out; nothing is stored.
    r = srv.send("PATCH", f"/api/v3/treatments/{ident}", json={"date": t - 60_000},
                 headers=bearer)
    assert r.status_code == 400, r.text
    assert "Field date cannot be modified by the client" in r.json()["message"]
    [doc] = changed(0)
    assert (doc["identifier"], doc["date"], doc["insulin"]) == (ident, t, 1.0)
    # A create of a document already here by identifier (AAPS re-uploading after a
    # reinstall): Nightscout's deduplication, the same document, a new version.
    r = srv.send("POST", "/api/v3/treatments", json=dict(bolus, insulin=0.9), headers=bearer)
    assert r.status_code == 200 and r.json()["isDeduplication"] is True, r.text
    assert r.json()["identifier"] == ident
    [doc] = changed(0)
    assert doc["insulin"] == 0.9
    # ... at another date: update/replace.js validates it as an update (date immutable).
    r = srv.send("POST", "/api/v3/treatments", json=dict(bolus, insulin=0.8,
                                                         date=t - 60_000), headers=bearer)
    assert r.status_code == 400, r.text
    assert "Field date cannot be modified by the client" in r.json()["message"]
    assert changed(0) == [doc]
    # AAPS's usual create sends no identifier: the server names the document.
    carbs = {"eventType": "Carb Correction", "carbs": 12, "date": t - 30_000, "utcOffset": 60,
             "isValid": True, "app": "AAPS"}
    r = srv.send("POST", "/api/v3/treatments", json=carbs, headers=bearer)
    assert r.status_code == 201 and len(r.json()["identifier"]) == 24, r.text
    named = r.json()["identifier"]
    r = srv.send("PATCH", f"/api/v3/treatments/{named}", json={"carbs": 14}, headers=bearer)
    assert r.status_code == 200, r.text
    assert srv.get(f"/api/v3/treatments/{named}", headers=bearer).json()["result"][
        "carbs"] == 14
    r = srv.send("DELETE", f"/api/v3/treatments/{ident}", headers=bearer)
    assert r.status_code == 200, r.text
    [gone] = changed(doc["srvModified"] - 1)
    assert gone["isValid"] is False and gone["identifier"] == ident
    assert srv.get(f"/api/v3/treatments/{ident}", headers=bearer).status_code == 410
    # A reader's JWT reads but cannot write.
    r = srv.get(f"/api/v2/authorization/request/{DEMO_READER_TOKEN}")
    reader = {"Authorization": f"Bearer {r.json()['token']}"}
    r = srv.send("POST", "/api/v3/treatments", json=bolus, headers=reader)
    assert r.status_code == 403
    # ... and reads only through a grant: none is active now, so 403 with the reason.
    r = srv.get("/api/v3/entries?sort$desc=date&type=sgv", headers=reader)
    assert r.status_code == 403 and r.json()["status"] == 403, r.text
    assert "grant" in r.json()["message"] or "revoked" in r.json()["message"], r.text
    grant = _grant(srv)
    r = srv.get("/api/v3/entries?sort$desc=date&type=sgv", headers=reader)
    assert r.status_code == 200 and r.json()["result"]
    _revoke(srv, grant)


def _v3(srv: Server) -> dict[str, str]:
    jwt = srv.get(f"/api/v2/authorization/request/{DEMO_UPLOADER_SECRET}").json()["token"]
    return {"Authorization": f"Bearer {jwt}"}


def _v3_history(srv: Server, bearer: dict[str, str], col: str, ident: str
                ) -> list[dict[str, Any]]:
    """What ``history`` (changes since this module's server started) says of ``ident``."""
    r = srv.get(f"/api/v3/{col}/history/{srv.started}", headers=bearer,
                params={"limit": "1000"})
    assert r.status_code == 200, r.text
    return [d for d in r.json()["result"] if d["identifier"] == ident]


def test_androidaps_v3_resends_after_a_timeout(srv: Server) -> None:
    """AndroidAPS NSClient V3 (plugins/sync nsclientV3/NSClientV3Plugin.kt dbOperation*,
    core/nssdk NSAndroidClientImpl createTreatment/createSgv/createDeviceStatus) POSTs a new
    record without ``identifier`` (``ids.nightscoutId`` is still null), reads 200 as UPDATED
    and 201 as ADDED, and stores the answer's ``identifier`` as the record's nightscoutId.
    When an answer is lost (a timeout), it sends the same record again, still without
    ``identifier``. cgm-remote-monitor computes the identifier from the content
    (``shared/operationTools.js`` calculateIdentifier: device, date, eventType), finds the
    document and replaces it (``generic/create/operation.js``, ``update/replace.js``): 200,
    ``isDeduplication: true``, the same ``identifier``, no ``deduplicatedIdentifier``
    (tests/api3.create.test.js "should deduplicate by identifier calculation")."""
    bearer = _v3(srv)
    t = _now() - 600_000
    bolus = {"eventType": "Meal Bolus", "isValid": True, "date": t, "utcOffset": 60,
             "insulin": 2.5, "type": "NORMAL", "isBasalInsulin": False, "pumpId": 9001,
             "pumpType": "OMNIPOD_DASH", "pumpSerial": "4241", "app": "AAPS"}
    sgv = {"type": "sgv", "date": t, "utcOffset": 60, "sgv": 131, "direction": "Flat",
           "noise": 1, "filtered": 131.0, "unfiltered": 0.0, "units": "mg/dl",
           "device": "Dexcom G6 Native", "isValid": True, "app": "AAPS"}
    status = {"date": t, "device": "openaps://samsung SM-G970F", "uploaderBattery": 71,
              "isCharging": False, "pump": {"clock": iso(t), "reservoir": 120.5},
              "openaps": {"iob": {"iob": 1.2, "time": iso(t)}}, "app": "AAPS"}
    for col, doc in (("treatments", bolus), ("entries", sgv), ("devicestatus", status)):
        r = srv.send("POST", f"/api/v3/{col}", json=doc, headers=bearer)
        assert r.status_code == 201, r.text
        first = r.json()
        ident = first["identifier"]
        assert first["status"] == 201 and "isDeduplication" not in first, first
        assert r.headers["location"] == f"/api/v3/{col}/{ident}"
        r = srv.send("POST", f"/api/v3/{col}", json=doc, headers=bearer)  # the re-send
        assert r.status_code == 200, (col, r.text)
        again = r.json()
        assert again["status"] == 200 and again["isDeduplication"] is True, again
        assert again["identifier"] == ident and "deduplicatedIdentifier" not in again
        assert again["lastModified"] >= first["lastModified"]
        assert r.headers["location"] == f"/api/v3/{col}/{ident}"
        r = srv.get(f"/api/v3/{col}", headers=bearer, params={"date$eq": str(t)})
        assert [d["identifier"] for d in r.json()["result"]] == [ident]  # still one
    # The same identity, another content (the bolus corrected on the pump, its notes
    # dropped): Nightscout replaces the document with the one sent, answered the same way
    # (tests/api3.create.test.js "should upsert document (matched by identifier)").
    noted = dict(bolus, date=t + 5_000, notes="pizza", insulin=3.0)
    r = srv.send("POST", "/api/v3/treatments", json=noted, headers=bearer)
    assert r.status_code == 201, r.text
    ident = r.json()["identifier"]
    changed = {k: v for k, v in noted.items() if k != "notes"} | {"insulin": 3.5}
    r = srv.send("POST", "/api/v3/treatments", json=changed, headers=bearer)
    assert r.status_code == 200 and r.json()["isDeduplication"] is True, r.text
    assert r.json()["identifier"] == ident
    [doc] = _v3_history(srv, bearer, "treatments", ident)
    assert doc["insulin"] == 3.5 and "notes" not in doc
    # Another eventType at the same time is another document
    # ("should not deduplicate treatment only by created_at").
    r = srv.send("POST", "/api/v3/treatments", json=dict(noted, eventType="Correction Bolus"),
                 headers=bearer)
    assert r.status_code == 201 and r.json()["identifier"] != ident, r.text


def test_v3_create_lands_on_v1_and_deleted_documents(srv: Server) -> None:
    """cgm-remote-monitor tests/api3.create.test.js: "should deduplicate document by
    created_at+eventType" (a v3 create with its own ``identifier`` of a treatment a v1
    client stored with the same ``date``, ``app`` and ``utcOffset``, as that test's v1
    document has them: 200, ``isDeduplication``, ``deduplicatedIdentifier`` = the v1
    ``_id``, the document now named by the new identifier; without them the create is
    refused, test_ns_v3_rules.py) and "should overwrite deleted document"
    (a create naming a deleted document: 200, that identifier, the new content). Between
    the two, the deletion reaches ``history`` under the identifier the document had last,
    which AndroidAPS matches to its record (nsclientV3/extensions: ``nightscoutId =
    identifier``). Several documents: which stored version was read last used to name a
    deletion, by chance."""
    bearer = _v3(srv)
    t0 = _now() - 900_000
    named: dict[str, tuple[int, str]] = {}
    for i in range(6):
        t = t0 - i * 3_600_000
        v1 = {"eventType": "Carb Correction", "carbs": 20, "created_at": iso(t),
              "enteredBy": "AAPS", "date": t, "app": "AAPS"}
        [stored] = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[v1],
                                             headers=UP), [v1])
        own = f"8a3c0c62-2f7e-4a51-9a43-aaps-dedup-{i:04}"
        r = srv.send("POST", "/api/v3/treatments", headers=bearer, json={
            "eventType": "Carb Correction", "carbs": 22, "date": t, "utcOffset": 0,
            "app": "AAPS", "identifier": own})
        assert r.status_code == 200, r.text
        assert r.json()["isDeduplication"] is True and r.json()["identifier"] == own
        assert r.json()["deduplicatedIdentifier"] == stored["_id"]
        assert srv.send("DELETE", f"/api/v3/treatments/{own}", headers=bearer
                        ).status_code == 200
        named[own] = (t, stored["_id"])
    r = srv.get(f"/api/v3/treatments/history/{srv.started}", headers=bearer,
                params={"limit": "1000"})
    gone = {d["identifier"]: d["_id"] for d in r.json()["result"] if d["isValid"] is False}
    assert {own: gone.get(own) for own in named} == {o: i for o, (_, i) in named.items()}
    for own, (t, _) in named.items():  # created again under its identifier, later
        r = srv.send("POST", "/api/v3/treatments", headers=bearer, json={
            "eventType": "Carb Correction", "carbs": 25, "date": t + 60_000, "utcOffset": 0,
            "app": "AAPS", "identifier": own})
        assert r.status_code == 200 and r.json()["isDeduplication"] is True, r.text
        assert r.json()["identifier"] == own and "deduplicatedIdentifier" not in r.json()
        r = srv.get(f"/api/v3/treatments/{own}", headers=bearer)
        assert r.status_code == 200, r.text
        assert (r.json()["result"]["carbs"], r.json()["result"]["date"]) == (25, t + 60_000)


def test_v3_resend_while_the_first_is_being_stored(srv: Server) -> None:
    """The re-send AndroidAPS makes after a timeout may arrive while the first POST is still
    being stored: one answer 201, the other 200 ``isDeduplication``, one document."""
    bearer = _v3(srv)
    doc = {"eventType": "Note", "notes": "sent twice at once", "date": _now() - 1_200_000,
           "utcOffset": 0, "app": "AAPS", "device": "AAPS-phone"}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: srv.send("POST", "/api/v3/treatments", json=doc,
                                                   headers=bearer), range(2)))
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    [ident] = {a.json()["identifier"] for a in answers}
    assert [a.json().get("isDeduplication") for a in answers
            if a.status_code == 200] == [True]
    assert len(_v3_history(srv, bearer, "treatments", ident)) == 1


def test_v3_creates_cost_no_read(srv: Server) -> None:
    """AndroidAPS uploads record by record (one POST each: a day of readings after a phone was
    offline is 288): a create without ``identifier`` reads nothing of the patient's data,
    so it never meets the per-credential read limit (429)."""
    bearer = _v3(srv)
    t = _now() - 2 * 86_400_000
    codes = [srv.send("POST", "/api/v3/entries", headers=bearer, json={
        "type": "sgv", "date": t + i * 300_000, "utcOffset": 0, "sgv": 100 + i % 40,
        "direction": "Flat", "device": "AAPS-xDrip", "app": "AAPS"}).status_code
        for i in range(150)]
    assert codes == [201] * 150


def test_v3_put_of_an_unknown_identifier_creates_it(srv: Server) -> None:
    """cgm-remote-monitor ``lib/api3/generic/update/operation.js``: a PUT whose identifier
    names no document inserts it under that identifier (``create/insert.js``: 201,
    ``identifier``, ``Location``), tests/api3.update.test.js "should upsert document"; the
    next PUT of it replaces it (200)."""
    bearer = _v3(srv)
    own = "0c5d2f1e-put-upsert-4d1b-9e7a-1f2e3d4c5b6a"
    t = _now() - 1_500_000
    doc = {"eventType": "Carb Correction", "carbs": 17, "date": t, "utcOffset": 0,
           "app": "glucoledger-test", "device": "replay"}
    r = srv.send("PUT", f"/api/v3/treatments/{own}", json=doc, headers=bearer)
    assert r.status_code == 201, r.text
    assert r.json()["identifier"] == own and "isDeduplication" not in r.json()
    assert r.headers["location"] == f"/api/v3/treatments/{own}"
    r = srv.get(f"/api/v3/treatments/{own}", headers=bearer)
    assert r.status_code == 200 and r.json()["result"]["carbs"] == 17, r.text
    r = srv.send("PUT", f"/api/v3/treatments/{own}", json=dict(doc, carbs=19), headers=bearer)
    assert r.status_code == 200, r.text
    [stored] = _v3_history(srv, bearer, "treatments", own)
    assert (stored["carbs"], stored["isValid"]) == (19, True)


def test_v3_deleted_documents_answer_gone(srv: Server) -> None:
    """A deleted document (cgm-remote-monitor marks it ``isValid: false``): GET answers 410
    (``read/operation.js``), a PUT 410 (``update/operation.js`` updateConditional), a DELETE
    again 200 (``delete/operation.js`` finds it and marks it again), an unknown one 404. A
    PATCH answers 404 here where Nightscout answers 410 (``patch/operation.js``): AndroidAPS
    (NSAndroidClientImpl updateTreatment) takes 404 as done, 410 as an error that stops its
    uploads until the same PATCH succeeds. Nothing refused changes the document."""
    bearer = _v3(srv)
    own = "5e6f7a8b-gone-4c3d-8e9f-0a1b2c3d4e5f"
    doc = {"eventType": "Note", "notes": "to delete", "date": _now() - 1_800_000,
           "utcOffset": 0, "app": "AAPS", "identifier": own}
    assert srv.send("POST", "/api/v3/treatments", json=doc, headers=bearer
                    ).status_code == 201
    r = srv.send("DELETE", f"/api/v3/treatments/{own}", headers=bearer)
    assert r.status_code == 200, r.text
    [gone] = _v3_history(srv, bearer, "treatments", own)
    assert gone["isValid"] is False
    r = srv.get(f"/api/v3/treatments/{own}", headers=bearer)
    assert r.status_code == 410 and "deleted" in r.json()["message"], r.text
    r = srv.send("PUT", f"/api/v3/treatments/{own}", json=dict(doc, notes="back"),
                 headers=bearer)
    assert r.status_code == 410 and "POST /api/v3/treatments" in r.json()["message"], r.text
    r = srv.send("PATCH", f"/api/v3/treatments/{own}", json={"notes": "back"},
                 headers=bearer)
    assert r.status_code == 404 and "was deleted" in r.json()["message"], r.text
    r = srv.send("DELETE", f"/api/v3/treatments/{own}", headers=bearer)
    assert r.status_code == 200, r.text
    assert _v3_history(srv, bearer, "treatments", own) == [gone]  # nothing changed
    unknown = "no-such-document-4c3d-8e9f"
    for method in ("GET", "PATCH", "DELETE"):
        r = srv.send(method, f"/api/v3/treatments/{unknown}", headers=bearer,
                     json={"notes": "x"} if method == "PATCH" else None)
        assert r.status_code == 404, (method, r.text)


def test_v3_immutable_fields_are_refused(srv: Server) -> None:
    """cgm-remote-monitor ``lib/api3/generic/update/validate.js`` (PUT, and PATCH through
    ``patch/validate.js``): identifier, date, utcOffset, eventType, device, app,
    srvCreated, subject, srvModified, modifiedBy and isValid, sent with another value than
    the document has, answer 400 "Field <name> cannot be modified by the client"
    (tests/api3.update.test.js, api3.patch.test.js "should not modify read-only..." /
    "should not modify identifier"); nothing is stored. AndroidAPS's update
    (NSAndroidClientImpl updateTreatment) sends identifier, eventType, device and isValid
    unchanged, date and utcOffset left out: accepted. A PUT's identifier is its path."""
    bearer = _v3(srv)
    own = "9a8b7c6d-immutable-4e3f-a2b1-c0d9e8f7a6b5"
    bolus = {"eventType": "Correction Bolus", "insulin": 0.8, "date": _now() - 2_100_000,
             "utcOffset": 60, "app": "AAPS", "device": "AAPS-pump", "isValid": True,
             "identifier": own}
    assert srv.send("POST", "/api/v3/treatments", json=bolus, headers=bearer
                    ).status_code == 201
    [before] = _v3_history(srv, bearer, "treatments", own)
    for method, change in (("PATCH", {"app": "xDrip+"}), ("PATCH", {"utcOffset": 0}),
                           ("PATCH", {"eventType": "Meal Bolus"}),
                           ("PATCH", {"device": "other"}), ("PATCH", {"identifier": "x"}),
                           ("PATCH", {"isValid": False}), ("PATCH", {"subject": "someone"}),
                           ("PUT", dict(bolus, app="xDrip+")),
                           ("PUT", dict(bolus, utcOffset=120, insulin=1.0))):
        r = srv.send(method, f"/api/v3/treatments/{own}", json={"insulin": 2.0, **change},
                     headers=bearer)
        [name] = [k for k in change if k != "insulin" and change[k] != bolus.get(k)]
        assert r.status_code == 400, (method, change, r.text)
        message = r.json()["message"]
        assert f"Field {name} cannot be modified by the client" in message, message
        assert _v3_history(srv, bearer, "treatments", own) == [before]  # nothing stored
    # What AndroidAPS sends: the same identifier, eventType, device and isValid.
    r = srv.send("PATCH", f"/api/v3/treatments/{own}", headers=bearer, json={
        "identifier": own, "eventType": "Correction Bolus", "device": "AAPS-pump",
        "isValid": True, "insulin": 0.7})
    assert r.status_code == 200, r.text
    # A PUT names the document by its path: an identifier in the body is not a rename.
    r = srv.send("PUT", f"/api/v3/treatments/{own}", headers=bearer,
                 json=dict(bolus, insulin=0.6, identifier="other-name"))
    assert r.status_code == 200, r.text
    [after] = _v3_history(srv, bearer, "treatments", own)
    assert (after["insulin"], after["app"], after["utcOffset"]) == (0.6, "AAPS", 60)


def test_librelink_up_v3_all_data_uploads(srv: Server) -> None:
    """nightscout-librelink-up with NIGHTSCOUT_API_V3 (``src/nightscout/apiv3.ts``
    uploadEntries, ``src/index.ts`` createFormattedMeasurements): a cycle POSTs each reading
    as one document, all at once (``Promise.all``), with ``type``, ``sgv``, ``direction``,
    ``device``, ``date`` and ``app``, no ``utcOffset``, and fails unless every answer is 201.
    Normally it sends only what is newer than ``entries?limit=1&sort$desc=date``
    (test_v3_readers_get_the_newest_by_the_documents_own_time); with ALL_DATA it sends the
    whole graph every cycle: the first time each is new (201), then each is the document
    already here: 200 ``isDeduplication`` (as Nightscout answers it, so the app logs the
    cycle as failed there too), the same identifier, nothing stored twice."""
    bearer = _v3(srv)
    now = _now()
    current = now - now % 300_000 - 293_000  # whole seconds, off the demo's 5-minute grid
    readings = [(current, 142)] + [(current - k * 900_000, 100 + k) for k in range(1, 48)]

    def cycle() -> list[requests.Response]:
        docs = [{"type": "sgv", "sgv": v, "direction": "Flat", "device":
                 "nightscout-librelink-up", "date": d, "app": "nightscout-librelink-up"}
                for d, v in readings]
        with ThreadPoolExecutor(10) as pool:  # requests keeps 10 connections
            return list(pool.map(lambda doc: srv.send("POST", "/api/v3/entries", json=doc,
                                                      headers=bearer), docs))

    first = cycle()
    assert [a.status_code for a in first] == [201] * len(readings), [
        a.text for a in first if a.status_code != 201]
    assert len({a.json()["identifier"] for a in first}) == len(readings)
    again = cycle()
    assert [a.status_code for a in again] == [200] * len(readings)
    assert all(a.json()["isDeduplication"] is True for a in again)
    assert [a.json()["identifier"] for a in again] == [a.json()["identifier"] for a in first]
    r = srv.get("/api/v3/entries", headers=bearer, params={
        "device": "nightscout-librelink-up", "date$gte": str(readings[-1][0]),
        "date$lte": str(current), "limit": "1000"})
    assert sorted(d["date"] for d in r.json()["result"]) == sorted(d for d, _ in readings)


def test_v3_readers_get_the_newest_by_the_documents_own_time(srv: Server) -> None:
    """v3 searches sort by each document's own time, never by when it was stored or by a
    field as sent. nightscout-librelink-up's v3 client (``src/nightscout/apiv3.ts``
    ``lastEntry``) asks ``entries?limit=1&sort$desc=date`` and uploads only what is newer;
    v3 followers ask ``treatments?created_at$gte=<ISO>&sort$desc=created_at&limit=``
    (cgm-remote-monitor ``lib/api3/generic/search``: ``sort$desc`` names the field). A
    treatment posted through v1 carries ``created_at`` only, and Loop posts one it logged
    earlier after a later one (a backfill): the answer must still start with the newest.
    And one entry whose ``date`` came as text (Nightscout stores what it is sent, v1 reads
    echo it) must not fail every v3 read of the patient."""
    jwt = srv.get(f"/api/v2/authorization/request/{DEMO_UPLOADER_SECRET}").json()["token"]
    bearer = {"Authorization": f"Bearer {jwt}"}
    n = _now()
    newest = {"eventType": "Note", "notes": "v3 order: newest", "created_at": iso(n - 60_000)}
    older = {"eventType": "Note", "notes": "v3 order: older, sent later",
             "created_at": iso(n - 6_000_000)}
    for doc in (newest, older):
        _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[doc], headers=UP), [doc])
    r = srv.get("/api/v3/treatments", headers=bearer, params={
        "created_at$gte": iso(n - 7_200_000), "notes$re": "^v3 order", "sort$desc": "created_at",
        "limit": "1"})
    assert r.status_code == 200, r.text
    assert [d["notes"] for d in r.json()["result"]] == ["v3 order: newest"]
    r = srv.get("/api/v3/treatments", headers=bearer, params={
        "notes$re": "^v3 order", "sort": "created_at", "limit": "2"})
    assert [d["notes"] for d in r.json()["result"]] == ["v3 order: older, sent later",
                                                       "v3 order: newest"]
    t = n - 3 * 86_400_000  # inside the default 4-day window, before every other test's
    text_date = {"type": "sgv", "sgv": 133, "date": str(t), "dateString": iso(t),
                 "device": "uploader"}
    _one_answer_each(srv.send("POST", "/api/v1/entries", json=[text_date], headers=UP),
                     [text_date])
    sgv = {"type": "sgv", "sgv": 141, "direction": "Flat", "device": "nightscout-librelink-up",
           "date": n + 1_000, "app": "nightscout-librelink-up"}
    assert srv.send("POST", "/api/v3/entries", json=sgv, headers=bearer).status_code == 201
    r = srv.get("/api/v3/entries?limit=1&sort$desc=date", headers=bearer)
    assert r.status_code == 200, r.text
    assert [(d["sgv"], d["date"]) for d in r.json()["result"]] == [(141, n + 1_000)]


def test_status_json_names_the_units_its_person_chose(srv: Server) -> None:
    """Nightguard (``nightguard/external/NightscoutService.swift`` ``readStatus``) reads
    ``api/v1/status.json`` with the token of its configured URL and shows glucose in
    mmol/L unless ``settings.units`` contains "mg"; watch faces and widgets do the same.
    A reader who chose mmol/L in the portal got mg/dL in every such app: status.json
    always said ``mg/dl``. With a credential it now names that person's units (the reader's
    own for her token, the patient's for her uploader secret); without one, or with a
    wrong one, mg/dL as before."""
    s = requests.Session()
    r = s.post(f"{srv.url}/api/session", json={"name": "dr-lee",
                                               "password": "dr-lee-demo-password"}, timeout=30)
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]

    def choose(units: str) -> None:
        r = s.post(f"{srv.url}/portal/settings", timeout=30,
                   data={"csrf": csrf, "units": units, "tz": "Europe/Prague"})
        assert r.status_code == 200, r.text

    choose("mmol/L")
    try:
        def units(**kw: Any) -> str:
            r = srv.get("/api/v1/status.json", **kw)
            assert r.status_code == 200, r.text
            return str(r.json()["settings"]["units"])

        assert units(params={"token": DEMO_READER_TOKEN}) == "mmol"
        assert units(headers=FOLLOW) == "mmol"
        assert units() == "mg/dl"
        assert units(headers=UP) == "mg/dl"  # alice kept mg/dL
        assert units(params={"token": "not-a-token-of-this-node"}) == "mg/dl"
    finally:
        choose("mg/dL")

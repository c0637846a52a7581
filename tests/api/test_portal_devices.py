"""Sensor age and batteries on the patient's home and the clinician's patient page, from what
real uploaders send (Loop and AndroidAPS devicestatus, an xDrip+ Sensor Start treatment, an
xDrip-js session start), through the Nightscout API into the vault and back through consent.
"unknown" in plain words when nothing was sent; nothing under a summary grant or a grant
without the notes stream."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from glucoledger.api.portal_devices import age_words, device_status, is_device_note
from glucoledger.glucose.annex import annex_text
from glucoledger.glucose.readings import Note
from glucoledger.node import consent_actions as ca
from glucoledger.node.accounts import identity, keys_of
from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from . import payloads
from .test_portal_http import _login

SHA1 = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
DAY = 86_400_000
HOUR = 3_600_000


def _dd(html: str, ident: str) -> str:
    m = re.search(rf'<dd id="{ident}">(.*?)</dd>', html, re.S)
    assert m, f"no #{ident} in the page"
    return re.sub(r"<[^>]+>", "", m.group(1))


def _note(t: int, coll: str, fields: dict[str, Any], text: str = "x") -> Note:
    return Note(t, 0, text, annex_text({"c": coll, "k": f"k|{t}", "f": fields}))


def test_newest_report_wins_and_nonsense_is_skipped() -> None:
    t = 1_800_000_000_000
    recs = [
        _note(t, "devicestatus", {"uploader": {"battery": 80}}, "device status from a"),
        _note(t + 60_000, "devicestatus", {"uploader": {"battery": 55}, "pump": {
            "battery": {"percent": 30}}}, "device status from b"),
        _note(t + 120_000, "devicestatus", {"uploader": {"battery": 140},
                                            "uploaderBattery": True,
                                            "pump": {"battery": {"percent": "full"}}}),
        _note(t - DAY, "treatments", {"eventType": "Sensor Start"}, "Sensor Start"),
        _note(t - 3 * DAY, "treatments", {"eventType": "Sensor Change"}, "changed"),
        _note(t, "treatments", {"eventType": "Note"}, "Sensor Start"),  # words, not an event
        _note(t, "devicestatus", {"xdripjs": {"sessionStart": t + DAY}}),  # in the future
    ]
    st = device_status(reversed(recs))
    assert st.phone_battery is not None and st.phone_battery.value == 55
    assert st.phone_battery.device == "b"
    assert st.pump_battery is not None and st.pump_battery.value == 30
    assert st.sensor_start is not None and st.sensor_start.value == t - DAY
    assert device_status([]).sensor_start is None
    assert is_device_note(recs[0]) and not is_device_note(recs[3])
    assert age_words(t - DAY - 4 * HOUR, t) == "1 day 4 hours"
    assert age_words(t - 59 * 60_000, t) == "under an hour"
    assert age_words(t - 2 * DAY, t) == "2 days"


def _upload(client: Any, path: str, doc: Any) -> None:
    r = client.post(path, json=doc, headers={"api-secret": SHA1})
    assert r.status_code == 200, r.text


def test_patient_home_unknown_then_from_real_uploads(client: Any) -> None:
    _login(client, "alice")
    page = client.get("/portal").text
    assert _dd(page, "sensor-age").startswith("unknown: no sensor start")
    assert _dd(page, "phone-battery") == "unknown: the uploader has not sent it"
    assert _dd(page, "pump-battery").startswith("unknown")

    now = int(time.time() * 1000)
    _upload(client, "/api/v1/treatments", {"eventType": "Sensor Start",
                                           "created_at": payloads.iso(now - 3 * DAY - 5 * HOUR),
                                           "enteredBy": "xdrip"})
    _upload(client, "/api/v1/devicestatus", payloads.loop_devicestatus(now))
    page = client.get("/portal").text
    assert _dd(page, "sensor-age").startswith("3 days 5 hours"), _dd(page, "sensor-age")
    assert _dd(page, "phone-battery").startswith("84 %")
    assert "loop://iPhone" in _dd(page, "phone-battery")
    assert _dd(page, "pump-battery").startswith("70 %")
    # a newer AndroidAPS status replaces Loop's; a low battery says so
    aaps = payloads.aaps_devicestatus(now)
    aaps["uploaderBattery"] = 12
    aaps["uploader"] = {"battery": 12}
    _upload(client, "/api/v1/devicestatus", aaps)
    page = client.get("/portal").text
    assert _dd(page, "phone-battery").startswith("12 % low"), _dd(page, "phone-battery")
    assert _dd(page, "pump-battery").startswith("75 %")
    # machine status is not a note in today's timeline
    assert "device status from" not in page


def _grant(site: Any, view: str, streams: tuple[str, ...]) -> None:
    alice = identity(site.node, "alice")
    now = int(time.time() * 1000)
    ca.grant(site.node, alice.id, keys_of(site.node, alice), identity(site.node, "dr-lee").id,
             streams=streams, view=view, window={"last_days": 30}, valid_from=now - 1000,
             valid_until=now + 30 * DAY)


def test_clinician_sees_device_status_only_through_notes(client: Any, site: Any) -> None:
    now = int(time.time() * 1000)
    _upload(client, "/api/v1/devicestatus", payloads.loop_devicestatus(now))
    _upload(client, "/api/v1/devicestatus", {
        "device": "xdripjs://rig", "created_at": payloads.iso(now - 60_000),
        "xdripjs": {"state": 6, "stateString": "OK", "sessionStart": now - 2 * DAY}})
    _grant(site, "raw", ("cgm",))
    _login(client, "dr-lee")
    page = client.get("/portal/patients/alice").text
    for ident in ("sensor-age", "phone-battery", "pump-battery"):
        assert _dd(page, ident) == "unknown: alice has not shared notes and device status "\
            "with you", ident
    _grant(site, "summary", ("cgm", "notes"))  # summary wins nothing: raw is preferred...
    page = client.get("/portal/patients/alice").text
    assert "loop://iPhone" not in page  # ...and the raw grant has no notes
    _grant(site, "raw", ("cgm", "notes"))
    page = client.get("/portal/patients/alice").text
    assert _dd(page, "sensor-age").startswith("2 days"), _dd(page, "sensor-age")
    assert _dd(page, "phone-battery").startswith("84 %")
    assert _dd(page, "pump-battery").startswith("70 %")


def test_summary_grant_shows_no_device_status(client: Any, site: Any) -> None:
    now = int(time.time() * 1000)
    _upload(client, "/api/v1/devicestatus", payloads.loop_devicestatus(now))
    _grant(site, "summary", ("cgm", "notes"))
    _login(client, "dr-lee")
    page = client.get("/portal/patients/alice").text
    assert "loop://iPhone" not in page
    assert _dd(page, "phone-battery") == ("unknown: summaries-only access does not include "
                                          "device status")

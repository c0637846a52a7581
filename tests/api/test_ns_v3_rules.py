"""Nightscout API v3's rules for writing, replayed against a real ``glucoledger serve``.

Each test sends what AndroidAPS's NSClient V3 (core/nssdk ``NSAndroidClientImpl``,
``networking/NightscoutRemoteService.kt``) or a v3 client following cgm-remote-monitor's
``lib/api3`` sends, and checks the answer cgm-remote-monitor gives (the file and lines are
in each docstring), and that a refused request stored nothing.

Sources: cgm-remote-monitor (commit 7e0e77f8) ``lib/api3/generic/create/operation.js``,
``create/validate.js``, ``update/operation.js``, ``update/replace.js``,
``update/validate.js``, ``patch/operation.js``, ``delete/operation.js``,
``lib/api3/generic/collection.js`` (parseDate), ``lib/api3/shared/operationTools.js``
(sendJSONStatus, validateCommon), ``lib/api3/const.json`` (the messages), and its tests
``tests/api3.create.test.js``, ``api3.update.test.js``, ``api3.patch.test.js``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest
import requests

from glucoledger.node.demo_site import DEMO_READER_TOKEN

from .payloads import iso
from .test_ns_replays import UP, Server, _now, _one_answer_each, _v3, _v3_history


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("v3rules") / "node")
    yield s
    s.stop()


def _refused(r: requests.Response, status: int, words: str) -> None:
    """cgm-remote-monitor's error answer (operationTools.js sendJSONStatus): ``{status,
    message}``, the HTTP status in the body too; here the message goes on to say what to
    do."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"status", "message"} and body["status"] == status, body
    assert words in body["message"], body


def test_v3_create_that_lands_on_a_document_may_not_change_what_is_immutable(
        srv: Server) -> None:
    """A create that finds its document (``create/operation.js`` lines 24-36: by
    ``identifier``, by the one computed from device, date and eventType, or, for a v1
    document, by created_at+eventType) replaces it through ``update/replace.js`` line 25,
    which validates it as an update (``update/validate.js`` lines 21-43, with
    ``isDeduplication`` only ``identifier`` may differ): 400 "Field <name> cannot be
    modified by the client" (const.json HTTP_400_IMMUTABLE_FIELD), and a field the stored
    document lacks counts as changed (line 39: ``doc[field] !== storageDoc[field]``).
    AndroidAPS's createTreatment/createSgv read that message as "not possible to upload"
    and go on. A deleted document is written again without the check (line 36).
    Nothing refused is stored."""
    bearer = _v3(srv)
    t = _now() - 3_000_000 - 317
    own = "3f1e2d4c-immutable-create-4b5a-9c8d7e6f5a4b"
    bolus = {"eventType": "Correction Bolus", "insulin": 1.1, "date": t, "utcOffset": 60,
             "app": "AAPS", "device": "AAPS-pump", "isValid": True, "identifier": own}
    r = srv.send("POST", "/api/v3/treatments", json=bolus, headers=bearer)
    assert r.status_code == 201, r.text
    [before] = _v3_history(srv, bearer, "treatments", own)
    for change in ({"app": "xDrip+"}, {"utcOffset": 0}, {"device": "other-pump"},
                   {"date": t + 1_000}, {"isValid": False}, {"eventType": "Meal Bolus"}):
        r = srv.send("POST", "/api/v3/treatments", json={**bolus, "insulin": 2.0, **change},
                     headers=bearer)
        [name] = change
        _refused(r, 400, f"Field {name} cannot be modified by the client")
        assert _v3_history(srv, bearer, "treatments", own) == [before], change
    # AndroidAPS re-sending after a timeout, without identifier: it lands on the document
    # by its identity, and is checked the same way.
    anonymous = {k: v for k, v in bolus.items() if k != "identifier"}
    r = srv.send("POST", "/api/v3/treatments", json=dict(anonymous, utcOffset=0),
                 headers=bearer)
    _refused(r, 400, "Field utcOffset cannot be modified by the client")
    assert _v3_history(srv, bearer, "treatments", own) == [before]
    # Other content, the immutable fields as they are: the next version (200).
    r = srv.send("POST", "/api/v3/treatments", json=dict(bolus, insulin=1.3),
                 headers=bearer)
    assert r.status_code == 200 and r.json()["isDeduplication"] is True, r.text
    assert r.json()["identifier"] == own
    [now] = _v3_history(srv, bearer, "treatments", own)
    assert (now["insulin"], now["app"], now["utcOffset"]) == (1.3, "AAPS", 60)
    # A treatment xDrip+ stored through v1 (created_at, no date, no app): a v3 create of it
    # sends a date its document lacks, as in Nightscout, which stores v1 treatments
    # without one (lib/server/treatments.js prepareData).
    t2 = t - 3_600_000
    v1 = {"eventType": "Carb Correction", "carbs": 15, "created_at": iso(t2),
          "enteredBy": "xdrip"}
    [stored] = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[v1],
                                         headers=UP), [v1])
    r = srv.send("POST", "/api/v3/treatments", headers=bearer, json={
        "eventType": "Carb Correction", "carbs": 16, "date": t2, "utcOffset": 0,
        "app": "AAPS", "identifier": "5a4b3c2d-over-v1-4e5f-8a9b0c1d2e3f"})
    _refused(r, 400, "Field date cannot be modified by the client")
    assert "PATCH" in r.json()["message"]
    r = srv.get(f"/api/v3/treatments/{stored['_id']}", headers=bearer)
    assert r.status_code == 200 and r.json()["result"]["carbs"] == 15, r.text
    assert "app" not in r.json()["result"]
    # A deleted document: written again, unchecked (update/validate.js line 36).
    assert srv.send("DELETE", f"/api/v3/treatments/{own}", headers=bearer).status_code == 200
    r = srv.send("POST", "/api/v3/treatments", json=dict(bolus, app="xDrip+", insulin=0.4),
                 headers=bearer)
    assert r.status_code == 200 and r.json()["isDeduplication"] is True, r.text
    r = srv.get(f"/api/v3/treatments/{own}", headers=bearer)
    assert (r.json()["result"]["app"], r.json()["result"]["insulin"]) == ("xDrip+", 0.4)


def test_v3_patch_of_created_at_keeps_the_document_at_its_date(srv: Server) -> None:
    """In API v3 a document's time is ``date``: immutable (``update/validate.js`` lines
    21-22), and ``created_at`` is derived from it on create and PUT (``collection.js``
    parseDate, lines 170-194, with API3_CREATED_AT_FALLBACK_ENABLED, const.json line 5).
    A PATCH skips parseDate (``patch/operation.js`` lines 26-28), so Nightscout writes the
    ``created_at`` sent and keeps ``date``: the document does not move in v3. Here a
    document is at one time: a PATCH whose ``created_at`` names another instant than its
    ``date`` is refused (400, nothing stored, the way to move it said); the same instant is
    taken. An entry's time is its ``date`` here too: a PATCH of its ``dateString`` is
    written as sent and the entry stays, exactly as in Nightscout. A treatment stored
    through v1 has no ``date``: its time is its ``created_at``, which a PATCH changes (it
    moves, as in Nightscout, where that is its only time)."""
    bearer = _v3(srv)
    t = _now() - 5_400_000 - 613
    own = "7c6b5a49-created-at-4d3e-8f1a-2b3c4d5e6f70"
    note = {"eventType": "Note", "notes": "at its date", "date": t, "utcOffset": 0,
            "app": "AAPS", "identifier": own}
    assert srv.send("POST", "/api/v3/treatments", json=note, headers=bearer
                    ).status_code == 201
    [before] = _v3_history(srv, bearer, "treatments", own)
    r = srv.send("PATCH", f"/api/v3/treatments/{own}", headers=bearer,
                 json={"created_at": iso(t - 3_600_000), "notes": "moved?"})
    _refused(r, 400, "Field created_at cannot be modified by the client")
    assert "create it again at the new time" in r.json()["message"]
    assert _v3_history(srv, bearer, "treatments", own) == [before]
    r = srv.send("PATCH", f"/api/v3/treatments/{own}", headers=bearer,
                 json={"created_at": iso(t), "notes": "the same time"})
    assert r.status_code == 200, r.text
    [after] = _v3_history(srv, bearer, "treatments", own)
    assert (after["date"], after["notes"]) == (t, "the same time")
    # An entry's time is its date here too: its dateString is written, it stays.
    sgv = {"type": "sgv", "sgv": 120, "date": t, "utcOffset": 0, "app": "AAPS",
           "device": "AAPS-xDrip", "identifier": "2e3f4a5b-dateString-4c6d-8e7f9a0b1c2d"}
    assert srv.send("POST", "/api/v3/entries", json=sgv, headers=bearer).status_code == 201
    r = srv.send("PATCH", f"/api/v3/entries/{sgv['identifier']}", headers=bearer,
                 json={"dateString": iso(t - 3_600_000)})
    assert r.status_code == 200, r.text
    got = srv.get(f"/api/v3/entries/{sgv['identifier']}", headers=bearer).json()["result"]
    assert (got["date"], got["dateString"]) == (t, iso(t - 3_600_000)), got
    # A v1 treatment (created_at only): the PATCH moves it.
    t1 = t - 7_200_000
    v1 = {"eventType": "Note", "notes": "v1, no date", "created_at": iso(t1),
          "enteredBy": "xdrip"}
    [stored] = _one_answer_each(srv.send("POST", "/api/v1/treatments", json=[v1],
                                         headers=UP), [v1])
    r = srv.send("PATCH", f"/api/v3/treatments/{stored['_id']}", headers=bearer,
                 json={"created_at": iso(t1 - 600_000)})
    assert r.status_code == 200, r.text
    r = srv.get(f"/api/v3/treatments/{stored['_id']}", headers=bearer)
    assert r.json()["result"]["created_at"][:19] == iso(t1 - 600_000)[:19], r.text


def test_v3_put_and_create_need_date_and_app(srv: Server) -> None:
    """cgm-remote-monitor ``shared/operationTools.js`` validateCommon (lines 56-89), run by
    a create (``create/validate.js`` line 23), by a PUT that inserts (``update/operation.js``
    line 41 through ``create/insert.js``) and by one that replaces (``update/validate.js``
    line 45): a ``date`` (or a ``created_at`` parseDate takes it from) after 2000, a
    ``utcOffset`` within a day when sent, a non-blank ``app``; else 400 "Bad or missing
    date field", "... utcOffset field", "... app field" (const.json lines 29-31).
    AndroidAPS matches the utcOffset message (NSAndroidClientImpl createTreatment) and
    sends the record again with ``utcOffset: 0``. Nothing refused is stored."""
    bearer = _v3(srv)
    t = _now() - 7_000_000 - 211
    own = "1b2c3d4e-common-fields-4f5a-9b8c7d6e5f4a"
    carbs = {"eventType": "Carb Correction", "carbs": 18, "date": t, "utcOffset": 0,
             "app": "glucoledger-test", "device": "replay"}
    for method, path, doc, field in (
            ("PUT", f"/api/v3/treatments/{own}", {k: v for k, v in carbs.items()
                                                  if k != "app"}, "app"),
            ("PUT", f"/api/v3/treatments/{own}", dict(carbs, app="  "), "app"),
            ("PUT", f"/api/v3/treatments/{own}", {k: v for k, v in carbs.items()
                                                  if k != "date"}, "date"),
            ("POST", "/api/v3/treatments", {k: v for k, v in carbs.items()
                                            if k != "app"}, "app"),
            ("POST", "/api/v3/treatments", dict(carbs, date=5), "date"),
            ("POST", "/api/v3/treatments", dict(carbs, utcOffset=5000), "utcOffset")):
        r = srv.send(method, path, json=doc, headers=bearer)
        _refused(r, 400, f"Bad or missing {field} field")
        assert srv.get(f"/api/v3/treatments/{own}", headers=bearer).status_code == 404
        r = srv.get("/api/v3/treatments", headers=bearer, params={"date$eq": str(t)})
        assert r.json()["result"] == [], (method, doc)
    # AndroidAPS's retry after "Bad or missing utcOffset field": the record with utcOffset 0.
    r = srv.send("POST", "/api/v3/treatments", json=dict(carbs, identifier=own),
                 headers=bearer)
    assert r.status_code == 201, r.text
    # A PUT that replaces is validated the same way.
    [before] = _v3_history(srv, bearer, "treatments", own)
    for doc, field in (({k: v for k, v in carbs.items() if k != "app"}, "app"),
                       ({k: v for k, v in carbs.items() if k != "date"}, "date")):
        r = srv.send("PUT", f"/api/v3/treatments/{own}", json=dict(doc, carbs=30),
                     headers=bearer)
        _refused(r, 400, f"Bad or missing {field} field")
        assert _v3_history(srv, bearer, "treatments", own) == [before]
    r = srv.send("PUT", f"/api/v3/treatments/{own}", json=dict(carbs, carbs=30),
                 headers=bearer)
    assert r.status_code == 200, r.text


def test_v3_if_unmodified_since(srv: Server) -> None:
    """``If-Unmodified-Since`` on a PUT (``update/operation.js`` updateConditional, lines
    54-60) and a PATCH (``patch/operation.js`` lines 44-50): when the document's
    ``srvModified``, floored to the second, is after the date sent, 412 (tests/
    api3.update.test.js "should not update document modified since"), nothing stored; a
    date at or after it: the change is made ("should update unmodified document since").
    A DELETE does not read the header (``delete/operation.js``): it deletes."""
    bearer = _v3(srv)
    t = _now() - 8_000_000 - 457
    own = "6d5c4b3a-unmodified-since-4a1b-8c2d3e4f5a6b"
    doc = {"eventType": "Note", "notes": "first", "date": t, "utcOffset": 0, "app": "AAPS",
           "identifier": own}
    assert srv.send("POST", "/api/v3/treatments", json=doc, headers=bearer
                    ).status_code == 201
    [before] = _v3_history(srv, bearer, "treatments", own)
    modified = before["srvModified"]
    earlier = {"If-Unmodified-Since": formatdate((modified - 1_000) / 1000, usegmt=True)}
    later = {"If-Unmodified-Since": formatdate((modified + 1_000) / 1000, usegmt=True)}
    for method, body in (("PUT", dict(doc, notes="second")), ("PATCH", {"notes": "second"})):
        r = srv.send(method, f"/api/v3/treatments/{own}", json=body,
                     headers={**bearer, **earlier})
        _refused(r, 412, "was modified after If-Unmodified-Since")
        assert "read it again" in r.json()["message"]
        assert _v3_history(srv, bearer, "treatments", own) == [before]
    r = srv.send("PATCH", f"/api/v3/treatments/{own}", json={"notes": "second"},
                 headers={**bearer, **later})
    assert r.status_code == 200, r.text
    [after] = _v3_history(srv, bearer, "treatments", own)
    assert after["notes"] == "second"
    r = srv.send("DELETE", f"/api/v3/treatments/{own}", headers={**bearer, **earlier})
    assert r.status_code == 200, r.text
    assert srv.get(f"/api/v3/treatments/{own}", headers=bearer).status_code == 410


def test_v3_errors_are_status_and_message(srv: Server) -> None:
    """Every API v3 error is ``{status, message}`` (``shared/operationTools.js``
    sendJSONStatus, lines 29-46; tests/api3.*.test.js check ``res.body.status`` and
    ``res.body.message``); AndroidAPS reads the body as text (NSAndroidClientImpl
    ``errorBody()?.string()``). API v1 keeps ``{code, message}`` (the reason codes its
    clients and the consent tests read) and has ``status`` too, as cgm-remote-monitor's v1
    errors (``lib/middleware/send-json-status.js``: ``{status, message, description}``)."""
    bearer = _v3(srv)
    _refused(srv.get("/api/v3/status"), 401, "Bearer")
    _refused(srv.get("/api/v3/treatments/no-such-document", headers=bearer), 404,
             "no treatments document")
    _refused(srv.get("/api/v3/nosuchcollection", headers=bearer), 404, "no such collection")
    _refused(srv.get("/api/v3/treatments/history/x/y", headers=bearer), 404, "no route")
    _refused(srv.send("POST", "/api/v3/treatments", json=[], headers=bearer), 400, "one")
    reader = srv.get(f"/api/v2/authorization/request/{DEMO_READER_TOKEN}").json()["token"]
    _refused(srv.send("POST", "/api/v3/treatments", headers={
        "Authorization": f"Bearer {reader}"}, json={"eventType": "Note", "date": _now(),
                                                    "app": "x"}), 403, "upload")
    r = srv.get("/api/v1/entries.json", headers={"api-secret": "0" * 40})
    assert r.status_code == 401 and set(r.json()) == {"code", "message", "status"}, r.text
    assert (r.json()["status"], r.json()["code"]) == (401, "unauthenticated"), r.text
    r = srv.get("/api/v1/nosuch/route/here", headers=UP)
    assert r.status_code == 404 and r.json()["status"] == 404, r.text


def test_v3_creates_racing_onto_one_document_never_skip_the_check(srv: Server) -> None:
    """Two creates of one identity at once, with other ``utcOffset``s (AndroidAPS's
    re-send after a timeout while the phone's time zone changed): one is stored (201), the
    other is refused (400) whichever way they meet, checked before it is stored or, when
    the first was stored while it was on its way, refused by the store (node/nightscout.py
    ``post_one`` ``pin``): never a change that skipped update/validate.js."""
    bearer = _v3(srv)
    for i in range(6):
        t = _now() - 9_000_000 - i * 61_000 - 13
        docs = [{"eventType": "Note", "notes": f"race {i}", "date": t, "utcOffset": off,
                 "app": "AAPS", "device": "AAPS-phone"} for off in (0, 60)]
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda d: srv.send("POST", "/api/v3/treatments", json=d,
                                                       headers=bearer), docs))
        assert sorted(a.status_code for a in answers) == [201, 400], [a.text for a in answers]
        [stored] = [d for d, a in zip(docs, answers, strict=True) if a.status_code == 201]
        [refused] = [a for a in answers if a.status_code == 400]
        assert "utcOffset" in refused.json()["message"] or "send it again" in \
            refused.json()["message"], refused.text
        r = srv.get("/api/v3/treatments", headers=bearer, params={"date$eq": str(t)})
        assert [d["utcOffset"] for d in r.json()["result"]] == [stored["utcOffset"]]

"""Nightscout documents -> records -> documents, without a node: lossless, bounded, consent-split.

The round trip is parse_docs -> (each part through parse_batch, as the node stores it) ->
docs_from_records; "the same document" means the same JSON: same keys, same values, an int
still an int and a float still a float (compared as canonical JSON text).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.errors import InputError, MalformedError, OutOfRangeError
from glucoledger.glucose.annex import annex_text
from glucoledger.glucose.readings import (
    Basal,
    Bolus,
    Carbs,
    CgmReading,
    Note,
    Record,
    SmbgReading,
    parse_batch,
)
from glucoledger.interop import nightscout as ns
from glucoledger.interop.nsquery import Found

from ..api import payloads

NOW = 1_793_520_000_000  # 2026-11-01T08:00:00Z
T0 = 1_577_836_800_000  # 2020-01-01


def js(value: Any) -> str:
    """Canonical JSON: equal texts mean equal documents, int and float kept apart."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def store(collection: str, body: Any) -> tuple[list[ns.Doc], list[Record]]:
    """What the node does with an upload: parse, then one batch per stream."""
    docs = ns.parse_docs(collection, body)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        for stream, item in d.items:
            by_stream.setdefault(stream, []).append(item)
    records = [r for s, items in by_stream.items()
               for r in parse_batch(s, items, now_ms=NOW).items]
    return docs, records


def read_back(records: list[Record], collection: str) -> dict[str, dict[str, Any]]:
    found = [f for f in ns.docs_from_records(records) if f.collection == collection]
    assert len({f.key for f in found}) == len(found), "one document per identity"
    return {f.key: f.doc for f in found}


def assert_as_sent(got: dict[str, Any], sent: dict[str, Any], collection: str) -> None:
    assert set(sent) <= set(got), set(sent) - set(got)
    added = set(got) - set(sent)
    assert added <= set(ns.ADDED[collection]), added
    assert js({k: got[k] for k in sent}) == js(sent)


# --------------------------------------------------------------------------- the table

TABLE = payloads.ROUND_TRIP


@pytest.mark.parametrize(("collection", "make"), TABLE,
                         ids=[f"{c}-{m.__name__}" for c, m in TABLE])
def test_uploader_documents_read_back_as_sent(collection: str, make: Any) -> None:
    body = make(NOW)
    sent = body if isinstance(body, list) else [body]
    docs, records = store(collection, body)
    got = read_back(records, collection)
    assert len(got) == len(sent)
    for doc, original in zip(docs, sent, strict=True):
        assert_as_sent(got[doc.key], original, collection)
        assert js(got[doc.key]) == js(doc.echo)  # what POST answered is what GET reads


@pytest.mark.parametrize(("collection", "make"), TABLE,
                         ids=[f"{c}-{m.__name__}" for c, m in TABLE])
def test_a_read_again_answers_the_same_and_a_callers_change_stays_its_own(
        collection: str, make: Any) -> None:
    """The rendering of a record is kept for the next read (``_rendered``): what a caller
    does to the documents it got (``_named`` sets ``_id``, v3 pops ``identifier``) is not in
    what the next read of the same records gets; records without an annex alike."""
    _, records = store(collection, make(NOW))
    for recs in (records, [replace(r, ns=None) for r in records]):
        first = ns.docs_from_records(recs)
        expect = js([(f.collection, f.key, f.time_ms, f.doc) for f in first])
        for f in first:
            f.doc.pop(next(iter(f.doc)))
            f.doc["_id"] = "changed by a caller"
        again = ns.docs_from_records(recs)
        assert js([(f.collection, f.key, f.time_ms, f.doc) for f in again]) == expect


def test_each_quantity_lands_in_its_stream() -> None:
    """A Meal Bolus is a bolus and carbs; a BG Check in mmol/L a meter reading in mg/dL;
    the note of a bolus a note; an event without a quantity a note saying what it was."""
    docs, records = store("treatments", payloads.aaps_batch(NOW))
    t = docs[0].time_ms
    bare = {(type(r).__name__, r.time_ms): r for r in records}
    assert bare["Bolus", t].units_milli == 4250 and bare["Bolus", t].kind == "normal"
    assert bare["Carbs", t].grams_tenths == 520
    assert bare["Note", t].text == "pasta \nand salad"  # \r is no note character; kept in ns
    assert bare["Bolus", t + 300_000].units_milli == 150
    assert bare["Bolus", t + 300_000].kind == "automated"
    assert bare["Basal", t + 301_000].rate_milli_u_per_h == 700
    assert bare["SmbgReading", t + 302_000].mgdl == 101  # 5.6 mmol/L
    assert bare["Note", t + 303_000].text == "Site Change"
    assert bare["Note", t + 306_000].text == "Profile Switch"
    for r in records:
        assert r.tz_offset_min == 60  # created_at in UTC, utcOffset 60: the local time kept
        assert r.ns is not None


def test_a_split_document_shows_a_reader_only_the_parts_of_granted_streams() -> None:
    docs, records = store("treatments", payloads.aaps_batch(NOW)[:1])
    key = docs[0].key
    carbs_only = read_back([r for r in records if isinstance(r, Carbs)], "treatments")[key]
    assert carbs_only["carbs"] == 52 and carbs_only["eventType"] == "Meal Bolus"
    assert carbs_only["pumpId"] == 450982  # identifiers are shared by every part
    for insulin_field in ("insulin", "type", "isSMB"):
        assert insulin_field not in carbs_only
    assert "notes" not in carbs_only  # the notes stream was not granted either
    insulin_only = read_back([r for r in records if isinstance(r, Bolus)], "treatments")[key]
    assert insulin_only["insulin"] == 4.25 and insulin_only["type"] == "NORMAL"
    assert "carbs" not in insulin_only and "notes" not in insulin_only


def test_a_document_stored_twice_reads_once() -> None:
    docs, records = store("treatments", payloads.aaps_batch(NOW)[:1])
    _, again = store("treatments", payloads.aaps_batch(NOW)[:1])
    got = read_back(records + again, "treatments")
    assert list(got) == [docs[0].key]
    assert_as_sent(got[docs[0].key], payloads.aaps_batch(NOW)[0], "treatments")


# --------------------------------------------------------------------------- property

_RESERVED = {"eventType", "created_at", "timestamp", "date", "mills", "utcOffset", "insulin",
             "carbs", "glucose", "glucoseType", "units", "notes", "duration", "absolute",
             "rate", "automatic", "isSMB", "type"}
_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True).filter(
    lambda k: k not in _RESERVED)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=4),
                    st.dictionaries(_names, _scalars, max_size=4))
_EVENTS = ["Correction Bolus", "Meal Bolus", "Snack Bolus", "Carb Correction", "Temp Basal",
           "BG Check", "Note", "Site Change", "Sensor Start", "Temporary Target",
           "Profile Switch", "Combo Bolus", "SMB", "Exercise", "Announcement"]


def _iso_at(ms: int, offset: int, millis: bool) -> str:
    moment = datetime.fromtimestamp(ms / 1000, timezone(timedelta(minutes=offset)))
    text = moment.isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z") if offset == 0 else text


def _number(lo: float, hi: float) -> st.SearchStrategy[int | float]:
    """Numbers as uploaders write them: ints, whole floats (30.0 from Python or Java), any
    float (0.15000000596046448 from a Java float widened to double)."""
    ints = st.integers(math.ceil(lo), math.floor(hi))
    return st.one_of(ints, ints.map(float), st.floats(lo, hi))


@st.composite
def treatments(draw: st.DrawFn) -> dict[str, Any]:
    """Valid treatment documents as uploaders write them: any event, any time form, the
    quantities that event carries, and arbitrary other fields within the bounds."""
    event = draw(st.sampled_from(_EVENTS))
    doc: dict[str, Any] = {"eventType": event}
    t = draw(st.integers(T0, NOW - 600_000))
    form = draw(st.sampled_from(["iso", "loop", "offset", "date", "timestamp", "both"]))
    offset = draw(st.integers(-720, 840))
    if form == "iso":
        doc["created_at"] = _iso_at(t, 0, True)
    elif form == "loop":
        doc["created_at"] = doc["timestamp"] = _iso_at(t - t % 1000, 0, False)
    elif form == "offset":
        doc["created_at"] = _iso_at(t, offset, True)
    elif form == "date":
        doc["date"] = t
    elif form == "timestamp":
        doc["timestamp"] = _iso_at(t, 0, True)
    else:
        doc.update(created_at=_iso_at(t, 0, True), date=t, mills=t)
    if draw(st.booleans()):
        doc["utcOffset"] = offset
    if event in ("Correction Bolus", "Meal Bolus", "Snack Bolus", "SMB", "Combo Bolus") or (
            draw(st.booleans()) and event not in ("Temp Basal", "BG Check")):
        doc["insulin"] = draw(st.one_of(_number(0.001, 99.9), st.just(0)))
        if event == "Combo Bolus" or draw(st.booleans()):
            doc["duration"] = draw(st.one_of(st.integers(0, 480),
                                             st.integers(0, 480).map(float)))
        for flag in ("automatic", "isSMB"):
            if draw(st.booleans()):
                doc[flag] = draw(st.booleans())
        if draw(st.booleans()):
            doc["type"] = draw(st.sampled_from(["normal", "square", "SMB", "NORMAL"]))
    if event in ("Meal Bolus", "Snack Bolus", "Carb Correction") or draw(st.booleans()):
        doc["carbs"] = draw(st.one_of(st.just(0), _number(0.1, 500)))
    if event == "Temp Basal":
        doc["duration"] = draw(st.one_of(st.just(0), _number(0.5, 1440)))
        rate = draw(_number(0, 35))
        doc.update({k: rate for k in draw(st.sampled_from([["rate"], ["absolute"],
                                                          ["rate", "absolute"]]))})
    if event == "BG Check":
        if draw(st.booleans()):
            doc.update(glucose=draw(st.one_of(st.integers(20, 600),
                                              st.integers(20, 600).map(float))), units="mg/dl")
        else:
            doc.update(glucose=draw(st.floats(1.2, 33.0)), units="mmol")
        doc["glucoseType"] = draw(st.sampled_from(["Finger", "Sensor"]))
    if draw(st.booleans()):
        doc["notes"] = draw(st.text(max_size=200))
    extras = draw(st.dictionaries(_names, _values, max_size=8))
    doc.update({k: v for k, v in extras.items() if k not in doc})
    return doc


@settings(max_examples=300, deadline=None)
@given(treatments())
def test_any_treatment_round_trips_unchanged(doc: dict[str, Any]) -> None:
    docs, records = store("treatments", doc)
    got = read_back(records, "treatments")
    assert list(got) == [docs[0].key]
    assert_as_sent(got[docs[0].key], doc, "treatments")
    assert js(got[docs[0].key]) == js(docs[0].echo)
    # ...and the quantities are in their streams, so summaries and FHIR still see them.
    streams = {type(r) for r in records}
    assert (Bolus in streams) == any(isinstance(r, Bolus) for r in records)
    if isinstance(doc.get("carbs"), (int, float)) and doc["carbs"] > 0:
        assert Carbs in streams
    if doc["eventType"] == "BG Check":
        assert SmbgReading in streams
    if doc["eventType"] == "Temp Basal" and doc["duration"] > 0:
        assert Basal in streams
    assert all(r.ns is not None for r in records)


@settings(max_examples=100, deadline=None)
@given(st.integers(T0, NOW - 600_000), st.one_of(
    st.integers(13, 1000), st.integers(13, 1000).map(float),
    st.floats(13, 1000, allow_nan=False).map(lambda x: round(x, 2))),
       st.sampled_from([*sorted(ns._TRENDS_NS), None]), st.integers(-720, 840),
       st.dictionaries(_names, _scalars, max_size=6))
def test_any_sgv_round_trips_unchanged(t: int, sgv: float, direction: str | None, offset: int,
                                       extras: dict[str, Any]) -> None:
    doc: dict[str, Any] = {**extras, "type": "sgv", "sgv": sgv, "date": t,
                           "dateString": payloads.local(t, offset)}
    if direction is not None:
        doc["direction"] = direction
    docs, records = store("entries", doc)
    [rec] = records
    # Sensor LOW/HIGH (below 40, Dexcom's 401, above Libre's 500) stored at the limit they
    # passed, decimals rounded; read back as sent.
    whole = round(sgv)
    expected = 40 if whole < 40 else 400 if whole == 401 else 500 if whole > 500 else whole
    assert isinstance(rec, CgmReading) and rec.mgdl == expected and rec.tz_offset_min == offset
    assert ns.censoring("entries", doc) == ("LOW" if whole < 40 else
                                            "HIGH" if whole == 401 or whole > 500 else None)
    assert_as_sent(read_back(records, "entries")[docs[0].key], doc, "entries")


_nested = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(_names, inner, max_size=5)), max_leaves=40)


@settings(max_examples=100, deadline=None)
@given(st.integers(T0, NOW - 600_000), st.text(min_size=1, max_size=60),
       st.dictionaries(_names, _nested, max_size=8))
def test_any_devicestatus_round_trips_unchanged(t: int, device: str,
                                                extras: dict[str, Any]) -> None:
    doc = {**extras, "device": device, "created_at": _iso_at(t, 0, True)}
    docs, records = store("devicestatus", doc)
    assert_as_sent(read_back(records, "devicestatus")[docs[0].key], doc, "devicestatus")


# --------------------------------------------------------------------------- bounds

def _treatment(**extra: Any) -> dict[str, Any]:
    return {"eventType": "Note", "created_at": "2026-11-01T07:00:00.000Z", "notes": "x",
            **extra}


BOUNDS = [
    ("annex too large", "treatments", _treatment(a="x" * 3000, b="y" * 3000, c="z" * 3000),
     OutOfRangeError, "at most 8192 for treatments"),
    ("too many keys", "treatments", _treatment(**{f"k{i}": i for i in range(70)}),
     OutOfRangeError, "at most 64 are kept"),
    ("nested too deep", "treatments", _treatment(a={"b": {"c": {"d": 1}}}),
     OutOfRangeError, "nests 3 levels"),
    ("entries nest less", "entries",
     {"type": "sgv", "sgv": 100, "date": NOW - 60_000, "raw": {"a": {"b": 1}}},
     OutOfRangeError, "nests 2 levels"),
    ("long list", "entries", {"type": "sgv", "sgv": 100, "date": NOW - 60_000,
                              "raw": list(range(100))}, OutOfRangeError, "at most 64"),
    ("infinity", "treatments", _treatment(x=float("inf")), MalformedError, "finite number"),
    ("beyond 64 bits", "treatments", _treatment(x=2**64), MalformedError, "64-bit"),
    ("lone surrogate", "treatments", _treatment(notes="\ud800"), MalformedError, "Unicode"),
    ("operator key", "treatments", _treatment(x={"$gt": 1}), MalformedError, "no $ operators"),
    ("devicestatus too large", "devicestatus",
     {"device": "x", "created_at": "2026-11-01T07:00:00Z",
      "blob": {f"k{i}": "v" * 4000 for i in range(9)}}, OutOfRangeError, "32768"),
]


@pytest.mark.parametrize(("what", "collection", "doc", "error", "says"), BOUNDS,
                         ids=[b[0] for b in BOUNDS])
def test_over_the_bounds_is_refused(what: str, collection: str, doc: dict[str, Any],
                                    error: type[InputError], says: str) -> None:
    body = [payloads.careportal_note(NOW), doc] if collection == "treatments" else doc
    with pytest.raises(error) as exc:
        ns.parse_docs(collection, body)
    assert says in exc.value.message
    assert f"{collection}[" in exc.value.message  # names the document


def test_fields_within_the_bounds_are_kept() -> None:
    doc = _treatment(a="x" * 2500, b="y" * 2500, c={"d": [1, 2.5, None]},
                     **{f"k{i}": i for i in range(50)})
    docs, records = store("treatments", doc)
    assert_as_sent(read_back(records, "treatments")[docs[0].key], doc, "treatments")


def test_libre_readings_above_400_count_as_measured_dexcom_high_as_high() -> None:
    """FreeStyle Libre 2/3 measure up to 500 mg/dL: nightscout-librelink-up
    (``src/nightscout/apiv1.ts`` ``uploadEntries``: type, sgv as LibreLink Up's
    ``ValueInMgPerDl``, direction, device, date, dateString) sends 450 as 450, and
    Nightscout shows it as 450 (``lib/sandbox.js`` ``displayBg``: only 39 is LOW and 401
    HIGH). Counting it as a HIGH at 400 understated the mean, SD and GMI and called a
    measured value a sensor's out-of-range. xDrip+'s Dexcom HIGH (401) stays a HIGH."""
    from glucoledger.glucose.metrics import summarize

    t0 = NOW - 3_600_000
    libre = [{"type": "sgv", "sgv": v, "direction": "Flat", "device": "nightscout-librelink-up",
              "date": t0 + i * 300_000, "dateString": payloads.iso(t0 + i * 300_000)}
             for i, v in enumerate([450] * 6 + [150] * 6)]
    dexcom_high = {"type": "sgv", "sgv": 401, "device": "xDrip-DexcomG6", "date": NOW - 60_000}
    beyond = {"type": "sgv", "sgv": 520, "device": "uploader", "date": NOW - 30_000}
    docs, records = store("entries", [*libre, dexcom_high, beyond])
    cgm = sorted((r for r in records if isinstance(r, CgmReading)), key=lambda r: r.time_ms)
    assert [(r.mgdl, r.censored) for r in cgm[-3:]] == [(150, None), (400, "high"),
                                                        (500, "high")]
    assert [ns.censoring("entries", d) for d in (libre[0], dexcom_high, beyond)] == [
        None, "HIGH", "HIGH"]
    summary = summarize(cgm[:12], interval_min=5)
    assert (summary.mean, summary.censored_high, summary.tar250) == (300.0, 0, 50.0)
    back = read_back(records, "entries")
    for doc, sent in zip(docs, [*libre, dexcom_high, beyond], strict=True):
        assert_as_sent(back[doc.key], sent, "entries")
    # A reading stored before (a HIGH at 400, the value as sent in its annex) reads as sent.
    t = libre[0]["date"]
    before = CgmReading(t, 0, 400, "Flat", ns=annex_text(
        {"c": "entries", "f": {"device": "nightscout-librelink-up", "sgv": 450},
         "k": f"sgv|{t}", "o": ["sysTime", "utcOffset"]}), censored="high")
    [found] = ns.docs_from_records([before])
    assert_as_sent(found.doc, libre[0], "entries")


def test_a_batch_from_a_clock_running_ahead_keeps_every_reading_and_dose() -> None:
    """xDrip+'s uploader (``utilitymodels/NightscoutUploader.java``) sends its queue as one
    array (here after 25 minutes without a network) and Loop its pump's doses as one array,
    each stamped by a clock that runs 22 minutes fast. The documents more than the allowed
    skew ahead were each ordered at the server's time: at one instant, four readings
    counted as one (three superseded: lost from every summary) and two boluses as one (2 U
    gone from the record). What the POST dated after the server's time keeps its order and
    spacing, the newest at the server's time."""
    from glucoledger.glucose.metrics import summarize
    from glucoledger.interop import nsaccept

    fast = 22 * 60_000
    sent = payloads.xdrip_sgv(NOW + fast + 300_000, n=6)  # device times NOW-3 .. NOW+22 min
    boluses = [{"eventType": "Correction Bolus", "insulin": u, "created_at": payloads.iso(t)}
               for u, t in ((2.0, NOW + fast - 300_000), (1.0, NOW + fast))]
    records: list[Record] = []
    for collection, body in (("entries", sent), ("treatments", boluses)):
        for o in nsaccept.parse_each(collection, body, NOW):
            assert isinstance(o, nsaccept.Accepted)
            records += [r for stream, item in o.doc.items
                        for r in parse_batch(stream, [item], now_ms=NOW).items]
    cgm = sorted((r for r in records if isinstance(r, CgmReading)), key=lambda r: r.time_ms)
    # 110, 114, ... 130 every 5 minutes: those dated after NOW at their true times, the
    # last one now; the first (dated NOW - 3 min by the device) where the device put it
    assert [(r.time_ms, r.mgdl) for r in cgm] == [
        (NOW - 1_200_000, 114), (NOW - 900_000, 118), (NOW - 600_000, 122),
        (NOW - 300_000, 126), (NOW - 180_000, 110), (NOW, 130)]
    assert summarize(cgm, start_ms=NOW - 3_600_000, end_ms=NOW + 600_000).superseded == 0
    doses = sorted((r.time_ms, r.units_milli) for r in records if isinstance(r, Bolus))
    assert doses == [(NOW - 300_000, 2000), (NOW, 1000)]


# --------------------------------------------------------------------------- the annex is
# the document's wording, never its value


def _with_annex(rec: Record, annex: dict[str, Any]) -> Record:
    import dataclasses

    return dataclasses.replace(rec, ns=annex_text(annex))


def test_an_annex_that_contradicts_its_record_is_not_believed() -> None:
    t = NOW - 60_000
    key = f"Correction Bolus|{t}"
    lying = _with_annex(Bolus(t, 0, "normal", 1000),
                        {"c": "treatments", "k": key,
                         "f": {"eventType": "Correction Bolus", "insulin": 5}})
    [found] = ns.docs_from_records([lying])
    assert found.doc["insulin"] == 1.0  # the record's dose, rendered without the annex
    honest = _with_annex(Bolus(t, 0, "normal", 1000),
                         {"c": "treatments", "k": key,
                          "f": {"eventType": "Correction Bolus", "insulin": 1.0}})
    [found] = ns.docs_from_records([honest])
    assert js(found.doc) == js({"eventType": "Correction Bolus", "insulin": 1.0,
                                "created_at": ns._iso(t), "utcOffset": 0})
    for bad in ({"c": "entries", "k": f"sgv|{t}"},  # a bolus is no entry
                {"c": "treatments", "k": f"Correction Bolus|{t + 1}"},  # another time
                {"c": "treatments", "k": f"Meal Bolus|{t}",  # another document
                 "f": {"eventType": "Correction Bolus"}},
                {"c": "nowhere", "k": key}):
        [found] = ns.docs_from_records([_with_annex(Bolus(t, 0, "normal", 1000), bad)])
        assert found.collection == "treatments" and found.doc["enteredBy"] == "glucoledger"


def test_an_sgv_annex_cannot_change_the_reading() -> None:
    t = NOW - 60_000
    rec = _with_annex(CgmReading(t, 0, 120, "Flat"),
                      {"c": "entries", "k": f"sgv|{t}", "f": {"sgv": 300}})
    [found] = ns.docs_from_records([rec])
    assert found.doc["sgv"] == 120


def test_an_sgv_annex_cannot_move_the_reading_in_time() -> None:
    t = NOW - 60_000
    for lie in ({"utcOffset": 300}, {"dateString": payloads.local(t, 300)}):
        rec = _with_annex(CgmReading(t, 0, 120, "Flat"),
                          {"c": "entries", "k": f"sgv|{t}", "f": lie, "o": ["utcOffset"]})
        [found] = ns.docs_from_records([rec])
        assert found.doc["utcOffset"] == 0 and found.doc["device"] == "glucoledger"
    honest = _with_annex(CgmReading(t, 300, 120, "Flat"),
                         {"c": "entries", "k": f"sgv|{t}",
                          "f": {"dateString": payloads.local(t, 300)}, "o": ["utcOffset"]})
    [found] = ns.docs_from_records([honest])
    assert "utcOffset" in found.doc and found.doc["dateString"].endswith("+0500")


def test_records_without_an_annex_read_as_before() -> None:
    t = NOW - 60_000
    docs = {f.key: f.doc for f in ns.docs_from_records([
        CgmReading(t, 60, 120, "Flat"), Bolus(t, 0, "automated", 250), Carbs(t, 0, 300),
        Note(t, 0, "ns:treatment " + json.dumps({"eventType": "Site Change"}))])}
    assert docs[f"sgv|{t}"]["device"] == "glucoledger" and docs[f"sgv|{t}"]["utcOffset"] == 60
    assert docs[f"Correction Bolus|{t}"]["isSMB"] is True
    assert docs[f"Carb Correction|{t}"]["carbs"] == 30.0
    assert docs[f"Site Change|{t}"]["eventType"] == "Site Change"


# --------------------------------------------------------------------------- queries

def _found(i: int, **doc: Any) -> Found:
    return Found("treatments", f"{doc.get('eventType')}|{T0 + i}", T0 + i, doc)


ROWS = [_found(0, eventType="Meal Bolus", insulin=4.25, carbs=52, enteredBy="AAPS"),
        _found(1, eventType="Temp Basal", rate=0.7, enteredBy="loop://iPhone"),
        _found(2, eventType="Carb Correction", carbs=45, enteredBy="loop://iPhone"),
        _found(3, eventType="Note", notes="hi", enteredBy="mum", isValid=True)]


@pytest.mark.parametrize(("params", "expect"), [
    ([("find[eventType]", "Temp Basal")], [1]),
    ([("find[carbs][$exists]", "true"), ("find[enteredBy][$ne]", "loop://iPhone")], [0]),
    ([("find[insulin][$gt]", "4")], [0]),
    ([("find[carbs][$gte]", "45"), ("find[carbs][$lt]", "52")], [2]),
    ([("find[isValid]", "true")], [3]),
    ([("find[enteredBy][$gte]", "l")], [3, 2, 1]),
    ([("find[created_at][$gte]", ns._iso(T0 + 1)), ("find[created_at][$lte]", ns._iso(T0 + 2))],
     [2, 1]),
    ([("find[date][$gt]", str(T0)), ("count", "2")], [3, 2]),
    ([("find[mills][$eq]", str(T0 + 2))], [2]),
    ([("find[notes][$exists]", "false"), ("count", "1")], [2]),
    # What cgm-remote-monitor's query.js and v1 routes accept besides:
    ([("find[eventType][$in][]", "Temp Basal"), ("find[eventType][$in][]", "Note")], [3, 1]),
    ([("find[eventType][$nin][0]", "Temp Basal")], [3, 2, 0]),
    ([("find[eventType]", "/basal/i")], [1]),  # parseRegEx on eventType
    # Patterns as clients send them (RE2 runs them: nsquery.Regex; tests/api/test_ns_regex.py)
    ([("find[eventType]", "/^Temp/i")], [1]),
    ([("find[eventType]", "/Meal Bolus|Temp Basal/")], [1, 0]),  # Scoutnight's form
    ([("find[enteredBy]", "/loop:\\/\\//")], [2, 1]),  # oref0's form
    ([("find[$or][0][notes]", "/^h/"), ("find[$or][1][enteredBy]", "/aaps/i")], [3, 0]),
    ([("find[date][$gt]", f"{T0}.0"), ("count", "2")], [3, 2]),  # Nightguard's float
    ([("rr", "1796296828291"), ("_", "1"), ("ts", "2"), ("find[carbs][$gte]", "45"),
      ("find[carbs][$lt]", "52")], [2]),  # cache-busters ignored
    # Trio: find[$and][i][...] all hold, find[$or][i][...] one holds (a time by the doc's)
    ([("find[carbs][$exists]", "true"), ("find[$and][0][enteredBy][$ne]", "AAPS"),
      ("find[$and][1][enteredBy][$ne]", "mum")], [2]),
    ([("find[$or][0][eventType][$eq]", "Note"),
      ("find[$or][1][dateString][$eq]", ns._iso(T0 + 1))], [3, 1]),
])
def test_find_and_count(params: list[tuple[str, str]], expect: list[int]) -> None:
    got = ns.select(ROWS, ns.parse_query("treatments", params))
    assert [f.time_ms - T0 for f in got] == expect


def test_dotted_fields_plus_as_space_and_default_counts() -> None:
    docs = [ns.Found("devicestatus", "a", T0, {"pump": {"clock": "x"}}),
            ns.Found("devicestatus", "b", T0 + 1, {"pump": {"battery": 1}})]
    got = ns.select(docs, ns.parse_query("devicestatus", [("find[pump.clock][$exists]",
                                                           "true")]))
    assert [f.key for f in got] == ["a"]
    # '+' in an ISO time arrives as a space (clients that do not escape it)
    q = ns.parse_query("entries", [("find[dateString][$gte]", "2026-11-01T09:00:00 01:00")])
    assert q.start_ms == NOW
    assert ns.parse_query("treatments", []).count == 100
    assert ns.parse_query("treatments", [("find[eventType]", "Note")]).count == 1000
    assert ns.parse_query("entries", []).count == 10
    # Without a time, Nightscout's 4-day window (not for profiles); with an _id, none.
    assert ns.parse_query("entries", [], now_ms=NOW).start_ms == NOW - 4 * 86_400_000
    assert ns.parse_query("profile", [], now_ms=NOW).start_ms is None
    assert ns.parse_query("entries", [("find[_id]", "a" * 24)], now_ms=NOW).start_ms is None


@pytest.mark.parametrize("params", [
    [("find[eventType][$where]", "1")], [("find[a.b", "1")],
    [("find[created_at][$gte]", "yesterday")], [("find[x][$exists]", "maybe")],
    [("count", "-1")], [("count", "100001")], [(f"find[f{i}]", "1") for i in range(17)],
    [("find[notes]", "/(unclosed/")], [("find[notes]", "/(a)\\1/")], [("find[notes]", "/(?=a)/")],
    [("find[notes]", "/a/x")], [("find[notes]", "/.{500}/")],
    [("find[$or][0][notes]", "/" + "a" * 300 + "/")]])
def test_unsupported_queries_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(MalformedError):
        ns.parse_query("treatments", params)


def test_iso_times_with_offsets_in_queries() -> None:
    q = ns.parse_query("entries", [("find[dateString][$gte]", "2026-11-01T09:00:00+01:00")])
    assert q.start_ms == NOW


@pytest.mark.parametrize("doc", [
    {"eventType": "Correction Bolus", "insulin": 1e25, "created_at": "2026-11-01T07:00:00Z"},
    {"eventType": "Carb Correction", "carbs": 1e300, "created_at": "2026-11-01T07:00:00Z"},
    {"type": "sgv", "sgv": 1e25, "date": NOW - 60_000}])
def test_huge_numbers_are_refused_alone_never_a_traceback(doc: dict[str, Any]) -> None:
    from glucoledger.interop import nsaccept

    col = "entries" if "sgv" in doc else "treatments"
    ok = ({"type": "sgv", "sgv": 120, "date": NOW - 120_000} if col == "entries" else
          {"eventType": "Note", "notes": "ok", "created_at": "2026-11-01T06:00:00Z"})
    first, second = nsaccept.parse_each(col, [ok, doc], NOW)
    assert isinstance(first, nsaccept.Accepted)
    assert isinstance(second, nsaccept.Refused)
    assert any(w in second.error.message for w in ("too large", "no sensor reading", "at most"))


def test_rendered_entries_carry_delta_uploaded_ones_stay_as_sent() -> None:
    from glucoledger.glucose.readings import CgmReading
    from glucoledger.interop.nsquery import Found
    from glucoledger.interop.nsrender import DELTA_GAP_MS, legacy, with_deltas

    t = 1_700_000_000_000
    recs = [CgmReading(t, 0, 100), CgmReading(t + 300_000, 0, 112),
            CgmReading(t + 300_000 + DELTA_GAP_MS + 1, 0, 90)]
    found = [f for f in (legacy(r) for r in reversed(recs)) if f is not None]
    sent = Found("entries", f"sgv|{t + 600_000}", t + 600_000,
                 {"type": "sgv", "sgv": 150, "date": t + 600_000, "device": "xDrip-G7"})
    out = {f.time_ms: f.doc for f in with_deltas([*found, sent])}
    assert "delta" not in out[t]  # nothing before it
    assert out[t + 300_000]["delta"] == 12
    assert "delta" not in out[t + 300_000 + DELTA_GAP_MS + 1]  # after a gap
    assert "delta" not in out[t + 600_000]  # an uploaded entry: as sent

"""Nightscout API v1 documents <-> glucoledger records. Pure: no I/O, no clock.

What uploaders send (xDrip+, Loop, Trio, AndroidAPS in v1 mode; Nightscout's own
``lib/server/entries.js``, ``treatments.js``, ``devicestatus.js``, ``profile.js``) becomes
records, each clinical quantity in its stream (the items of ``glucose.readings.parse_batch``):

=====================================  ==================================================
Nightscout                             glucoledger
=====================================  ==================================================
entries ``type: sgv`` (sgv, direction)  ``cgm`` reading (trend = direction)
entries ``type: mbg`` (mbg)             ``smbg`` reading
entries ``type: cal`` (slope, ...)      ``notes``: "sensor calibration"
treatments with ``insulin``             ``insulin`` bolus: ``automated`` when SMB/automatic,
                                        ``extended`` for a square/combo bolus with duration
treatments ``Temp Basal``               ``insulin`` basal ``temp`` (rate, duration min)
treatments with ``carbs``               ``carbs``
treatments ``BG Check`` (glucose)       ``smbg`` reading (glucose, units)
treatments with ``notes``, or with      ``notes``: the notes, or the eventType ("Site
none of the above (Site Change...)      Change") when there are none
devicestatus                           ``notes``: "device status from <device>"
profile (default store)                ``settings``
=====================================  ==================================================

Round trips are lossless: every record made from a document carries an annex
(interop/nsannex.py) holding the document's other fields and its identity, so that what an
uploader POSTs, a reader GETs back as the same document (same fields, same values, ints as
ints and floats as floats), plus ``_id`` and the fields Nightscout itself adds where the
document had none (``ADDED``). A document split over streams (a Meal Bolus) reads back whole
for a reader granted all its streams, and as the parts it may see otherwise. On reading, an
annex that no longer yields its own record (a part not made here) is ignored: the record is
the clinical value, the annex only how it was written.

Deduplication follows Nightscout: an entry is the same entry when (type, date) match; a
treatment when (eventType, created_at) match; a devicestatus when (device, created_at) do.
``Doc.key`` carries that identity; the node keeps a keyed index of keys already stored.

Security: Nightscout passes queries and documents to MongoDB, so it strips operator keys; we
never touch MongoDB but refuse the same shapes (keys starting with ``$`` or holding ``.``,
nesting deeper than 8, strings over 4 kB, numbers JSON cannot carry) so injection attempts
get a clear 400; documents whose other fields are over the annex bounds
(``nsannex.LIMITS``) are refused whole, never stored in part.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ..errors import InputError, MalformedError, OutOfRangeError
from ..glucose.readings import (
    MAX_NOTE_CHARS,
    TRENDS,
    Basal,
    Bolus,
    Carbs,
    CgmReading,
    Note,
    Record,
    SmbgReading,
    parse_item,
)
from . import nsannex
from .nsannex import Annex
from .nsfields import MAX_DOCS, SERVER_TIME, check_shape, server_time
from .nsfields import TIMES as _TIMES
from .nsfields import key_time as _key_time
from .nsfields import num as _num
from .nsfields import time_of as _time_of
from .nsquery import DEFAULT_COUNT, MAX_COUNT, Found, Query, parse_query, select
from .nsrender import iso as _iso
from .nsrender import legacy as _legacy
from .nsrender import profile_doc, status_doc

__all__ = [
    "ADDED",
    "COLLECTIONS",
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "SERVER_TIME",
    "Doc",
    "Found",
    "Query",
    "body_documents",
    "censored",
    "censoring",
    "check_shape",
    "doc_from_record",
    "docs_from_records",
    "identity_of",
    "parse_docs",
    "parse_query",
    "profile_doc",
    "select",
    "server_time",
    "status_doc",
]

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile")
_TRENDS_NS: Final = set(TRENDS) | {"NONE"}
_KIND: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
#: Whether ``CgmReading`` records a censored LOW/HIGH (the clinical issue's readings do:
#: ``flag`` LOW/HIGH with the limit as the value); if not, the limit and the annex say it.
_CENSORING: Final = "censored" in getattr(CgmReading, "__dataclass_fields__", {})
#: A CGM's measuring range; sgv outside it is the sensor's LOW/HIGH (``censored``): below 40
#: (39 is Dexcom's LOW), 401 (Dexcom's HIGH: Nightscout's ``sandbox.displayBg`` shows 39 and
#: 401 as LOW and HIGH, every other value as measured), above 500. 402..500 are measured
#: values of a sensor that reads up to 500 mg/dL (FreeStyle Libre 2/3: LibreLink Up,
#: Juggluco), counted as sent.
SENSOR_LOW: Final = 40
SENSOR_HIGH: Final = 400
HIGH_CODE: Final = 401
SENSOR_MAX: Final = 500
#: sgv 0..12 are sensor error codes, not glucose (Nightscout lib/plugins/errorcodes.js).
ERROR_CODE_MAX: Final = 12
#: Beyond this no sensor and no unit mix-up explains an sgv: refused, not stored as HIGH.
SGV_ABSURD: Final = 1_000

#: Fields the server adds to a document that did not have them (Nightscout does the same:
#: entries get sysTime and utcOffset, treatments created_at...), besides ``_id``.
ADDED: Final[Mapping[str, tuple[str, ...]]] = {
    "entries": ("type", "date", "dateString", "sysTime", "utcOffset"),
    "treatments": ("created_at", "utcOffset"),
    "devicestatus": ("created_at", "utcOffset"),
    "profile": ("startDate", "created_at"),
}



def _dec(n: int, scale: int) -> int | float:
    """A stored scaled integer as the number an uploader most likely wrote: 30 (not 30.0)
    when whole, else the nearest float (350 mU -> 0.35)."""
    return n // scale if n % scale == 0 else n / scale


def _clean(text: str) -> str:
    """Text a Note may hold: control characters but newline and tab made spaces, trimmed."""
    return "".join(c if c >= " " or c in "\n\t" else " " for c in text).strip()[:MAX_NOTE_CHARS]


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Doc:
    """One accepted Nightscout document: its identity, what it stores, what POST echoes."""

    collection: str
    key: str  # Nightscout's identity: "sgv|<date>", "Meal Bolus|<created_at ms>", ...
    time_ms: int
    items: tuple[tuple[str, dict[str, Any]], ...]  # (stream, parse_batch item with "ns")
    echo: dict[str, Any] = field(default_factory=dict)  # the document as GET returns it


@dataclass(frozen=True)
class _Split:
    """A document's identity, time and parts (parse_batch items, without annexes yet)."""

    key: str
    time_ms: int
    offset: int
    parts: list[tuple[str, dict[str, Any]]]


def censored(sgv: float) -> tuple[int, str | None]:
    """A Nightscout sgv as the whole mg/dL a ``CgmReading`` stores, and its censoring.

    Sensors measure 40..400 mg/dL (Dexcom, Guardian, Eversense) or 40..500 (FreeStyle
    Libre); below 40, 401 (Dexcom's HIGH) and above 500 are the sensor's LOW or HIGH, stored
    at the limit passed (40, 400 or 500: counted below 54/70 or above 250 as it must be) and
    marked ``"LOW"``/``"HIGH"``; the annex keeps the value as sent. Fractions (a meter
    reading converted from mmol/L) round to the nearest mg/dL, halves to even."""
    value = round(sgv)
    if value < SENSOR_LOW:
        return SENSOR_LOW, "LOW"
    if value == HIGH_CODE:
        return SENSOR_HIGH, "HIGH"
    if value > SENSOR_MAX:
        return SENSOR_MAX, "HIGH"
    return value, None


def censoring(collection: str, doc: Mapping[str, Any]) -> str | None:
    """``"LOW"``/``"HIGH"`` when an entry document is a censored sensor reading, else None."""
    if collection != "entries" or _entry_kind(doc) != "sgv":
        return None
    v = doc.get("sgv")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return None if v <= ERROR_CODE_MAX else censored(float(v))[1]


def _entry_kind(doc: Mapping[str, Any]) -> str:
    kind = doc.get("type") or ("sgv" if "sgv" in doc else "mbg" if "mbg" in doc else "")
    return kind if isinstance(kind, str) else ""


def _entry(doc: Mapping[str, Any], what: str) -> _Split:
    kind = _entry_kind(doc)
    if not _KIND.match(kind):
        raise MalformedError(f"{what}: type {str(kind)[:20]!r} is not an entry type (sgv, "
                             "mbg, cal, or another name of letters and digits)")
    t, off = _time_of(doc, _TIMES["entries"], what)
    kt = _key_time(doc, _TIMES["entries"], t)
    base = {"time": t, "tz_offset_min": off}
    if kind == "sgv":
        direction = doc.get("direction")
        if direction is not None and direction not in _TRENDS_NS:
            raise MalformedError(f"{what}: direction {str(direction)[:30]!r} is not one of "
                                 f"{', '.join(sorted(_TRENDS_NS))}")
        sgv = _num(doc, "sgv", what)
        assert sgv is not None
        if not 0 <= sgv <= SGV_ABSURD:
            raise OutOfRangeError(f"{what}: sgv {sgv:g} is no sensor reading (0..{SGV_ABSURD}); "
                                  "check the uploader's units and settings")
        if sgv <= ERROR_CODE_MAX:  # Nightscout's lib/plugins/errorcodes.js: no glucose
            text = f"sensor error code {int(sgv)} (no glucose value)"
            return _Split(f"sgv|{kt}", t, off, [("notes", dict(base, text=text))])
        value, flag = censored(sgv)
        item: dict[str, Any] = dict(base, value=value)
        if flag is not None and _CENSORING:  # readings that carry the censoring: mark it
            item["flag"] = flag
        if direction is not None:
            item["trend"] = direction
        return _Split(f"sgv|{kt}", t, off, [("cgm", item)])
    if kind == "mbg":
        mbg = _num(doc, "mbg", what)
        assert mbg is not None
        return _Split(f"mbg|{kt}", t, off, [("smbg", dict(base, value=round(mbg)))])
    if kind != "cal":  # Nightscout stores any type; kept as a note, read back as sent
        return _Split(f"{kind}|{kt}", t, off,
                      [("notes", dict(base, text=_clean(f"Nightscout entry of type {kind}")))])
    for name in ("slope", "intercept", "scale"):
        _num(doc, name, what, required=False)
    return _Split(f"cal|{kt}", t, off, [("notes", dict(base, text="sensor calibration"))])


# Treatments: which fields belong to which stream (for consent, see nsannex), and how each
# record type is read from a document (also from one part alone, to check an annex).
_SHARED: Final = frozenset({
    "eventType", "created_at", "timestamp", "date", "mills", "utcOffset", "enteredBy",
    "device", "app", "uuid", "identifier", "syncIdentifier", "pumpId", "pumpType",
    "pumpSerial", "isValid", "NSCLIENT_ID"})
_OWNER: Final = {
    **dict.fromkeys(("insulin", "programmed", "unabsorbed", "insulinType", "isSMB",
                     "automatic", "type", "duration", "durationInMilliseconds", "splitNow",
                     "splitExt", "enteredinsulin", "relative", "rate", "absolute", "percent",
                     "temp", "amount", "isBasalInsulin", "bolusCalculatorResult",
                     "boluscalc"), "insulin"),
    **dict.fromkeys(("carbs", "absorptionTime", "foodType", "fat", "protein", "carbTime",
                     "preBolus", "userEnteredAt", "userLastModifiedAt"), "carbs"),
    **dict.fromkeys(("glucose", "glucoseType", "units"), "smbg"),
    "notes": "notes",
}


def _event(doc: Mapping[str, Any], what: str) -> str:
    event = doc.get("eventType", "<none>")
    if not isinstance(event, str) or not 1 <= len(event) <= 64:
        raise MalformedError(f"{what}: eventType must be text of 1-64 characters")
    return event


def _bolus(doc: Mapping[str, Any], event: str, what: str) -> dict[str, Any] | None:
    insulin = _num(doc, "insulin", what, required=False)
    if not insulin:
        return None
    automated = (doc.get("automatic") is True or doc.get("isSMB") is True
                 or doc.get("type") == "SMB" or event == "SMB")
    duration = _num(doc, "duration", what, required=False) or 0
    extended = (doc.get("type") == "square" or event == "Combo Bolus") and duration > 0
    kind = "automated" if automated else "extended" if extended else "normal"
    item = {"type": "bolus", "kind": kind, "insulin": doc["insulin"]}
    if kind == "extended":
        item["duration_min"] = doc["duration"]
    return item


def _basal(doc: Mapping[str, Any], event: str, what: str) -> dict[str, Any] | None:
    if event not in ("Temp Basal", "TempBasal"):
        return None
    if _num(doc, "absolute", what, required=False) is not None:
        rate = doc["absolute"]
    else:
        _num(doc, "rate", what)
        rate = doc["rate"]
    minutes = _num(doc, "duration", what)
    assert minutes is not None
    if minutes <= 0:
        return None
    return {"type": "basal", "kind": "temp", "rate": rate, "duration_min": doc["duration"]}


def _carbs(doc: Mapping[str, Any], event: str, what: str) -> dict[str, Any] | None:
    return {"grams": doc["carbs"]} if _num(doc, "carbs", what, required=False) else None


def _smbg(doc: Mapping[str, Any], event: str, what: str) -> dict[str, Any] | None:
    if event != "BG Check" and ("glucose" not in doc or doc.get("glucoseType") != "Finger"):
        return None
    _num(doc, "glucose", what)
    return {"value": doc["glucose"], "units": doc.get("units") or "mg/dL"}


def _note_text(doc: Mapping[str, Any], event: str) -> str:
    notes = doc.get("notes")
    if isinstance(notes, str) and _clean(notes):
        return _clean(notes)
    return _clean(event) or "treatment"


#: Record type -> (stream, how to read it from a treatment).
_TREATMENT_PARTS: Final[dict[str, tuple[str, Callable[..., dict[str, Any] | None]]]] = {
    "bolus": ("insulin", _bolus), "basal": ("insulin", _basal), "carbs": ("carbs", _carbs),
    "smbg": ("smbg", _smbg)}


def _treatment(doc: Mapping[str, Any], what: str) -> _Split:
    event = _event(doc, what)
    t, off = _time_of(doc, _TIMES["treatments"], what)
    base = {"time": t, "tz_offset_min": off}
    parts = []
    for stream, read in _TREATMENT_PARTS.values():
        item = read(doc, event, what)
        if item is not None:
            parts.append((stream, dict(base, **item)))
    notes = doc.get("notes")
    if not parts or (isinstance(notes, str) and _clean(notes)):
        parts.append(("notes", dict(base, text=_note_text(doc, event))))
    return _Split(f"{event}|{_key_time(doc, _TIMES['treatments'], t)}", t, off, parts)


def _devicestatus(doc: Mapping[str, Any], what: str) -> _Split:
    t, off = _time_of(doc, _TIMES["devicestatus"], what)
    device = doc.get("device", "unknown")
    if not isinstance(device, str):
        raise MalformedError(f"{what}: device must be text")
    text = _clean(f"device status from {device}")
    return _Split(f"{device}|{_key_time(doc, _TIMES['devicestatus'], t)}", t, off,
                  [("notes", {"time": t, "tz_offset_min": off, "text": text})])


def _hhmm(entry: Any, what: str) -> int:
    if not isinstance(entry, dict):
        raise MalformedError(f"{what}: schedule entries are objects with time and value")
    if isinstance(entry.get("timeAsSeconds"), (int, float)) and not isinstance(
            entry.get("timeAsSeconds"), bool):
        return int(entry["timeAsSeconds"]) // 60
    text = entry.get("time")
    if isinstance(text, str) and re.fullmatch(r"\d{1,2}:\d{2}", text):
        h, m = text.split(":")
        return int(h) * 60 + int(m)
    raise MalformedError(f"{what}: schedule entry time must be HH:MM or timeAsSeconds")


def _sched(store: Mapping[str, Any], name: str, what: str) -> list[list[Any]]:
    value = store.get(name)
    if not isinstance(value, list) or not value:
        raise MalformedError(f"{what}: the profile needs a non-empty {name} schedule")
    return [[_hhmm(e, f"{what}.{name}"), _num(e, "value", f"{what}.{name}")] for e in value]


def _profile(doc: Mapping[str, Any], what: str) -> _Split:
    t, off = _time_of(doc, _TIMES["profile"], what)
    stores = doc.get("store")
    default = doc.get("defaultProfile")
    if not isinstance(stores, dict) or not stores:
        raise MalformedError(f"{what}: a profile needs a store of named profiles")
    name = default if isinstance(default, str) and default in stores else min(stores)
    store = stores[name]
    if not isinstance(store, dict):
        raise MalformedError(f"{what}: store {name!r} is not an object")
    units = store.get("units") or doc.get("units") or "mg/dL"
    lows = _sched(store, "target_low", what)
    highs = {m: v for m, v in _sched(store, "target_high", what)}
    targets = [[m, lo, highs.get(m, lo)] for m, lo in lows]
    item = {"time": t, "tz_offset_min": off, "units": units,
            "basal_schedule": _sched(store, "basal", what),
            "carb_ratios": _sched(store, "carbratio", what),
            "sensitivities": [[m, v] for m, v in _sched(store, "sens", what)],
            "targets": targets}
    return _Split(f"profile|{_key_time(doc, _TIMES['profile'], t)}", t, off,
                  [("settings", item)])


_PARSERS: Final[dict[str, Callable[[Mapping[str, Any], str], _Split]]] = {
    "entries": _entry, "treatments": _treatment, "devicestatus": _devicestatus,
    "profile": _profile}


def _canonical(collection: str, rec: Record) -> dict[str, Any]:
    """What the server derives from a record alone (see nsannex): the clinical fields and
    the time fields, as an uploader most likely wrote them."""
    t, off, iso = rec.time_ms, rec.tz_offset_min, _iso(rec.time_ms)
    if collection == "entries":
        out: dict[str, Any] = {"date": t, "dateString": iso, "sysTime": iso, "utcOffset": off}
        if isinstance(rec, CgmReading):
            out.update(type="sgv", sgv=rec.mgdl)
            if rec.trend is not None:
                out["direction"] = rec.trend
        elif isinstance(rec, SmbgReading):
            out.update(type="mbg", mbg=rec.mgdl)
        else:
            out["type"] = "cal"
        return out
    if collection == "profile":
        return {"startDate": iso, "created_at": iso}
    out = {"created_at": iso, "utcOffset": off}
    if collection == "treatments":
        if isinstance(rec, Bolus):
            out["insulin"] = _dec(rec.units_milli, 1000)
            if rec.duration_ms is not None:
                out["duration"] = _dec(rec.duration_ms, 60_000)
        elif isinstance(rec, Basal):
            out["rate"] = out["absolute"] = _dec(rec.rate_milli_u_per_h, 1000)
            out["duration"] = _dec(rec.duration_ms, 60_000)
        elif isinstance(rec, Carbs):
            out["carbs"] = _dec(rec.grams_tenths, 10)
        elif isinstance(rec, SmbgReading):
            out["glucose"] = rec.mgdl
        elif isinstance(rec, Note):
            out["notes"] = rec.text
    return out


def _record(stream: str, item: dict[str, Any], what: str) -> Record:
    try:
        return parse_item(stream, item)
    except InputError as exc:
        raise type(exc)(f"{what}: {exc.message}") from None


def _parse_doc(collection: str, doc: dict[str, Any], what: str) -> Doc:
    split = _PARSERS[collection](doc, what)
    streams = [s for s, _ in split.parts]
    shares = nsannex.assign(doc, streams, _SHARED, _OWNER) if collection == "treatments" \
        else [dict(doc)]
    items = []
    echo = dict(doc)
    for (stream, item), own in zip(split.parts, shares, strict=True):
        canonical = _canonical(collection, _record(stream, item, what))
        items.append((stream, dict(item, ns=nsannex.make(collection, split.key, own,
                                                         canonical, what))))
        for k in ADDED[collection]:
            echo.setdefault(k, canonical[k])
    return Doc(collection, split.key, split.time_ms, tuple(items), echo)


def body_documents(collection: str, body: Any) -> list[Any]:
    """The documents of a POST body (one document, or a list of them), unchecked. Raises
    MalformedError (unknown collection, too many) or OutOfRangeError (none)."""
    if collection not in _PARSERS:
        raise MalformedError(f"unknown collection {collection!r}")
    docs = body if isinstance(body, list) else [body]
    if not docs:
        raise OutOfRangeError(f"empty {collection} upload: send at least one document")
    if len(docs) > MAX_DOCS:
        raise MalformedError(f"{len(docs)} documents in one upload; at most {MAX_DOCS}")
    return docs


def parse_docs(collection: str, body: Any) -> list[Doc]:
    """Parse a POST body (one document or a list) of ``collection``. All or nothing.

    Raises MalformedError (shape, types, injection-shaped keys) or OutOfRangeError (values
    out of range, other fields over the annex bounds); times in the future are checked when
    the items go through ``parse_batch``.
    """
    docs = body_documents(collection, body)
    out: list[Doc] = []
    seen: set[str] = set()
    for i, d in enumerate(docs):
        what = f"{collection}[{i}]"
        if not isinstance(d, dict):
            raise MalformedError(f"{what} must be an object, not {type(d).__name__}")
        check_shape(d, what)
        doc = _parse_doc(collection, {k: v for k, v in d.items() if k != "_id"}, what)
        if doc.key in seen:  # a duplicate inside one upload: Nightscout keeps one
            continue
        seen.add(doc.key)
        out.append(doc)
    return out


# --------------------------------------------------------------------------- reading back

#: The fields that decide a record's value, and those that decide its time, when it is read
#: from a document. An annex that holds (or omits) one of them is checked before it is
#: believed: the part re-read must give the record (its time, for time fields only).
#: None: always checked (treatments, devicestatus and profiles are few; entries are many).
_DECIDING: Final[dict[str, tuple[frozenset[str], tuple[str, ...]] | None]] = {
    "entries": (frozenset({"type", "sgv", "mbg", "direction"}),
                ("date", "dateString", "sysTime", "utcOffset")),
    "treatments": None, "devicestatus": None, "profile": None}


def _reread(collection: str, rec: Record, part: dict[str, Any]) -> tuple[str, list[Record]]:
    """The identity of the document ``part`` (one part's fields as sent) belongs to, and
    the records it yields of ``rec``'s type."""
    if collection != "treatments":
        split = _PARSERS[collection](part, "annex")
        return split.key, [parse_item(s, item) for s, item in split.parts]
    t, off = _time_of(part, _TIMES["treatments"], "annex")
    event = _event(part, "annex")
    base = {"time": t, "tz_offset_min": off}
    key = f"{event}|{_key_time(part, _TIMES['treatments'], t)}"
    if rec.TYPE in _TREATMENT_PARTS:
        stream, read = _TREATMENT_PARTS[rec.TYPE]
        item = read(part, event, "annex")
        return key, [] if item is None else [parse_item(stream, dict(item, **base))]
    return key, [parse_item("notes", dict(base, text=_note_text(part, event)))]


#: The record types each collection makes.
_MAKES: Final = {"entries": ("cgm", "smbg", "note"),
                 "treatments": ("bolus", "basal", "carbs", "smbg", "note"),
                 "devicestatus": ("note",), "profile": ("settings",)}


def _same_record(a: Record, b: Record) -> bool:
    """Equal but for the annex."""
    return type(a) is type(b) and all(getattr(a, name) == getattr(b, name)
                                      for name in a.__match_args__ if name != "ns")


def _believed(rec: Record, annex: Annex, canonical: dict[str, Any]) -> bool:
    """Whether the annex's document yields this very record (and keys it at its time)."""
    if rec.TYPE not in _MAKES[annex.collection]:
        return False
    if SERVER_TIME in annex.fields:  # keyed by the device's time: re-read to check
        try:
            key, again = _reread(annex.collection, rec, annex.original(canonical))
        except InputError:
            return False
        return key == annex.key and any(_same_record(rec, r) or _high_before(rec, r)
                                        for r in again)
    if not annex.key.endswith(f"|{rec.time_ms}"):
        return False
    deciding = _DECIDING[annex.collection]
    touched = annex.fields.keys() | set(annex.omitted)
    try:
        if deciding is not None and not deciding[0] & touched:
            if not touched.intersection(deciding[1]):
                return True
            part = annex.original(canonical)
            return _time_of(part, _TIMES[annex.collection], "annex") == (rec.time_ms,
                                                                       rec.tz_offset_min)
        key, again = _reread(annex.collection, rec, annex.original(canonical))
    except InputError:
        return False
    return key == annex.key and any(_same_record(rec, r) or _high_before(rec, r)
                                    for r in again)


def _high_before(rec: Record, again: Record) -> bool:
    """Whether ``rec`` is ``again`` as stored before 402..500 counted as measured: every sgv
    above 400 was then a HIGH at 400 (such a record still reads back as its document)."""
    return (isinstance(rec, CgmReading) and isinstance(again, CgmReading)
            and rec.censored == "high" and rec.mgdl == SENSOR_HIGH < again.mgdl
            and _same_record(rec, replace(again, mgdl=SENSOR_HIGH, censored="high")))


#: Records whose rendering is kept (``_rendered``): about 1.35 KB each (a CGM reading with
#: its uploaded document, measured with tracemalloc), plus the record itself (about 0.9 KB)
#: once the decrypted-batch cache no longer holds it: at most about 75 MB. 32,768 records
#: are four days of 5-minute readings of 28 patients.
RENDERED_KEPT: Final = 32_768


@functools.lru_cache(maxsize=RENDERED_KEPT)
def _rendered(rec: Record) -> tuple[str, str, dict[str, Any]] | Found | None:
    """What one record reads as: ``(collection, key, fields)`` for a (believed) part of an
    uploaded document, else its own document (``legacy``; None: none). A pure function of
    the record, so it is kept for the next read of the same record (a follower's window is
    read again and again): the annex is parsed, believed and rendered once. Shared: callers
    copy what they change (``docs_from_records`` does, at the top level)."""
    annex = None if rec.ns is None else Annex.parse(rec.ns, COLLECTIONS)
    canonical = {} if annex is None else _canonical(annex.collection, rec)
    if annex is None or not _believed(rec, annex, canonical):
        return _legacy(rec)
    return annex.collection, annex.key, annex.served(canonical, ADDED[annex.collection])


def identity_of(rec: Record) -> tuple[str, str, int] | None:
    """The Nightscout document a record reads as part of (``docs_from_records``): its
    collection, identity key and the version it was uploaded as (1 for a record without a
    believable annex: a device's or an imported upload, read as a document of its own).
    None when it reads as no document."""
    if rec.ns is None and type(rec) is CgmReading:  # most records: a device's readings
        return "entries", f"sgv|{rec.time_ms}", 1  # nsrender.legacy's identity, unrendered
    done = _rendered(rec)
    if done is None:
        return None
    if isinstance(done, Found):
        return done.collection, done.key, 1
    annex = Annex.parse(rec.ns, COLLECTIONS) if rec.ns is not None else None
    return done[0], done[1], 1 if annex is None else annex.version


def docs_from_records(records: Iterable[Record]) -> list[Found]:
    """The Nightscout documents the records make: the parts of one document (same annex
    collection and key) joined into one, each record without a (believable) annex as a
    document of its own. Unordered; ``select`` sorts. Each document is a new dict; the
    values inside it are shared with later reads of the same records (``_rendered``), so a
    caller that changes a nested value copies it first."""
    out: list[Found] = []
    groups: dict[tuple[str, str], tuple[int, dict[str, Any], set[str]]] = {}
    for rec in records:
        done = _rendered(rec)
        if done is None:
            continue
        if isinstance(done, Found):
            out.append(Found(done.collection, done.key, done.time_ms, dict(done.doc)))
            continue
        collection, key, fields = done
        _, doc, types = groups.setdefault((collection, key), (rec.time_ms, {}, set()))
        if rec.TYPE in types:  # the same document stored twice: Nightscout keeps one
            continue
        types.add(rec.TYPE)
        doc.update(fields)
    out += [Found(c, k, t, doc) for (c, k), (t, doc, _) in groups.items()]
    return out


def doc_from_record(rec: Record) -> tuple[str, dict[str, Any]] | None:
    """The Nightscout collection and document one record reads as (without ``_id``): for a
    part of a document split over streams, that part. See ``docs_from_records``."""
    found = docs_from_records([rec])
    return (found[0].collection, found[0].doc) if found else None

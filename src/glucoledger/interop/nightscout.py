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

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import InputError, MalformedError, OutOfRangeError
from ..glucose.readings import (
    MAX_NOTE_CHARS,
    MAX_TIME_MS,
    MIN_TIME_MS,
    TRENDS,
    Basal,
    Bolus,
    Carbs,
    CgmReading,
    Note,
    Record,
    SmbgReading,
    parse_item,
    parse_time,
)
from . import nsannex
from .nsannex import Annex
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
    "censored",
    "censoring",
    "check_shape",
    "doc_from_record",
    "docs_from_records",
    "parse_docs",
    "parse_query",
    "profile_doc",
    "select",
    "server_time",
    "status_doc",
]

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile")
MAX_DOCS: Final = 10_000
MAX_DEPTH: Final = 8
MAX_STRING: Final = 4_096
_KEY: Final = re.compile(r"^[A-Za-z0-9_@ -]{1,64}$")
_TRENDS_NS: Final = set(TRENDS) | {"NONE"}
_INT_LIMIT: Final = 1 << 63
_KIND: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
#: Where the node marks a document's server time (a document sent without a time, or from a
#: device clock running ahead): ``{"ms": <server epoch ms>, "reason": "..."}``.
SERVER_TIME: Final = "glucoledgerServerTime"
#: A CGM's measuring range; sgv outside it is the sensor's LOW/HIGH (``censored``).
SENSOR_LOW: Final = 40
SENSOR_HIGH: Final = 400
#: sgv 0..12 are sensor error codes, not glucose (Nightscout lib/plugins/errorcodes.js).
ERROR_CODE_MAX: Final = 12

#: Fields the server adds to a document that did not have them (Nightscout does the same:
#: entries get sysTime and utcOffset, treatments created_at...), besides ``_id``.
ADDED: Final[Mapping[str, tuple[str, ...]]] = {
    "entries": ("type", "date", "dateString", "sysTime", "utcOffset"),
    "treatments": ("created_at", "utcOffset"),
    "devicestatus": ("created_at", "utcOffset"),
    "profile": ("startDate", "created_at"),
}

#: Where each collection's documents say when they happened, first present wins.
_TIMES: Final = {"entries": ("date", "dateString", "sysTime"),
                 "treatments": ("created_at", "timestamp", "date", "mills"),
                 "devicestatus": ("created_at", "date", "mills"),
                 "profile": ("startDate", "created_at", "mills", "date")}


def _dec(n: int, scale: int) -> int | float:
    """A stored scaled integer as the number an uploader most likely wrote: 30 (not 30.0)
    when whole, else the nearest float (350 mU -> 0.35)."""
    return n // scale if n % scale == 0 else n / scale


def _clean(text: str) -> str:
    """Text a Note may hold: control characters but newline and tab made spaces, trimmed."""
    return "".join(c if c >= " " or c in "\n\t" else " " for c in text).strip()[:MAX_NOTE_CHARS]


# --------------------------------------------------------------------------- input checks


def check_shape(value: Any, where: str = "body", depth: int = 0) -> None:
    """Refuse Mongo operator keys, dotted keys, deep nesting, huge strings, text that is not
    Unicode (lone surrogates) and numbers JSON cannot carry. Raises MalformedError."""
    if depth > MAX_DEPTH:
        raise MalformedError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not _KEY.match(k):
                raise MalformedError(
                    f"{where} has the field name {str(k)[:40]!r}: names are 1-64 letters, "
                    "digits, spaces, _ @ or - (no $ operators, no dots)")
            check_shape(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_DOCS:
            raise MalformedError(f"{where} holds {len(value)} items; at most {MAX_DOCS}")
        for i, v in enumerate(value):
            check_shape(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise MalformedError(f"{where} is a string of {len(value)} characters; at most "
                                 f"{MAX_STRING}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedError(f"{where} is not Unicode text (a lone surrogate \\ud8xx)"
                                 ) from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedError(f"{where} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise MalformedError(f"{where} is a whole number outside the 64-bit range")
    elif value is not None and not isinstance(value, bool):
        raise MalformedError(f"{where} has a value of type {type(value).__name__}")


def _num(doc: Mapping[str, Any], name: str, what: str, *, required: bool = True) -> float | None:
    if name not in doc or doc[name] is None:
        if required:
            raise MalformedError(f"{what} is missing the field {name!r}")
        return None
    v = doc[name]
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise MalformedError(f"{what}: {name} {v[:40]!r} is not a number") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MalformedError(f"{what}: {name} must be a number, not {type(v).__name__}")
    return float(v)


def _utc_offset(doc: Mapping[str, Any]) -> int:
    """The document's ``utcOffset`` (minutes) when it is one a clock can have, else 0."""
    offset = doc.get("utcOffset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not -720 <= offset <= 840:
        return 0
    return offset


def _text_offset(doc: Mapping[str, Any], names: Iterable[str]) -> int:
    """The UTC offset of the first ISO time text among ``names`` that has one, else 0."""
    for name in names:
        v = doc.get(name)
        if isinstance(v, str) and not v.isdigit():
            try:
                off = parse_time(v)[1]
            except MalformedError:
                continue
            if off and -720 <= off <= 840:
                return off
    return 0


def server_time(doc: Mapping[str, Any]) -> int | None:
    """The server time a document was stamped with (``SERVER_TIME``), if any.

    The node stamps a document that has no time, or whose device clock runs ahead
    (nsaccept.stamp); the stamp, not the device time, then orders the record."""
    mark = doc.get(SERVER_TIME)
    if isinstance(mark, dict):
        ms = mark.get("ms")
        if isinstance(ms, int) and not isinstance(ms, bool):
            return ms
    return None


def _time_of(doc: Mapping[str, Any], names: tuple[str, ...], what: str) -> tuple[int, int]:
    """Epoch ms and UTC offset (minutes) from the first time field present.

    A time in UTC (epoch ms, or ISO text ending in Z) takes its offset from ``utcOffset``,
    else from another time field written in local time (xDrip+ sends ``date`` in epoch ms
    and ``dateString`` as ``...T08:00:00.000+0100``): "08:00 at home" should stay 08:00.
    """
    stamped = server_time(doc)
    if stamped is not None:
        try:
            off = _time_raw(doc, names, what)[1]
        except MalformedError:
            off = 0
        t = stamped
    else:
        t, off = _time_raw(doc, names, what)
    if not MIN_TIME_MS <= t <= MAX_TIME_MS:
        raise OutOfRangeError(f"{what}: time {t} ms is outside 2000..2100; check the device "
                              "clock and that the time is in milliseconds")
    return t, off if off != 0 else _utc_offset(doc) or _text_offset(doc, names)


def _key_time(doc: Mapping[str, Any], names: tuple[str, ...], t: int) -> int:
    """The time in a document's identity: the device's own when it sent one (so a retry of
    a document stamped for a clock running ahead is the same document), else ``t``."""
    if server_time(doc) is None:
        return t
    try:
        return _time_raw(doc, names, "document")[0]
    except MalformedError:
        return t


def _time_raw(doc: Mapping[str, Any], names: Iterable[str], what: str) -> tuple[int, int]:
    for name in names:
        v = doc.get(name)
        if v is None:
            continue
        if isinstance(v, bool):
            raise MalformedError(f"{what}: {name} must be a time, not a bool")
        if isinstance(v, float) and math.isfinite(v):
            v = int(v)
        if isinstance(v, int):
            return v, 0
        if isinstance(v, str):
            if v.isdigit() and len(v) <= 16:
                return int(v), 0
            text = v.replace("Z", "+00:00") if v.endswith("Z") else v
            try:
                t, off = parse_time(text)
            except MalformedError as exc:
                raise MalformedError(f"{what}: {name}: {exc.message}") from None
            return t, off or 0
        raise MalformedError(f"{what}: {name} must be epoch ms or ISO 8601 text")
    raise MalformedError(f"{what} has no time: send one of {', '.join(names)}")


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

    Sensors measure 40..400 mg/dL; a value outside is the sensor's LOW or HIGH, stored at the
    limit it passed (40 or 400: counted below 54/70 or above 250 as it must be) and marked
    ``"LOW"``/``"HIGH"``; the annex keeps the value as sent. Fractions (a meter reading
    converted from mmol/L) round to the nearest mg/dL, halves to even."""
    value = round(sgv)
    if value < SENSOR_LOW:
        return SENSOR_LOW, "LOW"
    if value > SENSOR_HIGH:
        return SENSOR_HIGH, "HIGH"
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
        if 0 <= sgv <= ERROR_CODE_MAX:  # Nightscout's lib/plugins/errorcodes.js: no glucose
            text = f"sensor error code {int(sgv)} (no glucose value)"
            return _Split(f"sgv|{kt}", t, off, [("notes", dict(base, text=text))])
        item = dict(base, value=censored(sgv)[0])
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


def parse_docs(collection: str, body: Any) -> list[Doc]:
    """Parse a POST body (one document or a list) of ``collection``. All or nothing.

    Raises MalformedError (shape, types, injection-shaped keys) or OutOfRangeError (values
    out of range, other fields over the annex bounds); times in the future are checked when
    the items go through ``parse_batch``.
    """
    if collection not in _PARSERS:
        raise MalformedError(f"unknown collection {collection!r}")
    docs = body if isinstance(body, list) else [body]
    if not docs:
        raise OutOfRangeError(f"empty {collection} upload: send at least one document")
    if len(docs) > MAX_DOCS:
        raise MalformedError(f"{len(docs)} documents in one upload; at most {MAX_DOCS}")
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
        return key == annex.key and any(_same_record(rec, r) for r in again)
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
    return key == annex.key and any(_same_record(rec, r) for r in again)


def docs_from_records(records: Iterable[Record]) -> list[Found]:
    """The Nightscout documents the records make: the parts of one document (same annex
    collection and key) joined into one, each record without a (believable) annex as a
    document of its own. Unordered; ``select`` sorts."""
    out: list[Found] = []
    groups: dict[tuple[str, str], tuple[int, dict[str, Any], set[str]]] = {}
    for rec in records:
        annex = None if rec.ns is None else Annex.parse(rec.ns, COLLECTIONS)
        canonical = {} if annex is None else _canonical(annex.collection, rec)
        if annex is None or not _believed(rec, annex, canonical):
            found = _legacy(rec)
            if found is not None:
                out.append(found)
            continue
        _, doc, types = groups.setdefault((annex.collection, annex.key),
                                          (rec.time_ms, {}, set()))
        if rec.TYPE in types:  # the same document stored twice: Nightscout keeps one
            continue
        types.add(rec.TYPE)
        doc.update(annex.served(canonical, ADDED[annex.collection]))
    out += [Found(c, k, t, doc) for (c, k), (t, doc, _) in groups.items()]
    return out


def doc_from_record(rec: Record) -> tuple[str, dict[str, Any]] | None:
    """The Nightscout collection and document one record reads as (without ``_id``): for a
    part of a document split over streams, that part. See ``docs_from_records``."""
    found = docs_from_records([rec])
    return (found[0].collection, found[0].doc) if found else None

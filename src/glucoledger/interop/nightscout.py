"""Nightscout API v1 documents <-> glucoledger records. Pure: no I/O, no clock.

What uploaders send (xDrip+, Loop, Trio, AndroidAPS in v1 mode; Nightscout's own
``lib/server/entries.js``, ``treatments.js``, ``devicestatus.js``, ``profile.js``) becomes
the input items of ``glucose.readings.parse_batch``, one list per stream:

=====================================  ==================================================
Nightscout                             glucoledger
=====================================  ==================================================
entries ``type: sgv`` (sgv, direction)  ``cgm`` reading (trend = direction)
entries ``type: mbg`` (mbg)             ``smbg`` reading
entries ``type: cal`` (slope, ...)      ``notes``: ``"ns:cal {json}"``
treatments with ``insulin``             ``insulin`` bolus: ``automated`` when SMB/automatic,
                                        ``extended`` for a square/combo bolus with duration
treatments ``Temp Basal``               ``insulin`` basal ``temp`` (rate, duration min)
treatments with ``carbs``               ``carbs``
treatments ``BG Check`` (glucose)       ``smbg`` reading (glucose, units)
other treatments (Note, Site Change..)  ``notes``: ``"ns:treatment {eventType, notes..}"``
devicestatus                           ``notes``: ``"ns:devicestatus {json subset}"``
profile (default store)                ``settings``
=====================================  ==================================================

Deduplication follows Nightscout: an entry is the same entry when (type, date) match; a
treatment when (eventType, created_at) match; a devicestatus when (device, created_at) do.
``Doc.key`` carries that identity; the node keeps a keyed index of keys already stored.

Security: Nightscout passes queries and documents to MongoDB, so it strips operator keys; we
never touch MongoDB but refuse the same shapes (keys starting with ``$`` or holding ``.``,
nesting deeper than 8, strings over 4 kB) so injection attempts get a clear 400. Fields
Nightscout clients are known to send and that glucoledger does not keep (noise, rssi,
filtered...) are accepted and dropped; documents of unknown ``type`` are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..errors import MalformedError, OutOfRangeError
from ..glucose.readings import (
    MAX_TIME_MS,
    MIN_TIME_MS,
    TRENDS,
    Basal,
    Bolus,
    Carbs,
    CgmReading,
    DeviceSettings,
    Note,
    Record,
    SmbgReading,
    parse_time,
)
from ..glucose.units import mgdl_to_mmol

__all__ = [
    "COLLECTIONS",
    "Doc",
    "Query",
    "doc_from_record",
    "parse_docs",
    "parse_query",
    "profile_doc",
    "select",
    "status_doc",
]

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile")
MAX_DOCS: Final = 10_000
MAX_DEPTH: Final = 8
MAX_STRING: Final = 4_096
MAX_NOTE: Final = 2_000
DEFAULT_COUNT: Final = {"entries": 10, "treatments": 100, "devicestatus": 10, "profile": 10}
MAX_COUNT: Final = 10_000
_KEY: Final = re.compile(r"^[A-Za-z0-9_@ -]{1,64}$")
_TRENDS_NS: Final = set(TRENDS) | {"NONE"}


def _fmt_iso(time_ms: int, offset_min: int = 0) -> str:
    zone = UTC if offset_min == 0 else None
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    if zone is None:
        from datetime import timezone

        moment = moment.astimezone(timezone(timedelta(minutes=offset_min)))
        return moment.isoformat(timespec="milliseconds")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


# --------------------------------------------------------------------------- input checks


def check_shape(value: Any, where: str = "body", depth: int = 0) -> None:
    """Refuse Mongo operator keys, dotted keys, deep nesting and huge strings."""
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
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedError(f"{where} is not a finite number")
    elif value is not None and not isinstance(value, (int, bool)):
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


def _time_of(doc: Mapping[str, Any], names: Iterable[str], what: str) -> tuple[int, int]:
    """Epoch ms and UTC offset (minutes) from the first time field present."""
    t, off = _time_raw(doc, names, what)
    if not MIN_TIME_MS <= t <= MAX_TIME_MS:
        raise OutOfRangeError(f"{what}: time {t} ms is outside 2000..2100; check the device "
                              "clock and that the time is in milliseconds")
    return t, off


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
            offset = doc.get("utcOffset", 0)
            if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > 16 * 60:
                offset = 0
            return v, offset
        if isinstance(v, str):
            if v.isdigit() and len(v) <= 16:
                return int(v), 0
            text = v.replace("Z", "+00:00") if v.endswith("Z") else v
            t, off = parse_time(text)
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
    items: tuple[tuple[str, dict[str, Any]], ...]  # (stream, parse_batch item)
    echo: dict[str, Any] = field(default_factory=dict)


def _entry(doc: dict[str, Any], what: str) -> Doc:
    kind = doc.get("type") or ("sgv" if "sgv" in doc else "mbg" if "mbg" in doc else None)
    if kind not in ("sgv", "mbg", "cal"):
        raise MalformedError(f"{what}: type {str(kind)[:20]!r} is not sgv, mbg or cal")
    t, off = _time_of(doc, ("date", "dateString", "sysTime"), what)
    echo = dict(doc, type=kind, date=t, dateString=_fmt_iso(t), sysTime=_fmt_iso(t),
                utcOffset=off)
    if kind == "sgv":
        value = _num(doc, "sgv", what)
        direction = doc.get("direction")
        if direction is not None and direction not in _TRENDS_NS:
            raise MalformedError(f"{what}: direction {str(direction)[:30]!r} is not one of "
                                 f"{', '.join(sorted(_TRENDS_NS))}")
        item: dict[str, Any] = {"time": t, "tz_offset_min": off, "value": value}
        if direction is not None:
            item["trend"] = direction
        return Doc("entries", f"sgv|{t}", t, (("cgm", item),), echo)
    if kind == "mbg":
        value = _num(doc, "mbg", what)
        return Doc("entries", f"mbg|{t}", t,
                   (("smbg", {"time": t, "tz_offset_min": off, "value": value}),), echo)
    cal = {k: _num(doc, k, what, required=False) for k in ("slope", "intercept", "scale")}
    text = "ns:cal " + json.dumps({k: v for k, v in cal.items() if v is not None},
                                  sort_keys=True)
    return Doc("entries", f"cal|{t}", t,
               (("notes", {"time": t, "tz_offset_min": off, "text": text}),), echo)


_BOLUS_EVENTS: Final = ("Correction Bolus", "Meal Bolus", "Snack Bolus", "Combo Bolus",
                        "SMB", "Bolus")


def _treatment(doc: dict[str, Any], what: str) -> Doc:
    event = doc.get("eventType", "<none>")
    if not isinstance(event, str) or not 1 <= len(event) <= 64:
        raise MalformedError(f"{what}: eventType must be text of 1-64 characters")
    t, off = _time_of(doc, ("created_at", "timestamp", "date", "mills"), what)
    base = {"time": t, "tz_offset_min": off}
    items: list[tuple[str, dict[str, Any]]] = []
    insulin = _num(doc, "insulin", what, required=False)
    if insulin:
        automated = (doc.get("automatic") is True or doc.get("isSMB") is True
                     or doc.get("type") == "SMB" or event == "SMB")
        duration = _num(doc, "duration", what, required=False) or 0
        extended = (doc.get("type") == "square" or event == "Combo Bolus") and duration > 0
        kind = "automated" if automated else "extended" if extended else "normal"
        item = dict(base, type="bolus", kind=kind, insulin=insulin)
        if kind == "extended":
            item["duration_min"] = duration
        items.append(("insulin", item))
    if event in ("Temp Basal", "TempBasal"):
        absolute = _num(doc, "absolute", what, required=False)
        rate = _num(doc, "rate", what) if absolute is None else absolute
        minutes = _num(doc, "duration", what)
        assert minutes is not None
        if minutes > 0:
            items.append(("insulin", dict(base, type="basal", kind="temp", rate=rate,
                                          duration_min=minutes)))
    carbs = _num(doc, "carbs", what, required=False)
    if carbs:
        items.append(("carbs", dict(base, grams=carbs)))
    if event == "BG Check" or ("glucose" in doc and doc.get("glucoseType") == "Finger"):
        glucose = _num(doc, "glucose", what)
        units = doc.get("units") or "mg/dL"
        items.append(("smbg", dict(base, value=glucose, units=units)))
    if not items or doc.get("notes"):
        keep = {k: doc[k] for k in ("eventType", "notes", "reason", "duration", "targetTop",
                                    "targetBottom", "enteredBy") if doc.get(k) is not None}
        keep["eventType"] = event
        text = "ns:treatment " + json.dumps(keep, sort_keys=True, ensure_ascii=False)
        items.append(("notes", dict(base, text=text[:MAX_NOTE])))
    echo = dict(doc, eventType=event, created_at=_fmt_iso(t), utcOffset=off)
    return Doc("treatments", f"{event}|{t}", t, tuple(items), echo)


_STATUS_KEEP: Final = ("device", "uploaderBattery", "uploader", "pump", "loop", "openaps",
                       "xdripjs", "override", "configuration")


def _compact(value: Any, budget: int) -> Any:
    """Drop the biggest nested parts until the JSON text fits ``budget`` characters."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if len(text) <= budget or not isinstance(value, dict):
        return value
    out = dict(value)
    for k in sorted(out, key=lambda k: -len(json.dumps(out[k], ensure_ascii=False))):
        if len(json.dumps(out, sort_keys=True, ensure_ascii=False)) <= budget:
            break
        out[k] = _compact(out[k], budget // 4) if isinstance(out[k], dict) else None
        if out[k] is None or len(json.dumps(out[k], ensure_ascii=False)) > budget // 4:
            del out[k]
    return out


def _devicestatus(doc: dict[str, Any], what: str) -> Doc:
    t, off = _time_of(doc, ("created_at", "date", "mills"), what)
    device = doc.get("device", "unknown")
    if not isinstance(device, str):
        raise MalformedError(f"{what}: device must be text")
    keep = {k: doc[k] for k in _STATUS_KEEP if k in doc}
    keep["device"] = device
    text = "ns:devicestatus " + json.dumps(_compact(keep, MAX_NOTE - 20), sort_keys=True,
                                           ensure_ascii=False)
    echo = dict(doc, created_at=_fmt_iso(t), utcOffset=off)
    return Doc("devicestatus", f"{device}|{t}", t,
               (("notes", {"time": t, "tz_offset_min": off, "text": text[:MAX_NOTE]}),), echo)


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


def _sched(store: dict[str, Any], name: str, what: str) -> list[list[Any]]:
    value = store.get(name)
    if not isinstance(value, list) or not value:
        raise MalformedError(f"{what}: the profile needs a non-empty {name} schedule")
    return [[_hhmm(e, f"{what}.{name}"), _num(e, "value", f"{what}.{name}")] for e in value]


def _profile(doc: dict[str, Any], what: str) -> Doc:
    t, off = _time_of(doc, ("startDate", "created_at", "mills", "date"), what)
    stores = doc.get("store")
    default = doc.get("defaultProfile")
    if not isinstance(stores, dict) or not stores:
        raise MalformedError(f"{what}: a profile needs a store of named profiles")
    name = default if isinstance(default, str) and default in stores else sorted(stores)[0]
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
    echo = dict(doc, startDate=_fmt_iso(t), defaultProfile=name)
    return Doc("profile", f"profile|{t}", t, (("settings", item),), echo)


_PARSERS: Final = {"entries": _entry, "treatments": _treatment,
                   "devicestatus": _devicestatus, "profile": _profile}


def parse_docs(collection: str, body: Any) -> list[Doc]:
    """Parse a POST body (one document or a list) of ``collection``. All or nothing.

    Raises MalformedError (shape, types, injection-shaped keys) or OutOfRangeError; the
    values themselves are checked when the items go through ``parse_batch``.
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
        d = {k: v for k, v in d.items() if k != "_id"}
        doc = _PARSERS[collection](d, what)
        if doc.key in seen:  # a duplicate inside one upload: Nightscout keeps one
            continue
        seen.add(doc.key)
        out.append(doc)
    return out


# --------------------------------------------------------------------------- reading back


def _note_doc(rec: Note) -> tuple[str, dict[str, Any]] | None:
    for prefix, coll in (("ns:devicestatus ", "devicestatus"), ("ns:treatment ", "treatments"),
                         ("ns:cal ", "entries")):
        if rec.text.startswith(prefix):
            try:
                body = json.loads(rec.text[len(prefix):])
            except ValueError:
                body = {}
            if coll == "entries":
                return coll, dict(body, type="cal")
            return coll, body if isinstance(body, dict) else {}
    return "treatments", {"eventType": "Note", "notes": rec.text}


def doc_from_record(rec: Record) -> tuple[str, dict[str, Any]] | None:
    """The Nightscout collection and document for a stored record (without ``_id``)."""
    t, off = rec.time_ms, rec.tz_offset_min
    iso = _fmt_iso(t)
    if isinstance(rec, CgmReading):
        doc: dict[str, Any] = {"type": "sgv", "sgv": rec.mgdl, "date": t, "dateString": iso,
                               "sysTime": iso, "utcOffset": off, "device": "glucoledger"}
        if rec.trend is not None:
            doc["direction"] = rec.trend
        return "entries", doc
    if isinstance(rec, SmbgReading):
        return "entries", {"type": "mbg", "mbg": rec.mgdl, "date": t, "dateString": iso,
                           "sysTime": iso, "utcOffset": off, "device": "glucoledger"}
    common = {"created_at": iso, "timestamp": iso, "mills": t, "utcOffset": off,
              "enteredBy": "glucoledger"}
    if isinstance(rec, Bolus):
        doc = dict(common, eventType="Correction Bolus", insulin=rec.units_milli / 1000,
                   type="SMB" if rec.kind == "automated" else
                   "square" if rec.kind == "extended" else "normal")
        if rec.kind == "automated":
            doc.update(automatic=True, isSMB=True)
        if rec.duration_ms:
            doc["duration"] = rec.duration_ms / 60_000
        return "treatments", doc
    if isinstance(rec, Basal):
        rate = rec.rate_milli_u_per_h / 1000
        return "treatments", dict(common, eventType="Temp Basal", rate=rate, absolute=rate,
                                  duration=rec.duration_ms / 60_000, temp="absolute")
    if isinstance(rec, Carbs):
        return "treatments", dict(common, eventType="Carb Correction",
                                  carbs=rec.grams_tenths / 10)
    if isinstance(rec, Note):
        found = _note_doc(rec)
        if found is None:
            return None
        coll, body = found
        if coll == "entries":
            return coll, dict(body, date=t, dateString=iso, sysTime=iso, utcOffset=off)
        return coll, dict(common, **body) if coll == "treatments" else dict(
            body, created_at=iso, mills=t, utcOffset=off)
    if isinstance(rec, DeviceSettings):
        return "profile", profile_doc(rec)
    return None


def _sched_out(entries: Iterable[tuple[int, ...]], scale: float) -> list[dict[str, Any]]:
    return [{"time": f"{e[0] // 60:02d}:{e[0] % 60:02d}", "timeAsSeconds": e[0] * 60,
             "value": e[1] / scale} for e in entries]


def profile_doc(rec: DeviceSettings) -> dict[str, Any]:
    iso = _fmt_iso(rec.time_ms)
    store = {"dia": 6, "timezone": "UTC", "units": "mg/dl",
             "basal": _sched_out(rec.basal_schedule, 1000),
             "carbratio": _sched_out(rec.carb_ratios, 10),
             "sens": _sched_out(rec.sensitivities, 1),
             "target_low": _sched_out(((e[0], e[1]) for e in rec.targets), 1),
             "target_high": _sched_out(((e[0], e[2]) for e in rec.targets), 1)}
    return {"defaultProfile": "Default", "startDate": iso, "mills": rec.time_ms,
            "created_at": iso, "units": "mg/dl", "store": {"Default": store}}


# --------------------------------------------------------------------------- queries

_TIME_FIELDS: Final = ("date", "dateString", "sysTime", "created_at", "timestamp", "mills",
                       "startDate")
_EQ_FIELDS: Final = ("type", "eventType", "device")
_OPS: Final = ("$gte", "$gt", "$lte", "$lt", "$eq")
_FIND: Final = re.compile(r"^find\[([A-Za-z_]{1,32})\](?:\[(\$[a-z]{2,3})\])?$")


@dataclass(frozen=True)
class Query:
    """A Nightscout v1 ``find``/``count`` query reduced to what it can mean for us."""

    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # exclusive
    equals: tuple[tuple[str, str], ...] = ()
    count: int = 10


def _query_time(value: str, name: str) -> int:
    if re.fullmatch(r"-?\d{1,16}", value):
        return int(value)
    text = value.replace("Z", "+00:00") if value.endswith("Z") else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedError(f"find[{name}] value {value[:40]!r} is neither epoch ms nor an "
                             "ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_query(collection: str, params: Iterable[tuple[str, str]],
                extra_type: str | None = None) -> Query:
    """Parse query parameters (``find[date][$gte]=...``, ``count=...``). Raises MalformedError."""
    start: int | None = None
    end: int | None = None
    equals: list[tuple[str, str]] = []
    if extra_type:
        equals.append(("type", extra_type))
    count = DEFAULT_COUNT.get(collection, 10)
    for name, value in params:
        if name in ("token", "secret"):
            continue
        if name == "count":
            if not re.fullmatch(r"\d{1,6}", value):
                raise MalformedError(f"count must be a whole number, not {value[:20]!r}")
            n = int(value)
            count = DEFAULT_COUNT.get(collection, 10) if n == 0 else min(n, MAX_COUNT)
            continue
        m = _FIND.match(name)
        if m is None:
            raise MalformedError(
                f"query parameter {name[:40]!r} is not supported: use find[field][$op] "
                f"({', '.join(_OPS)}) on {', '.join(_TIME_FIELDS)}, find[type], or count")
        fname, op = m.group(1), m.group(2) or "$eq"
        if fname in _TIME_FIELDS:
            if op not in _OPS:
                raise MalformedError(f"operator {op} is not supported; use {', '.join(_OPS)}")
            ms = _query_time(value, fname)
            if op in ("$gte", "$eq"):
                start = ms if start is None else max(start, ms)
            if op == "$gt":
                start = ms + 1 if start is None else max(start, ms + 1)
            if op in ("$lt",):
                end = ms if end is None else min(end, ms)
            if op in ("$lte", "$eq"):
                end = ms + 1 if end is None else min(end, ms + 1)
        elif fname in _EQ_FIELDS and op == "$eq":
            if len(value) > 64:
                raise MalformedError(f"find[{fname}] value is too long")
            equals.append((fname, value))
        else:
            raise MalformedError(f"find[{fname}]{'' if op == '$eq' else f'[{op}]'} is not "
                                 f"supported; time fields: {', '.join(_TIME_FIELDS)}; "
                                 f"equality: {', '.join(_EQ_FIELDS)}")
    return Query(start, end, tuple(equals), count)


def _doc_time(doc: Mapping[str, Any]) -> int:
    for name in ("date", "mills"):
        if isinstance(doc.get(name), int):
            return int(doc[name])
    return 0


def select(docs: Iterable[dict[str, Any]], query: Query) -> list[dict[str, Any]]:
    """Apply a query: time window, equalities, newest first, at most ``count``."""
    out = []
    for d in docs:
        t = _doc_time(d)
        if query.start_ms is not None and t < query.start_ms:
            continue
        if query.end_ms is not None and t >= query.end_ms:
            continue
        if any(str(d.get(k)) != v for k, v in query.equals):
            continue
        out.append(d)
    out.sort(key=_doc_time, reverse=True)
    return out[:query.count]


def status_doc(*, name: str, version: str, now_ms: int, units: str = "mg/dl",
               authorized: bool = False) -> dict[str, Any]:
    """GET /api/v1/status.json: what uploaders and followers check before talking to us."""
    return {
        "status": "ok",
        "name": name,
        "version": version,
        "serverTime": _fmt_iso(now_ms),
        "serverTimeEpoch": now_ms,
        "apiEnabled": True,
        "careportalEnabled": True,
        "boluscalcEnabled": False,
        "head": "glucoledger",
        "settings": {"units": units, "timeFormat": 24, "theme": "default",
                     "enable": ["careportal", "iob", "cob", "basal"],
                     "authDefaultRoles": "denied"},
        "extendedSettings": {"devicestatus": {"advanced": True}},
        "authorized": {"token": "", "sub": "", "permissionGroups": []} if authorized else None,
        "units_note": f"1 mmol/L = {1 / mgdl_to_mmol(1):.5f} mg/dL",
    }

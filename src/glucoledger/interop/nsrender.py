"""Nightscout documents made from records alone. Pure.

For records without an annex (uploaded by other means than Nightscout, or stored before
annexes existed; see interop/nightscout.py): one document per record, as glucoledger always
rendered them (``enteredBy``/``device`` "glucoledger", a bolus as a Correction Bolus...);
notes written as ``ns:treatment {json}``, ``ns:devicestatus {json}`` or ``ns:cal {json}``
read back as those documents. Also the profile document of settings and the status document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..glucose.readings import (
    Basal,
    Bolus,
    Carbs,
    CgmReading,
    DeviceSettings,
    Note,
    Record,
    SmbgReading,
)
from ..glucose.units import mgdl_to_mmol
from .nsquery import Found

__all__ = ["DELTA_GAP_MS", "THRESHOLDS", "iso", "legacy", "profile_doc", "separated", "status_doc",
           "with_deltas"]


def iso(time_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds, as Nightscout writes times: 2026-11-01T07:00:00.000Z."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def _legacy_note(rec: Note) -> tuple[str, dict[str, Any]]:
    for prefix, coll in (("ns:devicestatus ", "devicestatus"), ("ns:treatment ", "treatments"),
                         ("ns:cal ", "entries")):
        if rec.text.startswith(prefix):
            try:
                body = json.loads(rec.text[len(prefix):])
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            return coll, dict(body, type="cal") if coll == "entries" else body
    return "treatments", {"eventType": "Note", "notes": rec.text}


#: The longest gap over which ``with_deltas`` compares two readings (xDrip+ uploads a
#: delta against the previous reading of the last few minutes, none after a gap).
DELTA_GAP_MS: Final = 10 * 60_000


def with_deltas(found: Iterable[Found]) -> list[Found]:
    """The documents, with ``delta`` (mg/dL change since the previous reading) added to the
    sgv entries this node rendered itself (``device`` glucoledger: records that came without
    a Nightscout document), as an uploader adds it; clients such as py-nightscout require it.
    An entry with no reading in the ``DELTA_GAP_MS`` before it gets none; uploaded entries
    are answered as they were sent."""
    out = list(found)
    mine = sorted((i for i, f in enumerate(out) if f.collection == "entries"
                   and f.doc.get("device") == "glucoledger" and f.doc.get("type") == "sgv"
                   and "delta" not in f.doc), key=lambda i: out[i].time_ms)
    for before, i in zip([None, *mine], mine, strict=False):
        if before is None:
            continue
        prev, cur = out[before], out[i]
        if 0 < cur.time_ms - prev.time_ms <= DELTA_GAP_MS:
            out[i] = Found(cur.collection, cur.key, cur.time_ms,
                           dict(cur.doc, delta=cur.doc["sgv"] - prev.doc["sgv"]))
    return out


def legacy(rec: Record) -> Found | None:
    """The document a record without an annex reads as (its collection, identity, fields)."""
    t, off = rec.time_ms, rec.tz_offset_min
    at = iso(t)
    entry = {"date": t, "dateString": at, "sysTime": at, "utcOffset": off}
    common = {"created_at": at, "timestamp": at, "mills": t, "utcOffset": off,
              "enteredBy": "glucoledger"}
    doc: dict[str, Any]
    if isinstance(rec, CgmReading):
        doc = dict(entry, type="sgv", sgv=rec.mgdl, device="glucoledger")
        if rec.trend is not None:
            doc["direction"] = rec.trend
        return Found("entries", f"sgv|{t}", t, doc)
    if isinstance(rec, SmbgReading):
        return Found("entries", f"mbg|{t}", t, dict(entry, type="mbg", mbg=rec.mgdl,
                                                     device="glucoledger"))
    if isinstance(rec, Bolus):
        doc = dict(common, eventType="Correction Bolus", insulin=rec.units_milli / 1000,
                   type="SMB" if rec.kind == "automated" else
                   "square" if rec.kind == "extended" else "normal")
        if rec.kind == "automated":
            doc.update(automatic=True, isSMB=True)
        if rec.duration_ms:
            doc["duration"] = rec.duration_ms / 60_000
        return Found("treatments", f"Correction Bolus|{t}", t, doc)
    if isinstance(rec, Basal):
        rate = rec.rate_milli_u_per_h / 1000
        return Found("treatments", f"Temp Basal|{t}", t, dict(
            common, eventType="Temp Basal", rate=rate, absolute=rate,
            duration=rec.duration_ms / 60_000, temp="absolute"))
    if isinstance(rec, Carbs):
        return Found("treatments", f"Carb Correction|{t}", t, dict(
            common, eventType="Carb Correction", carbs=rec.grams_tenths / 10))
    if isinstance(rec, Note):
        coll, body = _legacy_note(rec)
        if coll == "entries":
            return Found(coll, f"cal|{t}", t, dict(body, **entry))
        if coll == "treatments":
            doc = dict(common, **body)
            return Found(coll, f"{doc.get('eventType')}|{t}", t, doc)
        doc = dict(body, created_at=at, mills=t, utcOffset=off)
        return Found(coll, f"{doc.get('device')}|{t}", t, doc)
    if isinstance(rec, DeviceSettings):
        return Found("profile", f"profile|{t}", t, profile_doc(rec))
    return None  # pragma: no cover - Record is the union above


def _sched_out(entries: Iterable[tuple[int, ...]], scale: float) -> list[dict[str, Any]]:
    return [{"time": f"{e[0] // 60:02d}:{e[0] % 60:02d}", "timeAsSeconds": e[0] * 60,
             "value": e[1] / scale} for e in entries]


def profile_doc(rec: DeviceSettings) -> dict[str, Any]:
    """A Nightscout profile document made from settings alone (one store, "Default")."""
    at = iso(rec.time_ms)
    store = {"dia": 6, "timezone": "UTC", "units": "mg/dl",
             "basal": _sched_out(rec.basal_schedule, 1000),
             "carbratio": _sched_out(rec.carb_ratios, 10),
             "sens": _sched_out(rec.sensitivities, 1),
             "target_low": _sched_out(((e[0], e[1]) for e in rec.targets), 1),
             "target_high": _sched_out(((e[0], e[2]) for e in rec.targets), 1)}
    return {"defaultProfile": "Default", "startDate": at, "mills": rec.time_ms,
            "created_at": at, "units": "mg/dl", "store": {"Default": store}}


#: Nightscout's ``settings.thresholds`` (mg/dL), which followers (xDrip+, Nightguard, watch
#: faces) colour readings by: the International Consensus on Time in Range (Battelino et al.,
#: Diabetes Care 2019): above 250 very high, 70..180 in range, below 54 very low.
THRESHOLDS: Final = {"bgHigh": 250, "bgTargetTop": 180, "bgTargetBottom": 70, "bgLow": 54}


def separated(docs: Iterable[dict[str, Any]], sep: str) -> str:
    """Entries as ``.csv``/``.tsv``/``.txt`` (cgm-remote-monitor lib/api/entries/index.js
    ``formatWithSeparator``): dateString, date, sgv, direction, device, each JSON-encoded
    (null as empty), rows joined by CRLF."""
    rows = []
    for d in docs:
        cells = [d.get(k) for k in ("dateString", "date", "sgv", "direction", "device")]
        rows.append(sep.join("" if c is None else json.dumps(c) for c in cells))
    return "\r\n".join(rows)


def status_doc(*, name: str, version: str, now_ms: int, units: str = "mg/dl",
               authorized: bool = False) -> dict[str, Any]:
    """GET /api/v1/status.json: what uploaders and followers check before talking to us."""
    return {
        "status": "ok",
        "name": name,
        "version": version,
        "serverTime": iso(now_ms),
        "serverTimeEpoch": now_ms,
        "apiEnabled": True,
        "careportalEnabled": True,
        "boluscalcEnabled": False,
        "head": "glucoledger",
        "settings": {"units": units, "timeFormat": 24, "theme": "default",
                     "enable": ["careportal", "iob", "cob", "basal"],
                     "authDefaultRoles": "denied", "thresholds": dict(THRESHOLDS)},
        "extendedSettings": {"devicestatus": {"advanced": True}},
        "authorized": {"token": "", "sub": "", "permissionGroups": []} if authorized else None,
        "units_note": f"1 mmol/L = {1 / mgdl_to_mmol(1):.5f} mg/dL",
    }

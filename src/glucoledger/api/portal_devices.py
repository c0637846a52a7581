"""Sensor age and batteries, from what the uploaders already send. Pure: no clock, no I/O.

Sources (Nightscout API v1 documents, kept whole in each record's annex, interop/nsannex.py):

- sensor start: a treatment whose ``eventType`` is ``Sensor Start`` or ``Sensor Change``
  (what xDrip+, AndroidAPS and Nightscout's Careportal send; Nightscout's ``sage`` plugin
  reads the same two), or a devicestatus ``xdripjs.sessionStart`` (ms; xDrip-js, Lookout,
  Logger; Nightscout's ``xdripjs`` plugin);
- phone / uploader battery: devicestatus ``uploader.battery`` (Loop, AndroidAPS, xDrip+) or
  the older top-level ``uploaderBattery`` (AndroidAPS, Nightscout's ``upbat`` plugin);
- pump battery: devicestatus ``pump.battery.percent`` (Loop, OpenAPS, AndroidAPS).

Invariants: the newest report wins (by the record's time); a battery that is not a number
in 0..100 and a session start later than the status reporting it (or over 60 days before
it) are skipped, never shown; absence is ``None`` and the page says "unknown" in words,
with the reason. Nothing here reaches the ledger: it only reads released records, so a
reader sees sensor and battery only when her grant includes the ``notes`` stream (raw).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import MalformedError
from ..glucose.annex import annex_value
from ..glucose.readings import Note

__all__ = ["SENSOR_EVENTS", "DeviceStatus", "Reading", "age_words", "device_status",
           "is_device_note"]

SENSOR_EVENTS: Final = ("Sensor Start", "Sensor Change")
_DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class Reading:
    """One reported value: ``value`` (percent, or a start time in ms), when it was reported,
    and by which device (as the uploader named itself)."""

    value: int
    time_ms: int
    device: str


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """The newest sensor start, phone battery and pump battery, each None when not sent."""

    sensor_start: Reading | None = None
    phone_battery: Reading | None = None
    pump_battery: Reading | None = None


def _annex(rec: Note) -> tuple[str, dict[str, Any]] | None:
    if not rec.ns:
        return None
    try:
        v = annex_value(rec.ns)
    except MalformedError:
        return None
    c, f = v.get("c"), v.get("f", {})
    return (c, f) if isinstance(c, str) and isinstance(f, dict) else None


def is_device_note(rec: object) -> bool:
    """A note that only says "device status from ..." (a devicestatus document): machine
    chatter the timeline leaves out."""
    if not isinstance(rec, Note):
        return False
    a = _annex(rec)
    return a is not None and a[0] == "devicestatus"


def _percent(v: object) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return round(v) if 0 <= v <= 100 else None


def _path(doc: Mapping[str, Any], *keys: str) -> object:
    cur: object = doc
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


def _device(rec: Note, fields: Mapping[str, Any]) -> str:
    name = fields.get("device")
    if isinstance(name, str) and name:
        return name[:64]
    prefix = "device status from "
    return rec.text[len(prefix):][:64] if rec.text.startswith(prefix) else "uploader"


def _newer(held: Reading | None, new: Reading) -> Reading:
    return new if held is None or new.time_ms >= held.time_ms else held


def device_status(records: Iterable[object]) -> DeviceStatus:
    """The newest sensor start and batteries among released ``records`` (any order)."""
    sensor: Reading | None = None
    phone: Reading | None = None
    pump: Reading | None = None
    for rec in records:
        if not isinstance(rec, Note):
            continue
        a = _annex(rec)
        coll, f = a if a is not None else ("", {})
        event = f.get("eventType", rec.text if coll in ("", "treatments") else None)
        if coll in ("", "treatments") and event in SENSOR_EVENTS:
            sensor = _newer(sensor, Reading(rec.time_ms, rec.time_ms,
                                            str(f.get("enteredBy", "uploader"))[:64]))
            continue
        if coll != "devicestatus":
            continue
        dev = _device(rec, f)
        start = _path(f, "xdripjs", "sessionStart")
        if (isinstance(start, int) and not isinstance(start, bool)
                and rec.time_ms - 60 * _DAY_MS <= start <= rec.time_ms):
            sensor = _newer(sensor, Reading(start, start, dev))
        for value in (_path(f, "uploader", "battery"), f.get("uploaderBattery")):
            if (pct := _percent(value)) is not None:
                phone = _newer(phone, Reading(pct, rec.time_ms, dev))
                break
        if (pct := _percent(_path(f, "pump", "battery", "percent"))) is not None:
            pump = _newer(pump, Reading(pct, rec.time_ms, dev))
    return DeviceStatus(sensor, phone, pump)


def age_words(since_ms: int, now_ms: int) -> str:
    """``3 days 4 hours`` (``under an hour`` for less)."""
    hours = max(0, now_ms - since_ms) // 3_600_000
    days, hours = divmod(hours, 24)
    parts = ([f"{days} day{'s' if days != 1 else ''}"] if days else []) + (
        [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else [])
    return " ".join(parts) or "under an hour"

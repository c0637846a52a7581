"""Whole local days: the period "the last N days" means in a report, in the patient's zone.

A report or summary of "the last 14 days" covers the 14 whole local days that ended at the
patient's last local midnight: ``[midnight(today - N), midnight(today))`` in her time zone.
It ends at the last COMPLETE day, not now, because the AGP and the consensus metrics describe
whole days (Battelino et al., Diabetes Care 2019;42:1593: 14 days of data, % time active over
the period): an unfinished day would count its hours still to come as sensor-off time, and
every number would drift from one hour to the next. So the same data gives the same numbers
whatever the time of day of the read, and the window only moves at local midnight. A day
with a daylight-saving change lasts 23 or 25 hours; the period is counted in local days, so
it is N x 24 hours plus or minus that hour. Today's readings are in raw reads (a follower,
the portal's "now"), not in the report of the last N days.

The zone: the patient's own time-zone preference (the portal's preferences file,
``portal-prefs.json``, as api/portal_view.py ``Prefs`` writes it), else the node's zone
(``TZ``, else ``/etc/localtime``), else UTC. The report header names it.

Under summary grants only (``state.consent.summary_only``) the days are UTC days
(``reader_days``): the consent decision permits such a reader whole UTC days and nothing
else (``state.consent._check_days``: the state knows no zone, and a grid the reader could
shift would let two overlapping summaries give single readings by subtraction).

The state machine never sees a zone: the edge turns N days into an absolute window here, and
``state.consent.granted_span`` lets a ``last_days`` grant permit it (at most N days and an
hour, starting at most N + 1 days and an hour ago), so every node decides alike.

Raises nothing for an unknown or unreadable preference: it falls back to the next source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import GlucoledgerError
from ..files import read_json
from ..state.consent import summary_only
from ..state.store import State

__all__ = ["LocalDays", "last_days", "node_zone", "patient_zone", "reader_days", "whole_days",
           "zone_named"]

PREFS_FILE: Final = "portal-prefs.json"
_ZONEINFO_DIRS: Final = ("/usr/share/zoneinfo/", "/usr/lib/zoneinfo/", "/etc/zoneinfo/")


def zone_named(name: object) -> ZoneInfo | None:
    """The IANA zone ``name`` names, or None for anything else a person may type: unknown
    names, a folder of the zone database ("Europe": IsADirectoryError), paths, NUL bytes."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None



def node_zone() -> tuple[str, tzinfo]:
    """(name, zone) of the node: ``TZ`` if it names an IANA zone, else the zone
    ``/etc/localtime`` links to, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    zone = zone_named(tz)
    if zone is not None:
        return tz, zone
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:  # pragma: no cover - realpath does not fail on Linux
        target = ""
    for base in _ZONEINFO_DIRS:
        if target.startswith(base):
            name = target[len(base):]
            zone = zone_named(name)
            if zone is not None:
                return name, zone
    return "UTC", UTC


def patient_zone(data_dir: Path, patient: bytes) -> tuple[str, tzinfo]:
    """(name, zone) of ``patient``: her portal preference, else the node's (``node_zone``)."""
    path = Path(data_dir) / PREFS_FILE
    try:
        doc = read_json(path, what="portal preferences") if path.exists() else None
    except GlucoledgerError:  # a damaged side file: the node's zone, as the portal does
        doc = None
    prefs = doc.get(patient.hex()) if isinstance(doc, dict) else None
    name = prefs.get("tz") if isinstance(prefs, dict) else None
    if name == "UTC":
        return "UTC", UTC
    zone = zone_named(name)
    if zone is not None and isinstance(name, str):
        return name, zone
    return node_zone()


@dataclass(frozen=True, slots=True)
class LocalDays:
    """``days`` whole local days in ``zone`` (named ``zone_name``): ``[start_ms, end_ms)``."""

    days: int
    start_ms: int
    end_ms: int
    zone_name: str
    zone: tzinfo

    def window(self) -> dict[str, int]:
        """The request window (``{"from", "to"}``, epoch ms)."""
        return {"from": self.start_ms, "to": self.end_ms}

    @property
    def named_zone(self) -> tuple[str, tzinfo]:
        """(name, zone), as the report header takes it (node/report.py)."""
        return self.zone_name, self.zone


def _midnight(day: date, zone: tzinfo) -> int:
    """The first instant of local ``day`` in ``zone`` (epoch ms). Where a daylight-saving
    change skips midnight, ``fold=0`` maps 00:00 through the offset before the change,
    which is the instant of the change: the day's first instant again (PEP 495)."""
    return int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)


def whole_days(days: int, now_ms: int, zone_name: str, zone: tzinfo) -> LocalDays:
    """The ``days`` whole local days in ``zone`` that ended at the last local midnight at or
    before ``now_ms``. Raises ValueError for days < 1."""
    if days < 1:
        raise ValueError("days must be at least 1")
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone).date()
    return LocalDays(days, _midnight(today - timedelta(days=days), zone),
                     _midnight(today, zone), zone_name, zone)


def last_days(data_dir: Path, patient: bytes, days: int, now_ms: int) -> LocalDays:
    """The last ``days`` whole local days of ``patient`` (her zone, ``patient_zone``) before
    ``now_ms``: the window a report or summary of "the last N days" asks for."""
    name, zone = patient_zone(data_dir, patient)
    return whole_days(days, now_ms, name, zone)


def reader_days(state: State, data_dir: Path, requester: bytes, patient: bytes, days: int,
                now_ms: int, streams: tuple[str, ...] = ("cgm",)) -> LocalDays:
    """The last ``days`` whole days of ``patient`` as ``requester`` may read them: whole UTC
    days when she holds summary grants only for ``streams`` (the consent decision permits
    nothing else: state/consent.py ``_check_days``), else her local days (``last_days``)."""
    if summary_only(state, patient, requester, now_ms, streams):
        return whole_days(days, now_ms, "UTC", UTC)
    return last_days(data_dir, patient, days, now_ms)

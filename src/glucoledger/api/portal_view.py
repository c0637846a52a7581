"""What the portal shows, in a person's own units and time zone: pure formatting (the charts
are in portal_charts.py).

Everything here is a pure function of its arguments (no clock, no I/O) except ``Prefs``,
which keeps each account's display preferences (units, time zone) in one JSON side file
(``portal-prefs.json`` in the node's folder, written with files.atomic_write_json). The
preferences only change how numbers and times are *shown*; nothing stored on the ledger or
in the vault depends on them.

Invariants:
- glucose is stored and computed in mg/dL; mmol/L is mg/dL / 18.016 rounded to one decimal
  (the conversion the IFCC / consensus reports use), shown only;
- the trend arrow is the uploader's (Dexcom / Nightscout direction names) when it sent one,
  otherwise derived from the last 15 minutes' rate of change with the same cut-offs
  (1, 2 and 3 mg/dL per minute).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import available_timezones

from ..errors import GlucoledgerError, OutOfRangeError
from ..files import atomic_write_json, read_json
from ..node.localdays import zone_named

__all__ = ["MMOL", "STALE_MS", "Fmt", "Prefs", "current", "trend_arrow", "zones"]

MMOL: Final = 18.016
#: A reading older than this is "stale": the sensor or the uploader stopped (3 CGM intervals).
STALE_MS: Final = 15 * 60_000
UNITS: Final = ("mg/dL", "mmol/L")

# Nightscout / Dexcom direction names -> (arrow, words)
_TRENDS: Final = {
    "DoubleUp": ("⇈", "rising quickly"), "SingleUp": ("↑", "rising"),
    "FortyFiveUp": ("↗", "rising slowly"), "Flat": ("→", "steady"),
    "FortyFiveDown": ("↘", "falling slowly"), "SingleDown": ("↓", "falling"),
    "DoubleDown": ("⇊", "falling quickly"),
}


def zones() -> list[str]:
    """The IANA time zones a person can choose (sorted; UTC first)."""
    return ["UTC", *sorted(z for z in available_timezones() if "/" in z
                           and not z.startswith(("Etc/", "SystemV/", "posix/", "right/")))]


@dataclass(frozen=True, slots=True)
class Fmt:
    """How one person sees numbers and times: ``units`` (mg/dL or mmol/L), ``tz`` (IANA)."""

    units: str = "mg/dL"
    tz: str = "UTC"

    @property
    def zone(self) -> tzinfo:
        return zone_named(self.tz) or UTC

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def when(self, ms: int | None) -> str:
        """``03 Dec 2026 14:05`` in her zone, with the zone's abbreviation."""
        if ms is None:
            return ""
        d = self.local(ms)
        return d.strftime("%d %b %Y %H:%M ") + (d.tzname() or self.tz)

    def hhmm(self, ms: int) -> str:
        return self.local(ms).strftime("%H:%M")

    def day(self, ms: int) -> str:
        return self.local(ms).strftime("%a %d %b %Y")

    def glucose(self, mgdl: float | None) -> str:
        """The number alone, in her units."""
        if mgdl is None:
            return ""
        if self.units == "mmol/L":
            return f"{mgdl / MMOL:.1f}"
        return f"{mgdl:.0f}"

    def delta(self, mgdl: float | None) -> str:
        """A signed change (``+3``, ``-0.4``); ``±0`` for none."""
        if mgdl is None:
            return ""
        v = mgdl / MMOL if self.units == "mmol/L" else mgdl
        text = f"{v:+.1f}" if self.units == "mmol/L" else f"{v:+.0f}"
        return "±0" if float(text) == 0 else text


def trend_arrow(trend: str | None, recent: Sequence[tuple[int, int]]) -> tuple[str, str]:
    """(arrow, words) for the newest reading: the uploader's direction name if it sent one,
    else the rate over ``recent`` (time_ms, mg/dL) pairs of the last 15 minutes."""
    if trend in _TRENDS:
        return _TRENDS[trend]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < 5 * 60_000:
        return ("", "trend unknown")
    rate = (recent[-1][1] - recent[0][1]) / ((recent[-1][0] - recent[0][0]) / 60_000)
    for cut, name in ((3, "DoubleUp"), (2, "SingleUp"), (1, "FortyFiveUp")):
        if rate >= cut:
            return _TRENDS[name]
    for cut, name in ((-3, "DoubleDown"), (-2, "SingleDown"), (-1, "FortyFiveDown")):
        if rate <= cut:
            return _TRENDS[name]
    return _TRENDS["Flat"]


def current(readings: Sequence[Any], now_ms: int, fmt: Fmt) -> dict[str, Any] | None:
    """The newest reading as the home page and ``now.json`` show it, or None with none.

    ``readings`` are CgmReading-like (time_ms, mgdl, trend), oldest first."""
    if not readings:
        return None
    last = readings[-1]
    recent = [(r.time_ms, r.mgdl) for r in readings if r.time_ms >= last.time_ms - 15 * 60_000]
    prev = [r for r in readings[:-1] if last.time_ms - r.time_ms <= 10 * 60_000]
    arrow, words = trend_arrow(getattr(last, "trend", None), recent)
    age_min = max(0, (now_ms - last.time_ms) // 60_000)
    band = ("very low" if last.mgdl < 54 else "low" if last.mgdl < 70 else
            "in range" if last.mgdl <= 180 else "high" if last.mgdl <= 250 else "very high")
    return {"value": fmt.glucose(last.mgdl), "units": fmt.units, "mgdl": last.mgdl,
            "arrow": arrow, "trend": words,
            "delta": fmt.delta(last.mgdl - prev[-1].mgdl) if prev else "",
            "minutes_ago": int(age_min), "stale": now_ms - last.time_ms > STALE_MS,
            "time_ms": last.time_ms, "time": fmt.when(last.time_ms), "band": band}


class Prefs:
    """Display preferences per account (``{account id hex: {units, tz}}``), one side file.

    Reads never fail the page: a missing or unreadable file means the defaults (mg/dL, UTC).
    A write of a unit or zone this server does not know is refused (OutOfRangeError)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "portal-prefs.json"
        self._lock = threading.Lock()

    def _all(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            doc = read_json(self.path, what="portal preferences")
        except GlucoledgerError:  # a damaged side file shows the defaults
            return {}
        return doc if isinstance(doc, dict) else {}

    def get(self, account: bytes) -> Fmt:
        p = self._all().get(account.hex())
        if not isinstance(p, dict):
            return Fmt()
        units = p.get("units") if p.get("units") in UNITS else "mg/dL"
        tz = p.get("tz") if isinstance(p.get("tz"), str) else "UTC"
        return Fmt(str(units), str(tz))

    def set(self, account: bytes, units: str, tz: str) -> Fmt:
        if units not in UNITS:
            raise OutOfRangeError(f"units {units[:20]!r}: choose mg/dL or mmol/L")
        if tz != "UTC" and zone_named(tz) is None:
            raise OutOfRangeError(f"time zone {tz[:40]!r} is not known here; choose one "
                                  "from the list (e.g. Europe/Paris)")
        with self._lock:
            doc = self._all()
            doc[account.hex()] = {"units": units, "tz": tz}
            atomic_write_json(self.path, doc)
        return Fmt(units, tz)

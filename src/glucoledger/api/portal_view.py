"""What the portal shows, in a person's own units and time zone: pure formatting and charts.

Everything here is a pure function of its arguments (no clock, no I/O) except ``Prefs``,
which keeps each account's display preferences (units, time zone) in one JSON side file
(``portal-prefs.json`` in the node's folder, written with files.atomic_write_json). The
preferences only change how numbers and times are *shown*; nothing stored on the ledger or
in the vault depends on them.

Invariants:
- glucose is stored and computed in mg/dL; mmol/L is mg/dL / 18.016 rounded to one decimal
  (the conversion the IFCC / consensus reports use), shown only;
- every chart is an inline SVG with ``role="img"``, an accessible name that states what it
  shows, and a data table with the same numbers next to it (WCAG 1.1.1 text alternative);
- text inside charts is sized in the chart's own units so it scales with the chart and stays
  readable on a phone (the viewBox is 320 units wide: 11 units ~ 11 px at 320 px wide);
- the trend arrow is the uploader's (Dexcom / Nightscout direction names) when it sent one,
  otherwise derived from the last 15 minutes' rate of change with the same cut-offs
  (1, 2 and 3 mg/dL per minute).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from markupsafe import Markup

from ..errors import GlucoledgerError, OutOfRangeError
from ..files import atomic_write_json, read_json
from ..node.report import AgpReport

__all__ = ["MMOL", "STALE_MS", "Fmt", "Prefs", "agp_report", "current", "day_chart",
           "trend_arrow", "zones"]

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
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            return UTC

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


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def day_chart(points: Sequence[tuple[int, int]], start_ms: int, fmt: Fmt, *, title: str,
              marks: Sequence[tuple[int, str]] = ()) -> Markup:
    """A one-day glucose line (``points``: time_ms, mg/dL) from ``start_ms`` for 24 h, target
    range 70-180 shaded, hour labels every 6 h in her zone, ``marks`` (time_ms, short label:
    insulin, carbohydrates) as ticks along the bottom. Accessible name: ``title`` plus the
    range of values; the caller puts the data table next to it."""
    w, h, left, bottom, top = 320, 170, 34, 22, 8
    span = 86_400_000
    ymax = 350

    def x(ms: int) -> float:
        return left + (w - left - 4) * min(max(ms - start_ms, 0), span) / span

    def y(mgdl: float) -> float:
        return top + (h - top - bottom) * (1 - min(mgdl, ymax) / ymax)

    parts = [(f'<rect x="{left}" y="{y(180):.1f}" width="{w - left - 4}" '
             f'height="{y(70) - y(180):.1f}" fill="#dff1e3"/>')]
    for v in (70, 180, 250):
        parts.append(f'<line x1="{left}" x2="{w - 4}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#8a9099" stroke-width="0.6" stroke-dasharray="3 2"/>'
                     f'<text x="{left - 3}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#222">{fmt.glucose(v)}</text>')
    for hh in range(0, 25, 6):
        ms = start_ms + hh * 3_600_000
        parts.append(f'<text x="{x(ms):.1f}" y="{h - 6}" text-anchor="middle" font-size="11" '
                     f'fill="#222">{"24:00" if hh == 24 else fmt.hhmm(ms)}</text>')
    if points:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0b3d91" '
                     f'stroke-width="1.8"/>')
    for t, label in marks:
        parts.append(f'<text x="{x(t):.1f}" y="{h - bottom + 2:.1f}" text-anchor="middle" '
                     f'font-size="10" fill="#5a1200">{_esc(label)}</text>')
    if points:
        lo, hi = min(v for _, v in points), max(v for _, v in points)
        name = (f"{title}: {len(points)} readings from {fmt.glucose(lo)} to "
                f"{fmt.glucose(hi)} {fmt.units}; the table below lists them")
    else:
        name = f"{title}: no readings"
    return Markup(f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" '
                  f'aria-label="{_esc(name)}" preserveAspectRatio="xMidYMid meet">'
                  f'{"".join(parts)}</svg>')


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
        if tz != "UTC":
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise OutOfRangeError(f"time zone {tz[:40]!r} is not known here; choose one "
                                      "from the list (e.g. Europe/Paris)") from None
        with self._lock:
            doc = self._all()
            doc[account.hex()] = {"units": units, "tz": tz}
            atomic_write_json(self.path, doc)
        return Fmt(units, tz)


def agp_report(report: AgpReport | None) -> Markup | None:
    """The AGP report (node/report.py, the one pipeline the CLI uses too) embedded in a page,
    in a sandboxed frame so the report's own page and styles stay as they are; None when
    there is nothing to draw."""
    if report is None:
        return None
    return Markup('<iframe class="agp-report" title="AGP report of {}" sandbox="" '
                  'style="width:100%;height:1400px;border:0" srcdoc="{}"></iframe>'
                  ).format(report.patient, report.html())

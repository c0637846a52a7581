"""The AGP report a clinician knows, as printable HTML (inline SVG) or as a PNG.

Layout after the IDC AGP report v5 and the consensus (Battelino et al., Diabetes Care
2019;42(8):1593-1603, Figure 1): a header (patient pseudonym, the period in the patient's
local time, days, sensor active, and ONE sufficiency verdict: the summary's), the glucose
statistics and targets table, the GRI with its zone (Klonoff 2023), the five-range
time-in-ranges bar with each range's percentage, goal and time per day, the episodes (2023
consensus), the modal-day chart with labeled 5/25/50/75/95 % curves, and the daily glucose
profiles (weekday and date, low/high shaded). Glucose is shown in mg/dL or mmol/L
(``units``). Censored readings (sensor LOW/HIGH) are counted and named.

Two views: given an ``Agp`` without days (``Agp.aggregate()``, what a summary grant
releases) the page holds only aggregate parts, never a daily profile or a reading; given
``treatments`` (raw grants with insulin and carbs) a daily view adds boluses and carbs beside
glucose, as Tidepool and Nightscout show them.

Invariants: pure functions returning text or bytes; no files, no network, no clock. The HTML
is self-contained (no scripts, fonts or external resources) and every piece of caller text is
escaped. The PNG uses matplotlib's Agg backend through an object-oriented Figure, so nothing
touches pyplot's global state.
"""

from __future__ import annotations

import html
import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from .agp import MIN_PROFILE_DAYS, PERCENTILES, Agp, DayProfile
from .metrics import CONSENSUS_TARGETS, Summary
from .readings import Bolus, Carbs, Record
from .units import MGDL_PER_MMOLL, normalize_units

__all__ = ["PAGE", "PHONE", "AgpFrame", "agp_svg", "render_html", "render_png"]

Y_MAX: Final = 350  # the AGP's y axis: 0..350 mg/dL
LOW, HIGH, VERY_LOW, VERY_HIGH = 70, 180, 54, 250
COLORS: Final = {
    "band_outer": "#b7cde8",
    "band_inner": "#5b8fc9",
    "median": "#0b3d91",
    "target": "#2e9e44",
    "very_low": "#b3001b",
    "low": "#e8412c",
    "in_range": "#3bb143",
    "high": "#f5c400",
    "very_high": "#f08c00",
}

# (label, Summary field, target text)
_ROWS: Final = (
    ("Time in range 70-180 mg/dL", "tir_bp", "> 70 %"),
    ("Time below 70 mg/dL", "tbr70_bp", "< 4 %"),
    ("Time below 54 mg/dL", "tbr54_bp", "< 1 %"),
    ("Time above 180 mg/dL", "tar180_bp", "< 25 %"),
    ("Time above 250 mg/dL", "tar250_bp", "< 5 %"),
    ("Glucose variability (CV)", "cv_bp", "<= 36 %"),
)


def _local(ms: int, tz_offset_min: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms + tz_offset_min * 60_000)


def _offset(tz_offset_min: int) -> str:
    sign = "+" if tz_offset_min >= 0 else "-"
    return f"UTC{sign}{abs(tz_offset_min) // 60:02d}:{abs(tz_offset_min) % 60:02d}"


#: A named time zone for the header: (IANA name, zone), as node/localdays.py resolves it.
Zone = tuple[str, tzinfo]


def _period(summary: Summary, tz_offset_min: int = 0, zone: Zone | None = None) -> str:
    """The period asked, in the patient's local time: start and end (exclusive) instants.
    With a named ``zone``, in that zone (daylight saving included), and a period from one
    local midnight to another is counted in whole local days."""
    if zone is None:
        a, b = _local(summary.start_ms, tz_offset_min), _local(summary.end_ms, tz_offset_min)
        return (f"{a:%a %Y-%m-%d %H:%M} to {b:%a %Y-%m-%d %H:%M} ({_offset(tz_offset_min)}, "
                f"{summary.window_days:.1f} days)")
    name, tz = zone
    a = datetime.fromtimestamp(summary.start_ms / 1000, tz)
    b = datetime.fromtimestamp(summary.end_ms / 1000, tz)
    if a.time() == b.time() == datetime.min.time():
        length = f"{(b.date() - a.date()).days} whole local days"
    else:
        length = f"{summary.window_days:.1f} days"
    return f"{a:%a %Y-%m-%d %H:%M} to {b:%a %Y-%m-%d %H:%M} ({html.escape(name)}, {length})"


def _units(units: str) -> str:
    return normalize_units(units)


def _g(mgdl: float, units: str) -> str:
    """A glucose value (no unit) in ``units``: whole mg/dL or mmol/L with one decimal."""
    if units == "mmol/L":
        return f"{mgdl / float(MGDL_PER_MMOLL):.1f}"
    return f"{mgdl:.0f}"


def _per_day(bp: int) -> str:
    minutes = round(bp * 1_440 / 10_000)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _sufficiency(summary: Summary) -> str:
    if summary.sufficient:
        return "Sufficient data: at least 14 days with the sensor active at least 70 % of the time."
    return (
        "Insufficient data for a reliable report: the consensus asks for at least 14 days "
        "with the sensor active at least 70 % of the time."
    )


# --------------------------------------------------------------------------- SVG pieces


def _runs(values: Sequence[float | None]) -> list[list[int]]:
    """Index runs of consecutive non-empty values (a chart line breaks at empty bins)."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


@dataclass(frozen=True, slots=True)
class AgpFrame:
    """The geometry and label scale of the AGP chart: the report page's (``PAGE``, 900 units
    wide, curves labeled on the right, 3-hourly 12 h clock) or the portal's phone chart
    (``PHONE``, 320 units wide, drawn at its card's width so 12-unit text is at least 12 CSS
    px, 6-hourly 24 h clock; its data table and reading cursor label the curves instead).
    ``x`` and ``y`` map minutes of the day and mg/dL into the viewBox, for the caller's
    cursor points as for the chart itself."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    font: int
    hour_step: int
    clock24: bool
    curve_labels: bool
    units_label: bool

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom

    def x(self, minute: float) -> float:
        return self.left + self.plot_w * minute / 1_440

    def y(self, mgdl: float) -> float:
        return self.top + self.plot_h * (1 - min(mgdl, Y_MAX) / Y_MAX)

    def hour(self, hour: int) -> str:
        if self.clock24:
            return f"{hour:02d}:00"
        return {0: "12 am", 12: "12 pm", 24: "12 am"}.get(
            hour, f"{hour % 12} {'am' if hour < 12 else 'pm'}")


PAGE: Final = AgpFrame(900, 340, 50, 60, 12, 30, 11, 3, False, True, True)
PHONE: Final = AgpFrame(320, 200, 36, 6, 8, 24, 12, 6, True, False, False)
_AGP_LABEL: Final = ("Ambulatory glucose profile: 5th, 25th, 50th, 75th and 95th percentiles "
                     "by time of day")


def agp_svg(agp: Agp, units: str, frame: AgpFrame = PAGE, *, css_class: str = "agp",
            label: str = _AGP_LABEL, attrs: str = "") -> str:
    """The AGP modal day as inline SVG: the target range shaded, the 5-95 % and 25-75 %
    bands, the median, the 54/70/180/250 lines with their values in ``units``, hour labels,
    and (``frame.curve_labels``) each percentile named at the right edge. Empty bins (a
    withheld profile: ``Agp.aggregate()`` below ``MIN_PROFILE_DAYS`` days) draw nothing and
    the chart says so. ``label`` is its accessible name and ``attrs`` further attributes of
    the ``<svg>`` (the portal's cursor data); the caller escapes both."""
    f = frame
    left, top, pw, ph = f.left, f.top, f.plot_w, f.plot_h
    x, y = f.x, f.y
    half = agp.bin_min / 2
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {f.width} {f.height}" '
            f'class="{css_class}" role="img" aria-label="{label}"{attrs}>'
        ),
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
        (
            f'<rect x="{left}" y="{y(HIGH):.1f}" width="{pw}" height="{y(LOW) - y(HIGH):.1f}" '
            'fill="#e9f6ea"/>'
        ),
    ]
    series = {q: agp.series(q) for q in PERCENTILES}
    for lo, hi, color in ((5, 95, COLORS["band_outer"]), (25, 75, COLORS["band_inner"])):
        for run in _runs(series[lo]):
            upper = [
                f"{x(agp.bins[i].start_min + half):.1f},{y(series[hi][i] or 0):.1f}" for i in run
            ]
            lower = [
                f"{x(agp.bins[i].start_min + half):.1f},{y(series[lo][i] or 0):.1f}"
                for i in reversed(run)
            ]
            parts.append(
                f'<polygon class="band-{lo}-{hi}" points="{" ".join(upper + lower)}" '
                f'fill="{color}" stroke="none"/>'
            )
    for mgdl, color, dash in (
        (LOW, COLORS["target"], ""),
        (HIGH, COLORS["target"], ""),
        (VERY_LOW, COLORS["very_low"], ' stroke-dasharray="4 3"'),
        (VERY_HIGH, COLORS["very_high"], ' stroke-dasharray="4 3"'),
    ):
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(mgdl):.1f}" y2="{y(mgdl):.1f}" '
            f'stroke="{color}" stroke-width="1.5"{dash}/>'
            f'<text x="{left - 4}" y="{y(mgdl) + 4:.1f}" text-anchor="end" '
            f'font-size="{f.font}">{_g(mgdl, units)}</text>'
        )
    for run in _runs(series[50]):
        points = " ".join(
            f"{x(agp.bins[i].start_min + half):.1f},{y(series[50][i] or 0):.1f}" for i in run
        )
        parts.append(
            f'<polyline class="median" points="{points}" fill="none" '
            f'stroke="{COLORS["median"]}" stroke-width="2.5"/>'
        )
    # Label each curve at its last non-empty bin, on the right edge (AGP v5 style).
    for q in PERCENTILES if f.curve_labels else ():
        last = next((v for v in reversed(series[q]) if v is not None), None)
        if last is not None:
            parts.append(
                f'<text class="pct-label" data-percentile="{q}" x="{left + pw + 4}" '
                f'y="{y(last) + 4:.1f}" font-size="{f.font}">{q} %</text>'
            )
    for hour in range(0, 25, f.hour_step):
        anchor = ("middle" if not f.clock24 else
                  "start" if hour == 0 else "end" if hour == 24 else "middle")
        parts.append(
            f'<line x1="{x(hour * 60):.1f}" x2="{x(hour * 60):.1f}" y1="{top}" '
            f'y2="{top + ph}" stroke="#ddd"/>'
            f'<text x="{x(hour * 60):.1f}" y="{f.height - f.bottom / 2 + 4:.1f}" '
            f'text-anchor="{anchor}" font-size="{f.font}">{f.hour(hour)}</text>'
        )
    if all(v is None for v in series[50]):
        words = (f"Percentile profile withheld: fewer than {MIN_PROFILE_DAYS} days with data "
                 "in the period" if f.curve_labels else "Profile withheld: too few days")
        parts.append(
            f'<text class="withheld" x="{left + pw / 2}" y="{top + ph / 2}" '
            f'font-size="{f.font + 1}" text-anchor="middle">{words}</text>'
        )
    if f.units_label:
        parts.append(
            f'<text x="12" y="{top + ph / 2}" font-size="{f.font}" '
            f'transform="rotate(-90 12 {top + ph / 2})" text-anchor="middle">{units}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _day_svg(day: DayProfile, units: str, treatments: Sequence[Record] = (),
             tz_offset_min: int = 0, width: int = 130, height: int = 80) -> str:
    def x(minute: float) -> float:
        return width * minute / 1_440

    def y(mgdl: float) -> float:
        return height * (1 - min(mgdl, Y_MAX) / Y_MAX)

    segments: list[list[tuple[int, int]]] = []
    for minute, mgdl in day.points:
        if segments and minute - segments[-1][-1][0] <= 15:
            segments[-1].append((minute, mgdl))
        else:
            segments.append([(minute, mgdl)])
    shade = []
    for seg in segments:
        for (m, g), nxt in zip(seg, [*seg[1:], None], strict=True):
            step = (nxt[0] - m) if nxt is not None else 5
            if g < LOW:
                shade.append(f'<rect class="shade-low" x="{x(m):.1f}" y="{y(LOW):.1f}" '
                             f'width="{max(x(step), 0.5):.1f}" height="{y(g) - y(LOW):.1f}" '
                             f'fill="{COLORS["low"]}"/>')
            elif g > HIGH:
                shade.append(f'<rect class="shade-high" x="{x(m):.1f}" y="{y(g):.1f}" '
                             f'width="{max(x(step), 0.5):.1f}" height="{y(HIGH) - y(g):.1f}" '
                             f'fill="{COLORS["high"]}"/>')
    lines = "".join(
        f'<polyline points="{" ".join(f"{x(m):.1f},{y(g):.1f}" for m, g in seg)}" '
        f'fill="none" stroke="#222" stroke-width="1"/>'
        for seg in segments
    )
    marks = []
    for t in treatments:
        at = ((t.time_ms + t.tz_offset_min * 60_000) % 86_400_000) / 60_000
        if isinstance(t, Bolus):
            marks.append(f'<path class="bolus" d="M{x(at) - 3:.1f},{height} l3,-7 l3,7 z" '
                         f'fill="#1f5fbf"><title>bolus {t.units_milli / 1000:g} U</title></path>')
        elif isinstance(t, Carbs):
            marks.append(f'<circle class="carbs" cx="{x(at):.1f}" cy="5" r="3" '
                         f'fill="#e07b00"><title>carbs {t.grams_tenths / 10:g} g</title></circle>')
    weekday = datetime.fromisoformat(day.date).strftime("%a")
    return (
        f'<figure class="day" data-date="{html.escape(day.date)}">'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" role="img" '
        f'aria-label="glucose on {weekday} {html.escape(day.date)}">'
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#bbb"/>'
        f'<rect y="{y(HIGH):.1f}" width="{width}" height="{y(LOW) - y(HIGH):.1f}" fill="#e9f6ea"/>'
        f'<line x1="0" x2="{width}" y1="{y(LOW):.1f}" y2="{y(LOW):.1f}" '
        f'stroke="{COLORS["target"]}"/>'
        f'<line x1="0" x2="{width}" y1="{y(HIGH):.1f}" y2="{y(HIGH):.1f}" '
        f'stroke="{COLORS["target"]}"/>'
        f'{"".join(shade)}{lines}{"".join(marks)}</svg>'
        f'<figcaption><span class="weekday">{weekday}</span> {html.escape(day.date[5:])}'
        f"</figcaption></figure>"
    )


#: (range key, label in mg/dL thresholds, the Summary value in bp, the goal text)
def _five(summary: Summary) -> list[tuple[str, str, int, str]]:
    return [
        ("very_high", "Very high, above {250}", summary.tar250_bp, "< 5 %"),
        ("high", "High, {181}-{250}", summary.tar180_250_bp, "< 25 % (with very high)"),
        ("in_range", "Target range, {70}-{180}", summary.tir_bp, "> 70 %"),
        ("low", "Low, {54}-{69}", summary.tbr54_70_bp, "< 4 % (with very low)"),
        ("very_low", "Very low, below {54}", summary.tbr54_bp, "< 1 %"),
    ]


def _label(template: str, units: str) -> str:
    out = template
    for mgdl in (54, 69, 70, 180, 181, 250):
        out = out.replace("{" + str(mgdl) + "}", _g(mgdl, units))
    return f"{out} {units}"


def _ranges_html(summary: Summary, units: str, height: int = 220) -> str:
    bars, rows = [], []
    y = 0.0
    for key, template, bp, goal in _five(summary):
        h = height * bp / 10_000
        bars.append(f'<rect y="{y:.1f}" width="60" height="{h:.1f}" fill="{COLORS[key]}"/>')
        y += h
        rows.append(
            f'<tr class="range" data-range="{key}"><td><span class="swatch" '
            f'style="background:{COLORS[key]}"></span>{html.escape(_label(template, units))}</td>'
            f'<td class="pct">{bp / 100:.1f} %</td><td class="goal">goal {html.escape(goal)}'
            f'</td><td class="per-day">{_per_day(bp)} a day</td></tr>'
        )
    return (
        f'<div class="row"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 60 {height}" '
        f'width="60" height="{height}" class="ranges" role="img" aria-label="time in ranges">'
        f'{"".join(bars)}</svg><table class="ranges-table"><tr><th>Range</th><th>Time</th>'
        f'<th>Goal</th><th>Per day</th></tr>{"".join(rows)}</table></div>'
    )


_CSS: Final = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#111;max-width:1000px}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:15px;margin:18px 0 6px;border-bottom:2px solid #0b3d91}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
.ok{color:#2e7d32;font-weight:bold} .miss{color:#c62828;font-weight:bold}
.row{display:flex;gap:24px;align-items:flex-start} .days{display:flex;flex-wrap:wrap;gap:6px}
.day{margin:0;font-size:10px;text-align:center} .note{font-size:12px;color:#444}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px}
.agp{width:100%;height:auto} @media print{body{margin:8mm}}
"""


def render_html(agp: Agp, summary: Summary, *, patient: str, units: str = "mg/dL",
                treatments: Sequence[Record] = (), zone: Zone | None = None) -> str:
    """A self-contained printable AGP v5 report page. ``patient`` is a pseudonym (escaped).

    Daily profiles appear only when ``agp.days`` holds them (a raw release); ``treatments``
    (boluses, carbs) are drawn on them. ``zone`` (name, tzinfo) is the zone the period was
    counted in, named in the header; without it, the latest reading's UTC offset.
    Raises MalformedError for unknown ``units``.
    """
    units = _units(units)
    tz = agp.tz_offset_min
    rows = []
    for label, field, target in _ROWS:
        value = getattr(summary, field) / 100
        meets = summary.meets(field)
        rows.append(
            f"<tr><td>{label}</td><td>{value:.1f} %</td><td>{html.escape(target)}</td>"
            f'<td class="{"ok" if meets else "miss"}">{"met" if meets else "not met"}</td></tr>'
        )
    assert set(CONSENSUS_TARGETS) == {field for _, field, _ in _ROWS}
    stats = [
        ("Mean glucose", f"{_g(summary.mean, units)} {units}"),
        ("Standard deviation", f"{_g(summary.sd, units)} {units}"),
        ("Glucose management indicator (GMI)", f"{summary.gmi:.1f} %"),
        ("Glucose variability (CV)", f"{summary.cv:.1f} % (goal <= 36 %)"),
        ("Sensor LOW readings (counted at the sensor limit, below 54 mg/dL)",
         f"{summary.censored_low}"),
        ("Sensor HIGH readings (counted at the sensor limit, above 250 mg/dL)",
         f"{summary.censored_high}"),
        ("Readings", f"{summary.count}"),
        ("Values superseded by a later upload", f"{summary.superseded}"),
        ("LBGI / HBGI (Kovatchev)", f"{summary.lbgi:.2f} / {summary.hbgi:.2f}"),
        ("J-index (Wojcicki)", f"{summary.j_index:.1f}"),
        ("MAGE (Service; moving-average algorithm, Fernandes 2022)",
         f"{_g(summary.mage, units)} {units}"),
    ]
    stat_rows = "".join(f'<tr class="stat"><td>{k}</td><td>{v}</td></tr>' for k, v in stats)
    episodes = [
        ("Hypoglycemia level 1 (< 70 mg/dL, >= 15 min)", summary.hypo1_episodes,
         summary.hypo1_min),
        ("Hypoglycemia level 2 (< 54 mg/dL, >= 15 min)", summary.hypo2_episodes,
         summary.hypo2_min),
        ("Extended hypoglycemia (< 70 mg/dL, > 120 min)", summary.hypo_extended_episodes, None),
        ("Hyperglycemia level 1 (> 180 mg/dL, >= 15 min)", summary.hyper1_episodes,
         summary.hyper1_min),
        ("Hyperglycemia level 2 (> 250 mg/dL, >= 15 min)", summary.hyper2_episodes,
         summary.hyper2_min),
    ]
    episode_rows = "".join(
        f'<tr class="episode"><td>{k}</td><td>{n}</td>'
        f'<td>{"" if m is None else f"{m} min"}</td></tr>' for k, n, m in episodes)
    if agp.days:
        by_day: dict[str, list[Record]] = {}
        for t in treatments:
            day = _local(t.time_ms, t.tz_offset_min).date().isoformat()
            by_day.setdefault(day, []).append(t)
        days = "".join(_day_svg(d, units, by_day.get(d.date, ()), tz) for d in agp.days)
        daily = (f'<section class="daily"><h2>Daily glucose profiles</h2><p class="note">Each '
                 f"local day, midnight to midnight; red: below {_g(LOW, units)}, yellow: above "
                 f"{_g(HIGH, units)} {units}"
                 f"{'; triangles: boluses, circles: carbs' if treatments else ''}.</p>"
                 f'<div class="days">{days}</div></section>')
    else:
        daily = ('<p class="note aggregate-only">Summary view: aggregate statistics and the '
                 "percentile profile only; no daily profile and no reading.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>AGP report: {html.escape(patient)}</title><style>{_CSS}</style></head>
<body>
<h1>Ambulatory Glucose Profile (AGP) report</h1>
<table class="header">
<tr><th>Patient</th><td>{html.escape(patient)}</td>
<th>Period</th><td class="period">{_period(summary, tz, zone)}</td></tr>
<tr><th>Days with data</th><td>{summary.days_with_data}</td>
<th>Sensor active</th><td class="active">{summary.active:.1f} %</td></tr>
</table>
<p class="note sufficiency">{_sufficiency(summary)}</p>
<h2>Glucose statistics and targets</h2>
<table class="metrics"><tr><th>Metric</th><th>Value</th><th>Target</th><th></th></tr>
{"".join(rows)}
{stat_rows}
</table>
<h2>Time in ranges</h2>
{_ranges_html(summary, units)}
<p class="note">Targets for most adults with type 1 or type 2 diabetes (International Consensus
on Time in Range, Battelino et al., Diabetes Care 2019). Each 5 % of time is 1 h 12 min a day.
Time is weighted by the sensor's interval; a gap is not counted.</p>
<h2>Glycemia Risk Index</h2>
<p class="gri">GRI <strong>{summary.gri:.1f}</strong>,
zone <strong class="gri-zone">{summary.gri_zone}</strong>
(hypoglycemia component {summary.gri_hypo_c / 100:.1f}, hyperglycemia component
{summary.gri_hyper_c / 100:.1f}; zones A 0-20 to E 80-100; Klonoff et al. 2023).</p>
<h2>Events</h2>
<table class="episodes"><tr><th>Episode (2023 consensus)</th><th>Count</th><th>Total time</th></tr>
{episode_rows}</table>
<h2>Ambulatory glucose profile</h2>
<p class="note">Median (50 %, dark line), 25-75 % (dark band) and 5-95 % (light band) of
glucose by local time of day over the whole period; green lines mark the target range
{_g(LOW, units)}-{_g(HIGH, units)} {units}.</p>
{agp_svg(agp, units)}
{daily}
</body></html>
"""


def render_png(agp: Agp, summary: Summary, *, patient: str, dpi: int = 110,
               units: str = "mg/dL", zone: Zone | None = None) -> bytes:
    """The AGP report as a PNG (letter landscape): header with GRI and events, the
    five-range bar with labels, the labeled modal day, and (raw view) the daily profiles
    with weekday labels and low/high shading. Raises MalformedError for unknown ``units``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    units = _units(units)
    scale = 1.0 if units == "mg/dL" else 1 / float(MGDL_PER_MMOLL)
    tz = agp.tz_offset_min
    fig = Figure(figsize=(11, 8.5), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.95, top=0.96, bottom=0.04)
    grid = fig.add_gridspec(3, 8, height_ratios=[1.1, 2.0, 1.4], hspace=0.35, wspace=0.3)
    head = fig.add_subplot(grid[0, :5])
    head.axis("off")
    lines = [
        f"AGP report   patient: {patient}",
        (f"period: {_period(summary, tz, zone)}; {summary.days_with_data} days with data; "
         f"sensor active {summary.active:.1f} %"),
        (f"Mean {_g(summary.mean, units)} {units}   GMI {summary.gmi:.1f} %   "
         f"CV {summary.cv:.1f} % (goal <= 36 %)   GRI {summary.gri:.1f} "
         f"(zone {summary.gri_zone})"),
        (f"Events: hypo L1 {summary.hypo1_episodes}, L2 {summary.hypo2_episodes}, extended "
         f"{summary.hypo_extended_episodes}; hyper L1 {summary.hyper1_episodes}, "
         f"L2 {summary.hyper2_episodes}"),
        (f"Sensor LOW {summary.censored_low}, HIGH {summary.censored_high} (counted at the "
         f"sensor limit)   MAGE {_g(summary.mage, units)} {units}"),
        _sufficiency(summary),
    ]
    wrapped = [lines[0]] + [part for line in lines[1:] for part in textwrap.wrap(line, 88)]
    for i, text in enumerate(wrapped):
        head.text(0, 1 - i * 0.12, text, fontsize=12 if i == 0 else 7.5,
                  weight="bold" if i == 0 else "normal", va="top", transform=head.transAxes)

    bar = fig.add_subplot(grid[0, 5])
    bottom = 0.0
    for key, _template, bp, _goal in reversed(_five(summary)):
        bar.bar(0, bp / 100, bottom=bottom, color=COLORS[key], width=0.6)
        bottom += bp / 100
    bar.set_ylim(0, 100)
    bar.set_xlim(-0.5, 0.5)
    bar.set_xticks([])
    bar.set_ylabel("% of time", fontsize=8)
    bar.tick_params(labelsize=7)
    legend = fig.add_subplot(grid[0, 6:])
    legend.axis("off")
    for i, (key, template, bp, goal) in enumerate(_five(summary)):
        legend.text(0.05, 1 - i * 0.22, f"{_label(template, units)}: {bp / 100:.1f} %\n"
                    f"  goal {goal}; {_per_day(bp)} a day", fontsize=6.5, va="top",
                    color="#111", transform=legend.transAxes,
                    bbox={"facecolor": COLORS[key], "alpha": 0.25, "lw": 0})

    ax = fig.add_subplot(grid[1, :])
    half = agp.bin_min / 2
    xs = [(b.start_min + half) / 60 for b in agp.bins]
    nan = float("nan")
    series = {q: [nan if v is None else v * scale for v in agp.series(q)] for q in PERCENTILES}
    ax.axhspan(LOW * scale, HIGH * scale, color="#e9f6ea", zorder=0)
    ax.fill_between(xs, series[5], series[95], color=COLORS["band_outer"], label="5-95 %", lw=0)
    ax.fill_between(xs, series[25], series[75], color=COLORS["band_inner"], label="25-75 %", lw=0)
    ax.plot(xs, series[50], color=COLORS["median"], lw=2.2, label="median (50 %)")
    for q in PERCENTILES:
        last = next((v for v in reversed(series[q]) if not math.isnan(v)), None)
        if last is not None:
            ax.text(24.15, last, f"{q} %", fontsize=7, va="center")
    for level, color, style in (
        (LOW, COLORS["target"], "-"),
        (HIGH, COLORS["target"], "-"),
        (VERY_LOW, COLORS["very_low"], "--"),
        (VERY_HIGH, COLORS["very_high"], "--"),
    ):
        ax.axhline(level * scale, color=color, ls=style, lw=1.2)
    ax.set_xlim(0, 24)
    ax.set_ylim(0, Y_MAX * scale)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xticklabels(["12 am", "3 am", "6 am", "9 am", "12 pm", "3 pm", "6 pm", "9 pm", "12 am"])
    ticks = [0, VERY_LOW, LOW, HIGH, VERY_HIGH, Y_MAX]
    ax.set_yticks([t * scale for t in ticks])
    ax.set_yticklabels([_g(t, units) for t in ticks])
    ax.set_ylabel(units)
    ax.set_title("Ambulatory glucose profile (local time of day)", loc="left", fontsize=11,
                 weight="bold")
    ax.grid(axis="x", color="#ddd")
    ax.legend(loc="upper left", fontsize=8, ncols=3)

    shown = agp.days[-28:]  # every day of a standard 14-day report, at most four weeks
    if not shown:  # a summary view: aggregate parts only
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    columns = min(14, len(shown))
    rows = -(-len(shown) // columns)
    inner = grid[2, :].subgridspec(rows, columns, wspace=0.05, hspace=0.35)
    for i, day in enumerate(shown):
        dax = fig.add_subplot(inner[i // columns, i % columns])
        dax.axhspan(LOW, HIGH, color="#e9f6ea")
        minutes = [m / 60 for m, _ in day.points]
        values = [float(g) for _, g in day.points]
        # Break the line at gaps longer than 15 minutes.
        for j in range(len(minutes) - 1, 0, -1):
            if minutes[j] - minutes[j - 1] > 0.25:
                minutes.insert(j, nan)
                values.insert(j, nan)
        dax.fill_between(minutes, values, LOW, where=[v < LOW for v in values],
                         color=COLORS["low"], lw=0)
        dax.fill_between(minutes, values, HIGH, where=[v > HIGH for v in values],
                         color=COLORS["high"], lw=0)
        dax.plot(minutes, values, color="#222", lw=0.7)
        dax.set_xlim(0, 24)
        dax.set_ylim(0, Y_MAX)
        dax.set_xticks([])
        dax.set_yticks([])
        weekday = datetime.fromisoformat(day.date).strftime("%a")
        dax.set_title(f"{weekday} {day.date[5:]}", fontsize=6.5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()

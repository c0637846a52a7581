"""The portal's charts: inline SVG that scales with the page, with readable labels on a phone,
a text alternative, and tap-for-value. Pure functions of their arguments (no clock, no I/O).

Invariants:
- every chart is an inline SVG with ``role="img"``, an accessible name that states what it
  shows, and a data table with the same numbers next to it (WCAG 1.1.1 text alternative);
- the viewBox is 320 units wide and text is 12-13 units: the chart is drawn at the width of
  its card (at least 348 CSS px on a 390 px phone), so a label is at least 12 CSS px there;
- tap-for-value: each chart carries its points in ``data-read`` (JSON: x and y in viewBox
  units, then the time and the value as words in the person's units and zone) and
  ``data-read-name``; static/portal.js turns that into a reading cursor (a focusable
  ``role="slider"`` whose ``aria-valuetext`` and a polite live region announce the time and
  value; arrow keys step a reading, Page Up/Down an hour; a tap or click on the chart picks
  the nearest point). Without the script the chart and its table stand alone;
- the AGP here is the one node/report.py computed (``AgpReport.agp``): for a summary grant
  that is the aggregate percentile profile only (no day, no reading), withheld bins stay
  empty, so the cursor can never show a reading a summary grant does not release.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Final

from markupsafe import Markup

from ..glucose.agp import Agp
from ..glucose.report import PHONE, agp_svg
from ..node.report import AgpReport
from .portal_view import Fmt

__all__ = ["agp_chart", "agp_report", "day_chart"]

W: Final = 320
Y_MAX: Final = 350
#: the report page inside the frame, on a phone: larger table and day labels
#: the report page inside the frame, on a phone: larger text, and its 900-unit-wide profile
#: (whose labels would shrink to 4 px) replaced by a pointer to the phone-sized chart above
_PHONE_CSS: Final = ("<style>.phone-only{display:none}@media (max-width:640px){body{margin:8px}"
                     "table{font-size:15px}.day{font-size:13px}h2{font-size:17px}"
                     ".note{font-size:14px}svg.agp{display:none}.phone-only{display:block}}"
                     "</style>")
_PROFILE_H: Final = "<h2>Ambulatory glucose profile</h2>"
_PHONE_NOTE: Final = ('<p class="note phone-only">On a phone the profile is drawn above this '
                      "report, with a cursor to read each time of day; print or open the PDF "
                      "for the full page.</p>")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _read_attrs(points: Sequence[tuple[float, float, str, str]], name: str, step: int,
                top: float, bottom: float) -> str:
    """The ``data-read*`` attributes portal.js reads (see the module docstring)."""
    data = json.dumps([[round(x, 1), round(y, 1), t, v] for x, y, t, v in points],
                      separators=(",", ":"), ensure_ascii=False)
    return (f' data-read="{_esc(data)}" data-read-name="{_esc(name)}" data-read-step="{step}"'
            f' data-read-y="{top:g} {bottom:g}"')


def day_chart(points: Sequence[tuple[int, int]], start_ms: int, fmt: Fmt, *, title: str,
              marks: Sequence[tuple[int, str]] = ()) -> Markup:
    """A one-day glucose line (``points``: time_ms, mg/dL) from ``start_ms`` for 24 h, target
    range 70-180 shaded, hour labels every 6 h in her zone, ``marks`` (time_ms, short label:
    insulin, carbohydrates) as ticks along the bottom. Accessible name: ``title`` plus the
    range of values; the caller puts the data table next to it. Every reading can be read
    with the cursor (one step = one reading, a page = 12 readings, an hour of CGM)."""
    h, left, bottom, top = 170, 34, 22, 8
    span = 86_400_000

    def x(ms: int) -> float:
        return left + (W - left - 4) * min(max(ms - start_ms, 0), span) / span

    def y(mgdl: float) -> float:
        return top + (h - top - bottom) * (1 - min(mgdl, Y_MAX) / Y_MAX)

    parts = [(f'<rect x="{left}" y="{y(180):.1f}" width="{W - left - 4}" '
             f'height="{y(70) - y(180):.1f}" fill="#dff1e3"/>')]
    for v in (70, 180, 250):
        parts.append(f'<line x1="{left}" x2="{W - 4}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#8a9099" stroke-width="0.6" stroke-dasharray="3 2"/>'
                     f'<text x="{left - 3}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="12" fill="#222">{fmt.glucose(v)}</text>')
    for hh in range(0, 25, 6):
        ms = start_ms + hh * 3_600_000
        anchor = "start" if hh == 0 else "end" if hh == 24 else "middle"
        parts.append(f'<text x="{x(ms):.1f}" y="{h - 5}" text-anchor="{anchor}" '
                     f'font-size="12" fill="#222">{"24:00" if hh == 24 else fmt.hhmm(ms)}'
                     '</text>')
    if points:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0b3d91" '
                     f'stroke-width="1.8"/>')
    for t, label in marks:
        parts.append(f'<text x="{x(t):.1f}" y="{h - bottom + 2:.1f}" text-anchor="middle" '
                     f'font-size="12" fill="#5a1200">{_esc(label)}</text>')
    read = ""
    if points:
        lo, hi = min(v for _, v in points), max(v for _, v in points)
        name = (f"{title}: {len(points)} readings from {fmt.glucose(lo)} to "
                f"{fmt.glucose(hi)} {fmt.units}; the table below lists them")
        read = _read_attrs([(x(t), y(v), fmt.hhmm(t), f"{fmt.glucose(v)} {fmt.units}")
                            for t, v in points], title, 12, top, h - bottom)
    else:
        name = f"{title}: no readings"
    return Markup(f'<svg class="chart" viewBox="0 0 {W} {h}" role="img" '
                  f'aria-label="{_esc(name)}" preserveAspectRatio="xMidYMid meet"{read}>'
                  f'{"".join(parts)}</svg>')


def _hm(minute: int) -> str:
    return f"{minute // 60 % 24:02d}:{minute % 60:02d}"


def agp_chart(agp: Agp, fmt: Fmt, *, title: str) -> Markup:
    """The AGP percentile profile over a modal day, drawn for a phone by the report's own
    chart (glucose/report.py ``agp_svg`` with the ``PHONE`` frame: one drawing of the AGP),
    followed by its data table (one row an hour). The cursor reads each bin, at the points
    the chart draws: its time, median, middle half and 90 % range, in her units."""
    frame = PHONE
    full = [b for b in agp.bins if b.p50 is not None]
    half = agp.bin_min / 2
    if full:
        name = (f"{title}: median, middle half and 90 % of readings by time of day, "
                f"{fmt.units}; the table below lists them hour by hour")
        u = fmt.units
        read = _read_attrs([(frame.x(b.start_min + half), frame.y(b.p50 or 0),
                             f"{_hm(b.start_min)}–{_hm(b.start_min + agp.bin_min)}",
                             f"median {fmt.glucose(b.p50)} {u}; middle half "
                             f"{fmt.glucose(b.p25)}–{fmt.glucose(b.p75)}; 90 % between "
                             f"{fmt.glucose(b.p5)} and {fmt.glucose(b.p95)}")
                            for b in full], title, max(1, 60 // agp.bin_min), frame.top,
                           frame.top + frame.plot_h)
    else:
        name, read = f"{title}: withheld, fewer days with data than a profile needs", ""
    svg = agp_svg(agp, fmt.units, PHONE, css_class="chart agp-chart", label=_esc(name),
                  attrs=read)
    rows = []
    per_hour = max(1, 60 // agp.bin_min)
    for i in range(0, len(agp.bins), per_hour):
        hour = [b for b in agp.bins[i:i + per_hour] if b.p50 is not None]
        if not hour:
            continue
        b = hour[0]  # the first bin of the hour: the cursor reads the same numbers there
        rows.append(f"<tr><td>{_hm(b.start_min)}</td>" + "".join(
            f"<td>{fmt.glucose(v)}</td>" for v in (b.p5, b.p25, b.p50, b.p75, b.p95))
            + "</tr>")
    table = ('<details><summary>The profile as a table</summary><table class="agp-table">'
             f'<caption class="sr-only">{_esc(title)}, one row an hour ({_esc(fmt.units)})'
             '</caption><thead><tr><th scope="col">Hour</th><th scope="col">5 %</th>'
             '<th scope="col">25 %</th><th scope="col">Median</th><th scope="col">75 %</th>'
             '<th scope="col">95 %</th></tr></thead><tbody>'
             + ("".join(rows) or '<tr><td colspan="6">Withheld.</td></tr>')
             + "</tbody></table></details>")
    return Markup(f'<figure class="chart-box agp-box">{svg}<figcaption>Dark line: median. '
                  'Dark band: the middle half of readings; light band: 90 % of them. '
                  'Shaded between the green lines: the target range; dashed: very low and '
                  f'very high.</figcaption></figure>{table}')


def agp_report(report: AgpReport | None) -> Markup | None:
    """The AGP report (node/report.py, the one pipeline the CLI uses too) embedded in a page,
    in a sandboxed frame so the report's own page and styles stay as they are (plus larger
    text on a phone); None when there is nothing to draw."""
    if report is None:
        return None
    page = report.html().replace("</head>", _PHONE_CSS + "</head>", 1).replace(
        _PROFILE_H, _PROFILE_H + _PHONE_NOTE, 1)
    return Markup('<iframe class="agp-report" title="AGP report of {}" sandbox="" '
                  'style="width:100%;height:1400px;border:0" srcdoc="{}"></iframe>'
                  ).format(report.patient, page)

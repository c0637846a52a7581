"""The portal's pure formatting (api/portal_view.py): units, time zones, trend, GRI, charts."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from glucoledger.api.portal_charts import agp_chart, day_chart
from glucoledger.api.portal_view import Fmt, Prefs, current, trend_arrow
from glucoledger.errors import OutOfRangeError
from glucoledger.glucose.agp import compute_agp
from glucoledger.glucose.readings import CgmReading

T0 = 1_796_300_000_000  # 2026-12-03, a fixed time: no clock in these tests


@dataclass
class R:
    time_ms: int
    mgdl: int
    trend: str | None = None


def test_units_and_zone_change_only_what_is_shown() -> None:
    mg, mmol = Fmt(), Fmt("mmol/L", "Europe/Paris")
    assert (mg.glucose(100), mmol.glucose(100)) == ("100", "5.6")
    assert (mg.delta(-7), mmol.delta(-7), mg.delta(0)) == ("-7", "-0.4", "±0")
    assert mg.when(T0).endswith("UTC") and mmol.when(T0).endswith("CET")
    assert int(mmol.hhmm(T0)[:2]) == (int(mg.hhmm(T0)[:2]) + 1) % 24
    assert Fmt("mg/dL", "Not/AZone").when(T0) == mg.when(T0)  # an unknown zone shows UTC


def test_trend_uses_the_uploaders_direction_else_the_rate() -> None:
    assert trend_arrow("DoubleDown", []) == ("⇊", "falling quickly")
    five = [(T0, 100), (T0 + 300_000, 100)]
    assert trend_arrow(None, five)[1] == "steady"
    assert trend_arrow(None, [(T0, 100), (T0 + 600_000, 125)])[1] == "rising"  # 2.5/min
    assert trend_arrow(None, [(T0, 100), (T0 + 600_000, 88)])[1] == "falling slowly"
    assert trend_arrow(None, [(T0, 100)]) == ("", "trend unknown")


def test_current_reading_minutes_ago_and_stale() -> None:
    rs = [R(T0 - 600_000, 120), R(T0 - 300_000, 112), R(T0, 104, "FortyFiveDown")]
    c = current(rs, T0 + 4 * 60_000, Fmt())
    assert c is not None
    assert (c["value"], c["arrow"], c["delta"], c["minutes_ago"], c["stale"], c["band"]) == (
        "104", "↘", "-8", 4, False, "in range")
    late = current(rs, T0 + 16 * 60_000, Fmt())
    assert late is not None and late["stale"] and late["minutes_ago"] == 16
    assert current([], T0, Fmt()) is None
    low = current([R(T0, 52)], T0, Fmt("mmol/L"))
    assert low is not None and (low["value"], low["band"], low["delta"]) == ("2.9", "very low", "")


def test_day_chart_names_itself_and_scales() -> None:
    svg = str(day_chart([(T0, 80), (T0 + 3_600_000, 190)], T0, Fmt(), title="Glucose today"))
    assert 'role="img"' in svg and 'viewBox="0 0 320 170"' in svg
    assert 'aria-label="Glucose today: 2 readings from 80 to 190 mg/dL' in svg
    assert "<polyline" in svg
    empty = str(day_chart([], T0, Fmt(), title="x <b>"))
    assert "no readings" in empty and "<b>" not in empty


def test_prefs_refuse_unknown_values_and_change_nothing(tmp_path: Path) -> None:
    p = Prefs(tmp_path)
    me = b"\x01" * 32
    assert p.get(me) == Fmt()
    p.set(me, "mmol/L", "America/New_York")
    assert p.get(me) == Fmt("mmol/L", "America/New_York")
    before = p.path.read_bytes()
    with pytest.raises(OutOfRangeError, match="mg/dL or mmol/L"):
        p.set(me, "mg", "UTC")
    with pytest.raises(OutOfRangeError, match="time zone"):
        p.set(me, "mg/dL", "Mars/Olympus")
    assert p.path.read_bytes() == before
    p.path.write_text("{not json")
    assert p.get(me) == Fmt()  # a damaged file shows the defaults, never a traceback


def test_today_lists_insulin_carbohydrates_and_notes_in_her_zone() -> None:
    from glucoledger.api.portal_patient import _today
    from glucoledger.glucose.readings import Bolus, Carbs, CgmReading, Note

    fmt = Fmt("mg/dL", "Asia/Tokyo")  # UTC+9: her midnight is 15:00 UTC the day before
    now = T0
    midnight = int(fmt.local(now).replace(hour=0, minute=0, second=0, microsecond=0)
                   .timestamp() * 1000)
    records = [CgmReading(midnight - 300_000, 540, 150),  # yesterday, her time: not shown
               CgmReading(midnight + 300_000, 540, 160),
               Bolus(midnight + 3_600_000, 540, "normal", 4500),
               Carbs(midnight + 3_500_000, 540, 450),
               Note(midnight + 7_200_000, 540, "walk")]
    day = _today(records, fmt, now)
    assert day["start_ms"] == midnight
    assert [e["what"] for e in day["events"]] == ["Carbohydrates", "Insulin", "Note"]
    assert day["events"][1]["detail"].startswith("4.5 units")
    assert (day["insulin"], day["carbs"]) == (4.5, 45.0)
    assert [h["mgdl"] for h in day["hourly"]] == [160]
    assert "1 readings from 160 to 160" in str(day["chart"])


def _read(svg: str) -> list[list[object]]:
    m = re.search(r'data-read="([^"]*)"', svg)
    assert m, "no data-read"
    return list(json.loads(html.unescape(m.group(1))))


def test_day_chart_cursor_points_in_her_units_and_zone() -> None:
    svg = str(day_chart([(T0, 90), (T0 + 300_000, 108)], T0 - T0 % 86_400_000,
                        Fmt("mmol/L", "Europe/Paris"), title="Today"))
    pts = _read(svg)
    paris = [datetime.fromtimestamp(t / 1000, ZoneInfo("Europe/Paris")).strftime("%H:%M")
             for t in (T0, T0 + 300_000)]
    assert [p[2:] for p in pts] == [[paris[0], "5.0 mmol/L"], [paris[1], "6.0 mmol/L"]]
    assert pts[0][0] < pts[1][0] and 'data-read-step="12"' in svg
    assert all(float(f) >= 12 for f in re.findall(r'font-size="([0-9.]+)"', svg))
    assert "data-read=" not in str(day_chart([], T0, Fmt(), title="x"))


def test_agp_chart_reads_bins_and_withholds_with_the_profile() -> None:
    day = 86_400_000
    rs = [CgmReading(T0 + d * day + i * 300_000, 0, 100 + (i % 12) * 5)
          for d in range(6) for i in range(288)]
    agp = compute_agp(rs)
    out = str(agp_chart(agp, Fmt(), title="Profile"))
    pts = _read(out)
    assert len(pts) == sum(b.p50 is not None for b in agp.bins) == 96
    assert pts[0][2] == "00:00–00:15" and str(pts[0][3]).startswith("median ")
    assert out.count("<tr><td>") == 24  # the table: one row an hour
    assert all(float(f) >= 12 for f in re.findall(r'font-size="([0-9.]+)"', out))
    one_day = compute_agp(rs[:288]).aggregate()  # under 5 days: the profile is withheld
    withheld = str(agp_chart(one_day, Fmt(), title="Profile"))
    assert "data-read=" not in withheld and "withheld" in withheld


def test_phone_agp_is_the_reports_chart_and_the_cursor_sits_on_its_median() -> None:
    """One drawing of the AGP (glucose/report.py ``agp_svg``): the phone chart is the
    report's chart in the phone frame, in her units, and each cursor point is a vertex of
    the median line it draws."""
    from glucoledger.glucose.report import PAGE, PHONE, agp_svg

    day = 86_400_000
    rs = [CgmReading(T0 + d * day + i * 300_000, 0, 60 + (i * 7 + d * 13) % 220)
          for d in range(7) for i in range(288)]
    agp = compute_agp(rs)
    for units in ("mg/dL", "mmol/L"):
        out = str(agp_chart(agp, Fmt(units=units), title="Profile"))
        svg = out[out.index("<svg"):out.index("</svg>") + 6]
        drawn = agp_svg(agp, units, PHONE)
        # the same bands, lines and labels as the report's own chart in the phone frame
        for tag in ("polygon", "polyline", "line", "text"):
            assert re.findall(f"<{tag} [^>]*>", svg) == re.findall(f"<{tag} [^>]*>", drawn)
        assert 'viewBox="0 0 320 200"' in svg and 'class="chart agp-chart"' in svg
        assert ("3.0" if units == "mmol/L" else ">54<") in svg
        median = re.search(r'<polyline class="median" points="([^"]*)"', svg)
        assert median is not None
        vertices = {tuple(float(v) for v in p.split(",")) for p in median.group(1).split()}
        assert {(x, y) for x, y, _t, _v in _read(svg)} == vertices  # type: ignore[misc]
    page = agp_svg(agp, "mg/dL", PAGE)
    assert page.count('class="pct-label"') == 5 and 'viewBox="0 0 900 340"' in page


def test_the_comparison_is_the_whole_local_days_before_the_period() -> None:
    """"Compare with the 7 days before" is the 7 whole local days in her zone that end
    where the report's period starts; across the autumn clock change in Paris that is
    7 x 24 hours and one."""
    from glucoledger.api.portal_patient import before_row, summary_row
    from glucoledger.glucose.metrics import summarize
    from glucoledger.node.localdays import whole_days
    from glucoledger.node.report import AgpReport

    paris = ZoneInfo("Europe/Paris")
    now = int(datetime(2026, 11, 5, 9, 30, tzinfo=paris).timestamp() * 1000)
    period = whole_days(7, now, "Europe/Paris", paris)
    rs = [CgmReading(t, 60, 80 + (t // 300_000) % 150)
          for t in range(period.start_ms - 9 * 86_400_000, now, 300_000)]
    inside = [r for r in rs if period.start_ms <= r.time_ms < period.end_ms]
    rep = AgpReport("raw", summarize(inside, start_ms=period.start_ms, end_ms=period.end_ms),
                    compute_agp(inside), (), "alice", "mg/dL", len(inside),
                    period.named_zone)
    row = before_row(rs, rep, 7)
    assert row is not None and row["end_ms"] == period.start_ms
    assert row["end_ms"] - row["start_ms"] == 7 * 86_400_000 + 3_600_000  # 25-hour 25 Oct
    assert datetime.fromtimestamp(row["start_ms"] / 1000, paris).hour == 0
    assert row == summary_row(rs, row["start_ms"], row["end_ms"])
    assert before_row(rs, None, 7) is None

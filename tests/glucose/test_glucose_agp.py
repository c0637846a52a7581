from __future__ import annotations

import re

import pytest

from glucoledger import codec
from glucoledger.errors import OutOfRangeError
from glucoledger.glucose.agp import compute_agp, percentile
from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading
from glucoledger.glucose.report import render_html, render_png
from glucoledger.glucose.simulate import simulate_cgm

MIDNIGHT = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000


def test_percentile_type7() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 50) == 30
    assert percentile(values, 25) == 20
    assert percentile(values, 5) == pytest.approx(12.0)  # position 0.2
    assert percentile(values, 95) == pytest.approx(48.0)
    assert percentile([7.0], 95) == 7


def test_known_bins() -> None:
    # 101 days; at 08:00 each day the value is 100 + day, at 20:00 it is 300 - day.
    readings = [CgmReading(MIDNIGHT - d * DAY + 8 * 60 * MIN, 0, 100 + d) for d in range(101)]
    readings += [CgmReading(MIDNIGHT - d * DAY + 20 * 60 * MIN, 0, 300 - d) for d in range(101)]
    agp = compute_agp(readings, bin_min=30, smooth=False)
    morning = agp.bins[16]
    evening = agp.bins[40]
    assert (morning.start_min, morning.count) == (480, 101)
    assert [morning.get(q) for q in (5, 25, 50, 75, 95)] == [105, 125, 150, 175, 195]
    assert [evening.get(q) for q in (5, 25, 50, 75, 95)] == [205, 225, 250, 275, 295]
    assert agp.bins[0].p50 is None and agp.bins[0].count == 0
    assert len(agp.days) == 101


def test_local_time_of_day() -> None:
    # 07:10 UTC at UTC-05:00 is 02:10 local: bin 8 of 15-minute bins.
    agp = compute_agp([CgmReading(MIDNIGHT + 430 * MIN, -300, 120)], smooth=False)
    assert agp.bins[8].count == 1 and agp.bins[8].p50 == 120
    assert agp.days[0].date == "2026-11-01" and agp.days[0].points == ((130, 120),)


def test_smoothing_wraps_midnight_and_keeps_order() -> None:
    readings = [CgmReading(MIDNIGHT + m * MIN, 0, 100) for m in range(0, 1440, 15)]
    readings[0] = CgmReading(MIDNIGHT, 0, 200)
    agp = compute_agp(readings)
    assert agp.bins[0].p50 == 150  # (2 x 200 + 100 + 100) / 4
    assert agp.bins[-1].p50 == 125  # (2 x 100 + 100 + 200) / 4, neighbour across midnight
    sim = compute_agp(simulate_cgm(1, 14, MIDNIGHT - 14 * DAY))
    for b in sim.bins:
        assert b.p5 is not None and b.p95 is not None
        assert b.p5 <= b.p25 <= b.p50 <= b.p75 <= b.p95  # type: ignore[operator]


def test_value_is_canonical() -> None:
    agp = compute_agp(simulate_cgm(2, 3, MIDNIGHT - 3 * DAY))
    value = agp.to_value()
    assert codec.decode(codec.encode(value)) == value
    assert len(value["bins"]) == 96


def test_no_readings() -> None:
    with pytest.raises(OutOfRangeError):
        compute_agp([])
    with pytest.raises(ValueError):
        compute_agp([CgmReading(MIDNIGHT, 0, 100)], bin_min=7)


@pytest.fixture(scope="module")
def report_inputs() -> tuple[object, object]:
    readings = simulate_cgm(3, 14, MIDNIGHT - 14 * DAY)
    return compute_agp(readings), summarize(readings, start_ms=MIDNIGHT - 14 * DAY, end_ms=MIDNIGHT)


def test_html_report(report_inputs: tuple[object, object]) -> None:
    agp, summary = report_inputs
    page = render_html(agp, summary, patient="P-7f3a <script>")  # type: ignore[arg-type]
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page and "P-7f3a &lt;script&gt;" in page
    assert '<table class="metrics">' in page
    for label, target in [
        ("Time in range 70-180 mg/dL", "&gt; 70 %"),
        ("Time below 70 mg/dL", "&lt; 4 %"),
        ("Time below 54 mg/dL", "&lt; 1 %"),
        ("Time above 180 mg/dL", "&lt; 25 %"),
        ("Time above 250 mg/dL", "&lt; 5 %"),
        ("Glucose variability (CV)", "&lt;= 36 %"),
    ]:
        assert re.search(
            rf"<td>{re.escape(label)}</td><td>[0-9.]+ %</td><td>{re.escape(target)}", page
        ), label
    assert 'class="agp"' in page and "<svg" in page
    assert 'class="band-5-95"' in page and 'class="band-25-75"' in page
    assert 'class="median"' in page
    assert page.count('<figure class="day"') == 14
    assert re.search(r"Sun 2026-10-18 \d\d:\d\d to Sun 2026-11-01 \d\d:\d\d \(UTC\+00:00", page)
    assert "Sufficient data" in page and "Sensor active" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_png_report(report_inputs: tuple[object, object]) -> None:
    agp, summary = report_inputs
    png = render_png(agp, summary, patient="P-7f3a", dpi=50)  # type: ignore[arg-type]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_png_report_summary_view_and_mmol(report_inputs: tuple[object, object]) -> None:
    agp, summary = report_inputs
    aggregate = agp.aggregate()  # type: ignore[attr-defined]
    assert aggregate.days == () and aggregate.bins == agp.bins  # type: ignore[attr-defined]
    png = render_png(aggregate, summary, patient="P-7f3a", dpi=50,  # type: ignore[arg-type]
                     units="mmol/L")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

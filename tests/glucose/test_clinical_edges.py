"""Edge cases of clinical fidelity, as one table per concern (issue 11).

Censored LOW/HIGH (text, flag, limit values), 1-, 5- and 15-minute sensors, a sensor switch,
near-duplicates, conflicting re-uploads, DST days, a time-zone change, a 50 % day, values
exactly on every threshold, mmol/L input and display. Every expected number is computed by
hand in the comment beside it or by the independent time-weighting in ``_reference``.
"""

from __future__ import annotations

from typing import Any

import pytest

from glucoledger.errors import OutOfRangeError
from glucoledger.glucose.agp import compute_agp
from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading, parse_batch
from glucoledger.glucose.report import render_html
from glucoledger.glucose.timeline import interval_for_model, median_spacing_ms, resolve

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
MIN = 60_000
DAY = 86_400_000
NOW = T0 + 30 * DAY


def cgm_items(values: list[Any], step_min: int = 5, **extra: Any) -> list[dict[str, Any]]:
    return [{"time": T0 + i * step_min * MIN, "value": v, **extra} for i, v in enumerate(values)]


def parse(values: list[Any], **kw: Any) -> list[CgmReading]:
    batch = parse_batch("cgm", cgm_items(values, **kw), now_ms=NOW)
    return [r for r in batch.items if isinstance(r, CgmReading)]


# ------------------------------------------------------------------ censored readings

# (name, input item fields, stored mg/dL, censored side)
CENSORED = [
    ("text LOW", {"value": "LOW"}, 40, "low"),
    ("text low, any case and spaces", {"value": " low "}, 40, "low"),
    ("Libre LO", {"value": "LO"}, 40, "low"),
    ("text HIGH", {"value": "HIGH"}, 400, "high"),
    ("Libre HI with its limit", {"value": "HI", "limit": 500}, 500, "high"),
    ("HIGH with a mmol/L limit", {"value": "HIGH", "limit": 22.2, "units": "mmol/L"}, 400,
     "high"),
    ("flag LOW value 39", {"value": 39, "flag": "LOW"}, 39, "low"),
    ("flag HIGH value 401", {"value": 401, "flag": "HIGH"}, 401, "high"),
    ("Dexcom code 39 alone", {"value": 39}, 39, "low"),
    ("a measured 40 is not censored", {"value": 40}, 40, None),
]


@pytest.mark.parametrize(("fields", "mgdl", "side"), [c[1:] for c in CENSORED],
                         ids=[c[0] for c in CENSORED])
def test_censored_readings_are_stored(fields: dict[str, Any], mgdl: int, side: str | None
                                      ) -> None:
    batch = parse_batch("cgm", [{"time": T0, **fields}], now_ms=NOW)
    (r,) = batch.items
    assert isinstance(r, CgmReading) and (r.mgdl, r.censored) == (mgdl, side)
    value = r.to_value()
    assert ("censored" in value) == (side is not None)  # absent when not censored
    assert CgmReading.from_value(value) == r


def test_low_counts_below_54_and_the_verdict_does_not_flip() -> None:
    # One day of 288 readings at 120, 12 of them LOW (1 hour): the case. Dropping
    # the LOW lines gave 0 % below 54 ("met"); a LOW must give 12/288 = 4.17 %.
    values: list[Any] = [120] * 288
    for i in range(100, 112):
        values[i] = "LOW"
    s = summarize(parse(values))
    assert s.tbr54_bp == 417 and s.tbr70_bp == 417 and not s.meets("tbr54_bp")
    assert s.censored_low == 12 and s.censored_high == 0
    # Mean at the limit value 40: (276 x 120 + 12 x 40) / 288 = 116.67
    assert s.mean_dmgdl == 1_167
    assert s.hypo2_episodes == 1 and s.hypo2_min == 60
    high = summarize(parse([120] * 276 + ["HIGH"] * 12))
    assert high.tar250_bp == 417 and high.censored_high == 12 and high.hyper2_episodes == 1
    page = render_html(compute_agp(parse(values)), s, patient="p")
    assert "Sensor LOW readings" in page and "<td>12</td>" in page


# ------------------------------------------------------------------ time weighting


def _reference(times_min: list[float], values: list[int], nominal_min: list[float],
               end_min: float) -> tuple[float, float, float]:
    """Independent time weighting, in floats: (mean, % in 70..180, % of window active)."""
    weights = []
    for i, t in enumerate(times_min):
        nxt = times_min[i + 1] if i + 1 < len(times_min) else end_min
        weights.append(min(nominal_min[i], nxt - t))
    total = sum(weights)
    mean = sum(w * v for w, v in zip(weights, values, strict=True)) / total
    tir = 100 * sum(w for w, v in zip(weights, values, strict=True) if 70 <= v <= 180) / total
    return mean, tir, 100 * total / (end_min - times_min[0])


def test_sensor_switch_is_weighted_by_time() -> None:
    # The case: 7 days of a 5-minute sensor at 220, then 7 days of a 1-minute
    # sensor at 120. Per reading: TIR 83 %, mean 137; by time: 50 % and 170 mg/dL.
    first = [CgmReading(T0 + i * 5 * MIN, 0, 220) for i in range(7 * 288)]
    second = [CgmReading(T0 + 7 * DAY + i * MIN, 0, 120) for i in range(7 * 1440)]
    readings = first + second
    intervals = [5 * MIN] * len(first) + [MIN] * len(second)
    s = summarize(readings, start_ms=T0, end_ms=T0 + 14 * DAY, intervals_ms=intervals)
    assert (s.tir_bp, s.mean_dmgdl, s.active_bp, s.sufficient) == (5_000, 1_700, 10_000, True)
    mean, tir, active = _reference([r.time_ms / MIN for r in readings],
                                   [r.mgdl for r in readings],
                                   [i / MIN for i in intervals], (T0 + 14 * DAY) / MIN)
    assert abs(s.mean - mean) < 0.05 and abs(s.tir - tir) < 0.005 and abs(s.active - active) < 0.005


@pytest.mark.parametrize(("step", "model"), [(1, "FreeStyle Libre 3"), (5, "Dexcom G7"),
                                             (15, "Libre history"), (5, "Medtronic Guardian 4"),
                                             (5, "Eversense E3")])
def test_every_sensor_interval_gives_full_activity(step: int, model: str) -> None:
    # 14.5 gapless days of a sensor: 100 % active, sufficient (15-min data gave 33 % before).
    n = int(14.5 * 1440 / step)
    readings = [CgmReading(T0 + i * step * MIN, 0, 150) for i in range(n)]
    nominal = interval_for_model(model)
    assert nominal == step * MIN
    s = summarize(readings, start_ms=T0, end_ms=T0 + n * step * MIN,
                  intervals_ms=[nominal] * n)
    assert s.active_bp == 10_000 and s.sufficient
    assert median_spacing_ms([r.time_ms for r in readings]) == step * MIN  # unknown model


def test_near_duplicates_count_once_and_gaps_are_not_readings() -> None:
    base = [CgmReading(T0 + i * 5 * MIN, 0, 100) for i in range(12)]
    dupes = [CgmReading(r.time_ms + 1_000, 0, 300) for r in base[:6]]  # 1 s later, re-uploaded
    s = summarize(base + dupes, start_ms=T0, end_ms=T0 + HOUR, interval_min=5)
    # Each 100 stands for 1 s, each 300 for 4 min 59 s: half an hour at 300, not 6 extra.
    assert s.active_bp == 10_000 and s.count == 18
    mean, tir, _ = _reference(sorted(r.time_ms / MIN for r in base + dupes),
                              [r.mgdl for r in sorted(base + dupes, key=lambda r: r.time_ms)],
                              [5] * 18, (T0 + HOUR) / MIN)
    assert abs(s.mean - mean) < 0.05 and abs(s.tir - tir) < 0.005
    gap = summarize(base[:3] + base[9:], start_ms=T0, end_ms=T0 + HOUR, interval_min=5)
    assert gap.active_bp == 5_000  # 6 readings x 5 min of 60 min


HOUR = 3_600_000


def test_a_fifty_percent_day_is_not_sufficient() -> None:
    readings = [CgmReading(T0 + i * 5 * MIN, 0, 120) for i in range(0, 288 * 14, 2)]
    s = summarize(readings, start_ms=T0, end_ms=T0 + 14 * DAY, interval_min=5)
    assert s.active_bp == 5_000 and not s.sufficient


def test_the_window_is_the_period_asked() -> None:
    # Four complete days of data in a 14-day request: 4/14 active, not "87 %".
    readings = [CgmReading(T0 + i * 5 * MIN, 0, 120) for i in range(4 * 288)]
    s = summarize(readings, start_ms=T0, end_ms=T0 + 14 * DAY, interval_min=5)
    assert s.active_bp == 2_857 and s.window_ms == 14 * DAY and not s.sufficient
    assert s.days_with_data == 4


# ------------------------------------------------------------------ conflicts


def test_conflicting_reupload_later_supersedes() -> None:
    first = [CgmReading(T0 + i * 5 * MIN, 0, 100) for i in range(72)]
    second = [CgmReading(r.time_ms, 0, 200) for r in first]
    kept = resolve([*first, *second])
    assert kept.superseded == 72 and {r.mgdl for r in kept.records} == {200}  # type: ignore[union-attr]
    s = summarize([*first, *second])
    assert s.superseded == 72 and s.mean_dmgdl == 2_000 and s.count == 72
    assert resolve([*first, *first]).superseded == 0  # an identical re-upload is no conflict


# ------------------------------------------------------------------ local time


def test_dst_day_and_time_zone_change_use_each_readings_own_offset() -> None:
    # Europe/Berlin, 2026-10-25: clocks go back at 01:00Z; the local day has 25 hours.
    start = 1_792_879_200_000  # 2026-10-24T22:00:00Z = 2026-10-25T00:00+02:00
    readings = []
    for i in range(25 * 12):
        t = start + i * 5 * MIN
        offset = 120 if t < 1_792_890_000_000 else 60  # before / after 01:00Z
        readings.append(CgmReading(t, offset, 120))
    s = summarize(readings, interval_min=5)
    assert s.days_with_data == 1 and s.active_bp == 10_000
    agp = compute_agp(readings)
    assert [d.date for d in agp.days] == ["2026-10-25"]
    # Travel: the same instants read at UTC-05:00 fall on two local days.
    moved = [CgmReading(r.time_ms, -300, r.mgdl) for r in readings]
    assert summarize(moved, interval_min=5).days_with_data == 2


# ------------------------------------------------------------------ thresholds and units

# (value mg/dL, in TIR, below 70, below 54, above 180, above 250)
THRESHOLDS = [
    (53, False, True, True, False, False),
    (54, False, True, False, False, False),
    (69, False, True, False, False, False),
    (70, True, False, False, False, False),
    (180, True, False, False, False, False),
    (181, False, False, False, True, False),
    (250, False, False, False, True, False),
    (251, False, False, False, True, True),
]


@pytest.mark.parametrize(("value", "tir", "b70", "b54", "a180", "a250"), THRESHOLDS)
def test_values_exactly_on_thresholds(value: int, tir: bool, b70: bool, b54: bool, a180: bool,
                                      a250: bool) -> None:
    s = summarize([CgmReading(T0 + i * 5 * MIN, 0, value) for i in range(4)])
    got = (s.tir_bp, s.tbr70_bp, s.tbr54_bp, s.tar180_bp, s.tar250_bp)
    assert got == tuple(10_000 if x else 0 for x in (tir, b70, b54, a180, a250))


def test_mmol_input_and_display() -> None:
    readings = parse([3.9, 10.0, 2.9, 13.9, "LOW"], units="mmol/L")
    assert [r.mgdl for r in readings] == [70, 180, 52, 250, 40]
    s = summarize(readings)
    page = render_html(compute_agp(readings), s, patient="p", units="mmol/L")
    assert "Target range, 3.9-10.0 mmol/L" in page and "Very low, below 3.0 mmol/L" in page
    assert "mg/dL</td>" not in page.split("<h2>Time in ranges</h2>")[1].split("</table>")[0]


def test_gri_zone_and_components() -> None:
    # 10 % below 54, 10 % 54-69, 10 % 181-250, 10 % above 250, 60 % in range:
    # hypo = 10 + 0.8 x 10 = 18; hyper = 10 + 0.5 x 10 = 15; GRI = 3 x 18 + 1.6 x 15 = 78 (D).
    values = [50] * 10 + [60] * 10 + [200] * 10 + [300] * 10 + [120] * 60
    s = summarize([CgmReading(T0 + i * 5 * MIN, 0, v) for i, v in enumerate(values)])
    assert (s.gri_hypo_c, s.gri_hyper_c, s.gri_c, s.gri_zone) == (1_800, 1_500, 7_800, "D")


def test_refusals_name_the_fix() -> None:
    with pytest.raises(OutOfRangeError, match="widen it or upload data"):
        summarize([CgmReading(T0, 0, 100)], start_ms=T0 + DAY, end_ms=T0 + 2 * DAY)


def test_summary_profile_is_withheld_for_few_days() -> None:
    # Over one or two days a bin's median would be a reading: the aggregate drops it.
    short = [CgmReading(T0 + i * 5 * MIN, 0, 100 + i % 50) for i in range(2 * 288)]
    agg = compute_agp(short).aggregate()
    assert agg.days == () and all(b.p50 is None and b.count == 0 for b in agg.bins)
    page = render_html(agg, summarize(short), patient="p")
    assert "Percentile profile withheld" in page and 'class="median"' not in page
    long = [CgmReading(T0 + i * 5 * MIN, 0, 100 + i % 50) for i in range(5 * 288)]
    assert all(b.p50 is not None for b in compute_agp(long).aggregate().bins)

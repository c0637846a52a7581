from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger import codec
from glucoledger.errors import MalformedError, OutOfRangeError
from glucoledger.glucose.metrics import Summary, summarize
from glucoledger.glucose.readings import CgmReading

T0 = 1_793_516_400_000
MIN = 60_000
DAY = 86_400_000


def series(values: list[int], step_min: int = 5, start: int = T0) -> list[CgmReading]:
    return [CgmReading(start + i * step_min * MIN, 0, v) for i, v in enumerate(values)]


def test_hand_computed_small_case() -> None:
    # 54 and 70 and 180 and 250 are the bounds: 70 and 180 are in range; 54 is not below 54;
    # 250 is not above 250.
    values = [40, 53, 54, 69, 70, 100, 180, 181, 250, 251]
    s = summarize(series(values))
    assert s.count == 10 and s.active_ms == 10 * 5 * MIN and s.active_bp == 10_000
    assert s.tir_bp == 3_000  # 70, 100, 180
    assert s.tbr70_bp == 4_000  # 40, 53, 54, 69
    assert s.tbr54_bp == 2_000  # 40, 53
    assert s.tar180_bp == 3_000  # 181, 250, 251
    assert s.tar250_bp == 1_000  # 251
    mean = statistics.mean(values)  # 124.8
    sd = statistics.stdev(values)
    assert s.mean_dmgdl == 1_248
    assert s.sd_dmgdl == round(sd * 10)
    assert s.cv_bp == round(100 * sd / mean * 100)
    assert s.gmi_bp == 630  # 3.31 + 0.02392 x 124.8 = 6.295016 %


def test_rounding_half_up_is_exact() -> None:
    # 1 of 8 readings = 12.5 % exactly = 1250 bp; 1 of 3 = 33.333 % -> 3333 bp.
    assert summarize(series([60] + [100] * 7)).tbr70_bp == 1_250
    assert summarize(series([60, 100, 100])).tbr70_bp == 3_333
    assert summarize(series([60, 60, 100])).tbr70_bp == 6_667


def test_single_reading_has_zero_sd() -> None:
    s = summarize(series([120]))
    assert (s.sd_dmgdl, s.cv_bp, s.mean_dmgdl, s.gmi_bp) == (0, 0, 1_200, 618)


def test_active_percent_with_gap_and_window() -> None:
    # The default window runs from the first reading to one interval after the last: 60
    # minutes; 8 readings of 5 minutes each are active (the 25-minute gap is not).
    readings = series([100] * 5) + series([100] * 3, start=T0 + 45 * MIN)
    s = summarize(readings)
    assert (s.window_ms, s.active_ms, s.active_bp) == (60 * MIN, 40 * MIN, 6_667)
    # An explicit window of one day: 40 of 1440 minutes.
    s = summarize(readings, start_ms=T0, end_ms=T0 + DAY)
    assert (s.window_ms, s.active_ms, s.active_bp) == (DAY, 40 * MIN, 278)


def test_faster_sensor_does_not_exceed_100_percent() -> None:
    s = summarize(series([100] * 60, step_min=1))
    assert s.active_bp == 10_000 and s.count == 60


def test_duplicates_count_once_later_upload_supersedes_and_window_filters() -> None:
    readings = series([100, 200]) + [CgmReading(T0, 0, 300)]
    s = summarize(readings)
    assert s.count == 2 and s.mean_dmgdl == 2_500 and s.superseded == 1
    same = summarize(series([100, 200]) + [CgmReading(T0, 0, 100)])  # identical: no conflict
    assert same.mean_dmgdl == 1_500 and same.superseded == 0
    assert summarize(readings, start_ms=T0 + 5 * MIN).count == 1


def test_days_with_data_use_local_time() -> None:
    # 23:55 and 00:05 UTC are one local day at UTC+2 (01:55 and 02:05), two in UTC.
    midnight = T0 - 7 * 3_600_000 + DAY  # 2026-11-02T00:00Z
    utc = [CgmReading(midnight - 5 * MIN, 0, 100), CgmReading(midnight + 5 * MIN, 0, 100)]
    plus2 = [CgmReading(r.time_ms, 120, r.mgdl) for r in utc]
    assert summarize(utc).days_with_data == 2
    assert summarize(plus2).days_with_data == 1


def test_sufficiency() -> None:
    fourteen = series([120] * (14 * 288))
    assert summarize(fourteen).sufficient
    # 14 local days across a daylight-saving spring-forward last 14 x 24 h minus one hour
    # and are 14 days (node/localdays.py); five minutes less is not
    assert summarize(fourteen[:-12]).window_ms == 14 * DAY - 3_600_000
    assert summarize(fourteen[:-12]).sufficient
    assert not summarize(fourteen[:-13]).sufficient  # 14 days minus 65 minutes
    sparse = fourteen[::2]  # every other reading of a 5-minute sensor: 50 % active
    half = summarize(sparse, start_ms=T0, end_ms=T0 + 14 * DAY, interval_min=5)
    assert half.active_bp == 5_000 and not half.sufficient
    # Without the device's interval the median spacing (10 min) is taken as nominal.
    assert summarize(sparse, start_ms=T0, end_ms=T0 + 14 * DAY).active_bp == 10_000


def test_refusals() -> None:
    with pytest.raises(OutOfRangeError, match="no CGM readings"):
        summarize([])
    with pytest.raises(OutOfRangeError, match="no CGM readings in the window"):
        summarize(series([100]), start_ms=T0 + DAY, end_ms=T0 + 2 * DAY)
    with pytest.raises(OutOfRangeError, match="empty"):
        summarize(series([100]), start_ms=T0, end_ms=T0)


def test_summary_value_round_trip() -> None:
    s = summarize(series([60, 100, 200, 300]))
    value = codec.decode(codec.encode(s.to_value()))
    assert Summary.from_value(value) == s
    value["tir_bp"] = 12.5
    with pytest.raises(MalformedError):
        Summary.from_value(value)


values_strategy = st.lists(st.integers(min_value=39, max_value=500), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(values_strategy)
def test_percentages_partition_and_bounds(values: list[int]) -> None:
    s = summarize(series(values))
    for bp in (s.tir_bp, s.tbr70_bp, s.tbr54_bp, s.tar180_bp, s.tar250_bp, s.active_bp):
        assert 0 <= bp <= 10_000
    # Each of the three is rounded to 0.01 %, so their sum is 100 % within 0.02 %.
    assert abs(s.tir_bp + s.tbr70_bp + s.tar180_bp - 10_000) <= 2
    assert s.tbr54_bp <= s.tbr70_bp and s.tar250_bp <= s.tar180_bp
    assert abs(s.mean - statistics.mean(values)) <= 0.05 + 1e-9
    if len(values) > 1:
        assert abs(s.sd - statistics.stdev(values)) <= 0.05 + 1e-9


@settings(max_examples=100, deadline=None)
@given(values_strategy, st.integers(min_value=1, max_value=50))
def test_gmi_monotone_in_mean(values: list[int], shift: int) -> None:
    higher = [min(500, v + shift) for v in values]
    assert summarize(series(higher)).gmi_bp >= summarize(series(values)).gmi_bp
    if all(v + shift <= 500 for v in values):
        assert summarize(series(higher)).mean_dmgdl > summarize(series(values)).mean_dmgdl

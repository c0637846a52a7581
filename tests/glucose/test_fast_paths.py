"""The optimized MAGE, time weighting and AGP give bit-for-bit the results of the
straightforward implementations they replaced, kept here as the reference (the code of
glucose/mage.py, timeline.weigh and agp.compute_agp before the speed-ups, unchanged but for
names): on random series (hypothesis:
irregular spacing, gaps, flat runs, 1- and 5-minute grids), simulated 14-day data and iglu's
real example data (tests/testdata/iglu). Floats are compared by repr, so -0.0 vs 0.0 and NaN
positions count too.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.glucose import agp, mage
from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading
from glucoledger.glucose.simulate import simulate_cgm
from glucoledger.glucose.timeline import Weighted, weigh

STEP_MS = mage.STEP_MS
DAY_MS = mage.DAY_MS
INTER_GAP_MS = mage.INTER_GAP_MS
MAX_GAP_MS = mage.MAX_GAP_MS
SHORT_MA = mage.SHORT_MA
LONG_MA = mage.LONG_MA
NAN = mage.NAN
DATA = Path(__file__).resolve().parents[1] / "testdata" / "iglu"
T0 = 1_700_006_400_000 - 1_700_006_400_000 % DAY_MS


# --- the reference: glucose/mage.py before the speed-ups -----------------------------------

def ref_grid(times: Sequence[int], values: Sequence[int]) -> tuple[int, list[float]]:
    """Step 1: (grid start ms, interpolated values), NaN outside the data and in gaps."""
    start = times[0] - times[0] % DAY_MS
    end = times[-1] - times[-1] % DAY_MS
    if end < times[-1]:
        end += DAY_MS
    if end == start:
        end += DAY_MS
    n = (end - start) // STEP_MS
    out = [NAN] * n
    j = 0
    for g in range(n):
        x = start + (g + 1) * STEP_MS
        if x < times[0] or x > times[-1]:
            continue
        while j + 1 < len(times) and times[j + 1] <= x:
            j += 1
        if times[j] == x or j + 1 >= len(times):
            out[g] = float(values[j])
        else:
            slope = (values[j + 1] - values[j]) / (times[j + 1] - times[j])
            out[g] = slope * (x - times[j]) + values[j]
    for i in range(len(times) - 1):
        if times[i + 1] - times[i] > INTER_GAP_MS:
            lo = (times[i] - start) // STEP_MS
            hi = (times[i + 1] - start - 1_000) // STEP_MS
            for g in range(max(lo, 0), min(hi, n)):
                out[g] = NAN
    return start, out


def ref_segments(values: list[float]) -> list[list[float]]:
    """Step 2: trim empty ends, split at gaps between values of more than 180 minutes."""
    valid = [i for i, v in enumerate(values) if not math.isnan(v)]
    if not valid:
        return []
    values = values[valid[0]:valid[-1] + 1]
    segments: list[list[float]] = [[]]
    last: int | None = None
    for i, v in enumerate(values):
        if not math.isnan(v):
            if last is not None and (i - last) * STEP_MS > MAX_GAP_MS:
                segments.append([])
            last = i
        segments[-1].append(v)
    for seg in segments:
        while seg and math.isnan(seg[-1]):
            seg.pop()
    return [s for s in segments if s]


def ref_window_mean(values: list[float], i: int, window: int) -> float:
    """The exact (``math.fsum``) mean of the non-empty points of the window ending at ``i``."""
    part = [v for v in values[max(0, i - window + 1):i + 1] if not math.isnan(v)]
    return math.fsum(part) / len(part) if part else NAN


def ref_moving(values: list[float], window: int) -> list[float]:
    """Trailing means over ``window`` points, empty points skipped (a running sum; see
    ``_delta`` for where exactness matters). The first ``window`` points take the value at
    the window's end (or at the last point of a shorter segment), as iglu does."""
    out = []
    total, count = 0.0, 0
    for i, v in enumerate(values):
        if not math.isnan(v):
            total += v
            count += 1
        if i >= window:
            old = values[i - window]
            if not math.isnan(old):
                total -= old
                count -= 1
        out.append(total / count if count else NAN)
    fill = out[-1] if window > len(out) else out[window - 1]
    for i in range(min(window, len(out))):
        out[i] = fill
    return out


def ref_delta(values: list[float]) -> list[float]:
    """Short minus long moving average. Where the running sums' rounding could matter (a
    difference within 1e-6 of zero, whose sign makes a crossing) both means are recomputed
    exactly, so equal means give exactly 0, as in pandas' compensated rolling sums."""
    short, long = ref_moving(values, SHORT_MA), ref_moving(values, LONG_MA)
    delta = [a - b for a, b in zip(short, long, strict=True)]
    n = len(values)
    for i, d in enumerate(delta):
        if abs(d) < 1e-6:
            si = i if i >= SHORT_MA else min(SHORT_MA, n) - 1
            li = i if i >= LONG_MA else min(LONG_MA, n) - 1
            delta[i] = ref_window_mean(values, si, SHORT_MA) - ref_window_mean(values, li, LONG_MA)
    return delta


def ref_sd(values: list[float]) -> float:
    xs = [v for v in values if not math.isnan(v)]
    if len(xs) < 2:
        return NAN
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) * (x - mean) for x in xs) / (len(xs) - 1))


def ref_crossings(gl: list[float], delta: list[float]) -> list[tuple[int, int]]:
    """(index, 0 = REL_MIN / 1 = REL_MAX) where the short-long difference changes sign."""
    crosses = [(0, 1 if delta[0] > 0 else 0)]
    d = [NAN if x == 0 else x for x in delta]
    for i in range(1, len(d)):
        if not (math.isnan(gl[i]) or math.isnan(gl[i - 1])
                or math.isnan(d[i]) or math.isnan(d[i - 1])):
            if d[i] * d[i - 1] < 0:
                crosses.append((i, 0 if d[i] < d[i - 1] else 1))
        elif not math.isnan(d[i]):
            prev = d[crosses[-1][0]]
            if d[i] * prev < 0:
                crosses.append((i, 0 if d[i] < prev else 1))
    crosses.append((len(d) - 1, 1 if d[-1] > 0 else 0))
    return crosses


def ref_extrema(gl: list[float], crosses: list[tuple[int, int]]) -> list[float]:
    minmax: list[float] = []
    index = 0
    for i in range(len(crosses) - 1):
        s1 = crosses[i][0] if i == 0 else index
        part = [(v, k) for k, v in enumerate(gl[s1:crosses[i + 1][0] + 1], start=s1)
                if not math.isnan(v)]
        if not part:
            minmax.append(NAN)
            continue
        pick = min if crosses[i][1] == 0 else max
        best = pick(v for v, _ in part)
        index = next(k for v, k in part if v == best)
        minmax.append(best)
    return minmax


def ref_excursions(m: list[float], sd: float, *, up: bool) -> list[float]:
    """Heights of the excursions larger than ``sd`` between the extrema ``m``: up (nadir to
    peak, MAGE+) or down (peak to nadir, MAGE-, returned as positive heights). iglu's
    ``calculate_mage_plus`` / ``calculate_mage_minus``: a downward excursion is an upward
    one of the negated extrema, except that the next search starts at the excursion's end
    (up) or at its nadir (down)."""
    v = m if up else [-x for x in m]
    heights = []
    n, j, prev = len(v), 0, 0
    while j < n:
        delta = [v[j] - v[a] for a in range(prev, j + 1)]
        best = max(delta)
        i = delta.index(best) + prev
        if best > sd:
            k = j
            while k < n:
                if v[k] >= v[j]:
                    j = k
                if v[k] - v[j] < -sd or k == n - 1:
                    heights.append(v[j] - v[i])
                    prev, j = (k if up else j), k
                    break
                k += 1
        else:
            j += 1
    return heights


def ref_segment_mage(gl: list[float]) -> list[float]:
    """Steps 3-4 for one segment: its MAGE+ and MAGE- (those that exist)."""
    delta = ref_delta(gl)
    sd = ref_sd(gl)
    if len(gl) < 7 or len(gl) < SHORT_MA or all(math.isnan(v) for v in gl) or sd < 1:
        return []
    minmax = ref_extrema(gl, ref_crossings(gl, delta))
    if any(math.isnan(v) for v in minmax):
        return []
    up = ref_excursions(minmax, sd, up=True)
    down = ref_excursions(minmax, sd, up=False)
    out = []
    if up:
        out.append(sum(up) / len(up))
    if down:
        out.append(abs(sum(down) / len(down)))
    return out


def ref_mage_dmgdl(times: Sequence[int], values: Sequence[int]) -> int | None:
    """MAGE of time-sorted, distinct ``times`` (ms) and their mg/dL ``values``, in tenths of
    mg/dL (half up), or None when no segment has an excursion larger than its SD."""
    if len(times) < 2:
        return None
    _start, grid = ref_grid(times, values)
    total = weight = 0.0
    for seg in ref_segments(grid):
        hours = float(len(seg) - 1)  # the segment's duration, in grid steps
        for value in ref_segment_mage(seg):
            total += value * hours
            weight += hours
    if weight <= 0:
        return None
    return math.floor(total / weight * 10 + 0.5)


def ref_weigh(readings: Sequence[CgmReading], intervals_ms: Sequence[int],
              end_ms: int) -> list[Weighted]:
    """timeline.weigh before the speed-up."""
    times = [r.time_ms for r in readings]
    following = [*times[1:], end_ms]
    return [Weighted(r, min(i, f - t)) for r, i, f, t
            in zip(readings, intervals_ms, following, times, strict=True)]


# --- the comparisons ------------------------------------------------------------------------

def same(a: object, b: object) -> None:
    """Bit-for-bit: repr tells -0.0 from 0.0 and shows every digit of a double and each NaN."""
    assert repr(a) == repr(b)


def check_mage(times: list[int], values: list[int]) -> None:
    """Every step of the optimized MAGE equals the reference's on ``times``/``values``."""
    if len(times) >= 2:
        ref_grid_out = ref_grid(times, values)
        same(mage._grid(times, values), ref_grid_out)
        segments = ref_segments(ref_grid_out[1])
        same(mage._segments(list(ref_grid_out[1])), segments)
        for seg in segments:
            for window in (mage.SHORT_MA, mage.LONG_MA):
                same(mage._moving(seg, window), ref_moving(seg, window))
            delta = ref_delta(seg)
            same(mage._delta(seg), delta)
            same(mage._sd(seg), ref_sd(seg))
            crosses = ref_crossings(seg, delta)
            same(mage._crossings(seg, delta), crosses)
            same(mage._extrema(seg, crosses), ref_extrema(seg, crosses))
            same(mage._segment_mage(seg), ref_segment_mage(seg))
    same(mage.mage_dmgdl(times, values), ref_mage_dmgdl(times, values))


def check_weigh(readings: list[CgmReading], intervals: list[int], end_ms: int) -> None:
    fast, ref = weigh(readings, intervals, end_ms), ref_weigh(readings, intervals, end_ms)
    assert fast == ref
    assert all(type(item) is Weighted for item in fast)


def reading(time_ms: int, mgdl: int) -> CgmReading:
    return CgmReading(time_ms=time_ms, tz_offset_min=0, mgdl=mgdl)


#: steps between readings (ms): 1- and 5-minute grids, jitter, near-duplicates, gaps just
#: below/above the 45-minute interpolation limit and the 180-minute segment limit, long ones
STEPS = st.one_of(
    st.sampled_from([60_000, 300_000, 300_000, 300_000, 1_000, 45 * 60_000,
                     45 * 60_000 + 1, 180 * 60_000, 180 * 60_000 + 300_000, DAY_MS]),
    st.integers(1, 400_000),
)


@st.composite
def series(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    start = T0 + draw(st.integers(0, DAY_MS - 1))
    steps = draw(st.lists(STEPS, min_size=0, max_size=400))
    times = [start]
    for step in steps:
        times.append(times[-1] + step)
    level = draw(st.integers(40, 400))
    moves = draw(st.lists(st.sampled_from([0, 0, 0, 1, -1, 7, -7, 40, -40]),
                          min_size=len(times), max_size=len(times)))
    values = []
    for move in moves:
        level = max(40, min(400, level + move))
        values.append(level)
    return times, values


@settings(max_examples=300, deadline=None)
@given(series())
def test_mage_matches_reference_on_random_series(data: tuple[list[int], list[int]]) -> None:
    check_mage(*data)


@settings(max_examples=200, deadline=None)
@given(series(), st.lists(st.integers(1, 20 * 60_000), min_size=1, max_size=3),
       st.integers(1, 30 * 60_000))
def test_weigh_matches_reference_on_random_series(
    data: tuple[list[int], list[int]], intervals: list[int], tail: int
) -> None:
    times, values = data
    readings = [reading(t, v) for t, v in zip(times, values, strict=True)]
    per = [intervals[k % len(intervals)] for k in range(len(readings))]
    check_weigh(readings, per, times[-1] + tail)


def one_minute(readings: list[CgmReading]) -> list[CgmReading]:
    """A 1-minute stream from a 5-minute one: each reading and four more a minute apart,
    their values moved by a deterministic pattern within 40..400."""
    out = []
    for i, r in enumerate(readings):
        for k in range(5):
            mgdl = max(40, min(400, r.mgdl + (i * 7 + k * 3) % 11 - 5))
            out.append(reading(r.time_ms + k * 60_000, mgdl))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("minutes", [5, 1])
def test_simulated_14_days_match_reference(seed: int, minutes: int) -> None:
    cgm = simulate_cgm(seed, 14, T0)
    if minutes == 1:
        cgm = one_minute(cgm)
    times, values = [r.time_ms for r in cgm], [r.mgdl for r in cgm]
    check_mage(times, values)
    check_weigh(cgm, [minutes * 60_000] * len(cgm), times[-1] + minutes * 60_000)
    summary = summarize(cgm, interval_min=minutes)
    assert summary.mage_dmgdl == (ref_mage_dmgdl(times, values) or 0)


def iglu_subjects() -> list[tuple[str, list[int], list[int]]]:
    """iglu's example data (tests/testdata/iglu): per subject, sorted distinct times (ms,
    the CSV's times read as UTC) and values."""
    out = []
    for name in ("example_data_5_subject.csv", "example_data_hall_3_subjects.csv"):
        by_subject: dict[str, dict[int, int]] = {}
        with open(DATA / name, newline="") as handle:
            for row in csv.DictReader(handle):
                if not row["gl"] or row["gl"] == "NA":
                    continue
                moment = datetime.fromisoformat(row["time"]).replace(tzinfo=UTC)
                time_ms = int(moment.timestamp()) * 1000
                by_subject.setdefault(row["id"], {})[time_ms] = round(float(row["gl"]))
        for subject, points in by_subject.items():
            times = sorted(points)
            out.append((f"{name}:{subject}", times, [points[t] for t in times]))
    return out


@pytest.mark.parametrize(("label", "times", "values"), iglu_subjects(),
                         ids=[label for label, _, _ in iglu_subjects()])
def test_iglu_real_data_matches_reference(label: str, times: list[int],
                                          values: list[int]) -> None:
    assert len(times) > 100, label
    check_mage(times, values)
    readings = [reading(t, v) for t, v in zip(times, values, strict=True)]
    check_weigh(readings, [5 * 60_000] * len(readings), times[-1] + 5 * 60_000)


def ref_compute_agp(readings: Sequence[CgmReading], *, bin_min: int = 15,
                    smooth: bool = True) -> agp.Agp:
    """agp.compute_agp before the speed-up (its argument checks left out)."""
    per_bin: list[list[int]] = [[] for _ in range(agp.DAY_MIN // bin_min)]
    per_day: dict[int, list[tuple[int, int]]] = {}
    seen: set[int] = set()
    latest = (0, 0)
    for r in readings:
        if r.time_ms in seen:
            continue
        seen.add(r.time_ms)
        latest = max(latest, (r.time_ms, r.tz_offset_min))
        local = r.time_ms + r.tz_offset_min * 60_000
        minute = (local % DAY_MS) // 60_000
        per_bin[minute // bin_min].append(r.mgdl)
        per_day.setdefault(local // DAY_MS, []).append((minute, r.mgdl))
    raw: dict[int, list[float | None]] = {q: [] for q in agp.PERCENTILES}
    for values in per_bin:
        values.sort()
        for q in agp.PERCENTILES:
            raw[q].append(agp.percentile(values, q) if values else None)
    series = {q: agp._smooth(s) if smooth else s for q, s in raw.items()}
    bins = tuple(
        agp.AgpBin(i * bin_min, len(per_bin[i]), *(series[q][i] for q in agp.PERCENTILES))
        for i in range(len(per_bin))
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    days = tuple(
        agp.DayProfile((epoch + timedelta(days=day)).date().isoformat(), tuple(sorted(points)))
        for day, points in sorted(per_day.items())
    )
    return agp.Agp(bin_min, bins, days, latest[1])


def check_agp(readings: list[CgmReading]) -> None:
    for bin_min, smooth in ((15, True), (60, False), (5, True)):
        same(agp.compute_agp(readings, bin_min=bin_min, smooth=smooth),
             ref_compute_agp(readings, bin_min=bin_min, smooth=smooth))


@settings(max_examples=150, deadline=None)
@given(series(), st.lists(st.integers(-720, 840), min_size=1, max_size=4),
       st.lists(st.integers(0, 400), max_size=20))
def test_agp_matches_reference_on_random_series(
    data: tuple[list[int], list[int]], offsets: list[int], repeats: list[int]
) -> None:
    """Mixed UTC offsets (the latest reading's wins, ties by offset) and re-sent times."""
    times, values = data
    readings = [CgmReading(time_ms=t, tz_offset_min=offsets[k % len(offsets)], mgdl=v)
                for k, (t, v) in enumerate(zip(times, values, strict=True))]
    for k in repeats:
        source = readings[k % len(readings)]
        readings.append(CgmReading(time_ms=source.time_ms, tz_offset_min=offsets[-1],
                                   mgdl=max(40, source.mgdl - 1)))
    check_agp(readings)


@pytest.mark.parametrize("minutes", [5, 1])
def test_agp_simulated_and_iglu_match_reference(minutes: int) -> None:
    cgm = simulate_cgm(4, 14, T0, tz_offset_min=120)
    check_agp(cgm if minutes == 5 else one_minute(cgm))
    for _, times, values in iglu_subjects():
        check_agp([reading(t, v) for t, v in zip(times, values, strict=True)])


# --- the reference: episodes across gaps, every series rebuilt for every threshold ----------

def ref_episodes(weighted: Sequence[Weighted]) -> tuple[int, ...]:
    """glucose/indices.py ``episodes`` before the speed-up: each threshold's series is
    rebuilt whole, every bridged gap sampled on the line, segments found again."""
    from glucoledger.glucose import indices

    times = [w.reading.time_ms for w in weighted]
    values = [w.reading.mgdl for w in weighted]
    weights = [w.weight_ms for w in weighted]
    spans = list(weights)
    for i in range(len(times) - 1):
        if times[i + 1] - times[i] <= indices.BRIDGE_MS:
            spans[i] = times[i + 1] - times[i]

    def kind(threshold: int, below: bool, min_ms: int = indices.EPISODE_MIN_MS) -> list[int]:
        def beyond(v: float) -> bool:
            return v < threshold if below else v > threshold

        t2: list[int] = []
        s2: list[int] = []
        f2: list[bool] = []
        for i, (t, g, span, w) in enumerate(zip(times, values, spans, weights, strict=True)):
            if i + 1 < len(times) and span > w and beyond(g) != beyond(values[i + 1]):
                for pos in range(0, span, w):
                    point = beyond((g * span + (values[i + 1] - g) * pos) / span)
                    if pos and point == f2[-1]:
                        s2[-1] += min(w, span - pos)
                    else:
                        t2 += [t + pos]
                        s2 += [min(w, span - pos)]
                        f2 += [point]
            else:
                t2 += [t]
                s2 += [span]
                f2 += [beyond(g)]
        prefix = [0]
        for s in s2:
            prefix.append(prefix[-1] + s)
        return indices._runs(t2, s2, prefix, indices._segments(t2, s2), f2, min_ms)

    runs = [kind(70, True), kind(54, True), kind(70, True, indices.EXTENDED_MS + 1),
            kind(180, False), kind(250, False)]
    counts = tuple(len(r) for r in runs)
    mins = tuple((sum(r) + 30_000) // 60_000 for r in (runs[0], runs[1], runs[3], runs[4]))
    return counts + mins


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1_000, 60_000, 299_000, 300_000, 600_000, 900_000,
                                           1_200_000, 2_400_000, 2_700_000, 3_000_000]),
                          st.integers(-40, 40)), min_size=1, max_size=80),
       st.integers(40, 300), st.sampled_from([60_000, 300_000, 900_000]))
def test_episodes_across_gaps_match_the_reference(steps: list[tuple[int, int]], first: int,
                                                  interval: int) -> None:
    from dataclasses import astuple

    from glucoledger.glucose.indices import episodes

    t, g, readings = T0, first, []
    for step, change in steps:
        readings.append(CgmReading(t, 0, g))
        t, g = t + step, max(40, min(400, g + change))
    weighted = weigh(readings, [interval] * len(readings), readings[-1].time_ms + interval)
    e = astuple(episodes(weighted))
    # Episodes fields: hypo1, hypo2, extended, hyper1, hyper2, then minutes
    assert (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8]) == ref_episodes(weighted)

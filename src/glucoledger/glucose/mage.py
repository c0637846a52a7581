"""MAGE, the mean amplitude of glycemic excursions, by the moving-average algorithm.

References: Service FJ et al., "Mean amplitude of glycemic excursions, a measure of diabetic
instability", Diabetes 1970;19(9):644-655 (the index); Fernandes NJ et al., "Open-source
algorithm to calculate mean amplitude of glycemic excursions using short and long moving
averages", J Diabetes Sci Technol 2022;16(2):576-577 (the algorithm), as iglu implements it
(``mage(version="ma")``, R and Python; the steps below follow iglu-python 0.4 so the two
agree within 0.1 mg/dL on the same data):

1. Linear interpolation onto a 5-minute grid from 00:05 UTC of the first reading's day to
   midnight after the last (iglu's R-compatible grid, its default); the grid points of a gap
   of more than 45 minutes stay empty (marked, as iglu does, by the indices of the readings'
   5-minute slots counted from midnight, so the first point after the gap stays empty too).
2. Segments split where consecutive grid values are more than 180 minutes apart.
3. In each segment: moving averages over 5 and 32 points (empty points skipped; the first
   5 resp. 32 points take the value at the window's end); their difference changes sign at
   crossings, between which the nadirs and peaks are found.
4. Excursions up (MAGE+) and down (MAGE-) count when larger than the segment's SD; the
   segment's MAGE+ and MAGE- are the means of their heights.
5. MAGE is the mean of all segments' MAGE+ and MAGE- values, each weighted by its segment's
   duration.

Invariants: pure; the arithmetic is IEEE double addition, multiplication and division in a
fixed order (no library functions), so every platform derives the same value; the result is
returned in tenths of mg/dL (an int), or None when no excursion qualifies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

__all__ = ["mage_dmgdl"]

STEP_MS: Final = 5 * 60_000
DAY_MS: Final = 86_400_000
INTER_GAP_MS: Final = 45 * 60_000
MAX_GAP_MS: Final = 180 * 60_000
SHORT_MA: Final = 5
LONG_MA: Final = 32
NAN: Final = float("nan")


def _grid(times: Sequence[int], values: Sequence[int]) -> tuple[int, list[float]]:
    """Step 1: (grid start ms, interpolated values), NaN outside the data and in gaps."""
    start = times[0] - times[0] % DAY_MS
    end = times[-1] - times[-1] % DAY_MS
    if end < times[-1]:
        end += DAY_MS
    if end == start:
        end += DAY_MS
    n = (end - start) // STEP_MS
    out = [NAN] * n
    # only the grid points x = start + (g + 1) * STEP_MS with times[0] <= x <= times[-1]
    first = max(0, -((start - times[0]) // STEP_MS) - 1)
    last = min(n - 1, (times[-1] - start) // STEP_MS - 1)
    j, size = 0, len(times)
    for g in range(first, last + 1):
        x = start + (g + 1) * STEP_MS
        while j + 1 < size and times[j + 1] <= x:
            j += 1
        if times[j] == x or j + 1 >= size:
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


def _segments(values: list[float]) -> list[list[float]]:
    """Step 2: trim empty ends, split at gaps between values of more than 180 minutes."""
    valid = [i for i, v in enumerate(values) if v == v]  # v != v only for NaN
    if not valid:
        return []
    values = values[valid[0]:valid[-1] + 1]
    segments: list[list[float]] = [[]]
    last: int | None = None
    for i, v in enumerate(values):
        if v == v:
            if last is not None and (i - last) * STEP_MS > MAX_GAP_MS:
                segments.append([])
            last = i
        segments[-1].append(v)
    for seg in segments:
        while seg and math.isnan(seg[-1]):
            seg.pop()
    return [s for s in segments if s]


def _window_mean(values: list[float], i: int, window: int) -> float:
    """The exact (``math.fsum``) mean of the non-empty points of the window ending at ``i``."""
    part = [v for v in values[max(0, i - window + 1):i + 1] if not math.isnan(v)]
    return math.fsum(part) / len(part) if part else NAN


def _moving(values: list[float], window: int) -> list[float]:
    """Trailing means over ``window`` points, empty points skipped (a running sum; see
    ``_delta`` for where exactness matters). The first ``window`` points take the value at
    the window's end (or at the last point of a shorter segment), as iglu does."""
    out = []
    total, count = 0.0, 0
    for i, v in enumerate(values):
        if v == v:  # not NaN
            total += v
            count += 1
        if i >= window:
            old = values[i - window]
            if old == old:
                total -= old
                count -= 1
        out.append(total / count if count else NAN)
    fill = out[-1] if window > len(out) else out[window - 1]
    for i in range(min(window, len(out))):
        out[i] = fill
    return out


def _delta(values: list[float]) -> list[float]:
    """Short minus long moving average. Where the running sums' rounding could matter (a
    difference within 1e-6 of zero, whose sign makes a crossing) both means are recomputed
    exactly, so equal means give exactly 0, as in pandas' compensated rolling sums."""
    short, long = _moving(values, SHORT_MA), _moving(values, LONG_MA)
    delta = [a - b for a, b in zip(short, long, strict=True)]
    n = len(values)
    for i, d in enumerate(delta):
        if abs(d) < 1e-6:
            si = i if i >= SHORT_MA else min(SHORT_MA, n) - 1
            li = i if i >= LONG_MA else min(LONG_MA, n) - 1
            delta[i] = _window_mean(values, si, SHORT_MA) - _window_mean(values, li, LONG_MA)
    return delta


def _sd(values: list[float]) -> float:
    xs = [v for v in values if v == v]
    if len(xs) < 2:
        return NAN
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) * (x - mean) for x in xs) / (len(xs) - 1))


def _crossings(gl: list[float], delta: list[float]) -> list[tuple[int, int]]:
    """(index, 0 = REL_MIN / 1 = REL_MAX) where the short-long difference changes sign."""
    crosses = [(0, 1 if delta[0] > 0 else 0)]
    d = [NAN if x == 0 else x for x in delta]
    # a NaN is the one value unequal to itself: one comparison instead of four isnan calls
    for i in range(1, len(d)):
        di, dp = d[i], d[i - 1]
        if gl[i] == gl[i] and gl[i - 1] == gl[i - 1] and di == di and dp == dp:
            if di * dp < 0:
                crosses.append((i, 0 if di < dp else 1))
        elif di == di:
            prev = d[crosses[-1][0]]
            if di * prev < 0:
                crosses.append((i, 0 if di < prev else 1))
    crosses.append((len(d) - 1, 1 if d[-1] > 0 else 0))
    return crosses


def _extrema(gl: list[float], crosses: list[tuple[int, int]]) -> list[float]:
    minmax: list[float] = []
    index = 0
    for i in range(len(crosses) - 1):
        s1 = crosses[i][0] if i == 0 else index
        part = [(v, k) for k, v in enumerate(gl[s1:crosses[i + 1][0] + 1], start=s1)
                if v == v]
        if not part:
            minmax.append(NAN)
            continue
        pick = min if crosses[i][1] == 0 else max
        best = pick(v for v, _ in part)
        index = next(k for v, k in part if v == best)
        minmax.append(best)
    return minmax


def _excursions(m: list[float], sd: float, *, up: bool) -> list[float]:
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


def _segment_mage(gl: list[float]) -> list[float]:
    """Steps 3-4 for one segment: its MAGE+ and MAGE- (those that exist)."""
    delta = _delta(gl)
    sd = _sd(gl)
    if len(gl) < 7 or len(gl) < SHORT_MA or all(math.isnan(v) for v in gl) or sd < 1:
        return []
    minmax = _extrema(gl, _crossings(gl, delta))
    if any(math.isnan(v) for v in minmax):
        return []
    up = _excursions(minmax, sd, up=True)
    down = _excursions(minmax, sd, up=False)
    out = []
    if up:
        out.append(sum(up) / len(up))
    if down:
        out.append(abs(sum(down) / len(down)))
    return out


def mage_dmgdl(times: Sequence[int], values: Sequence[int]) -> int | None:
    """MAGE of time-sorted, distinct ``times`` (ms) and their mg/dL ``values``, in tenths of
    mg/dL (half up), or None when no segment has an excursion larger than its SD."""
    if len(times) < 2:
        return None
    _start, grid = _grid(times, values)
    total = weight = 0.0
    for seg in _segments(grid):
        hours = float(len(seg) - 1)  # the segment's duration, in grid steps
        for value in _segment_mage(seg):
            total += value * hours
            weight += hours
    if weight <= 0:
        return None
    return math.floor(total / weight * 10 + 0.5)

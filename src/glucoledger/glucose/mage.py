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
returned in tenths of mg/dL (an int), or None when no excursion qualifies. The grid, moving
averages, SD, crossings and extrema are numpy vector operations doing exactly those
operations in that order (elementwise arithmetic, sequential ``np.add.accumulate`` for
running sums, first-occurrence ``argmin``/``argmax``), bit for bit the sequential loops they
replaced (tests/glucose/test_fast_paths.py keeps those loops as the reference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["mage_dmgdl"]

STEP_MS: Final = 5 * 60_000
DAY_MS: Final = 86_400_000
INTER_GAP_MS: Final = 45 * 60_000
MAX_GAP_MS: Final = 180 * 60_000
SHORT_MA: Final = 5
LONG_MA: Final = 32
NAN: Final = float("nan")


def _grid(times: Sequence[int], values: Sequence[int]) -> tuple[int, list[float]]:
    """Step 1 as a list (``_grid_array``)."""
    start, out = _grid_array(times, values)
    return start, out.tolist()


def _grid_array(times: Sequence[int], values: Sequence[int]
                ) -> tuple[int, npt.NDArray[np.float64]]:
    """Step 1: (grid start ms, interpolated values), NaN outside the data and in gaps.

    Vectorized: each grid point's reading is found by binary search; the interpolation is
    the same IEEE operations on the same operands, element by element (integers below 2**53
    convert to doubles exactly, and CPython divides two such integers as doubles)."""
    start = times[0] - times[0] % DAY_MS
    end = times[-1] - times[-1] % DAY_MS
    if end < times[-1]:
        end += DAY_MS
    if end == start:
        end += DAY_MS
    n = (end - start) // STEP_MS
    out = np.full(n, NAN)
    # only the grid points x = start + (g + 1) * STEP_MS with times[0] <= x <= times[-1]
    first = max(0, -((start - times[0]) // STEP_MS) - 1)
    last = min(n - 1, (times[-1] - start) // STEP_MS - 1)
    t = np.asarray(times, dtype=np.int64)
    v = np.asarray(values, dtype=np.int64)
    if last >= first:
        g = np.arange(first, last + 1, dtype=np.int64)
        x = start + (g + 1) * STEP_MS
        j = np.searchsorted(t, x, side="right") - 1  # the last reading at or before x
        nxt = np.minimum(j + 1, len(t) - 1)
        exact = (t[j] == x) | (j + 1 >= len(t))
        slope = (v[nxt] - v[j]).astype(np.float64) / np.where(
            exact, 1, t[nxt] - t[j]).astype(np.float64)
        line = slope * (x - t[j]).astype(np.float64) + v[j].astype(np.float64)
        out[first:last + 1] = np.where(exact, v[j].astype(np.float64), line)
    for i in np.flatnonzero(np.diff(t) > INTER_GAP_MS).tolist():
        lo = (times[i] - start) // STEP_MS
        hi = (times[i + 1] - start - 1_000) // STEP_MS
        if max(lo, 0) < min(hi, n):
            out[max(lo, 0):min(hi, n)] = NAN
    return start, out


def _segments(values: Sequence[float]) -> list[list[float]]:
    """Step 2 as lists (``_segment_arrays``)."""
    return [seg.tolist() for seg in _segment_arrays(np.asarray(values, dtype=np.float64))]


def _segment_arrays(arr: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float64]]:
    """Step 2: trim empty ends, split at gaps between values of more than 180 minutes: a
    segment runs from a value to the last value before the next such gap."""
    valid = np.flatnonzero(~np.isnan(arr))
    if not valid.size:
        return []
    split = np.diff(valid) * STEP_MS > MAX_GAP_MS
    starts = [int(valid[0]), *valid[1:][split].tolist()]
    ends = [*valid[:-1][split].tolist(), int(valid[-1])]
    return [arr[a:b + 1] for a, b in zip(starts, ends, strict=True)]


def _window_mean(values: Sequence[float] | npt.NDArray[np.float64], i: int,
                 window: int) -> float:
    """The exact (``math.fsum``) mean of the non-empty points of the window ending at ``i``."""
    part = [v for v in values[max(0, i - window + 1):i + 1] if not math.isnan(v)]
    return math.fsum(part) / len(part) if part else NAN


def _moving_array(arr: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """``_moving`` on an array. The running sum adds each point and then takes away the one
    leaving the window, in that order, as one sequential ``np.add.accumulate`` (a strict
    left-to-right loop, unlike ``np.sum``) over the interleaved steps; an empty point adds
    0.0, which leaves a running sum of positive glucose values unchanged."""
    n = len(arr)
    empty = np.isnan(arr)
    steps = np.zeros(2 * n)
    steps[0::2] = np.where(empty, 0.0, arr)
    counts = np.zeros(2 * n, dtype=np.int64)
    counts[0::2] = ~empty
    if n > window:
        old = arr[:n - window]
        steps[2 * window + 1::2] = np.where(np.isnan(old), 0.0, -old)
        counts[2 * window + 1::2] = -(~np.isnan(old)).astype(np.int64)
    total = np.add.accumulate(steps)[1::2]
    count = np.add.accumulate(counts)[1::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), NAN)
    fill = out[-1] if window > n else out[window - 1]
    out[:min(window, n)] = fill
    return out


def _moving(values: Sequence[float], window: int) -> list[float]:
    """Trailing means over ``window`` points, empty points skipped (a running sum; see
    ``_delta`` for where exactness matters). The first ``window`` points take the value at
    the window's end (or at the last point of a shorter segment), as iglu does."""
    if not values:
        return []
    out: list[float] = _moving_array(np.asarray(values, dtype=np.float64), window).tolist()
    return out


def _delta_array(values: Sequence[float] | npt.NDArray[np.float64]
                 ) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    delta = _moving_array(arr, SHORT_MA) - _moving_array(arr, LONG_MA)
    n = len(values)
    for i in np.flatnonzero(np.abs(delta) < 1e-6).tolist():
        si = i if i >= SHORT_MA else min(SHORT_MA, n) - 1
        li = i if i >= LONG_MA else min(LONG_MA, n) - 1
        delta[i] = _window_mean(values, si, SHORT_MA) - _window_mean(values, li, LONG_MA)
    return delta


def _delta(values: Sequence[float]) -> list[float]:
    """Short minus long moving average. Where the running sums' rounding could matter (a
    difference within 1e-6 of zero, whose sign makes a crossing) both means are recomputed
    exactly, so equal means give exactly 0, as in pandas' compensated rolling sums."""
    if not values:
        return []
    out: list[float] = _delta_array(values).tolist()
    return out


def _sd(values: Sequence[float] | npt.NDArray[np.float64]) -> float:
    """The sample SD of the non-empty points: Python's ``sum`` order (left to right), as a
    sequential ``np.add.accumulate``."""
    arr = np.asarray(values, dtype=np.float64)
    xs = arr[~np.isnan(arr)]
    if len(xs) < 2:
        return NAN
    mean = float(np.add.accumulate(xs)[-1]) / len(xs)
    dev = xs - mean
    return math.sqrt(float(np.add.accumulate(dev * dev)[-1]) / (len(xs) - 1))


def _crossings(gl: Sequence[float] | npt.NDArray[np.float64],
               delta: Sequence[float] | npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """(index, 0 = REL_MIN / 1 = REL_MAX) where the short-long difference changes sign.

    Where a point and its predecessor are both present (glucose and difference), a
    crossing is a sign change between them, found for all such points at once; elsewhere
    (next to an empty point) the difference is compared with the one at the last crossing,
    which depends on the crossings before, so those few points are taken in order."""
    d = np.asarray(delta, dtype=np.float64)
    d = np.where(d == 0, NAN, d)
    g = np.asarray(gl, dtype=np.float64)
    first = (0, 1 if d[0] > 0 else 0)
    n = len(d)
    if n > 1:
        di, dp = d[1:], d[:-1]
        both = ~np.isnan(g[1:]) & ~np.isnan(g[:-1]) & ~np.isnan(di) & ~np.isnan(dp)
        with np.errstate(invalid="ignore"):
            flips = both & (di * dp < 0)
        lone = ~both & ~np.isnan(di)
        flip_at = (np.flatnonzero(flips) + 1).tolist()
        lone_at = (np.flatnonzero(lone) + 1).tolist()
    else:
        flip_at, lone_at = [], []
    crosses = [first]
    if not lone_at:
        kinds = (d[flip_at] < d[np.asarray(flip_at, dtype=np.int64) - 1]).tolist()
        crosses.extend((i, 0 if low else 1) for i, low in zip(flip_at, kinds, strict=True))
    else:
        dl = d.tolist()
        lone_set = set(lone_at)
        for i in sorted(set(flip_at) | lone_set):
            di_ = dl[i]
            if i in lone_set:
                prev = dl[crosses[-1][0]]
                if di_ * prev < 0:
                    crosses.append((i, 0 if di_ < prev else 1))
            else:
                crosses.append((i, 0 if di_ < dl[i - 1] else 1))
    crosses.append((n - 1, 1 if d[-1] > 0 else 0))
    return crosses


def _extrema(gl: Sequence[float] | npt.NDArray[np.float64],
             crosses: list[tuple[int, int]]) -> list[float]:
    """The nadir or peak between consecutive crossings (the first one found, empty points
    skipped); the next search starts at the index of the last one found."""
    arr = np.asarray(gl, dtype=np.float64)
    empty = np.isnan(arr)
    low = np.where(empty, np.inf, arr)  # glucose is finite: inf only where empty
    high = np.where(empty, -np.inf, arr)
    minmax: list[float] = []
    index = 0
    for i in range(len(crosses) - 1):
        s1 = crosses[i][0] if i == 0 else index
        e = crosses[i + 1][0] + 1
        if s1 >= e or empty[s1:e].all():
            minmax.append(NAN)
            continue
        if crosses[i][1] == 0:
            k = int(low[s1:e].argmin())
        else:
            k = int(high[s1:e].argmax())
        index = s1 + k
        minmax.append(float(arr[index]))
    return minmax


def _excursions(m: list[float], sd: float, *, up: bool) -> list[float]:
    """Heights of the excursions larger than ``sd`` between the extrema ``m``: up (nadir to
    peak, MAGE+) or down (peak to nadir, MAGE-, returned as positive heights). iglu's
    ``calculate_mage_plus`` / ``calculate_mage_minus``: a downward excursion is an upward
    one of the negated extrema, except that the next search starts at the excursion's end
    (up) or at its nadir (down). The largest rise into each point is one vector step (the
    same subtractions; ``argmax`` picks the first largest, as ``list.index`` does)."""
    v = m if up else [-x for x in m]
    arr = np.asarray(v, dtype=np.float64)
    heights = []
    n, j, prev = len(v), 0, 0
    while j < n:
        rise = arr[j] - arr[prev:j + 1]
        i = int(rise.argmax()) + prev
        best = float(rise[i - prev])
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


def _segment_mage(gl: Sequence[float] | npt.NDArray[np.float64]) -> list[float]:
    """Steps 3-4 for one segment: its MAGE+ and MAGE- (those that exist)."""
    arr = np.asarray(gl, dtype=np.float64)
    if not len(arr):
        return []
    delta = _delta_array(arr)
    sd = _sd(arr)
    if len(arr) < 7 or len(arr) < SHORT_MA or bool(np.isnan(arr).all()) or sd < 1:
        return []
    minmax = _extrema(arr, _crossings(arr, delta))
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
    _start, grid = _grid_array(times, values)
    total = weight = 0.0
    for seg in _segment_arrays(grid):
        hours = float(len(seg) - 1)  # the segment's duration, in grid steps
        for value in _segment_mage(seg):
            total += value * hours
            weight += hours
    if weight <= 0:
        return None
    return math.floor(total / weight * 10 + 0.5)

"""The Ambulatory Glucose Profile (AGP): modal-day percentile bands and daily profiles.

References: Mazze RS et al., "Characterizing glucose exposure for individuals with normal
glucose tolerance using continuous glucose monitoring and ambulatory glucose profile
analysis", Diabetes Technol Ther 2008;10(3):149-159 (the AGP); Battelino et al., Diabetes
Care 2019;42(8):1593-1603 (the consensus report layout and targets); the IDC AGP report v5.

Computation (``compute_agp``):
- Every reading is placed on a modal day by its own local time of day (UTC time plus the
  reading's UTC offset), in bins of ``bin_min`` minutes (default 15, so 96 bins).
- In each bin, the 5th, 25th, 50th, 75th and 95th percentiles of the readings, by linear
  interpolation between order statistics (the "type 7" definition of R's ``quantile`` and
  NumPy's default): position (n - 1) x q in the sorted values.
- Light smoothing (``smooth=True``): each percentile series is averaged with weights 1-2-1
  over the bin and its two neighbours, wrapping around midnight; empty bins are skipped and
  the weights renormalised. ``smooth=False`` gives the raw bin percentiles.
- Daily profiles: each local calendar day's readings as (minute of day, mg/dL).

``render_html`` builds a self-contained printable page (no scripts, no external resources:
the charts are inline SVG) and ``render_png`` the same picture through matplotlib's Agg
backend, returning bytes (the library writes no files).

Invariants: pure functions of their inputs (no clock, no I/O); ``Agp.to_value()`` holds ints
(tenths of mg/dL) and None only, ready for ``codec.encode``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from ..errors import OutOfRangeError
from .readings import CgmReading

__all__ = ["MIN_PROFILE_DAYS", "PERCENTILES", "Agp", "AgpBin", "DayProfile", "compute_agp",
           "percentile"]

PERCENTILES: Final = (5, 25, 50, 75, 95)
#: A summary view shows the percentile profile only when this many local days hold data.
MIN_PROFILE_DAYS: Final = 5
DAY_MIN: Final = 1_440
DAY_MS: Final = 86_400_000


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation (type 7)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    position = (len(sorted_values) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


@dataclass(frozen=True, slots=True)
class AgpBin:
    """One time-of-day bin: ``start_min`` minutes after midnight, readings, percentiles."""

    start_min: int
    count: int
    p5: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p95: float | None

    def get(self, q: int) -> float | None:
        value: float | None = getattr(self, f"p{q}")
        return value


@dataclass(frozen=True, slots=True)
class DayProfile:
    """One local calendar day (ISO date) and its readings as (minute of day, mg/dL)."""

    date: str
    points: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Agp:
    """A modal-day percentile profile plus the per-day traces it came from."""

    bin_min: int
    bins: tuple[AgpBin, ...]
    days: tuple[DayProfile, ...]
    #: The UTC offset of the latest reading: the patient's local time for labels.
    tz_offset_min: int = 0

    def aggregate(self) -> Agp:
        """The percentile profile alone (no daily profile, no reading): what a summary
        grant may see. With data from fewer than ``MIN_PROFILE_DAYS`` local days the
        percentiles are withheld too (every bin empty): over one or two days a bin's median
        would be a reading."""
        bins = self.bins
        if len(self.days) < MIN_PROFILE_DAYS:
            bins = tuple(AgpBin(b.start_min, 0, None, None, None, None, None) for b in bins)
        return Agp(self.bin_min, bins, (), self.tz_offset_min)

    def series(self, q: int) -> list[float | None]:
        """The q-th percentile (one of PERCENTILES) across the bins."""
        return [b.get(q) for b in self.bins]

    def to_value(self) -> dict[str, Any]:
        """Ints only: percentiles in tenths of mg/dL (None for an empty bin)."""

        def tenths(x: float | None) -> int | None:
            return None if x is None else math.floor(x * 10 + 0.5)

        return {
            "bin_min": self.bin_min,
            "bins": [
                [b.start_min, b.count, *(tenths(b.get(q)) for q in PERCENTILES)] for b in self.bins
            ],
            "days": [{"date": d.date, "points": [list(p) for p in d.points]} for d in self.days],
            "tz_offset_min": self.tz_offset_min,
        }


def _smooth(series: list[float | None]) -> list[float | None]:
    n = len(series)
    out: list[float | None] = []
    for i, value in enumerate(series):
        if value is None:
            out.append(None)
            continue
        total, weight = 2 * value, 2
        for j in (i - 1, (i + 1) % n):
            neighbour = series[j]
            if neighbour is not None:
                total += neighbour
                weight += 1
        out.append(total / weight)
    return out


def compute_agp(readings: Iterable[CgmReading], *, bin_min: int = 15, smooth: bool = True) -> Agp:
    """Compute the AGP of ``readings``.

    ``bin_min`` must divide 1440 (a day). Raises OutOfRangeError when there are no readings
    and ValueError for a ``bin_min`` that does not divide the day.
    """
    if bin_min <= 0 or DAY_MIN % bin_min:
        raise ValueError("bin_min must be a positive divisor of 1440")
    nbins = DAY_MIN // bin_min
    items = list(readings)
    if not items:
        raise OutOfRangeError("no CGM readings for an AGP; upload some first")
    # Vector steps over the readings (integer arithmetic, exact): the first reading of each
    # instant counts; its local minute of the day picks the bin, its local day the profile.
    all_times = np.fromiter((r.time_ms for r in items), dtype=np.int64, count=len(items))
    _, first = np.unique(all_times, return_index=True)
    times = all_times[first]
    offsets = np.fromiter((items[i].tz_offset_min for i in first.tolist()), dtype=np.int64,
                          count=len(first))
    mgdl = np.fromiter((items[i].mgdl for i in first.tolist()), dtype=np.int64,
                       count=len(first))
    latest_offset = int(offsets[-1])  # times are sorted and distinct: the last is the latest
    local = times + offsets * 60_000
    minute = (local % DAY_MS) // 60_000
    day_of = local // DAY_MS
    bin_of = minute // bin_min
    order = np.lexsort((mgdl, bin_of))
    cuts = np.searchsorted(bin_of[order], np.arange(nbins + 1)).tolist()
    by_bin = mgdl[order].tolist()
    per_bin = [by_bin[cuts[i]:cuts[i + 1]] for i in range(nbins)]
    order = np.lexsort((mgdl, minute, day_of))
    day_sorted = day_of[order]
    points = list(zip(minute[order].tolist(), mgdl[order].tolist(), strict=True))
    day_keys, starts = np.unique(day_sorted, return_index=True)
    bounds = [*starts.tolist(), len(points)]
    per_day = {int(k): points[bounds[i]:bounds[i + 1]]
               for i, k in enumerate(day_keys.tolist())}

    raw: dict[int, list[float | None]] = {q: [] for q in PERCENTILES}
    for values in per_bin:  # each already sorted
        for q in PERCENTILES:
            raw[q].append(percentile(values, q) if values else None)
    series = {q: _smooth(s) if smooth else s for q, s in raw.items()}
    bins = tuple(
        AgpBin(i * bin_min, len(per_bin[i]), *(series[q][i] for q in PERCENTILES))
        for i in range(len(per_bin))
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    days = tuple(
        DayProfile((epoch + timedelta(days=day)).date().isoformat(), tuple(points))
        for day, points in sorted(per_day.items())
    )
    return Agp(bin_min, bins, days, latest_offset)

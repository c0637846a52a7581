"""Risk and variability indices and glycemic episodes, on the time-weighted timeline.

Every index weighs each reading by the time it stands for (glucose/timeline.py); on a regular
grid that is the plain per-reading mean the references use. All results are integers (in
hundredths, or whole counts and minutes) so every node derives the same bytes.

- GRI, the Glycemia Risk Index: Klonoff DC et al., "A Glycemia Risk Index (GRI) of
  Hypoglycemia and Hyperglycemia for Continuous Glucose Monitoring Validated by Clinician
  Ratings", J Diabetes Sci Technol 2023;17(5):1226-1242, doi:10.1177/19322968221085273.
  Hypo component = VLow + 0.8 x Low; hyper component = VHigh + 0.5 x High, with VLow = % time
  < 54, Low = % 54..69, VHigh = % > 250, High = % 181..250; GRI = 3.0 x hypo + 1.6 x hyper,
  capped at 100. Zones (AGP report v5): A 0-20, B 20-40, C 40-60, D 60-80, E 80-100
  (a value on a boundary belongs to the lower zone).
- LBGI / HBGI: Kovatchev BP et al., Diabetes Care 1997;20(11):1655 and Diabetes Technol Ther
  2005;7(6):849. f(g) = 1.509 x (ln(g)^1.084 - 5.381), r(g) = 10 x f(g)^2; LBGI is the mean
  of r over readings with f < 0 (g < 112.5 mg/dL) counting the others as 0; HBGI likewise
  with f > 0. r is evaluated with ``decimal`` (correctly rounded ln and power, so identical
  on every platform) and kept in millionths.
- J-index: Wojcicki JM, Horm Metab Res 1995;27(1):41-42: 0.001 x (mean + SD)^2, mg/dL.
- Episodes: Battelino T et al., "Continuous glucose monitoring and metrics for clinical
  trials: an international consensus statement", Lancet Diabetes Endocrinol
  2023;11(1):42-57. An episode starts with at least 15 consecutive minutes beyond the
  threshold (hypo: < 70 level 1, < 54 level 2; hyper: > 180 level 1, > 250 level 2) and ends
  with at least 15 consecutive minutes back (or at a data gap, or at the end of the data).
  Extended hypoglycemia: more than 120 consecutive minutes < 70. Level 1 counts every < 70
  (or > 180) episode, including those that reach level 2 (as iglu's ``lv1``). Minutes are
  each episode's time from its start to the start of the 15 minutes that ended it.
  Consecutive: readings at most ``BRIDGE_MS`` (45 min) apart, the gap iglu interpolates
  over (``inter_gap``). Across such a gap glucose is taken to follow the straight line
  between the two readings, sampled as iglu samples it (its linear interpolation onto a
  5-minute grid): when both readings are on the same side of a threshold the whole gap is on
  that side; when they are on opposite sides, the gap is cut into points every interval of
  the reading (its time weight) on that line, each beyond or not by its interpolated value.
  So one reading of 69 mg/dL followed 15 minutes later by 100 (points 69, 79.3, 89.7) is 5
  minutes below 70, not 15 (no episode), while 69 then 65 fifteen minutes later is 20
  minutes below 70 (an episode). Why: the consensus
  counts >= 15 consecutive minutes and is silent on gaps; carrying one reading forward over
  a gap would invent 10 minutes below 70 that the next reading contradicts, while
  interpolating is what iglu does (``episode_calculation``: a 5-minute grid interpolated
  over gaps up to 45 minutes) and what cgmanalysis's interpolated series assumes. A longer
  gap ends any episode (at the end of the last reading's weight). docs/clinical.md states
  the rule with its worked cases.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from functools import lru_cache
from itertools import accumulate, groupby
from typing import Final

from .timeline import Weighted

__all__ = ["EPISODE_MIN_MS", "Episodes", "episodes", "gri_zone", "risk_micro"]

EPISODE_MIN_MS: Final = 15 * 60_000
EXTENDED_MS: Final = 120 * 60_000
BRIDGE_MS: Final = 45 * 60_000
_CTX: Final = Context(prec=40)


@lru_cache(maxsize=1024)
def risk_micro(mgdl: int) -> tuple[int, int]:
    """(low risk, high risk) of one glucose value, in millionths: r(g) split by the sign of f."""
    g = Decimal(mgdl)
    ln = g.ln(_CTX)
    f = _CTX.multiply(Decimal("1.509"), _CTX.subtract(_CTX.power(ln, Decimal("1.084")),
                                                       Decimal("5.381")))
    r = _CTX.multiply(Decimal(10), _CTX.multiply(f, f))
    micro = int(_CTX.multiply(r, Decimal(1_000_000)).to_integral_value())
    return (micro, 0) if f < 0 else (0, micro)


def gri_zone(gri_c: int) -> str:
    """The AGP v5 GRI zone (A..E) of a GRI in hundredths."""
    for letter, upper in (("A", 2_000), ("B", 4_000), ("C", 6_000), ("D", 8_000)):
        if gri_c <= upper:
            return letter
    return "E"


@dataclass(frozen=True, slots=True)
class Episodes:
    """Episode counts and total minutes (see the module docstring)."""

    hypo1: int
    hypo2: int
    hypo_extended: int
    hyper1: int
    hyper2: int
    hypo1_min: int
    hypo2_min: int
    hyper1_min: int
    hyper2_min: int


def _runs(times: Sequence[int], spans: Sequence[int], prefix: Sequence[int],
          segments: Sequence[tuple[int, int]], flags: Sequence[bool], min_ms: int) -> list[int]:
    """Durations (ms) of the episodes of one kind. ``flags[i]``: reading i is beyond the
    threshold; ``spans[i]``: the time it stands for; ``prefix``: running sums of spans;
    ``segments``: (first, last) index ranges without a data gap. An episode starts at a run
    beyond the threshold lasting ``min_ms``, ends at the start of a run back lasting 15
    minutes, or at a gap (its end), or at the end of the data (at a trailing run back)."""
    out: list[int] = []
    for number, (first, last) in enumerate(segments):
        start: int | None = None
        back_at: int | None = None
        for flag, group in groupby(range(first, last + 1), key=flags.__getitem__):
            run = list(group)
            a, b = run[0], run[-1]
            duration = prefix[b + 1] - prefix[a]
            if flag:
                back_at = None
                if start is None and duration >= min_ms:
                    start = times[a]
            elif start is not None:
                back_at = times[a]
                if duration >= EPISODE_MIN_MS:
                    out.append(times[a] - start)
                    start = back_at = None
        if start is not None:
            end = times[last] + spans[last]
            if number == len(segments) - 1 and back_at is not None:
                end = back_at
            out.append(end - start)
    return out


def _crossed(times: Sequence[int], values: Sequence[int], spans: Sequence[int],
             weights: Sequence[int], flags: Sequence[bool], threshold: int, below: bool,
             cut: Sequence[int]) -> tuple[list[int], list[int], list[bool], list[int]]:
    """(times, spans, flags, extra points per cut) of one threshold (beyond: ``< threshold``
    if ``below``, else ``> threshold``) with the bridged gaps after the readings ``cut``
    (whose two readings lie on opposite sides of it) interpolated: points every
    ``weights[i]`` from the reading, each on the straight line to the next reading and
    standing for its interval (the last one for what remains), as iglu's 5-minute grid does.
    Integers only: point k is beyond when g0 x gap + (g1 - g0) x k x w compares beyond
    threshold x gap."""
    t2: list[int] = []
    s2: list[int] = []
    f2: list[bool] = []
    extras: list[int] = []
    prev = 0
    for i in cut:
        t2 += times[prev:i]
        s2 += spans[prev:i]
        f2 += flags[prev:i]
        before = len(t2)
        span, w = spans[i], weights[i]
        g0, dg, limit = values[i] * span, values[i + 1] - values[i], threshold * span
        for pos in range(0, span, w):
            v = g0 + dg * pos
            beyond = v < limit if below else v > limit
            if pos and beyond == f2[-1]:
                s2[-1] += min(w, span - pos)
            else:
                t2.append(times[i] + pos)
                s2.append(min(w, span - pos))
                f2.append(beyond)
        extras.append(len(t2) - before - 1)
        prev = i + 1
    t2 += times[prev:]
    s2 += spans[prev:]
    f2 += flags[prev:]
    return t2, s2, f2, extras


def _segments(times: Sequence[int], spans: Sequence[int]) -> list[tuple[int, int]]:
    """(first, last) index ranges without a data gap."""
    segments: list[tuple[int, int]] = []
    first = 0
    for i in range(len(times) - 1):
        if times[i] + spans[i] != times[i + 1]:  # a data gap
            segments.append((first, i))
            first = i + 1
    if times:
        segments.append((first, len(times) - 1))
    return segments


def episodes(weighted: Sequence[Weighted]) -> Episodes:
    """Hypo- and hyperglycemia episodes per the 2023 consensus (module docstring)."""
    times = [item.reading.time_ms for item in weighted]
    values = [item.reading.mgdl for item in weighted]
    weights = [item.weight_ms for item in weighted]
    spans = list(weights)
    n = len(times)
    for i in range(n - 1):
        if times[i + 1] - times[i] <= BRIDGE_MS:
            spans[i] = times[i + 1] - times[i]  # bridged up to the next reading
    prefix = [0, *accumulate(spans)]
    segments = _segments(times, spans)
    bridged = [i for i in range(n - 1) if spans[i] > weights[i]]

    def kind(flags: list[bool], threshold: int, below: bool,
             min_ms: int = EPISODE_MIN_MS) -> list[int]:
        cut = [i for i in bridged if flags[i] != flags[i + 1]]
        if not cut:  # no gap crosses this threshold: the readings as they are
            return _runs(times, spans, prefix, segments, flags, min_ms)
        t2, s2, f2, extras = _crossed(times, values, spans, weights, flags, threshold, below,
                                      cut)
        added = [0, *accumulate(extras)]  # points inserted before each cut

        def moved(i: int) -> int:  # a reading's index once the points are inserted
            return i + added[bisect_right(cut, i - 1)]

        # a cut reading is never the last of a segment (its gap is bridged)
        moved_segments = [(moved(a), moved(b)) for a, b in segments]
        return _runs(t2, s2, [0, *accumulate(s2)], moved_segments, f2, min_ms)

    below70 = [g < 70 for g in values]
    h1, ext = kind(below70, 70, True), kind(below70, 70, True, EXTENDED_MS + 1)
    h2 = kind([g < 54 for g in values], 54, True)
    y1 = kind([g > 180 for g in values], 180, False)
    y2 = kind([g > 250 for g in values], 250, False)

    def minutes(runs: list[int]) -> int:
        return (sum(runs) + 30_000) // 60_000

    return Episodes(len(h1), len(h2), len(ext), len(y1), len(y2),
                    minutes(h1), minutes(h2), minutes(y1), minutes(y2))

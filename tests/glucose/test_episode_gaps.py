"""Episodes across data gaps (glucose/indices.py), as a table, and against iglu-python.

The rule: readings at most 45 minutes apart are consecutive; across such a gap glucose
follows the straight line between the two readings, sampled every interval of the reading
(iglu interpolates onto a 5-minute grid over gaps up to ``inter_gap`` = 45 minutes); a longer
gap ends any episode. An episode needs >= 15 consecutive minutes beyond the threshold
(Battelino et al., Lancet Diabetes Endocrinol 2023;11:42, Table 3) and ends with >= 15
minutes back. The 2023 consensus says nothing about gaps: carrying one reading over a gap
would invent time beyond the threshold that the next reading contradicts.

Every case is also given to iglu's ``episode_calculation`` (its clock-aligned 5-minute grid,
our readings placed on it), and both count the same episodes.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a multiple of 5 minutes
MIN = 60_000
FLAT = [(t, 100) for t in range(0, 30, 5)]  # half an hour at 100 before every case


def _after(points: list[tuple[int, int]], tail: int = 100) -> list[tuple[int, int]]:
    """FLAT, then ``points`` (minutes after FLAT), then half an hour at ``tail``."""
    out = FLAT + [(30 + m, g) for m, g in points]
    last = out[-1][0]
    return out + [(last + 5 * k, tail) for k in range(1, 7)]


# (name, points (minute, mg/dL), hypo L1 episodes, hypo L1 minutes, hyper L1 episodes)
CASES: list[tuple[str, list[tuple[int, int]], int, int, int]] = [
    ("one 69, 15-minute gap, back at 100: 5 minutes below (no episode)",
     [(0, 69), (15, 100)], 0, 0, 0),
    ("69, 15-minute gap, then 65: the line stays below, 20 minutes",
     [(0, 69), (15, 65)], 1, 20, 0),
    ("three readings below, then a 15-minute gap up: 15 minutes",
     [(0, 60), (5, 60), (10, 69), (25, 100)], 1, 15, 0),
    ("falling into a 25-minute gap: grid points below from the crossing",
     [(0, 100), (25, 40)], 1, 15, 0),
    ("71, a 10-minute gap to 61, a 40-minute gap to 106: 15 minutes below",
     [(0, 71), (10, 61), (50, 106)], 1, 15, 0),
    ("60 then a 50-minute gap: the gap is too long, 5 minutes only",
     [(0, 60), (50, 60)], 0, 0, 0),
    ("three 5-minute readings at 60, regular: 15 minutes",
     [(0, 60), (5, 60), (10, 60)], 1, 15, 0),
    ("two readings at 60, regular: 10 minutes (no episode)",
     [(0, 60), (5, 60)], 0, 0, 0),
    ("exactly 70 is not below: three readings at 70",
     [(0, 70), (5, 70), (10, 70)], 0, 0, 0),
    ("high: 190, a 30-minute gap to 170: points 190, 186.7, 183.3, 180 (not above), 15 min",
     [(0, 190), (30, 170)], 0, 0, 1),
    ("high: 190, a 20-minute gap to 170: points 190, 185, 180: 10 minutes (no episode)",
     [(0, 190), (20, 170)], 0, 0, 0),
]


def _readings(points: list[tuple[int, int]]) -> list[CgmReading]:
    return [CgmReading(T0 + m * MIN, 0, g) for m, g in points]


@pytest.mark.parametrize(("name", "points", "hypo", "minutes", "hyper"), CASES,
                         ids=[c[0] for c in CASES])
def test_episode_across_gaps(name: str, points: list[tuple[int, int]], hypo: int, minutes: int,
                             hyper: int) -> None:
    s = summarize(_readings(_after(points)), interval_min=5)
    assert (s.hypo1_episodes, s.hypo1_min, s.hyper1_episodes) == (hypo, minutes, hyper), name


def _iglu_counts(points: list[tuple[int, int]]) -> tuple[int, int]:
    pd = pytest.importorskip("pandas")
    iglu = pytest.importorskip("iglu_python")
    frame = pd.DataFrame({
        "id": "case",
        "time": [pd.Timestamp(T0 + m * MIN, unit="ms", tz="UTC") for m, _ in points],
        "gl": [float(g) for _, g in points]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result: Any = iglu.episode_calculation(frame, dt0=5, tz="UTC")

    def count(kind: str) -> int:
        row = result[(result["type"] == kind) & (result["level"] == "lv1")]
        return int(row["total_episodes"].iloc[0])

    return count("hypo"), count("hyper")


@pytest.mark.parametrize(("name", "points", "hypo", "minutes", "hyper"), CASES,
                         ids=[c[0] for c in CASES])
def test_iglu_counts_the_same_episodes(name: str, points: list[tuple[int, int]], hypo: int,
                                       minutes: int, hyper: int) -> None:
    assert _iglu_counts(_after(points)) == (hypo, hyper), name

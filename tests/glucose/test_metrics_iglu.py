"""Cross-check our consensus metrics against iglu (the R/Python reference implementation).

iglu-python (PyPI ``iglu-python``, a port of the R package iglu, Broll et al. 2021) uses the
same definitions as the consensus, which we verified in its source:
- ``in_range_percent``: ``min <= gl <= max`` (70 and 180 inclusive), like our ``tir_bp``;
- ``below_percent``: ``gl < target``; ``above_percent``: ``gl > target``;
- ``mean_glu``: arithmetic mean; ``sd_glu``/``cv_glu``: pandas ``std`` (sample SD, n - 1);
- ``gmi``: 3.31 + 0.02392 x mean;
- ``active_percent`` (range_type "automatic", dt0 = 5): expected readings
  round(span / dt0) + 1 over first..last reading, minus round(sum of (gap - dt0) / dt0) over
  gaps longer than dt0. Ours counts occupied 5-minute slots over the same span. Both equal
  the number of readings on a regular grid; they may differ by a reading or so where a new
  sensor starts off the old one's 5-minute phase (< 0.03 percentage points per 14 days).
The only deliberate difference is rounding: we store integers (0.01 % and 0.1 mg/dL), so we
compare with tolerances of 0.1 percentage point and 0.01 GMI point, as required.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading
from glucoledger.glucose.simulate import simulate_cgm

pd = pytest.importorskip("pandas")
iglu = pytest.importorskip("iglu_python")

START = 1_793_516_400_000 - 14 * 86_400_000
PATIENTS = [
    (1, "typical"),
    (2, "typical"),
    (3, "tight"),
    (4, "high"),
    (5, "hypo_prone"),
    (6, "hypo_prone"),
    (7, "high"),
]

MAX_DIFF: dict[str, float] = {}


def frame(readings: list[CgmReading]) -> Any:
    return pd.DataFrame(
        {
            "id": ["p"] * len(readings),
            "time": pd.to_datetime([r.time_ms for r in readings], unit="ms", utc=True),
            "gl": [float(r.mgdl) for r in readings],
        }
    )


def one(result: Any, column: str) -> float:
    return float(result[column].iloc[0])


@pytest.mark.parametrize(("seed", "profile"), PATIENTS)
def test_agrees_with_iglu(seed: int, profile: str) -> None:
    readings = simulate_cgm(seed, 14, START, profile)
    # Punch an extra long gap (a lost receiver for 9 hours) on day 6.
    cut = START + 6 * 86_400_000
    readings = [r for r in readings if not cut <= r.time_ms < cut + 9 * 3_600_000]
    ours = summarize(readings)
    assert ours.active_bp < 10_000  # the data have gaps
    df = frame(readings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_range = iglu.in_range_percent(df, target_ranges=[[70, 180]])
        below = iglu.below_percent(df, targets_below=[54, 70])
        above = iglu.above_percent(df, targets_above=[180, 250])
        mean = iglu.mean_glu(df)
        sd = iglu.sd_glu(df)
        cv = iglu.cv_glu(df)
        gmi = iglu.gmi(df)
        active = iglu.active_percent(df, dt0=5, range_type="automatic")
    pairs = {
        "tir": (ours.tir, one(in_range, "in_range_70_180"), 0.1),
        "tbr70": (ours.tbr70, one(below, "below_70"), 0.1),
        "tbr54": (ours.tbr54, one(below, "below_54"), 0.1),
        "tar180": (ours.tar180, one(above, "above_180"), 0.1),
        "tar250": (ours.tar250, one(above, "above_250"), 0.1),
        "cv": (ours.cv, one(cv, "CV"), 0.1),
        "active": (ours.active, one(active, "active_percent"), 0.1),
        "mean": (ours.mean, one(mean, "mean"), 0.05),
        "sd": (ours.sd, one(sd, "SD"), 0.05),
        "gmi": (ours.gmi, one(gmi, "GMI"), 0.01),
    }
    for name, (mine, theirs, tolerance) in pairs.items():
        diff = abs(mine - theirs)
        MAX_DIFF[name] = max(MAX_DIFF.get(name, 0.0), diff)
        assert diff <= tolerance, f"{name}: ours {mine} vs iglu {theirs} (seed {seed})"


def test_report_max_differences(capsys: pytest.CaptureFixture[str]) -> None:
    # Runs after the parametrized cases (file order); prints the largest differences seen.
    if MAX_DIFF:
        with capsys.disabled():
            print(
                "\niglu cross-check, max |ours - iglu|:",
                ", ".join(f"{k} {v:.4f}" for k, v in sorted(MAX_DIFF.items())),
            )

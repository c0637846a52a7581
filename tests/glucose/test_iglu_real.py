"""Cross-check against iglu-python on iglu's own REAL example data (tests/testdata/iglu).

Dexcom G4 data of five subjects (iglu's example_data_5_subject) and three subjects of the
Hall et al. 2018 data set. Readings are ~5 minutes apart with real jitter (a second here and
there) and real gaps. iglu computes per reading; we weigh each reading by the time it stands
for (capped at the 5-minute interval). Where sampling is regular both are equal; on these
data the weights differ by about a second in 300, so every metric both compute agrees within
0.1 points: TIR/TBR/TAR, mean, SD, CV, GMI, GRI, LBGI, HBGI, J-index, MAGE, and level-1/2
hypo- and hyperglycemia episode counts (iglu ``episode_calculation``, which interpolates to a
5-minute grid; the counts may differ by one episode where a gap splits a run, checked within
1). Time-weighted values on irregular data are checked against an independent computation
in tests/glucose/test_clinical_edges.py. MAGE (iglu's default "ma" algorithm) too.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading

pd = pytest.importorskip("pandas")
iglu = pytest.importorskip("iglu_python")

DIFFS: list[float] = []
DATA = Path(__file__).resolve().parents[1] / "testdata" / "iglu"


def _subjects() -> list[tuple[str, str]]:
    out = []
    for name in ("example_data_5_subject.csv", "example_data_hall_3_subjects.csv"):
        frame = pd.read_csv(DATA / name)
        out.extend((name, str(s)) for s in frame["id"].unique())
    return out


def _load(name: str, subject: str) -> Any:
    frame = pd.read_csv(DATA / name)
    frame = frame[frame["id"] == subject].dropna(subset=["gl"])
    frame["time"] = pd.to_datetime(frame["time"]).dt.tz_localize("UTC")
    return frame.sort_values("time").drop_duplicates("time")[["id", "time", "gl"]]


def _one(result: Any, column: str) -> float:
    return float(result[column].iloc[0])


@pytest.mark.parametrize(("name", "subject"), _subjects())
def test_real_data_agrees_with_iglu(name: str, subject: str) -> None:
    df = _load(name, subject)
    readings = [CgmReading(int(t.value // 1_000_000), 0, int(g))
                for t, g in zip(df["time"], df["gl"], strict=True)]
    ours = summarize(readings, interval_min=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_range = iglu.in_range_percent(df, target_ranges=[[70, 180]])
        below = iglu.below_percent(df, targets_below=[54, 70])
        above = iglu.above_percent(df, targets_above=[180, 250])
        theirs = {
            "tir": _one(in_range, "in_range_70_180"),
            "tbr70": _one(below, "below_70"),
            "tbr54": _one(below, "below_54"),
            "tar180": _one(above, "above_180"),
            "tar250": _one(above, "above_250"),
            "mean": _one(iglu.mean_glu(df), "mean"),
            "sd": _one(iglu.sd_glu(df), "SD"),
            "cv": _one(iglu.cv_glu(df), "CV"),
            "gmi": _one(iglu.gmi(df), "GMI"),
            "gri": _one(iglu.gri(df), "GRI"),
            "lbgi": _one(iglu.lbgi(df), "LBGI"),
            "hbgi": _one(iglu.hbgi(df), "HBGI"),
            "j_index": _one(iglu.j_index(df), "J_index"),
            "mage": _one(iglu.mage(df), "MAGE"),
        }
        episodes = iglu.episode_calculation(df, dt0=5, tz="UTC")
    mine = {"tir": ours.tir, "tbr70": ours.tbr70, "tbr54": ours.tbr54, "tar180": ours.tar180,
            "tar250": ours.tar250, "mean": ours.mean, "sd": ours.sd, "cv": ours.cv,
            "gmi": ours.gmi, "gri": ours.gri, "lbgi": ours.lbgi, "hbgi": ours.hbgi,
            "j_index": ours.j_index, "mage": ours.mage}
    for key, value in theirs.items():
        assert abs(mine[key] - value) <= 0.1, (subject, key, mine[key], value)

    def count(kind: str, level: str) -> float:
        row = episodes[(episodes["type"] == kind) & (episodes["level"] == level)]
        return float(row["total_episodes"].iloc[0])

    for kind, level, value in (("hypo", "lv1", ours.hypo1_episodes),
                               ("hypo", "lv2", ours.hypo2_episodes),
                               ("hyper", "lv1", ours.hyper1_episodes),
                               ("hyper", "lv2", ours.hyper2_episodes)):
        DIFFS.append(abs(value - count(kind, level)))
        assert abs(value - count(kind, level)) <= 1, (subject, kind, level, value,
                                                      count(kind, level))


def test_zz_report_episode_agreement() -> None:
    """Prints how often the episode counts agree exactly (run after the cross-checks)."""
    if DIFFS:
        exact = sum(1 for d in DIFFS if d == 0)
        print(f"\niglu episodes: {exact} of {len(DIFFS)} counts equal, max diff {max(DIFFS)}")

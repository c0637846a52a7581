from __future__ import annotations

import pytest

from glucoledger.glucose.metrics import summarize
from glucoledger.glucose.readings import CgmReading, parse_batch
from glucoledger.glucose.simulate import PROFILES, simulate_cgm, simulate_patient

START = 1_793_491_200_000 - 14 * 86_400_000
NOW = 1_793_491_200_000


def test_deterministic_per_seed() -> None:
    assert simulate_patient(7, 3, START) == simulate_patient(7, 3, START)
    assert simulate_cgm(7, 3, START) != simulate_cgm(8, 3, START)


def test_does_not_touch_global_random() -> None:
    import random

    random.seed(1)
    expected = random.random()
    random.seed(1)
    simulate_cgm(1, 1, START)
    assert random.random() == expected


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_realistic(profile: str) -> None:
    data = simulate_patient(11, 14, START, profile)
    cgm = [r for r in data["cgm"] if isinstance(r, CgmReading)]
    assert all(40 <= r.mgdl <= 400 for r in cgm)
    s = summarize(cgm, start_ms=START, end_ms=START + 14 * 86_400_000)
    assert 85 <= s.active < 100  # warm-ups and signal loss leave gaps
    assert 25 <= s.tir <= 97 and 15 <= s.cv <= 45 and 110 <= s.mean <= 230
    assert s.tar180 > 0 and s.tbr70 + s.tar180 > 3
    assert len(data["carbs"]) >= 14 * 2 and len(data["insulin"]) >= 14 * 5
    # The streams are valid batches as stored records.
    for stream in ("insulin", "carbs"):
        assert all(r.time_ms <= NOW for r in data[stream])


def test_hypos_happen() -> None:
    s = summarize(simulate_cgm(5, 14, START, "hypo_prone"))
    assert s.tbr70 > 2 and s.tbr54 > 0


def test_dawn_and_meals_shape_the_day() -> None:
    from glucoledger.glucose.agp import compute_agp

    agp = compute_agp(simulate_cgm(1, 28, START - 14 * 86_400_000))
    median = agp.series(50)
    night = median[12]  # 03:00
    dawn = median[28]  # 07:00
    after_dinner = max(x for x in median[80:90] if x is not None)  # 20:00-22:30
    assert night is not None and dawn is not None
    assert dawn > night and after_dinner > night + 20


def test_simulated_cgm_passes_validation() -> None:
    readings = simulate_cgm(3, 2, START)
    items = [{"time": r.time_ms, "value": r.mgdl, "trend": r.trend} for r in readings]
    batch = parse_batch("cgm", items, now_ms=NOW)
    assert list(batch.items) == readings


def test_simglucose_adapter() -> None:
    pytest.importorskip(
        "simglucose",
        reason="simglucose is not installed; pip install 'glucoledger[sim]' to run this",
    )
    from glucoledger.glucose.simulate import simulate_with_simglucose

    data = simulate_with_simglucose(1, 0.25, START)
    cgm = [r for r in data["cgm"] if isinstance(r, CgmReading)]
    assert len(cgm) >= 70  # 6 h of 5-minute readings
    assert all(40 <= r.mgdl <= 400 for r in cgm)
    assert data["insulin"]

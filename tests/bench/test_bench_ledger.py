"""bench.ledger's figures, on a small run: the commit rate over the whole run and over its
first and last tenth (the cost of a growing chain), each from the same timings."""

from __future__ import annotations

import pytest

from glucoledger.bench.ledger import _tenths, bench_ledger


def test_tenths_are_the_rates_of_the_first_and_last_tenth_of_the_submissions() -> None:
    # 20 submissions of 100: the first two took 1 s each, the last two 4 s each.
    ends, t = [], 0.0
    for i in range(20):
        t += 1.0 if i < 2 else 4.0 if i >= 18 else 2.0
        ends.append((100 * (i + 1), t))
    assert _tenths(ends) == (100.0, 25.0)
    # Fewer than ten submissions: one each.
    assert _tenths([(50, 0.5), (100, 2.5)]) == (100.0, 25.0)
    assert _tenths([(70, 2.0)]) == (35.0, 35.0)


def test_a_small_run_reports_the_growth_figures_with_the_others() -> None:
    said: list[str] = []
    figures = bench_ledger(n=400, batch=100, workers=1, echo=said.append)
    assert said == ["signing 400 transactions ...", "appending and committing ...",
                    "verifying ..."]
    for key in ("tx_per_s", "tx_per_s_first_tenth", "tx_per_s_last_tenth", "verify_tx_per_s",
                "sqlite_rows_per_s"):
        assert figures[key] > 0, key
    assert figures["last_vs_first_tenth"] == pytest.approx(
        figures["tx_per_s_last_tenth"] / figures["tx_per_s_first_tenth"])

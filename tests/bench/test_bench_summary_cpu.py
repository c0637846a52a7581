"""The first-read arithmetic benchmark runs, and side by side with a checkout (here this one)
it checks that both compute the same summary before it prints a ratio."""

from __future__ import annotations

from pathlib import Path

from glucoledger.bench.summary_cpu import run

SRC = Path(__file__).resolve().parents[2] / "src"


def test_runs_and_compares_with_a_checkout_side_by_side() -> None:
    r = run(calls=2, compare=SRC)
    assert r["readings"] > 3_000  # 14 days of 5-minute readings
    assert r["p50"] > 0 and r["base_p50"] > 0 and r["p99"] >= r["p50"]

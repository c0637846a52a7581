from __future__ import annotations

from pathlib import Path

from glucoledger.bench.follow import run


def test_follow_bench_runs_and_the_served_poll_lists_fewer_batches(tmp_path: Path) -> None:
    r = run(days=1, polls=2, folder=tmp_path / "node")
    assert r["readings"] == 287
    assert 0 < r["served_record_bytes"] < r["whole_record_bytes"]
    assert r["served_p50_ms"] > 0 and r["whole_p50_ms"] > 0

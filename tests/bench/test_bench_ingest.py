from __future__ import annotations

from pathlib import Path

from glucoledger.bench.ingest import run


def test_ingest_bench_runs_and_counts_every_reading(tmp_path: Path) -> None:
    r = run("day", 288, 4, devices=2, fsync=False, folder=tmp_path)
    assert (r.uploads, r.readings) == (4, 1152)
    assert r.readings_per_s > 0 and r.sqlite_per_s > 0 and r.check_seconds > 0
    assert r.node_cpu_s > 0

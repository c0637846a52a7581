from __future__ import annotations

from pathlib import Path

from glucoledger.bench.server import run


def test_server_bench_runs_every_row_without_errors(tmp_path: Path) -> None:
    rows = run(seconds=1, connections=2, patients=3, readers=1, folder=tmp_path / "node")
    assert [r["what"].split(" (")[0].split(":")[0] for r in rows] == [
        "baseline", "baseline", "Nightscout uploads", "audited summary reads",
        "follower polls", "mix", "status, 2 workers", "upload, 2 workers", "mix, 2 workers"]
    assert rows[1]["what"].startswith("baseline: plain FastAPI+SQLite uploads")
    for r in rows:
        # errors == 0 also for the plain store: a baseline that refused the POSTs is no baseline
        assert r["requests"] > 0 and r["errors"] == 0, r
        assert r["load_start"] >= 0 and r["load_end"] >= 0
    assert rows[2]["of_plain"] > 0
    for r in rows[-3:]:  # the same node behind 2 HTTP worker processes, same run
        assert r["workers"] == 2 and r["of_one_process"] > 0 and r["orderer_cpu_ms"] > 0

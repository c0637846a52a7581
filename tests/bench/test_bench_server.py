from __future__ import annotations

from pathlib import Path

from glucoledger.bench.server import run


def test_server_bench_runs_every_row_without_errors(tmp_path: Path) -> None:
    rows = run(seconds=1, connections=2, patients=3, readers=1, folder=tmp_path / "node")
    assert [r["what"].split(" (")[0].split(":")[0] for r in rows] == [
        "baseline", "Nightscout uploads", "audited summary reads", "follower polls", "mix"]
    for r in rows:
        assert r["requests"] > 0 and r["errors"] == 0, r

"""The ingest-overhead benchmark of day commitments runs and measures what it says: the same
uploads with and without the commitments, and the commitments really recorded."""

from __future__ import annotations

import pytest

from glucoledger.bench.zk_ingest import bench_zk_ingest


def test_small_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("GLUCOLEDGER_ZK_PROFILE", "test")
    got = bench_zk_ingest(patients=2, days=2, rounds=1)
    assert got["without"]["uploads"] == got["with"]["uploads"] == 2 * 2 * 24
    assert got["without"]["zk_days"] == 0
    assert got["with"]["zk_days"] == 2  # each patient's first day; the second is not complete
    assert got["with"]["p50_ms"] > 0 and got["without"]["total_s"] > 0

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger.bench.follow import main, marker_times, run
from glucoledger.errors import InputError


def test_follow_bench_runs_and_the_served_poll_lists_fewer_batches(tmp_path: Path) -> None:
    r = run(days=1, polls=2, folder=tmp_path / "node", pushes=2, access_records=1)
    assert r["readings"] == 287
    assert 0 < r["served_record_bytes"] < r["whole_record_bytes"]
    assert r["served_p50_ms"] > 0 and r["whole_p50_ms"] > 0
    assert 0 < r["push_served_record_bytes"] < r["push_whole_record_bytes"]


def test_on_a_format_2_chain_a_read_adds_the_same_few_bytes_however_many_batches(
        tmp_path: Path) -> None:
    r = run(days=1, polls=2, folder=tmp_path / "node", pushes=2)
    assert r["readings"] == 287
    assert 0 < r["whole_record_bytes"] < 600  # 287 batches: 20 KB listed in format 1
    assert abs(r["served_record_bytes"] - r["whole_record_bytes"]) < 32


@pytest.mark.parametrize(("days", "polls", "pushes"),
                         [(0, 5, 1), (15, 5, 1), (4, 0, 1), (4, 5, 0), (4, 5, 289)])
def test_follow_bench_refuses_what_it_cannot_run_and_opens_no_node(
        tmp_path: Path, days: int, polls: int, pushes: int) -> None:
    with pytest.raises(InputError, match="--days is 1 to 14, --polls at least 1 and --pushes "
                                         "1 to 288"):
        run(days=days, polls=polls, folder=tmp_path / "node", pushes=pushes)
    assert not (tmp_path / "node").exists()


def test_the_marker_bench_times_both_and_refuses_no_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    indexed, walked = marker_times(300, folder=tmp_path / "v")
    assert indexed > 0 and walked > 0
    monkeypatch.setattr("sys.argv", ["bench.follow", "--marker-rows", "0"])
    with pytest.raises(SystemExit, match="--marker-rows is at least 1"):
        main()

"""The security log is bounded (node/people.py ``SecurityLog``): rotated by size, a per-address
cap with a summary line for what it held back, reads from the end only, and the refusals
that name a patient kept in her own file, so noise about others never rotates them away."""

from __future__ import annotations

import json
from pathlib import Path

from glucoledger.node.people import SecurityLog


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


ALICE = "a1" * 16


def _refuse(log: SecurityLog, remote: str, *, patient: str | None = None, status: int = 401,
            code: str = "unauthenticated") -> None:
    log.record(status=status, code=code, who=None, route="GET /api/v2/x" + "x" * 150,
               remote=remote, reason="log in first", patient=patient)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_flood_from_one_address_is_capped_and_counted_in_one_summary_line(tmp_path: Path
                                                                          ) -> None:
    clock = Clock()
    log = SecurityLog(tmp_path, cap=30, every=60.0, clock=clock)
    for _ in range(20_000):
        _refuse(log, "10.0.0.1")
    _refuse(log, "10.0.0.2")  # another address is not held back by the first one's flood
    lines = _lines(log.path)
    assert len(lines) == 31
    clock.t += 61
    _refuse(log, "10.0.0.1")  # a new interval: written, after the last one's summary
    lines = _lines(log.path)
    summary = [e for e in lines if e["code"] == "refusals_suppressed"]
    assert len(summary) == 1 and summary[0]["count"] == 20_000 - 30
    assert "19970 more refusals" in str(summary[0]["reason"])
    assert summary[0]["remote"] == "10.0.0.1" and summary[0]["status"] == 401
    assert lines[-1]["code"] == "unauthenticated"
    # each refusal is accounted for: written one by one, or counted in a summary
    assert sum(int(e.get("count", 1)) for e in lines) == 20_002  # type: ignore[call-overload]
    # a read writes the pending summaries of intervals that are over, too
    for _ in range(40):
        _refuse(log, "10.0.0.3", status=403, code="denied")
    clock.t += 61
    got = log.recent(5)
    assert got[0].code == "refusals_suppressed" and got[0].count == 10


def test_the_files_are_bounded_and_a_read_costs_the_tail_only(tmp_path: Path) -> None:
    log = SecurityLog(tmp_path, max_bytes=20_000, keep=3, cap=10**9)
    for i in range(5_000):
        _refuse(log, f"10.1.{i // 250}.{i % 250}")
    files = sorted(tmp_path.glob("security.log*"))
    assert [f.name for f in files] == ["security.log", "security.log.1", "security.log.2",
                                       "security.log.3"]
    assert all(f.stat().st_size <= 20_000 for f in files)
    newest = log.recent(3)
    assert [e.remote for e in newest] == ["10.1.19.249", "10.1.19.248", "10.1.19.247"]
    small = SecurityLog(tmp_path, scan_bytes=5_000)
    assert 5 <= len(small.recent(1000)) <= 5_000 // 200  # stops at its budget


def test_refusals_naming_a_patient_survive_any_amount_of_noise(tmp_path: Path) -> None:
    clock = Clock()
    log = SecurityLog(tmp_path, max_bytes=20_000, keep=1, cap=30, clock=clock)
    _refuse(log, "10.9.9.9", patient=ALICE)  # a wrong password for alice's name
    for i in range(3_000):  # then unrelated noise from many addresses rotates the main log
        _refuse(log, f"10.2.{i // 200}.{i % 200}")
    assert not any(e.patient for e in log.recent(10_000))  # gone from the main log...
    mine = log.recent(200, patient=ALICE)
    assert [e.remote for e in mine] == ["10.9.9.9"]  # ...kept in hers
    # a flood naming her is capped in her file too, and summarized there
    for _ in range(500):
        _refuse(log, "10.3.3.3", patient=ALICE)
    clock.t += 61
    mine = log.recent(200, patient=ALICE)
    assert mine[0].code == "refusals_suppressed" and mine[0].count == 470
    assert len(mine) == 1 + 30 + 1


def test_an_older_log_gives_its_patients_their_files_once(tmp_path: Path) -> None:
    old = [{"time_ms": 1, "status": 401, "code": "unauthenticated", "who": "alice",
            "route": "POST /api/session", "remote": "10.0.0.1", "reason": "wrong",
            "patient": ALICE},
           {"time_ms": 2, "status": 401, "code": "unauthenticated", "who": None,
            "route": "GET /api/me", "remote": "10.0.0.1", "reason": "log in first"}]
    (tmp_path / "security.log").write_text("".join(json.dumps(e) + "\n" for e in old)
                                           + "not json\n")
    log = SecurityLog(tmp_path)
    assert [e.time_ms for e in log.recent(10, patient=ALICE)] == [1]
    assert [e.time_ms for e in log.recent(10)] == [2, 1]
    assert (tmp_path / "security.patients" / f"{ALICE}.log").exists()

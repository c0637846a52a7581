"""The demo ends with a live sensor whatever the time of day (node/demo_site.py).

At 2026-12-05 05:35 UTC the simulator's patient 7, seeded 14 days back, is three hours into
a sensor warm-up: the last hour holds 3 readings (CI met this moment: four follower replays
failed). The demo takes the next simulated patient then; at every quarter hour of a day its
last hour holds a reading every 5 minutes."""

from __future__ import annotations

from datetime import UTC, datetime

from glucoledger.glucose.simulate import simulate_patient
from glucoledger.node.demo_site import _live_at_the_end

DAY = 86_400_000
HOUR = 3_600_000


def _start(now: int, days: int = 14) -> int:
    start = now - days * DAY
    return start - start % 300_000


def _last_hour(data: dict[str, tuple[object, ...]], now: int) -> list[int]:
    return [r.time_ms for r in data["cgm"] if now - HOUR < r.time_ms < now]  # type: ignore[attr-defined]


def test_the_moment_ci_met_is_live() -> None:
    now = int(datetime(2026, 12, 5, 5, 35, tzinfo=UTC).timestamp() * 1000)
    assert len(_last_hour(simulate_patient(7, 14, _start(now)), now)) < 12  # the old demo
    assert len(_last_hour(_live_at_the_end(14, _start(now), now), now)) >= 12


def test_every_quarter_hour_of_a_day_is_live() -> None:
    base = int(datetime(2026, 12, 5, tzinfo=UTC).timestamp() * 1000)
    for k in range(96):
        now = base + k * 900_000
        times = _last_hour(_live_at_the_end(14, _start(now), now), now)
        assert len(times) >= 12 and now - times[-1] <= 600_000, k
        assert all(b - a <= 600_000 for a, b in zip(times, times[1:], strict=False)), k

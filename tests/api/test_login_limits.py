"""Login backoff and costly-call budgets (api/security.py), on a hand-driven clock."""

from __future__ import annotations

import pytest

from glucoledger.api.security import CostLimiter, LoginLimiter, RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_backoff_doubles_per_address_after_the_free_failures() -> None:
    clock = Clock()
    lim = LoginLimiter(free=3, base=2.0, cap=60.0, clock=clock)
    for _ in range(3):
        lim.check("addr:a")
        lim.failed("addr:a")
    waits = []
    for _ in range(6):
        with pytest.raises(RateLimitedError) as info:
            lim.check("addr:a")
        waits.append(info.value.retry_after)
        clock.t += info.value.retry_after
        lim.check("addr:a")  # the wait is over
        lim.failed("addr:a")
    assert waits == [3, 5, 9, 17, 33, 61]  # 2, 4, 8, 16, 32, then the 60 s cap (+1)
    lim.check("addr:b")  # another address is not slowed down


def test_a_success_does_not_clear_the_address_count() -> None:
    clock = Clock()
    lim = LoginLimiter(free=2, clock=clock)
    lim.failed("addr:a")
    lim.failed("addr:a")
    # (the attacker logs into an account of its own here: login() records no success)
    assert lim.failures("addr:a") == 2
    with pytest.raises(RateLimitedError):
        lim.check("addr:a")


def test_counts_fade_and_memory_is_bounded() -> None:
    clock = Clock()
    lim = LoginLimiter(free=1, forget=100.0, limit=50, clock=clock)
    lim.failed("addr:a")
    lim.failed("addr:a")
    clock.t += 101
    lim.check("addr:a")
    lim.failed("addr:a")
    assert lim.failures("addr:a") == 1  # started over
    for i in range(500):
        lim.failed(f"addr:{i}")
    assert lim.failures("addr:0") == 0 and lim.failures("addr:499") == 1
    assert len(lim._fails) == 50


def test_costly_calls_once_per_period_per_account_and_one_at_a_time() -> None:
    clock = Clock()
    cost = CostLimiter(running=1, clock=clock)
    cost.spend("a", "verify", 60)
    with pytest.raises(RateLimitedError) as info:
        cost.spend("a", "verify", 60)
    assert info.value.retry_after == 61
    cost.spend("b", "verify", 60)  # another account
    cost.spend("a", "export", 60, burst=2)  # another kind of work, two a minute
    cost.spend("a", "export", 60, burst=2)
    with pytest.raises(RateLimitedError):
        cost.spend("a", "export", 60, burst=2)
    clock.t += 60
    cost.spend("a", "verify", 60)
    with cost.slot(), pytest.raises(RateLimitedError, match="another costly job"), cost.slot():
        pass
    with cost.slot():  # released
        pass

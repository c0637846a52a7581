"""Login backoff and costly-call budgets (api/security.py), on a hand-driven clock."""

from __future__ import annotations

import threading
import time

import pytest

from glucoledger.api.security import Argon2Gate, CostLimiter, LoginLimiter, RateLimitedError


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


def test_reserve_counts_before_the_check_so_a_concurrent_burst_meets_the_backoff() -> None:
    clock = Clock()
    lim = LoginLimiter(free=5, clock=clock)
    barrier = threading.Barrier(40)
    got: list[str] = []
    mu = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            lim.reserve("addr:a")  # the slow check would run here; it fails: kept
            outcome = "checked"
        except RateLimitedError:
            outcome = "429"
        with mu:
            got.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got.count("checked") == 5 and got.count("429") == 35
    assert lim.failures("addr:a") == 5


def test_a_refund_gives_back_exactly_one_attempt() -> None:
    clock = Clock()
    lim = LoginLimiter(free=3, clock=clock)
    lim.reserve("addr:a").refund()  # a success from a fresh address: nothing remembered
    assert lim.failures("addr:a") == 0 and "addr:a" not in lim._fails
    lim.failed("addr:a")
    clock.t += 1
    r = lim.reserve("addr:a")
    r.refund()
    r.refund()  # once only
    assert lim._fails["addr:a"] == (1, 1000.0)  # as before, time and all
    r = lim.reserve("addr:a")
    lim.reserve("addr:a")  # another attempt, counted meanwhile and kept (it failed)
    r.refund()
    assert lim.failures("addr:a") == 2  # ours taken back, theirs kept
    lim.reserve("addr:a")
    with pytest.raises(RateLimitedError):
        lim.reserve("addr:a")


def test_the_argon2_gate_lets_slots_run_a_few_wait_and_the_rest_are_told_to_retry() -> None:
    gate = Argon2Gate(slots=2, queue=1, wait=0.2)
    with gate.slot(), gate.slot():
        t0 = time.monotonic()
        with pytest.raises(RateLimitedError, match="try again") as info, gate.slot():
            pass  # waited its turn (0.2 s) and none came
        assert time.monotonic() - t0 >= 0.2 and info.value.retry_after >= 1
        assert info.value.code == "busy"
    freed = threading.Event()
    hold = gate.slot()
    hold.__enter__()
    second = gate.slot()
    second.__enter__()

    def release() -> None:
        time.sleep(0.05)
        hold.__exit__(None, None, None)
        freed.set()

    threading.Thread(target=release).start()
    with gate.slot():  # waits for the first to be released, then runs
        assert freed.is_set()
    second.__exit__(None, None, None)

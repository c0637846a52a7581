"""The orderer contract (glucoledger.ordering.base), one suite for every backend.

Choices the contract leaves open, fixed here for every backend:
- an oversized entry (more than MAX_ENTRY bytes) or an empty batch is misuse: ValueError, and
  nothing is appended;
- reading below first() raises OrderingError; reading past the end returns fewer or no entries;
- compact(below) clamps ``below`` to the size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from glucoledger.errors import OrderingError
from glucoledger.ordering.base import MAX_ENTRY, Orderer
from glucoledger.ordering.etcd import EtcdOrderer

OrdererFactory = Callable[[], Orderer]

THREADS = 4
APPENDS_PER_THREAD = 15


def test_empty_log(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    assert o.size() == 0
    assert o.first() == 0
    assert o.read(0) == []


def test_append_returns_contiguous_positions(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    assert o.append([b"a"]) == 0
    assert o.append([b"b", b"c"]) == 1
    assert o.append([b"d"]) == 3
    assert o.size() == 4
    assert o.read(0) == [b"a", b"b", b"c", b"d"]


def test_read_returns_exact_bytes(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    # etcd takes no empty entry (its readers refuse a batch holding one: ordering.etcd).
    empty = [] if isinstance(o, EtcdOrderer) else [b""]
    entries = [bytes(range(256)), *empty, b"\x00", b"\xff" * 3, bytes(100_000),
               "é✓".encode()]
    assert o.append(entries) == 0
    assert o.read(0) == entries
    assert o.read(1, 2) == entries[1:3]
    assert o.read(4, 100) == entries[4:]
    assert o.read(len(entries)) == []
    assert o.read(1000) == []
    assert o.read(0, 0) == []


def test_read_misuse(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    with pytest.raises(ValueError):
        o.read(-1)
    with pytest.raises(ValueError):
        o.read(0, -1)


def test_concurrent_appenders_land_once_contiguously(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    acked: dict[bytes, int] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            for k in range(APPENDS_PER_THREAD):
                batch = [f"t{t}-a{k}-e{j}".encode() for j in range(1 + k % 3)]
                position = o.append(batch)
                with lock:
                    for j, e in enumerate(batch):
                        acked[e] = position + j
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, asserted there
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "appender threads did not finish in 60 s"
    assert errors == []
    total = sum(1 + k % 3 for k in range(APPENDS_PER_THREAD)) * THREADS
    assert o.size() == total
    log = o.read(0, total + 10)
    assert len(log) == total
    assert sorted(acked.values()) == list(range(total))  # no gaps, no overlap
    assert all(log[p] == e for e, p in acked.items())  # each entry exactly where acknowledged


def test_wait_times_out(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    o.append([b"x"])
    t0 = time.monotonic()
    assert o.wait(1, 0.3) == 1
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 3
    assert o.wait(0, 5) == 1  # already more than 0: at once


def test_wait_wakes_on_append(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    o.append([b"x"])
    timer = threading.Timer(0.2, lambda: o.append([b"y", b"z"]))
    timer.start()
    try:
        t0 = time.monotonic()
        assert o.wait(1, 10) == 3
        assert time.monotonic() - t0 < 5
    finally:
        timer.join(timeout=10)


def test_compaction_drops_old_positions(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    o.append([f"e{k}".encode() for k in range(10)])
    o.compact(4)
    assert o.first() == 4
    assert o.size() == 10
    with pytest.raises(OrderingError):
        o.read(0)
    with pytest.raises(OrderingError):
        o.read(3, 1)
    assert o.read(4) == [f"e{k}".encode() for k in range(4, 10)]
    o.compact(2)  # never moves back
    assert o.first() == 4
    assert o.append([b"next"]) == 10
    o.compact(1000)  # clamped to the size
    assert o.first() == 11
    assert o.read(11) == []
    assert o.append([b"after"]) == 11
    assert o.read(11) == [b"after"]


def test_oversized_entry_refused(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    with pytest.raises(ValueError):
        o.append([b"ok", bytes(MAX_ENTRY + 1)])
    with pytest.raises(ValueError):
        o.append([])
    assert o.size() == 0
    big = bytes([7]) * MAX_ENTRY
    assert o.append([big]) == 0
    assert o.read(0) == [big]


def test_append_at_appends_only_at_that_size(orderer_factory: OrdererFactory) -> None:
    o = orderer_factory()
    try:
        first = o.append_at([b"g", b"c"], 0)
    except NotImplementedError:
        pytest.skip("this backend has no conditional append")
    assert first == 0
    assert o.append_at([b"late"], 0) is None  # not empty any more: nothing appended
    assert o.size() == 2 and o.read(0) == [b"g", b"c"]
    assert o.append_at([b"next"], 2) == 2
    assert o.read(0) == [b"g", b"c", b"next"]


def test_racing_append_at_on_an_empty_log_lands_once(orderer_factory: OrdererFactory) -> None:
    first = orderer_factory()
    if type(first).append_at is Orderer.append_at:
        pytest.skip("this backend has no conditional append")
    if isinstance(first, EtcdOrderer):  # several clients of one log
        clients = [EtcdOrderer([f"{h}:{p}" for h, p in first._gw.endpoints], first.chain,
                               writer=f"w{k}")
                   for k in range(6)]
    else:
        clients = [first] * 6
    results: list[int | None] = []
    barrier = threading.Barrier(len(clients))

    def place(k: int) -> None:
        barrier.wait(timeout=10)
        results.append(clients[k].append_at([f"genesis {k}".encode(), b"cut"], 0))

    threads = [threading.Thread(target=place, args=(k,)) for k in range(len(clients))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results.count(0) == 1 and results.count(None) == len(clients) - 1
        assert first.size() == 2
    finally:
        if isinstance(first, EtcdOrderer):
            for c in clients:
                c.close()

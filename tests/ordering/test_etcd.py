"""etcd-specific behaviour: limits, URLs, failover, quorum loss, and the dev cluster itself."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from glucoledger.errors import OrderingError
from glucoledger.ordering._gateway import GatewayError, _Sent
from glucoledger.ordering.cluster import EtcdCluster
from glucoledger.ordering.etcd import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, EtcdOrderer
from glucoledger.ordering.etcd_watch import KeyWatch
from tests.servers import start_etcd

KILL_LOOP_MAX_APPENDS = 400
KILL_LOOP_SECONDS = 20.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chain() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


# -- no cluster needed ---------------------------------------------------------------------------


def test_from_url() -> None:
    o = EtcdOrderer.from_url("etcd://127.0.0.1:2379,127.0.0.1:22379/", "main")
    assert o._gw.endpoints == [("127.0.0.1", 2379), ("127.0.0.1", 22379)]
    for bad in ["http://127.0.0.1:2379", "etcd://", "etcd://127.0.0.1", "etcd://h:1/path"]:
        with pytest.raises(ValueError):
            EtcdOrderer.from_url(bad, "main")


@pytest.mark.parametrize("chain", ["", "a/b", "x" * 65, "sp ace"])
def test_bad_chain_name(chain: str) -> None:
    with pytest.raises(ValueError):
        EtcdOrderer(["127.0.0.1:2379"], chain)


def test_batch_limits_checked_before_any_request() -> None:
    o = EtcdOrderer([f"127.0.0.1:{_closed_port()}"], "main", timeout=0.5)
    with pytest.raises(ValueError, match="at most 127"):
        o.append([b"x"] * (MAX_BATCH_ENTRIES + 1))
    with pytest.raises(ValueError, match="split it"):
        o.append([bytes(800_000), bytes(800_000)])


def test_nothing_listening_is_an_ordering_error_quickly() -> None:
    o = EtcdOrderer(
        [f"127.0.0.1:{_closed_port()}", f"127.0.0.1:{_closed_port()}"], "main", timeout=1
    )
    t0 = time.monotonic()
    with pytest.raises(OrderingError, match=r"no quorum \(0 of 2 members reachable\)"):
        o.append([b"x"])
    with pytest.raises(OrderingError, match="no quorum"):
        o.size()
    assert time.monotonic() - t0 < 8


def test_a_node_whose_one_etcd_member_is_down_is_told_to_start_that_member() -> None:
    """A consortium node reaches its own organization's etcd member alone: with it down,
    the error names that member and what to do, not the cluster's quorum."""
    port = _closed_port()
    o = EtcdOrderer([f"127.0.0.1:{port}"], "main", timeout=1)
    try:
        for call in (lambda: o.append([b"x"]), o.size):
            with pytest.raises(OrderingError) as info:
                call()
            said = str(info.value)
            assert f"etcd member at 127.0.0.1:{port} does not answer" in said, said
            assert "start it" in said and "quorum" not in said, said
    finally:
        o.close()


# -- on the shared cluster -----------------------------------------------------------------------


def test_largest_batches_fit(etcd_cluster: EtcdCluster) -> None:
    with EtcdOrderer(etcd_cluster.endpoints, _chain()) as o:
        many = [f"e{k}".encode() for k in range(MAX_BATCH_ENTRIES)]
        assert o.append(many) == 0
        heavy = [bytes([1]) * (1 << 20), bytes([2]) * (MAX_BATCH_BYTES - (1 << 20))]
        assert o.append(heavy) == MAX_BATCH_ENTRIES
        assert o.read(0, 1000) == many + heavy


def test_two_clients_share_one_log(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    a = EtcdOrderer(etcd_cluster.endpoints[:1], chain)
    b = EtcdOrderer(list(reversed(etcd_cluster.endpoints)), chain)
    with a, b:
        assert a.append([b"1"]) == 0
        assert b.append([b"2"]) == 1
        assert a.read(0) == b.read(0) == [b"1", b"2"]


def test_a_member_that_reads_the_log_appends_at_once(etcd_cluster: EtcdCluster) -> None:
    """An append is guessed at the size this client last knew; a wrong guess is a failed
    compare (one more write through etcd's Raft log) before the append that lands. A
    consortium member reads the log between its appends, and that read is the guess: its
    next append lands at the first try even though another member appended since its own
    last one. A member that did not read since guesses from its own last append, and the
    compare still refuses the stale position: positions stay contiguous either way."""
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        tries: list[int] = []  # b's append transactions (the ones with a compare)
        real_call = b._gw.call

        def call(path: str, body: dict[str, object], **kw: object) -> object:
            if path == "/v3/kv/txn" and "compare" in body:
                tries.append(1)
            return real_call(path, body, **kw)  # type: ignore[arg-type]

        b._gw.call = call  # type: ignore[method-assign]

        def appended(o: EtcdOrderer, entry: bytes) -> tuple[int, int]:
            before = len(tries)
            return o.append([entry]), len(tries) - before

        assert appended(b, b"b0") == (0, 1)
        assert a.append([b"a0"]) == 1
        assert b.read(0) == [b"b0", b"a0"]  # b follows the log: its guess is now 2
        assert appended(b, b"b1") == (2, 1)
        assert a.append([b"a1"]) == 3  # b has not read it
        assert appended(b, b"b2") == (4, 2)  # a failed compare at 3, then 4
        # Its one read took two requests: the first found a writer it did not know (a).
        assert b.request_counts() == {"log reads": 2, "head reads": 1, "appends": 3,
                                      "lost compares": 1}
        assert a.read(0) == b.read(0) == [b"b0", b"a0", b"b1", b"a1", b"b2"]


def test_a_member_whose_watch_saw_the_head_move_reads_it_before_appending(
        etcd_cluster: EtcdCluster) -> None:
    """A member busy deriving has not read another's append yet, but its watch has seen the
    head move (``KeyWatch(on_log=EtcdOrderer.head_moved)``): its next append reads the heads
    first and lands at the first try. Its own appends, seen by the same watch, cost no read."""
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        compares: list[int] = []  # b's append transactions
        reads: list[int] = []  # b's reads of the heads alone
        real_call = b._gw.call

        def call(path: str, body: dict[str, object], **kw: object) -> object:
            if path == "/v3/kv/txn" and "compare" in body:
                compares.append(1)
            elif path == "/v3/kv/range":
                reads.append(1)
            return real_call(path, body, **kw)  # type: ignore[arg-type]

        b._gw.call = call  # type: ignore[method-assign]
        watch = KeyWatch.for_chain(etcd_cluster.url, f"/glucoledger/{chain}/",
                                   on_log=b.head_moved).start()
        try:
            assert watch.wait_healthy(10), "the watch never got established"

            def seen_by_watch(append: Callable[[], int]) -> int:
                """``append()``, once the watch delivered the head it moved (one event)."""
                seen = watch.log_generation
                pos = append()
                deadline = time.monotonic() + 5
                while watch.log_generation == seen and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert watch.log_generation > seen, "the watch never saw the append"
                return pos

            def b_appends(entry: bytes) -> tuple[int, tuple[int, int]]:
                before = len(compares), len(reads)
                pos = seen_by_watch(lambda: b.append([entry]))
                return pos, (len(compares) - before[0], len(reads) - before[1])

            assert b_appends(b"b0") == (0, (1, 1))  # no guess yet: the heads are read
            for n in range(2):
                assert seen_by_watch(partial(a.append, [b"a%d" % n])) == 1 + 2 * n
                # b has not read a's append, but its watch saw it: one read, one compare
                assert b_appends(b"b%d" % (n + 1)) == (2 + 2 * n, (1, 1))
            assert b_appends(b"b3") == (5, (1, 0))  # its own last append moved the head
            assert b.request_counts() == {"log reads": 0, "head reads": 3, "appends": 4,
                                          "lost compares": 0}
        finally:
            watch.close()
        assert a.read(0) == b.read(0) == [b"b0", b"a0", b"b1", b"a1", b"b2", b"b3"]


@pytest.mark.usefixtures("needs_etcd")
def test_cluster_down_from_another_process_view(tmp_path: Path) -> None:
    """What `glucoledger etcd down` does: load the state file, stop exactly those pids."""
    cluster = start_etcd(tmp_path / "one")
    try:
        pid = cluster.members[0].pid
        assert pid is not None
        other = EtcdCluster.load(tmp_path / "one")
        assert other.members[0].pid == pid
        other.stop()
        assert other.members[0].pid is None
        assert cluster._reap(0, 5)  # our child here: it exited and is collected
        assert not _is_running(pid)
    finally:
        cluster.stop()


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


# -- killing members -----------------------------------------------------------------------------


@pytest.mark.slow
def test_survives_one_member_and_stops_safely_without_quorum(fresh_cluster: EtcdCluster) -> None:
    chain = _chain()
    o = EtcdOrderer(fresh_cluster.endpoints, chain, timeout=3.0)
    acked: dict[bytes, int] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def appender() -> None:
        deadline = time.monotonic() + KILL_LOOP_SECONDS
        for k in range(KILL_LOOP_MAX_APPENDS):
            if stop.is_set() or time.monotonic() > deadline:
                return
            entry = f"loop-{k}".encode()
            try:
                acked[entry] = o.append([entry])
            except Exception as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
                return

    def wait_for(count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while len(acked) < count and not errors and time.monotonic() < deadline:
            time.sleep(0.01)

    # 1. Kill -9 the leader (the harder case) while a bounded loop appends: appends continue.
    thread = threading.Thread(target=appender)
    thread.start()
    wait_for(20, 10)
    leader = fresh_cluster.leader()
    assert leader is not None
    fresh_cluster.kill_member(leader)
    before_kill = len(acked)
    wait_for(before_kill + 30, 10)
    stop.set()
    thread.join(timeout=KILL_LOOP_SECONDS + 10)
    assert not thread.is_alive()
    assert errors == []
    assert len(acked) >= before_kill + 30

    # 2. Kill a second member: quorum is gone; append fails within a bounded time.
    second = next(i for i in range(3) if fresh_cluster.members[i].pid is not None)
    fresh_cluster.kill_member(second)
    size_before = max(acked.values()) + 1
    lost = [b"lost-1", b"lost-2", b"lost-3"]
    t0 = time.monotonic()
    with pytest.raises(OrderingError, match=r"no quorum \(1 of 3 members reachable\)") as info:
        o.append(lost)
    assert time.monotonic() - t0 < 3.0 + 5  # its deadline, plus the health probe
    assert "appends are stopped until it returns" in str(info.value)
    with pytest.raises(OrderingError, match="no quorum"):
        o.size()
    # A node that reaches the surviving member alone (a consortium node, its own
    # organization's member) is told that member knows no leader.
    alone = next(m for m in fresh_cluster.members if m.pid is not None)
    single = EtcdOrderer([alone.client_url], chain, timeout=3.0)
    try:
        with pytest.raises(OrderingError,
                           match=r"no quorum \(the member at .* knows no leader\)"):
            single.size()
    finally:
        single.close()

    # 3. Bring both back: appends resume; every acknowledged entry is there exactly once.
    fresh_cluster.restart_member(leader)
    fresh_cluster.restart_member(second)
    fresh_cluster.wait_healthy(30)
    resumed = o.append([b"after"])
    assert resumed >= size_before
    log = o.read(0, 10_000)
    assert len(log) == o.size() == resumed + 1
    for entry, position in acked.items():
        assert log[position] == entry
        assert log.count(entry) == 1
    # The failed batch is all there, contiguous, or not at all: never partial.
    if lost[0] in log:
        start = log.index(lost[0])
        assert log[start : start + 3] == lost
    else:
        assert not set(lost) & set(log)
    o.close()


@pytest.mark.slow
def test_wait_survives_member_loss(fresh_cluster: EtcdCluster) -> None:
    """A waiter whose member dies still wakes up when another member takes the append."""
    chain = _chain()
    waiter = EtcdOrderer(fresh_cluster.endpoints, chain)
    writer = EtcdOrderer(fresh_cluster.endpoints[1:], chain)
    with waiter, writer:
        writer.append([b"0"])
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(waiter.wait(1, 15)))
        thread.start()
        time.sleep(0.3)
        fresh_cluster.kill_member(0)
        time.sleep(0.2)
        writer.append([b"1"])
        thread.join(timeout=20)
        assert result == [2]


def test_append_with_unknown_outcome_is_not_duplicated(
    etcd_cluster: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first txn reaches etcd and commits, but its answer is lost (as when a member dies
    after committing): the retry must find the entries and not append them twice."""
    o = EtcdOrderer(etcd_cluster.endpoints, _chain())
    real_post = o._gw._post
    lost_answers: list[int] = []

    def post(i: int, path: str, payload: bytes, timeout: float) -> dict[str, object]:
        result = real_post(i, path, payload, timeout)
        if path == "/v3/kv/txn" and b"request_put" in payload and not lost_answers:
            lost_answers.append(i)
            raise _Sent(GatewayError("connection reset after sending", transient=True))
        return result

    monkeypatch.setattr(o._gw, "_post", post)
    with o:
        assert o.append([b"once-a", b"once-b"]) == 0
        assert lost_answers
        assert o.size() == 2
        assert o.read(0) == [b"once-a", b"once-b"]
        assert o.append([b"next"]) == 2

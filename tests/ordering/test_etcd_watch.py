"""The follower's watch (ordering/etcd_watch.py) against a real etcd cluster."""

from __future__ import annotations

import time
import uuid

import pytest

from glucoledger.ordering.cluster import EtcdCluster
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.ordering.etcd_kv import EtcdKV
from glucoledger.ordering.etcd_watch import KeyWatch, side_keys_range


def _watch(cluster: EtcdCluster, chain: str, renew: float = 10.0) -> KeyWatch:
    w = KeyWatch.for_chain(cluster.url, f"/glucoledger/{chain}/")
    w._renew = renew
    w.start()
    assert w.wait_healthy(10), "the watch never got established"
    return w


def test_the_range_holds_head_and_side_keys_but_not_batches() -> None:
    lo, hi = side_keys_range("/glucoledger/c/")
    for key in ("head/org-1", "first/org-1", "sig/org-1/00000000000000000001", "stored/org-1",
                "health/org-1", "ctl/org-1"):
        assert lo <= "/glucoledger/c/" + key < hi, key
    assert not lo <= "/glucoledger/c/batch/org-1/00000000000000000000" < hi
    with pytest.raises(ValueError):
        side_keys_range("/glucoledger/c")


def test_an_append_and_a_note_each_wake_the_follower_and_other_chains_do_not(
        etcd_cluster: EtcdCluster) -> None:
    chain = f"w-{uuid.uuid4().hex[:8]}"
    w = _watch(etcd_cluster, chain)
    try:
        with EtcdOrderer.from_url(etcd_cluster.url, chain) as o, \
                EtcdOrderer.from_url(etcd_cluster.url, chain + "-other") as other:
            seen = w.generation
            other.append([b"elsewhere"])  # another chain: not ours
            assert w.wait_change(seen, 0.5) == seen
            o.append([b"x"])
            after = w.wait_change(seen, 5)
            assert after > seen, "an append did not wake the follower"
            kv = EtcdKV.from_url(etcd_cluster.url, chain)
            try:
                seen = w.generation
                kv.put("sig/org-9/00000000000000000000", b"note")
                assert w.wait_change(seen, 5) > seen, "a note did not wake the follower"
            finally:
                kv.close()
    finally:
        w.close()


def test_the_watch_says_whether_the_log_or_the_notes_changed(
        etcd_cluster: EtcdCluster) -> None:
    """A follower reads the log after an append and the notes after a note, not both."""
    chain = f"w-{uuid.uuid4().hex[:8]}"
    w = _watch(etcd_cluster, chain)
    kv = EtcdKV.from_url(etcd_cluster.url, chain)
    try:
        with EtcdOrderer.from_url(etcd_cluster.url, chain) as o:
            for _ in range(2):
                seen, log, side = w.generation, w.log_generation, w.side_generation
                o.append([b"x"])
                assert w.wait_change(seen, 5) > seen
                assert w.log_generation > log and w.side_generation == side
                seen, log, side = w.generation, w.log_generation, w.side_generation
                kv.put("sig/org-9/00000000000000000000", b"note")
                assert w.wait_change(seen, 5) > seen
                assert w.side_generation > side and w.log_generation == log
            seen, log, side = w.generation, w.log_generation, w.side_generation
            kv.put("first/org-9", b"1")  # a compaction's mark: the log changed
            assert w.wait_change(seen, 5) > seen
            assert w.log_generation > log and w.side_generation == side
    finally:
        kv.close()
        w.close()


def test_a_change_of_unknown_kind_counts_as_both() -> None:
    from glucoledger.ordering._gateway import Gateway, b64

    gw = Gateway(["http://127.0.0.1:1"], 1.0, None)
    watch = KeyWatch(gw, "/p/c", "/p/t", log=("/p/head/",))
    assert watch._kinds([{"kv": {"key": b64("/p/head/org-1")}}]) == (True, False)
    assert watch._kinds([{"kv": {"key": b64("/p/sig/org-1/1")}}]) == (False, True)
    assert watch._kinds([{"kv": {"key": b64("/p/head/a")}},
                         {"kv": {"key": b64("/p/stored/a")}}]) == (True, True)
    assert watch._kinds([{"kv": {}}]) == (True, True)
    assert watch._kinds([{"kv": {"key": "not base64!"}}]) == (True, True)
    plain = KeyWatch(gw, "/p/c", "/p/t")  # no log prefixes: every change is both
    assert plain._kinds([{"kv": {"key": b64("/p/sig/org-1/1")}}]) == (True, True)
    before = (watch.generation, watch.log_generation, watch.side_generation)
    watch._bump(healthy=False)  # a gap: anything may have changed in it
    assert (watch.generation, watch.log_generation, watch.side_generation) == tuple(
        x + 1 for x in before)
    gw.close()


def test_nothing_is_missed_across_renewals_and_idle_costs_no_events(
        etcd_cluster: EtcdCluster) -> None:
    chain = f"w-{uuid.uuid4().hex[:8]}"
    w = _watch(etcd_cluster, chain, renew=0.3)
    try:
        seen = w.generation
        time.sleep(1.0)  # three renewals or so, nothing written
        assert w.events == 0 and w.generation == seen
        with EtcdOrderer.from_url(etcd_cluster.url, chain) as o:
            for k in range(5):  # changes landing at any point of the renewal cycle
                before = w.generation
                o.append([bytes([k])])
                assert w.wait_change(before, 5) > before, f"append {k} was missed"
                time.sleep(0.13)
        assert w.events >= 5
    finally:
        w.close()


def test_a_member_going_away_moves_the_watch_to_another(fresh_cluster: EtcdCluster) -> None:
    chain = f"w-{uuid.uuid4().hex[:8]}"
    w = _watch(fresh_cluster, chain, renew=2.0)
    try:
        fresh_cluster.kill_member(w._gw.preferred)
        with EtcdOrderer.from_url(fresh_cluster.url, chain, timeout=10) as o:
            o.append([b"after the kill"])
            deadline = time.monotonic() + 15
            while w.events == 0 and time.monotonic() < deadline:
                w.wait_change(w.generation, 0.5)
            assert w.events >= 1, "the watch did not resume on another member"
    finally:
        w.close()


def test_closing_wakes_a_waiter_at_once(etcd_cluster: EtcdCluster) -> None:
    w = _watch(etcd_cluster, f"w-{uuid.uuid4().hex[:8]}")
    seen = w.generation
    t0 = time.monotonic()
    import threading

    threading.Timer(0.2, w.close).start()
    w.wait_change(seen, 10)
    assert time.monotonic() - t0 < 5 and not w.healthy

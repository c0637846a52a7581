"""Reading the other members' side keys (``ordering.etcd_kv.EtcdKV.read_members``) and log
heads (``ordering.etcd``) when one member writes junk under its own keys.

Real etcd (the session's 3-member cluster); the junk is put with raw gateway requests, as a
member with etcd credentials for its own keys could (``ordering.etcd_rbac`` grants it
``sig/<name>/`` as a range, ``health/``, ``stored/``, ``head/`` as single keys). Rows of
docs/threat-model.md ("Side keys") point here.
"""

from __future__ import annotations

import json
import uuid

import pytest

from glucoledger.errors import OrderingError
from glucoledger.ordering._gateway import Gateway, b64
from glucoledger.ordering.cluster import EtcdCluster
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.ordering.etcd_kv import MAX_SIDE_VALUE, EtcdKV


def _chain() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def _put_raw(cluster: EtcdCluster, items: list[tuple[bytes, bytes]]) -> None:
    gw = Gateway(cluster.endpoints, 10.0)
    try:
        for k in range(0, len(items), 100):
            ops = [{"request_put": {"key": b64(key), "value": b64(value)}}
                   for key, value in items[k:k + 100]]
            gw.call("/v3/kv/txn", {"success": ops})
    finally:
        gw.close()


def _sig(h: int) -> str:
    return f"{h:020d}"


def test_junk_keys_of_one_member_hide_no_other_member_s_notes(etcd_cluster: EtcdCluster
                                                              ) -> None:
    chain = _chain()
    kv = EtcdKV(etcd_cluster.endpoints, chain)
    try:
        kv.put_many({f"sig/org-0/{_sig(7)}": b"note-0", f"sig/org-1/{_sig(7)}": b"note-1",
                     f"sig/org-2/{_sig(7)}": b"note-2"})
        # org-0 (its keys sort first) puts 6,000 junk keys, between its own heights and
        # after them, and keys that are not UTF-8.
        prefix = kv.prefix.encode() + b"sig/org-0/"
        junk = [(prefix + f"{_sig(6)}x{k:05d}".encode(), b"j") for k in range(3000)]
        junk += [(prefix + f"x{k:05d}".encode(), b"j") for k in range(3000)]
        junk += [(prefix + b"\xff\xfe", b"x"), (prefix + _sig(8).encode() + b"\xff", b"y")]
        _put_raw(etcd_cluster, junk)
        # One range over sig/ (the old read) no longer reaches the other members' notes.
        assert "org-1/" + _sig(7) not in kv.scan_many(["sig/"])[0]
        got = kv.read_members(["org-0", "org-1", "org-2"], 5, 9)
        # org-0's junk between its heights crowds out its own note only.
        assert got.notes == {7: {"org-1": b"note-1", "org-2": b"note-2"}}
        # Junk inside org-0's own height range is read (up to its limit), skipped and named.
        assert got.problems and all("'org-0'" in p for p in got.problems)
    finally:
        kv.close()


def test_oversized_values_are_skipped_and_their_writer_named(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    kv = EtcdKV(etcd_cluster.endpoints, chain)
    try:
        big = b"\x00" * (MAX_SIDE_VALUE + 1)
        kv.put_many({f"sig/org-0/{_sig(3)}": b"note-0", f"sig/org-2/{_sig(3)}": big,
                     "health/org-2": big, "stored/org-2": big,
                     "stored/org-0": b'{"height": 3, "cut": 9}'})
        got = kv.read_members(["org-0", "org-2"], 0, 4)
        assert got.notes == {3: {"org-0": b"note-0"}}
        assert got.health == {} and got.stored == {"org-0": b'{"height": 3, "cut": 9}'}
        assert len(got.problems) == 3
        assert all("'org-2'" in p and str(MAX_SIDE_VALUE) in p for p in got.problems)
    finally:
        kv.close()


def test_only_the_heights_asked_for_are_read(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    kv = EtcdKV(etcd_cluster.endpoints, chain)
    try:
        kv.put_many({f"sig/org-0/{_sig(h)}": str(h).encode() for h in range(10)})
        got = kv.read_members(["org-0"], 4, 7)
        assert sorted(got.notes) == [4, 5, 6]
        assert not got.problems
    finally:
        kv.close()


@pytest.mark.parametrize("value", [b"x", b"-1", b"1" * 30, b"\xff"])
def test_a_head_that_is_no_position_stops_reads_with_its_writer_named(
        etcd_cluster: EtcdCluster, value: bytes) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-0") as a:
        a.append([b"e0", b"e1"])
        _put_raw(etcd_cluster, [(f"/glucoledger/{chain}/head/org-2".encode(), value)])
        with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-1") as reader:
            for call in (reader.size, lambda: reader.read(0)):
                with pytest.raises(OrderingError, match="member 'org-2' wrote"):
                    call()
        _put_raw(etcd_cluster, [(f"/glucoledger/{chain}/head/org-2".encode(), b"0")])
        with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-1") as reader:
            assert reader.read(0) == [b"e0", b"e1"]


def test_reports_are_read_per_member_as_single_keys(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    kv = EtcdKV(etcd_cluster.endpoints, chain)
    try:
        kv.put_many({"health/org-0": json.dumps({"ok": True}).encode(),
                     "health/org-0x": b"not org-0's", "stored/org-1": b"{}"})
        got = kv.read_members(["org-0", "org-1"], 0, 0)
        assert got.health == {"org-0": b'{"ok": true}'} and got.stored == {"org-1": b"{}"}
        assert got.notes == {}
    finally:
        kv.close()

"""Layout 2 of the etcd log (``ordering.etcd``): each writer appends under its own keys, the
order is etcd's serial application of compare-and-put transactions, and what a writer can do
with its own keys outside the protocol stops every reader with an error naming it.

Real etcd (the session's 3-member cluster); tampering is done with raw gateway requests, as
a member with etcd credentials for its own keys could.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from glucoledger.errors import OrderingError
from glucoledger.ordering import etcd as etcd_module
from glucoledger.ordering._gateway import Gateway, b64
from glucoledger.ordering.base import MAX_ENTRY
from glucoledger.ordering.cluster import EtcdCluster
from glucoledger.ordering.etcd import MAX_BATCH_ENTRIES, EtcdOrderer, _pack


def _chain() -> str:
    return f"l-{uuid.uuid4().hex[:12]}"


def _keys(cluster: EtcdCluster, chain: str) -> list[str]:
    gw = Gateway(cluster.endpoints, 3.0)
    try:
        prefix = f"/glucoledger/{chain}/"
        body = gw.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix[:-1] + "0"),
                                        "keys_only": True}).body
    finally:
        gw.close()
    import base64
    return [base64.b64decode(kv["key"]).decode()[len(prefix):] for kv in body.get("kvs", [])]


def _put(cluster: EtcdCluster, key: str, value: bytes) -> None:
    gw = Gateway(cluster.endpoints, 3.0)
    try:
        gw.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})
    finally:
        gw.close()


def test_each_writer_writes_only_under_its_own_name(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        assert a.append([b"a0", b"a1"]) == 0
        assert b.append([b"b2"]) == 2
        assert a.append([b"a3"]) == 3
        assert a.size() == b.size() == 4
    assert _keys(etcd_cluster, chain) == [
        "batch/org-a/00000000000000000000", "batch/org-a/00000000000000000003",
        "batch/org-b/00000000000000000002", "head/org-a", "head/org-b"]
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="reader") as fresh:
        assert fresh.read(0) == [b"a0", b"a1", b"b2", b"a3"]
        assert fresh.read(1, 2) == [b"a1", b"b2"]
        assert fresh.read(3) == [b"a3"]
        assert fresh.read(4) == []


def test_writer_of_names_the_writer_of_each_entry_read_by_this_thread(
        etcd_cluster: EtcdCluster) -> None:
    """Nodes count an entry only when its writer is a member in force (``Node._counted``),
    so who wrote it must come from its key, for exactly the entries this thread read."""
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        a.append([b"a0", b"a1"])
        b.append([b"b2"])
        a.append([b"a3"])
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="reader") as fresh:
        assert fresh.writer_of(0) is None  # nothing read yet
        assert fresh.read(1, 2) == [b"a1", b"b2"]
        # The batches that read returned entries of: org-a's [0, 2) and org-b's [2, 3).
        assert [fresh.writer_of(p) for p in range(5)] == ["org-a", "org-a", "org-b", None, None]
        other = threading.Thread(target=fresh.read, args=(3,))  # another thread's read
        other.start()
        other.join()
        assert [fresh.writer_of(p) for p in (1, 2, 3)] == ["org-a", "org-b", None]
        assert fresh.read(0) == [b"a0", b"a1", b"b2", b"a3"]
        assert [fresh.writer_of(p) for p in range(4)] == ["org-a", "org-a", "org-b", "org-a"]


def test_concurrent_writers_get_one_total_order(etcd_cluster: EtcdCluster) -> None:
    """Four writers race (each with its own client): positions are contiguous, every entry
    lands exactly once, and fresh readers on different members read the same sequence."""
    chain = _chain()
    got: dict[str, list[tuple[int, int]]] = {}
    errors: list[BaseException] = []

    def run(name: str, i: int) -> None:
        try:
            with EtcdOrderer(etcd_cluster.endpoints[i % 3:] + etcd_cluster.endpoints[:i % 3],
                             chain, writer=name, timeout=20) as o:
                got[name] = [(o.append([f"{name}:{k}:{j}".encode() for j in range(k % 3 + 1)]),
                              k % 3 + 1) for k in range(25)]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"w{i}", i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    spans = sorted(span for spans in got.values() for span in spans)
    total = sum(n for _, n in spans)
    assert [p for p, _ in spans] == [sum(n for _, n in spans[:k]) for k in range(len(spans))]
    logs = []
    for i in range(3):
        with EtcdOrderer(etcd_cluster.endpoints[i:i + 1], chain, writer="r") as r:
            assert r.size() == total
            out: list[bytes] = []
            while len(out) < total:
                out.extend(r.read(len(out), 7))
            logs.append(out)
    assert logs[0] == logs[1] == logs[2]
    assert len(set(logs[0])) == total == 4 * sum(k % 3 + 1 for k in range(25))


def test_a_writer_rewriting_its_ordered_batch_stops_every_reader(
        etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        a.append([b"pay 1"])
        b.append([b"b"])
        assert b.read(0) == [b"pay 1", b"b"]
    _put(etcd_cluster, f"/glucoledger/{chain}/batch/org-a/{0:020d}", _pack([b"pay 9"]))
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="reader") as fresh:
        with pytest.raises(OrderingError, match="member 'org-a' rewrote its batch at position 0"):
            fresh.read(0)


def test_a_batch_put_outside_the_protocol_stops_every_reader(etcd_cluster: EtcdCluster) -> None:
    """A second claim on decided positions (no compare, its own key) and a claim on a future
    position made before the entries ahead of it: both are refused, naming the writer."""
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a:
        a.append([b"a0", b"a1"])
    _put(etcd_cluster, f"/glucoledger/{chain}/batch/mallory/{1:020d}", _pack([b"forged"]))
    _put(etcd_cluster, f"/glucoledger/{chain}/head/mallory", b"2")
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="reader") as fresh:
        with pytest.raises(OrderingError, match="member 'mallory'.*overlaps"):
            fresh.read(0)

    chain = _chain()
    _put(etcd_cluster, f"/glucoledger/{chain}/batch/mallory/{1:020d}", _pack([b"early"]))
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a:
        assert a.append([b"a0"]) == 0  # mallory set no head: the compare lets org-a in at 0
        assert a.size() == 1
        assert a.read(0) == [b"a0"]  # position 1 is not part of the log yet
        _put(etcd_cluster, f"/glucoledger/{chain}/head/mallory", b"2")
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="reader") as fresh, \
            pytest.raises(OrderingError, match="member 'mallory'.*created .* before"):
        fresh.read(0)


def test_a_head_no_batch_reaches_is_a_gap_naming_its_writer(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a:
        a.append([b"a0"])
        _put(etcd_cluster, f"/glucoledger/{chain}/head/mallory", b"50")
        assert a.size() == 50
        assert a.read(0, 1) == [b"a0"]
        with pytest.raises(OrderingError, match="gap at position 1.*'mallory'"):
            a.read(0)


def test_compaction_deletes_only_the_writers_own_batches(etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        for k in range(3):
            a.append([f"a{k}".encode()])
            b.append([f"b{k}".encode()])
        a.compact(4)
        assert a.first() == b.first() == 4 and a.own_first() == 4 and b.own_first() == 0
        with pytest.raises(OrderingError, match="position 2 .* compacted away by member "
                           "'org-a' .*; the log now starts at 4"):
            b.read(2)  # org-a's deleted batch
        assert b.read(3) == [b"b1", b"a2", b"b2"]  # org-a's floor does not cover org-b's
        assert b.read(4) == [b"a2", b"b2"]
        keys = _keys(etcd_cluster, chain)
        assert [k for k in keys if k.startswith("batch/org-a/")] == [f"batch/org-a/{4:020d}"]
        assert len([k for k in keys if k.startswith("batch/org-b/")]) == 3
        b.compact(4)
        assert [k for k in _keys(etcd_cluster, chain) if k.startswith("batch/")] == [
            f"batch/org-a/{4:020d}", f"batch/org-b/{5:020d}"]
        assert b.read(4) == [b"a2", b"b2"]


def test_writer_names_are_checked() -> None:
    for bad in ("", "a/b", "x" * 129, "tab\t"):
        with pytest.raises(ValueError, match="writer name"):
            EtcdOrderer(["127.0.0.1:1"], "c", writer=bad)


def test_reads_end_at_a_whole_batch_so_the_next_starts_at_a_boundary(
        etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        for k in range(4):
            (a if k % 2 else b).append([f"{k}.{j}".encode() for j in range(3)])
        assert a.read(0, 4) == [b"0.0", b"0.1", b"0.2"]  # not a piece of the next batch
        assert a.read(3, 4) == [b"1.0", b"1.1", b"1.2"]
        assert a.read(6, 100) == [b"2.0", b"2.1", b"2.2", b"3.0", b"3.1", b"3.2"]
        assert a.read(1, 1) == [b"0.1"]  # a batch larger than the limit is cut
        assert a.read(7, 2) == [b"2.1", b"2.2"]


def test_one_writers_floor_stops_no_reader_of_the_others(etcd_cluster: EtcdCluster) -> None:
    """first/<writer> covers that writer's own batches only (audit #8: first/org-2 = 10^12
    stopped every reader, naming nobody)."""
    chain = _chain()
    base = f"/glucoledger/{chain}/"
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        a.append([b"a0"])
        b.append([b"b1"])
        a.append([b"a2"])
        _put(etcd_cluster, base + "first/mallory", str(10**12).encode())  # no batch at all
        assert a.first() == 0
        assert a.read(0) == [b"a0", b"b1", b"a2"]
        assert a.append([b"a3"]) == 3
        _put(etcd_cluster, base + "first/org-b", str(10**12).encode())  # beyond the size
        assert a.first() == 0
        assert a.read(2) == [b"a2", b"a3"]  # the others' entries are read
        with pytest.raises(OrderingError, match="member 'org-b' recorded its compaction "
                           "floor .* beyond the log's size 4"):
            a.read(0)  # org-b's own entry: a protocol break naming it
        _put(etcd_cluster, base + "first/org-b", b"2")  # its own head: a valid floor
        assert a.first() == 2
        assert a.read(0, 1) == [b"a0"]
        with pytest.raises(OrderingError, match="position 1 .* compacted away by member "
                           "'org-b'"):
            a.read(1)
        assert a.read(2) == [b"a2", b"a3"]


def test_compaction_records_no_floor_above_the_writers_own_head(
        etcd_cluster: EtcdCluster) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        a.append([b"a0"])
        b.append([b"b1", b"b2", b"b3"])
        a.compact(4)
        assert a.own_first() == 1 and a.first() == 1
        assert a.read(1) == [b"b1", b"b2", b"b3"]


@pytest.mark.parametrize(("entries", "what"), [
    ([b"x"] * (MAX_BATCH_ENTRIES + 1), f"more than the {MAX_BATCH_ENTRIES} entries"),
    ([b"x", b""], "an empty entry"),
    ([], "no entry"),
    ([bytes(MAX_ENTRY + 1)], f"an entry of {MAX_ENTRY + 1} bytes"),
    ([bytes(750_000), bytes(750_001)], "1500001 bytes of entries"),
    ([bytes(760_000), bytes(760_000)], "1520009 bytes, more than an append may"),
])
def test_a_batch_beyond_the_append_limits_stops_readers_naming_its_writer(
        etcd_cluster: EtcdCluster, entries: list[bytes], what: str) -> None:
    """The reader enforces the append limits (audit #10: one batch of 300,000 empty entries
    was re-read for every 1,000-entry read)."""
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a:
        a.append([b"a0"])
        _put(etcd_cluster, f"/glucoledger/{chain}/batch/mallory/{1:020d}", _pack(entries))
        _put(etcd_cluster, f"/glucoledger/{chain}/head/mallory", str(1 + len(entries)).encode())
        with pytest.raises(OrderingError, match=f"member 'mallory'.s batch at position 1 "
                           f"holds {what}.*outside the append protocol"):
            a.read(0)
        assert a.read(0, 1) == [b"a0"]


def test_empty_entries_are_refused_at_append() -> None:
    with EtcdOrderer(["127.0.0.1:1"], "c", writer="w") as o, \
            pytest.raises(ValueError, match="no empty entries"):
        o.append([b"a", b""])


def test_a_batch_is_unpacked_once_however_often_it_is_read(
        etcd_cluster: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _chain()
    calls: list[int] = []
    real = etcd_module._unpack

    def counting(data: bytes, chain: str, pos: int, writer: str) -> list[bytes]:
        calls.append(pos)
        return real(data, chain, pos, writer)

    monkeypatch.setattr(etcd_module, "_unpack", counting)
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a:
        batch = [f"e{k}".encode() for k in range(MAX_BATCH_ENTRIES)]
        a.append(batch)
        for k in range(MAX_BATCH_ENTRIES):
            assert a.read(k, 1) == [batch[k]]
    assert calls == [0]


def test_compressed_and_plain_batches_read_alike_in_one_log(etcd_cluster: EtcdCluster) -> None:
    """A member of a rule-set-5 chain writes its batches compressed (pack version 2); every
    reader reads both versions in one log, and the bytes in etcd are the compressed ones."""
    chain = _chain()
    entries = [b"glucose reading %d " % i * 20 for i in range(100)]
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a, \
            EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-b") as b:
        assert a.append([b"plain"]) == 0
        b.compress = True
        assert b.append(entries) == 1
        assert a.append([b"plain again"]) == 101
        assert a.read(0) == b.read(0) == [b"plain", *entries, b"plain again"]
        gw = Gateway(etcd_cluster.endpoints, 3.0)
        try:
            kv = gw.call("/v3/kv/range", {"key": b64(f"/glucoledger/{chain}/batch/org-b/"
                                                     f"{1:020d}")}).body["kvs"][0]
        finally:
            gw.close()
        import base64
        stored = base64.b64decode(kv["value"])
        assert stored[:1] == b"\x02" and len(stored) < 0.2 * len(_pack(entries))


def _zlib_batch(packed: bytes, tail: bytes = b"") -> bytes:
    import zlib
    return b"\x02" + zlib.compress(packed, 1) + tail


@pytest.mark.parametrize(("value", "what"), [
    # a kilobyte that inflates past what any append may hold (a bomb for every reader)
    (_zlib_batch(b"\x01" + bytes(3_000_000)), "inflates to more bytes than an append may"),
    (_zlib_batch(_pack([b"x"]))[:-3], "truncated"),
    (_zlib_batch(_pack([b"x"]), b"more"), "bytes after its compressed data"),
    (b"\x02not zlib at all", "not valid compressed data"),
    (_zlib_batch(_zlib_batch(_pack([b"x"]))), "no version-1 packing inside"),
    (_zlib_batch(b"\x01" + (0).to_bytes(4, "big")), "holds an empty entry"),
])
def test_a_compressed_batch_that_breaks_the_layout_stops_readers_naming_its_writer(
        etcd_cluster: EtcdCluster, value: bytes, what: str) -> None:
    chain = _chain()
    with EtcdOrderer(etcd_cluster.endpoints, chain, writer="org-a") as a:
        a.append([b"a0"])
        _put(etcd_cluster, f"/glucoledger/{chain}/batch/mallory/{1:020d}", value)
        _put(etcd_cluster, f"/glucoledger/{chain}/head/mallory", b"2")
        with pytest.raises(OrderingError, match=f"member 'mallory'.s batch at position 1 "
                           f"(is |holds |inflates ){{0,1}}.*{what}"):
            a.read(0)
        assert a.read(0, 1) == [b"a0"]

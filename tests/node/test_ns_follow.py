"""A socket feed's push reads only what may have changed (``NightscoutService.follow``), and
what the phone ends up holding is exactly what it holds when every push reads the whole window.

Two feeds follow one patient through AndroidAPS's uploads (a reading, a dose, a device status
every 5 minutes), an edit, a deletion recorded by another process (a ``doc.version`` this
service did not make), an erasure, and the window moving on: one reads the whole window at
every push (what every push did before), the other as served. After each step both phones'
collections are equal, and a push after a plain upload lists a batch or two in its access
record, not the window's every batch."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.api.context import ServerContext
from glucoledger.bench.follow import UPLOADER_SECRET, follower_site
from glucoledger.interop.nsfeed import COLLECTIONS, Feed
from glucoledger.interop.nsquery import parse_query
from glucoledger.interop.nsrender import iso
from glucoledger.node.accounts import identity, keys_of
from glucoledger.node.nightscout import Binding, Followed, NightscoutService
from glucoledger.node.service import Node
from tests.api.payloads import aaps_profile

HOUR = 3_600_000
STEP = 300_000
NOW = int(time.time() * 1000) // STEP * STEP
SINCE = NOW - 48 * HOUR


class Phone:
    """One socket's feed, and the collections its phone holds from the pushes (by key of the
    ``dataUpdate`` payload, then ``_id``); ``narrow``: pushes as served, else whole reads."""

    def __init__(self, narrow: bool) -> None:
        self.narrow = narrow
        self.feed = Feed()
        self.seen: dict[str, Followed] = {}
        self.held: dict[str, dict[str, dict[str, Any]]] = {}

    def push(self, node: Node, ns: NightscoutService, up: Binding, since: int, *,
             full: bool = False) -> list[tuple[int, int]]:
        """One push of every collection; for each access record it added, where the read
        started and how many batches it lists."""
        before = set(node.state.keys("access/"))
        for col in COLLECTIONS:
            prior = self.seen.get(col) if self.narrow and not full else None
            docs, start, self.seen[col] = ns.follow(up, col, since, prior)
            if docs is None:
                continue
            for key, rows in self.feed.delta(col, docs, full=full, since_ms=since,
                                             from_ms=start).items():
                held = self.held.setdefault(key, {})
                for row in rows:
                    if row.get("action") == "remove":
                        held.pop(row["_id"], None)
                    else:
                        held[row["_id"]] = {k: v for k, v in row.items() if k != "action"}
        for held in self.held.values():  # the phone keeps its own window
            for i in [i for i, row in held.items() if row.get("mills", since) < since]:
                del held[i]
        added = [codec.decode_trusted(node.state.get_raw(k))  # type: ignore[arg-type]
                 for k in set(node.state.keys("access/")) - before]
        return sorted((a["decision"]["from"], len(a["batches"])) for a in added)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Node, ServerContext, NightscoutService, Binding]]:
    node = Node.init(tmp_path / "node")
    ctx = ServerContext.create(node)
    ns: NightscoutService = ctx.svc.nightscout  # type: ignore[union-attr]
    follower_site(node, ns, NOW)
    up = ns.authenticate(hashlib.sha1(UPLOADER_SECRET.encode()).hexdigest(), None)
    try:
        yield node, ctx, ns, up
    finally:
        ctx.close()
        node.close()


def _upload(ns: NightscoutService, up: Binding, t: int) -> None:
    """What AndroidAPS sends in 5 minutes: a reading, a temporary basal, a device status."""
    for collection, doc in (
            ("entries", {"type": "sgv", "sgv": 90 + (t // STEP) % 80, "date": t,
                         "direction": "Flat", "device": "AndroidAPS-DexcomG6"}),
            ("treatments", {"eventType": "Temp Basal", "created_at": iso(t), "rate": 0.8,
                            "absolute": 0.8, "duration": 30, "enteredBy": "AndroidAPS"}),
            ("devicestatus", {"device": "openaps://samsung", "created_at": iso(t),
                              "pump": {"reservoir": 120, "clock": iso(t)}})):
        ns.post(up, collection, [doc], NOW).result(60)


def _carbs(ns: NightscoutService, up: Binding, t: int, grams: int) -> str:
    docs = ns.post(up, "treatments", [{"eventType": "Carb Correction", "created_at": iso(t),
                                       "carbs": grams, "enteredBy": "AndroidAPS"}],
                   NOW).result(60)
    return str(docs[0]["_id"])


def test_pushes_read_what_changed_and_the_phone_holds_what_whole_reads_give(
        site: tuple[Node, ServerContext, NightscoutService, Binding]) -> None:
    node, ctx, ns, up = site
    t = SINCE + STEP
    while t < NOW - 24 * HOUR:  # a day of history before the phones connect
        _upload(ns, up, t)
        t += 6 * STEP
    lunch = _carbs(ns, up, NOW - 30 * HOUR, 40)
    _carbs(ns, up, NOW - 27 * HOUR, 60)
    whole, narrow = Phone(narrow=False), Phone(narrow=True)
    whole.push(node, ns, up, SINCE, full=True)
    narrow.push(node, ns, up, SINCE, full=True)
    assert whole.held == narrow.held and len(narrow.held["sgvs"]) > 40

    def both(since: int = SINCE) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        lists = whole.push(node, ns, up, since), narrow.push(node, ns, up, since)
        assert narrow.held == whole.held
        return lists

    # Plain uploads: each push reads from the hour of the new batches on (a commitment
    # names the hour, not the minute: state/data.py), nothing older, and lists those.
    for _ in range(3):
        _upload(ns, up, t)
        whole_reads, reads = both()
        assert [start for start, _ in whole_reads] == [0] + [SINCE] * 3  # 0: the profile
        assert reads and {start for start, _ in reads} == {t - t % HOUR}
        assert max(n for _, n in reads) * 5 < max(n for _, n in whole_reads)
        t += STEP
    assert both()[1] == []  # nothing new: nothing read, nothing recorded

    # A new profile (the newest, of any age: read again when its stream's batches change).
    ns.post(up, "profile", [aaps_profile(NOW)], NOW).result(60)
    reads = both()[1]
    assert [start for start, _ in reads] == [0] and len(narrow.held["profiles"]) == 1
    _upload(ns, up, t)
    t += STEP
    assert 0 not in {start for start, _ in both()[1]}

    # A reading backfilled from yesterday with a new one: read from the older one's hour on.
    late = t - 5 * HOUR + 1
    ns.post(up, "entries", [{"type": "sgv", "sgv": 140, "date": late,
                             "device": "AndroidAPS-DexcomG6"}], NOW).result(60)
    _upload(ns, up, t)
    t += STEP
    reads = both()[1]
    assert min(start for start, _ in reads) == late - late % HOUR
    assert late in {r["mills"] for r in narrow.held["sgvs"].values()}

    # A deletion recorded by another process: a doc.version this service did not order.
    query = parse_query("treatments", [("find[created_at][$gte]", iso(SINCE))])
    tag = next(ns.tag_of(up.patient, "treatments", f.key)
               for f in ns._select(up, "treatments", query) if f.doc["_id"] == lunch)
    version, _ = ns.versions.current(up.patient, tag)
    ann = identity(node, "ann")
    ns.versions.record(ann.id, keys_of(node, ann, [0]), up.patient, tag, version + 1, [])
    _upload(ns, up, t)
    t += STEP
    both()
    assert lunch not in narrow.held["treatments"]

    # An edit: the dinner's carbs corrected.
    _carbs(ns, up, NOW - 27 * HOUR, 45)
    both()
    assert any(r.get("carbs") == 45 for r in narrow.held["treatments"].values())

    # An erasure of yesterday afternoon, then new data: the erased treatments are removed.
    ctx.svc.erasure.erase_as(ann.id, keys_of(node, ann, [0]), ["insulin", "carbs", "notes"],
                             NOW - 30 * HOUR, NOW - 28 * HOUR)
    _upload(ns, up, t)
    t += STEP
    both()
    assert not [r for r in narrow.held["treatments"].values()
                if NOW - 30 * HOUR <= r["mills"] < NOW - 28 * HOUR]

    # The window moves on: what ages out is dropped by the phone, not pushed as a removal.
    _upload(ns, up, t)
    both(since=SINCE + 6 * HOUR)

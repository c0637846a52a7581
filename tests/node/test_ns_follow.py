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
from types import SimpleNamespace
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.api.context import ServerContext
from glucoledger.bench.follow import FOLLOWER_TOKEN, UPLOADER_SECRET, follower_site
from glucoledger.errors import PermissionDeniedError
from glucoledger.interop.nsfeed import COLLECTIONS, Feed
from glucoledger.interop.nsquery import parse_query
from glucoledger.interop.nsrender import iso
from glucoledger.node import consent_actions as ca
from glucoledger.node.accounts import create_account, identity, keys_of
from glucoledger.node.nightscout import Binding, Followed, NightscoutService, _merged
from glucoledger.node.nsedits import EditLog
from glucoledger.node.service import Node
from glucoledger.state.access import released_count
from glucoledger.state.versions import alias_key, version_key
from tests.api.payloads import aaps_profile

HOUR = 3_600_000
STEP = 300_000
NOW = int(time.time() * 1000) // STEP * STEP
SINCE = NOW - 48 * HOUR


def _hour(t: int) -> int:
    return t - t % HOUR


class Phone:
    """One socket's feed, and the collections its phone holds from the pushes (by key of the
    ``dataUpdate`` payload, then ``_id``); ``narrow``: pushes as served, else whole reads."""

    def __init__(self, narrow: bool) -> None:
        self.narrow = narrow
        self.feed = Feed()
        self.seen: dict[str, Followed] = {}
        self.held: dict[str, dict[str, dict[str, Any]]] = {}
        self.spans: dict[str, list[tuple[int, int]]] = {}  # by collection: the last push's
        self.reads: list[tuple[int, int, int]] = []  # the last push's: from, to, batches

    def push(self, node: Node, ns: NightscoutService, up: Binding, since: int, *,
             full: bool = False) -> list[tuple[int, int]]:
        """One push of every collection; for each access record it added, where the read
        started and how many batches it lists."""
        before = set(node.state.keys("access/"))
        for col in COLLECTIONS:
            prior = self.seen.get(col) if self.narrow and not full else None
            docs, spans, self.seen[col] = ns.follow(up, col, since, prior)
            self.spans[col] = spans
            if docs is None:
                continue
            for key, rows in self.feed.delta(col, docs, full=full, since_ms=since,
                                             spans=spans).items():
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
        self.reads = sorted((a["decision"]["from"], a["decision"]["to"], released_count(a))
                            for a in added)
        return sorted((a["decision"]["from"], released_count(a)) for a in added)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Node, ServerContext, NightscoutService, Binding]]:
    node = Node.init(tmp_path / "node")
    ctx = ServerContext.create(node)
    ns: NightscoutService = ctx.svc.nightscout
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


class Phones:
    """Two phones following one patient: one reading the whole window at every push, one
    as served; ``both`` pushes to each and checks they hold the same."""

    def __init__(self, node: Node, ns: NightscoutService, up: Binding) -> None:
        self.node, self.ns, self.up = node, ns, up
        self.whole, self.narrow = Phone(narrow=False), Phone(narrow=True)
        self.whole.push(node, ns, up, SINCE, full=True)
        self.narrow.push(node, ns, up, SINCE, full=True)
        assert self.whole.held == self.narrow.held and len(self.narrow.held["sgvs"]) > 40

    def both(self, since: int = SINCE) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The reads of each push (where each started, how many batches it lists)."""
        lists = (self.whole.push(self.node, self.ns, self.up, since),
                 self.narrow.push(self.node, self.ns, self.up, since))
        assert self.narrow.held == self.whole.held
        # and each remembers the same documents as sent (so later deltas agree)
        assert ({c: {i: t for i, (_, t) in sent.items()}
                 for c, sent in self.narrow.feed.sent.items()}
                == {c: {i: t for i, (_, t) in sent.items()}
                    for c, sent in self.whole.feed.sent.items()})
        return lists


def _history(ns: NightscoutService, up: Binding) -> int:
    """A day of uploads every half hour, from the window's start; the time after them."""
    t = SINCE + STEP
    while t < NOW - 24 * HOUR:
        _upload(ns, up, t)
        t += 6 * STEP
    return t


def test_pushes_read_what_changed_and_the_phone_holds_what_whole_reads_give(
        site: tuple[Node, ServerContext, NightscoutService, Binding]) -> None:
    node, ctx, ns, up = site
    t = _history(ns, up)
    lunch = _carbs(ns, up, NOW - 30 * HOUR, 40)
    _carbs(ns, up, NOW - 27 * HOUR, 60)
    phones = Phones(node, ns, up)
    both, narrow = phones.both, phones.narrow

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
    reads = both()[1]
    assert lunch not in narrow.held["treatments"]
    # read where the deleted document is (the lunch's hour) and the new batches' hour on,
    # in two reads: not the window's start, nor the hours between
    assert min(start for start, _ in reads) == _hour(NOW - 30 * HOUR)
    assert narrow.spans["treatments"] == [(_hour(NOW - 30 * HOUR), _hour(NOW - 29 * HOUR)),
                                          (_hour(t), _hour(t) + HOUR)]
    lunch_reads = [n for lo, hi, n in narrow.reads
                   if (lo, hi) == (_hour(NOW - 30 * HOUR), _hour(NOW - 29 * HOUR))]
    assert lunch_reads and max(lunch_reads) <= 6  # that hour's batches, none after it
    t += STEP

    # An edit: the dinner's carbs corrected (read from the dinner's hour on).
    _carbs(ns, up, NOW - 27 * HOUR, 45)
    assert {start for start, _ in both()[1]} == {_hour(NOW - 27 * HOUR)}
    assert narrow.spans["treatments"] == [(_hour(NOW - 27 * HOUR), _hour(NOW - 26 * HOUR))]
    dinner = next(i for i, r in narrow.held["treatments"].items() if r.get("carbs") == 45)

    # A move (Loop's PUT by _id moving a carb entry in time): the dinner an hour later, then
    # earlier than it ever was; then a deletion of the moved document, read from its
    # earliest version's hour (where the phone holds it).
    for moved in (NOW - 26 * HOUR, NOW - 28 * HOUR - HOUR // 2):
        ns.post(up, "treatments", [{"_id": dinner, "eventType": "Carb Correction",
                                    "created_at": iso(moved), "carbs": 45,
                                    "enteredBy": "Loop"}], NOW, replace=True).result(60)
        assert min(start for start, _ in both()[1]) == _hour(min(moved, NOW - 27 * HOUR))
        assert narrow.held["treatments"][dinner]["mills"] == moved
    ns.delete(up, "treatments", parse_query("treatments", [("find[_id]", dinner)]))
    assert min(start for start, _ in both()[1]) == _hour(NOW - 28 * HOUR - HOUR // 2)
    assert dinner not in narrow.held["treatments"]

    # An erasure of yesterday afternoon, then new data: the erased treatments are removed.
    ctx.svc.erasure.erase_as(ann.id, keys_of(node, ann, [0]), ["insulin", "carbs", "notes"],
                             NOW - 30 * HOUR, NOW - 28 * HOUR)
    _upload(ns, up, t)
    t += STEP
    both()
    assert not [r for r in narrow.held["treatments"].values()
                if NOW - 30 * HOUR <= r["mills"] < NOW - 28 * HOUR]

    # The profile deleted (no new batch: its stream's mark stays): the profile is read again.
    profile_id = next(iter(narrow.held["profiles"]))
    ns.delete(up, "profile", parse_query("profile", [("find[_id]", profile_id)]))
    assert 0 in {start for start, _ in both()[1]}

    # The window moves on: what ages out is dropped by the phone, not pushed as a removal.
    _upload(ns, up, t)
    both(since=SINCE + 6 * HOUR)


def test_changes_not_all_known_read_the_whole_window(
        site: tuple[Node, ServerContext, NightscoutService, Binding]) -> None:
    """More changes between two pushes than the log keeps, or a change to a document this
    node's vault does not hold (uploaded through another member): the whole window."""
    node, _, ns, up = site
    node.block_observers.remove(ns.edits.saw)
    ns.edits = EditLog(per_patient=2)
    node.block_observers.append(ns.edits.saw)
    t = _history(ns, up)
    meals = [_carbs(ns, up, NOW - (40 - k) * HOUR, 30 + k) for k in range(4)]
    phones = Phones(node, ns, up)
    for doc in meals[:3]:  # three deletions, two kept
        ns.delete(up, "treatments", parse_query("treatments", [("find[_id]", doc)]))
    _upload(ns, up, t)
    assert min(start for start, _ in phones.both()[1] if start) == SINCE
    assert not set(meals[:3]) & set(phones.narrow.held["treatments"])

    query = parse_query("treatments", [("find[_id]", meals[3])])
    tag = ns.tag_of(up.patient, "treatments", ns._select(up, "treatments", query)[0].key)
    ns.ingest.vault._many([("DELETE FROM tags WHERE tag = ?", [(tag,)])])
    ns.delete(up, "treatments", query)
    _upload(ns, up, t + STEP)
    assert min(start for start, _ in phones.both()[1] if start) == SINCE
    assert meals[3] not in phones.narrow.held["treatments"]


def test_a_readers_feed_follows_only_the_streams_granted(
        site: tuple[Node, ServerContext, NightscoutService, Binding]) -> None:
    """A follower's grant covers her CGM readings: a device status (the notes stream, not
    granted) is nothing for her feed to read, so no read and no access record."""
    node, _, ns, up = site
    fol = ns.authenticate(None, FOLLOWER_TOKEN)
    t = _history(ns, up)
    docs, _, seen = ns.follow(fol, "entries", SINCE, None)
    assert docs and {d["type"] for d in docs} == {"sgv"}
    ns.post(up, "devicestatus", [{"device": "openaps://samsung", "created_at": iso(t),
                                  "pump": {"reservoir": 90}}], NOW).result(60)
    records = set(node.state.keys("access/"))
    docs, spans, seen = ns.follow(fol, "entries", SINCE, seen)
    assert docs is None and spans == [] and set(node.state.keys("access/")) == records
    ns.post(up, "entries", [{"type": "sgv", "sgv": 111, "date": t,
                             "device": "AndroidAPS-DexcomG6"}], NOW).result(60)
    docs, spans, _ = ns.follow(fol, "entries", SINCE, seen)
    assert docs and t in {d["date"] for d in docs} and spans == [(_hour(t), _hour(t) + HOUR)]


def test_a_reader_whose_grant_ended_earlier_reads_inside_it(
        site: tuple[Node, ServerContext, NightscoutService, Binding]) -> None:
    """A grant whose window ended 30 hours ago: a poll for the newest, and a feed's push
    after a reading or an edit, read inside that window (a read wholly after it would be
    denied, and the socket closed, where the wider read is permitted and clipped)."""
    node, _, ns, up = site
    t = _history(ns, up)
    end = NOW - 30 * HOUR
    create_account(node, "past", "clinician")
    ann = identity(node, "ann")
    gid = ca.grant(node, ann.id, keys_of(node, ann, [0]), identity(node, "past").id,
                   streams=["cgm"], view="raw", window={"from": SINCE - HOUR, "to": end},
                   valid_from=NOW - 1, valid_until=NOW + 86_400_000)
    ns.add_reader("past", "ann", "past-reader-token")
    past = ns.authenticate(None, "past-reader-token")
    newest = ns.read(past, "entries", parse_query("entries", [("count", "10")], now_ms=NOW))
    assert len(newest) == 10 and all(d["date"] < end for d in newest)
    docs, _, seen = ns.follow(past, "entries", SINCE, None)
    assert docs and max(d["date"] for d in docs) < end
    ns.post(up, "entries", [{"type": "sgv", "sgv": 111, "date": t,
                             "device": "AndroidAPS-DexcomG6"}], NOW).result(60)
    records = set(node.state.keys("access/"))
    got, spans, seen = ns.follow(past, "entries", SINCE, seen)
    assert got is None and spans == [] and set(node.state.keys("access/")) == records
    old = next(d for d in docs if d["date"] < end - HOUR)
    ns.post(up, "entries", [{"_id": old["_id"], "type": "sgv", "sgv": 222, "date": old["date"],
                             "device": "AndroidAPS-DexcomG6"}], NOW, replace=True).result(60)
    got, spans, seen = ns.follow(past, "entries", SINCE, seen)
    assert got and {d["sgv"] for d in got if d["_id"] == old["_id"]} == {222}
    assert spans == [(_hour(old["date"]), _hour(old["date"]) + HOUR)]
    # revoked: no grant allows anything, so the next change is read, denied and said
    ca.revoke(node, ann.id, keys_of(node, ann, [0]), gid)
    ns.post(up, "entries", [{"type": "sgv", "sgv": 112, "date": t + STEP,
                             "device": "AndroidAPS-DexcomG6"}], NOW).result(60)
    with pytest.raises(PermissionDeniedError) as denied:
        ns.follow(past, "entries", SINCE, seen)
    assert denied.value.code == "revoked"


def test_spans_are_joined_clipped_and_bounded() -> None:
    far = 1 << 62
    assert _merged([], 0) == []
    assert _merged([(50, 60), (10, 20), (20, 30), (12, 15), (25, 40)], 0) == [(10, 40),
                                                                              (50, 60)]
    assert _merged([(10, 20), (15, 18)], 0) == [(10, 20)]  # one inside another
    assert _merged([(0, 10), (5, 30), (40, far)], 20) == [(20, 30), (40, far)]  # clipped
    assert _merged([(k * 10, k * 10 + 5) for k in range(6)], 0) == [(0, far)]  # too many
    assert len(_merged([(k * 10, k * 10 + 5) for k in range(4)], 0)) == 4


def _block(*keys: str) -> Any:
    return SimpleNamespace(changes=dict.fromkeys(keys, b""))


def test_the_edit_log_counts_every_change_and_keeps_the_last_few() -> None:
    log = EditLog(patients=2, per_patient=3)
    a, b, c = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32
    tags = [bytes([i]) * 32 for i in range(5)]
    log.saw(_block(*(version_key(a, tag) for tag in tags[:2]), alias_key(a, tags[2]),
                   "docver/zz/11", "docver/" + a.hex(), "dc/" + a.hex() + "/cgm/1",
                   "docver/" + a.hex() + "/" + "1" * 64 + "/x"))  # never raises on these
    assert log.count(a) == 3 and log.since(a, 0) == (3, tags[:3])
    assert log.since(a, 3) == (3, []) and log.since(a, 1) == (3, tags[1:3])
    log.saw(_block(version_key(a, tags[3])))
    assert log.since(a, 0) == (4, None)  # the first change is no longer kept
    assert log.since(a, 1) == (4, tags[1:4])
    log.saw(_block(version_key(b, tags[0])))
    log.saw(_block(version_key(c, tags[0])))  # a, the least recently changed, is dropped
    assert log.count(a) == 4 and log.since(a, 3) == (4, None)
    assert log.since(c, 0) == (1, tags[:1]) and log.count(b"\x0d" * 32) == 0


def test_an_uploaders_open_feed_stops_when_its_gateway_is_revoked(
        site: tuple[Node, ServerContext, NightscoutService, Binding]) -> None:
    """A socket authenticates once; each push reads as the patient, so each checks again
    that the secret's gateway is still hers (a revoked phone's open socket reads nothing)."""
    from glucoledger.node.devices import revoke_device

    node, _, ns, up = site
    _upload(ns, up, NOW - 2 * STEP)
    docs, _, seen = ns.follow(up, "entries", SINCE, None)
    assert docs
    gateway = identity(node, up.account).id
    ann = identity(node, "ann")
    revoke_device(node, ann.id, keys_of(node, ann), gateway)
    records = set(node.state.keys("access/"))
    with pytest.raises(PermissionDeniedError) as info:
        ns.follow(up, "entries", SINCE, seen)
    assert info.value.code == "revoked_device"
    assert set(node.state.keys("access/")) == records

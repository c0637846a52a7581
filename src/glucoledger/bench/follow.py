"""Benchmark: a Nightscout follower's poll for the newest readings on a real-sized history.

A patient's phone uploads each CGM reading as it comes (xDrip+ posts one SGV every 5
minutes), so ``days`` of history are ``288 * days - 1`` one-reading batches (the newest
5 minutes old). A follower holding a
raw grant polls ``GET /api/v1/entries.json?count=10`` (Nightscout's default window: the last
4 days). Each poll is an audited read: an ``access`` transaction ordered before anything is
released, whose record commits to every batch it releases (``--access-records 1``: the
format of chains founded before format 2, which lists them).

Two figures from the same run, on the same node and the same data:

- the poll as served: its window starts at the latest hour that holds the readings asked for
  (node/nightscout.py ``_newest``), so it releases and lists a few batches;
- the same answer read from the whole window (the same query with ``find[date][$lte]`` in
  the future, which the server does not narrow): what every poll cost before.

Printed per poll (medians): wall and CPU time, and the size of the access record it adds to the
ledger's state (every poll of every follower adds one).

Then a socket feed (AndroidAPS's v1 client: 48 hours of history) after each of ``pushes``
new readings, and after each of ``pushes`` edits (a PUT by ``_id``) of a reading from a day
before, as served (``NightscoutService.follow``: the hours of the new batches and of the
changed documents) and reading the whole window at every push (what every push did
before): per push, wall and CPU time and the bytes of the access records it adds.

Last, the marker a push feed asks for every 2 s (``Vault.last_index``) over a patient with
``marker-rows`` batches (a year of one-reading uploads is about 100,000), with the vault's
index and without it.

Run: ``python -m glucoledger.bench.follow [--days 4] [--polls 50] [--pushes 12]
[--marker-rows 100000] [--access-records 1|2]``.
Printed, not asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runtime import interruptible
from .common import print_load

__all__ = ["FOLLOWER_TOKEN", "UPLOADER_SECRET", "follower_site", "main", "run"]

_STEP_MS = 300_000
#: The patient's uploader secret and her follower's token in ``follower_site``.
UPLOADER_SECRET = "bench-uploader-secret"
FOLLOWER_TOKEN = "bench-follower-token"


def follower_site(node: Any, ns: Any, now_ms: int) -> tuple[Any, Any]:
    """Patient ``ann`` (an uploader secret), clinician ``fol`` following her through a raw
    grant of her CGM readings (a reader token): their Nightscout bindings."""
    from ..node import consent_actions as ca
    from ..node.accounts import create_account, identity, keys_of

    create_account(node, "t", "trusted")
    create_account(node, "ann", "patient", trusted="t")
    create_account(node, "fol", "clinician")
    ann = identity(node, "ann")
    ca.grant(node, ann.id, keys_of(node, ann, [0]), identity(node, "fol").id,
             streams=["cgm"], view="raw", window={"last_days": 14}, valid_from=now_ms - 1,
             valid_until=now_ms + 86_400_000)
    ns.add_uploader("ann", UPLOADER_SECRET)
    ns.add_reader("fol", "ann", FOLLOWER_TOKEN)
    ns.access.guard.rate = None  # no read budget (node/readguard.py): the poll is measured
    return (ns.authenticate(hashlib.sha1(UPLOADER_SECRET.encode()).hexdigest(), None),
            ns.authenticate(None, FOLLOWER_TOKEN))


def _poll_times(node: Any, ns: Any, reader: Any, query: Any, polls: int
                ) -> tuple[list[float], list[float], int, list[dict[str, Any]]]:
    """Wall and CPU ms of each poll, the largest access record added (bytes), the answer."""
    walls, cpus, largest = [], [], 0
    docs: list[dict[str, Any]] = []
    for _ in range(polls):
        before = set(node.state.keys("access/"))
        t, c = time.perf_counter(), time.process_time()
        docs = ns.read(reader, "entries", query)
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((time.process_time() - c) * 1000)
        added = set(node.state.keys("access/")) - before
        largest = max([largest, *(len(node.state.get_raw(k)) for k in added)])
    return walls, cpus, largest, docs


def _push(node: Any, ns: Any, binding: Any, feed: Any, seen: dict[str, Any] | None,
          since: int) -> tuple[float, float, int]:
    """One socket push of every collection (``NsSocket._read``'s reads): wall and CPU ms,
    and the bytes of the access records it added. ``seen`` None: each read is of the whole
    window (what every push did before ``NightscoutService.follow``)."""
    from ..interop.nsfeed import COLLECTIONS

    before = set(node.state.keys("access/"))
    t, c = time.perf_counter(), time.process_time()
    for col in COLLECTIONS:
        docs, spans, now_seen = ns.follow(binding, col, since,
                                          None if seen is None else seen.get(col))
        if seen is not None:
            seen[col] = now_seen
        if docs is not None:
            feed.delta(col, docs, full=False, since_ms=since, spans=spans)
    wall, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
    added = set(node.state.keys("access/")) - before
    return wall, cpu, sum(len(node.state.get_raw(k)) for k in added)


def run(days: int = 4, polls: int = 50, folder: Path | None = None,
        pushes: int = 12, access_records: int = 2) -> dict[str, float]:
    from ..api.context import ServerContext
    from ..interop.nsfeed import COLLECTIONS, Feed
    from ..interop.nsquery import parse_query
    from ..node.service import Node

    if not 1 <= days <= 14 or polls < 1 or not 1 <= pushes <= 288:
        raise InputError("--days is 1 to 14, --polls at least 1 and --pushes 1 to 288")
    now = int(time.time() * 1000) // _STEP_MS * _STEP_MS
    node = Node.init(Path(folder or tempfile.mkdtemp(prefix="glucoledger-bench-follow-")),
                     access_records=access_records)
    ctx = ServerContext.create(node)
    try:
        ns = ctx.svc.nightscout
        up, fol = follower_site(node, ns, now)
        n = 288 * days - 1

        def reading(i: int) -> list[dict[str, Any]]:
            return [{"type": "sgv", "sgv": 80 + i % 120, "date": now - (n - i) * _STEP_MS,
                     "direction": "Flat", "device": "xDrip-G6"}]

        print(f"uploading {n:,} readings one per POST ({days} days) ...")
        futures = [ns.post(up, "entries", reading(i), now) for i in range(n - pushes)]
        for f in futures:
            f.result(300)
        newest = parse_query("entries", [("count", "10")], now_ms=now)
        whole = parse_query("entries", [("count", "10"),
                                         ("find[date][$lte]", str(now + 3_600_000))],
                            now_ms=now)
        ns.read(fol, "entries", newest)  # the batches decrypted once, outside the timing
        served = _poll_times(node, ns, fol, newest, polls)
        before = _poll_times(node, ns, fol, whole, max(3, polls // 10))
        if served[3] != before[3]:
            raise RuntimeError("the narrowed poll answered differently from the whole window")
        # A socket (AndroidAPS's v1 client, 48 hours of history) after each new reading.
        since = now - 48 * 3_600_000
        feeds = (Feed(), Feed())
        seen: dict[str, Any] = {}
        for feed in feeds:
            for col in COLLECTIONS:
                docs, _, seen_col = ns.follow(up, col, since, None)
                assert docs is not None  # a first read is always made
                feed.delta(col, docs, full=True, since_ms=since)
                if feed is feeds[0]:
                    seen[col] = seen_col
        pushed: tuple[list[tuple[float, float, int]], ...] = ([], [])
        for i in range(n - pushes, n):
            ns.post(up, "entries", reading(i), now).result(60)
            pushed[0].append(_push(node, ns, up, feeds[0], seen, since))
            pushed[1].append(_push(node, ns, up, feeds[1], None, since))
        # An edit of a reading from a day ago (a PUT by _id: a new version), then a push.
        sent = sorted(feeds[0].sent["entries"].items(), key=lambda kv: kv[1][1])
        edited: tuple[list[tuple[float, float, int]], ...] = ([], [])
        for k in range(pushes):
            doc_id, (_, mills) = sent[len(sent) // 2 + k]
            ns.post(up, "entries", [{"_id": doc_id, "type": "sgv", "sgv": 300 - k,
                                     "date": mills, "direction": "Flat",
                                     "device": "xDrip-G6"}], now, replace=True).result(60)
            edited[0].append(_push(node, ns, up, feeds[0], seen, since))
            edited[1].append(_push(node, ns, up, feeds[1], None, since))
        if feeds[0].sent != feeds[1].sent:
            raise RuntimeError("the pushes as served sent differently from whole reads")
    finally:
        ctx.close()
        node.close()
    out = {"readings": float(n)}
    for name, (walls, cpus, largest, _) in (("served", served), ("whole", before)):
        out[f"{name}_p50_ms"] = statistics.median(walls)
        out[f"{name}_cpu_ms"] = statistics.median(cpus)
        out[f"{name}_record_bytes"] = float(largest)
    for name, rows in (("push_served", pushed[0]), ("push_whole", pushed[1]),
                       ("edit_served", edited[0]), ("edit_whole", edited[1])):
        out[f"{name}_p50_ms"] = statistics.median(r[0] for r in rows)
        out[f"{name}_cpu_ms"] = statistics.median(r[1] for r in rows)
        out[f"{name}_record_bytes"] = statistics.median(r[2] for r in rows)
    return out


def marker_times(rows: int, folder: Path | None = None) -> tuple[float, float]:
    """ms of the push feed's marker (``Vault.last_index``, asked every 2 s for every followed
    patient) over a patient with ``rows`` committed batches: with the vault's index
    ``batches_last``, and with it dropped (the vault before it), same run."""
    import os

    from ..vault.store import BatchRow, Vault

    vault = Vault(Path(folder or tempfile.mkdtemp(prefix="glucoledger-bench-marker-")),
                  os.urandom(32), "bench", fsync=False)
    try:
        patient = os.urandom(32)
        batch = [BatchRow(os.urandom(32), patient, "cgm", b"u" * 32, i, i, i + 1, 1,
                          os.urandom(32), "node", os.urandom(60), "gateway", os.urandom(32),
                          None, "pending") for i in range(rows)]
        vault.add_pending(batch)
        vault.settle([(r.ct, r.seq) for r in batch], [])

        def timed() -> float:
            t = time.perf_counter()
            for _ in range(5):
                vault.last_index(patient)
            return (time.perf_counter() - t) / 5 * 1000

        with_index = timed()
        with vault._lock:
            vault._db.execute("DROP INDEX batches_last")
        return with_index, timed()
    finally:
        vault.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--polls", type=int, default=50)
    ap.add_argument("--pushes", type=int, default=12)
    ap.add_argument("--marker-rows", type=int, default=100_000)
    ap.add_argument("--access-records", type=int, choices=(1, 2), default=2,
                    help="the chain's access record format (1: lists every batch)")
    a = ap.parse_args()
    if a.marker_rows < 1:
        raise SystemExit("bench.follow: --marker-rows is at least 1")
    print_load("start")
    print(f"access record format {a.access_records}")
    try:
        r = run(a.days, a.polls, pushes=a.pushes, access_records=a.access_records)
    except InputError as exc:
        raise SystemExit(f"bench.follow: {exc}") from None
    print(f"follower poll, count=10, {int(r['readings']):,} one-reading batches:")
    print(f"  as served:         p50 {r['served_p50_ms']:7.1f} ms  CPU {r['served_cpu_ms']:7.1f} "
          f"ms  access record {r['served_record_bytes']:9,.0f} bytes")
    print(f"  the whole window:  p50 {r['whole_p50_ms']:7.1f} ms  CPU {r['whole_cpu_ms']:7.1f} "
          f"ms  access record {r['whole_record_bytes']:9,.0f} bytes")
    print(f"  served / whole: {r['served_cpu_ms'] / r['whole_cpu_ms']:.3f}x the CPU, "
          f"{r['served_record_bytes'] / r['whole_record_bytes']:.3f}x the ledger state")
    for what, kind in (("each new reading", "push"), ("each edit of a day-old reading",
                                                      "edit")):
        print(f"socket push after {what}, 48 h of history, {a.pushes} pushes:")
        for name, label in ((f"{kind}_served", "as served:        "),
                            (f"{kind}_whole", "the whole window: ")):
            print(f"  {label} p50 {r[name + '_p50_ms']:7.1f} ms  CPU "
                  f"{r[name + '_cpu_ms']:7.1f} ms  access records "
                  f"{r[name + '_record_bytes']:9,.0f} bytes")
        print(f"  served / whole: {r[kind + '_served_cpu_ms'] / r[kind + '_whole_cpu_ms']:.3f}x "
              f"the CPU, {r[kind + '_served_record_bytes'] / r[kind + '_whole_record_bytes']:.3f}"
              "x the ledger state")
    indexed, walked = marker_times(a.marker_rows)
    print(f"push feed's marker over {a.marker_rows:,} batches of one patient: {indexed:.3f} ms "
          f"with the index, {walked:.1f} ms without it ({indexed / walked:.4f}x)")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

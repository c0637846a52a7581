"""A follower's poll for the newest readings (``count=10``, Nightscout's default window of 4
days) releases and audits the few batches it answers from, not the window's every batch, and
answers exactly what a read of the whole window answers: before and after documents of the
window were replaced by newer versions (the state's count then promises more than is
current, and the read falls back to the whole window). And the decrypted-batch cache counts
records, so a window of one-reading batches is decrypted once, not at every read."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.api.context import ServerContext
from glucoledger.bench.follow import FOLLOWER_TOKEN, UPLOADER_SECRET, follower_site
from glucoledger.interop.nsquery import parse_query
from glucoledger.node.nightscout import Binding, NightscoutService
from glucoledger.node.service import Node
from glucoledger.state.access import released_count

HOUR = 3_600_000
#: Half past an hour: the newest hour holds six readings, fewer than a poll asks for.
NOW = int(time.time() * 1000) // HOUR * HOUR - HOUR // 2
STEP = 300_000  # a reading every 5 minutes


@contextmanager
def open_site(folder: Path, now: int) -> Iterator[tuple[Node, NightscoutService]]:
    """A node in ``folder`` with the follower benchmark's site (bench/follow.py: a patient,
    her uploader, a follower with a raw grant) as of ``now``; closed afterwards."""
    node = Node.init(folder)
    ctx = ServerContext.create(node)
    ns: NightscoutService = ctx.svc.nightscout  # type: ignore[union-attr]
    follower_site(node, ns, now)
    try:
        yield node, ns
    finally:
        ctx.close()
        node.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Node, NightscoutService]]:
    with open_site(tmp_path / "node", NOW) as s:
        yield s


def _sgv(t: int) -> dict[str, Any]:
    return {"type": "sgv", "sgv": 80 + (t // STEP) % 120, "date": t, "direction": "Flat",
            "device": "xDrip-G6"}


def _audits(node: Node) -> set[str]:
    return set(node.state.keys("access/"))


def _poll(node: Node, ns: NightscoutService, fol: Binding, params: list[tuple[str, str]]
          ) -> tuple[list[dict[str, Any]], list[int]]:
    """The answer, and how many batches each access record the read added lists."""
    seen = _audits(node)
    docs = ns.read(fol, "entries", parse_query("entries", params, now_ms=NOW))
    added = sorted((codec.decode_trusted(node.state.get_raw(k))  # type: ignore[arg-type]
                    for k in _audits(node) - seen), key=lambda a: a["height"])
    return docs, [released_count(a) for a in added]


def test_a_poll_for_the_newest_lists_few_batches_and_answers_as_the_whole_window(
        site: tuple[Node, NightscoutService]) -> None:
    node, ns = site
    up = ns.authenticate(hashlib.sha1(UPLOADER_SECRET.encode()).hexdigest(), None)
    futures = [ns.post(up, "entries", [_sgv(NOW - 3 * 86_400_000 + (i * 6 + j) * STEP)
                                       for j in range(6)], NOW)
               for i in range(3 * 48)]  # three days, half an hour a batch
    for f in futures:
        f.result(60)
    fol = ns.authenticate(None, FOLLOWER_TOKEN)
    newest, lists = _poll(node, ns, fol, [("count", "10")])
    whole, whole_lists = _poll(node, ns, fol, [("count", "10"),
                                               ("find[date][$lte]", str(NOW + 3_600_000))])
    assert [d["date"] for d in newest] == [NOW - 3 * 86_400_000 + (3 * 288 - 1 - k) * STEP
                                           for k in range(10)]
    assert newest == whole
    assert lists == [3]  # 11 readings: the three newest half-hour batches (18 readings)
    assert whole_lists == [144]
    # /entries/sgv.json and /entries/current.json ask for type sgv, which every CGM reading is
    sgv, lists = _poll(node, ns, fol, [("count", "10"), ("find[type]", "sgv")])
    assert sgv == newest and lists == [3]
    mbg, lists = _poll(node, ns, fol, [("count", "10"), ("find[type]", "mbg")])
    assert mbg == [] and lists == [144]  # any other condition: the whole window

    # The newest reading replaced by a new version twelve times (a v1 PUT each): the index
    # counts every version's batch, so the newest hour promises 18 readings where 6 are
    # current, and the read answers from the whole window (a second audited read).
    for k in range(12):
        ns.post(up, "entries", [dict(_sgv(newest[0]["date"]), sgv=200 + k,
                                     _id=newest[0]["_id"])], NOW, replace=True).result(60)
    newest, lists = _poll(node, ns, fol, [("count", "10")])
    assert lists == [1 + 12, 144 + 12]  # narrow, then the whole window
    whole, _ = _poll(node, ns, fol, [("count", "10"),
                                     ("find[date][$lte]", str(NOW + 3_600_000))])
    assert newest == whole and newest[0]["sgv"] == 211


def test_a_whole_window_of_one_reading_batches_is_decrypted_once(
        site: tuple[Node, NightscoutService]) -> None:
    """A phone posting each reading as it comes makes 1,152 one-reading batches in 4 days.
    The decrypted-batch cache counts records, so a second read of the window opens none of
    them again (a budget of 512 batches made every read open all 1,152: a read walks its
    batches in order, and the least recently read one was always the next one wanted)."""
    node, ns = site
    up = ns.authenticate(hashlib.sha1(UPLOADER_SECRET.encode()).hexdigest(), None)
    futures = [ns.post(up, "entries", [_sgv(NOW - (4 * 288 - i) * STEP)], NOW)
               for i in range(4 * 288)]
    for f in futures:
        f.result(120)
    vault = ns.access.vault
    opened: list[bytes] = []
    real_open = vault.open

    def counting_open(row: Any, **kw: Any) -> Any:  # the real vault, each open counted
        opened.append(row.ct)
        return real_open(row, **kw)

    vault.open = counting_open  # type: ignore[method-assign]
    fol = ns.authenticate(None, FOLLOWER_TOKEN)
    whole = [("count", "2000"), ("find[date][$lte]", str(NOW + HOUR))]
    first, _ = _poll(node, ns, fol, whole)
    assert len(first) == 4 * 288 and len(opened) == 4 * 288
    again, _ = _poll(node, ns, fol, whole)
    assert again == first and len(opened) == 4 * 288  # all from the cache

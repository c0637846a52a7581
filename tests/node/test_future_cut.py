"""A cut from the future is not derived (``Node.sync``, ``ledger.log.MAX_CUT_AHEAD_MS``).

Every block's time is its cut's time, and block time never goes back: one cut that says
"next year" would expire every grant and emergency request at once and open grants,
studies and recovery windows before their time, for good. Where other organizations write
the log (etcd), a node derives no block whose cut lies more than 5 minutes ahead of its own
clock; it stops with an error that names the position, the writer, and what to do, and
derives on from the same place once the cause is gone. The attack on a real consortium is
in tests/consortium/test_future_cut.py; here the rule itself, on the embedded orderer with
the bound switched on (by default it is off there: the node is the log's only writer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from glucoledger.bench.ledger import account_envelopes
from glucoledger.ledger.log import MAX_CUT_AHEAD_MS, encode_cut, encode_tx_entry
from glucoledger.node.service import FutureCutError, Node

T0 = 1_800_000_000.0  # the node's clock, s
NOW_MS = int(T0 * 1000)


@dataclass
class Clocked:
    node: Node
    clock: list[float]  # the node's clock, s: a test moves it


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[Clocked]:
    """A node on the embedded orderer with the bound switched on, at T0 by its clock."""
    clock = [T0]
    node = Node.init(tmp_path / "n", workers=1, clock=lambda: clock[0])
    try:
        node.submit(account_envelopes(node.chain, 1))
        assert node.cuts_ahead_ms is None  # the embedded orderer: only this node writes
        node.cuts_ahead_ms = MAX_CUT_AHEAD_MS
        yield Clocked(node, clock)
    finally:
        node.close()


def test_a_cut_from_the_future_is_refused_and_nothing_is_derived(clocked: Clocked) -> None:
    node, clock = clocked.node, clocked.clock
    height = node.store.height()
    state_before = dict(node.store.load_state())
    [env] = account_envelopes(node.chain, 1)
    future = NOW_MS + 24 * 3600_000
    pos = node.orderer.append([encode_tx_entry(env), encode_cut(height, future)])
    for _ in range(2):  # refused again, not half-derived the second time
        with pytest.raises(FutureCutError) as info:
            node.sync()
        message = info.value.message
        assert info.value.code == "cut_from_future"
        assert f"block {height} at log position {pos + 1}" in message
        assert "1 day, 0:00:00 ahead of this node's clock" in message
        assert "set it right (NTP)" in message and "remove" in message
        assert node.store.height() == height
        assert dict(node.store.load_state()) == state_before
    # The clock was the cause: once it is set right, the block is derived, once.
    clock[0] = future / 1000
    node.sync()
    assert node.store.height() == height + 1
    block = node.store.last_header()
    assert block is not None and block.time == future
    assert [len(rows) for rows in node.store.results_at_positions(pos, pos + 2).values()] == [1]


def test_cuts_within_the_bound_or_closing_nothing_are_not_refused(clocked: Clocked) -> None:
    node = clocked.node
    height = node.store.height()
    far = NOW_MS + 365 * 24 * 3600_000
    # Ignored by every replica, so not refused: a cut for another height, and a cut of
    # an empty block.
    node.orderer.append([encode_cut(height + 5, far), encode_cut(height, far)])
    node.sync()
    assert node.store.height() == height
    # A member whose clock runs a little ahead: within the bound, derived.
    [env] = account_envelopes(node.chain, 1)
    ahead = NOW_MS + MAX_CUT_AHEAD_MS
    node.orderer.append([encode_tx_entry(env), encode_cut(height, ahead)])
    node.sync()
    last = node.store.last_header()
    assert last is not None and last.height == height and last.time == ahead


def test_blocks_before_a_future_cut_in_the_same_read_are_stored(clocked: Clocked) -> None:
    node, clock = clocked.node, clocked.clock
    height = node.store.height()
    first, second = account_envelopes(node.chain, 2)
    node.orderer.append([encode_tx_entry(first), encode_cut(height, NOW_MS),
                         encode_tx_entry(second),
                         encode_cut(height + 1, NOW_MS + 3600_000)])
    with pytest.raises(FutureCutError, match=f"block {height + 1} "):
        node.sync()
    assert node.store.height() == height + 1  # the block before it stands
    clock[0] = T0 + 3600
    node.sync()
    assert node.store.height() == height + 2

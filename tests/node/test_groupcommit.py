"""Group commit: concurrent submits share appends, each append ends in a cut, failures reach
every submit in the failed append, and cut heights never run ahead of the log."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from glucoledger.errors import OrderingError
from glucoledger.ledger.log import Cut, TxEntry, decode_entry, encode_tx_entry
from glucoledger.node.groupcommit import GroupCommit
from glucoledger.ordering.embedded import EmbeddedOrderer
from glucoledger.state.replica import Replica


class _Counting(EmbeddedOrderer):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[int] = []
        self.fail = False

    def append(self, entries: Sequence[bytes]) -> int:
        if self.fail:
            raise OrderingError("etcd cluster has no quorum (test)")
        self.calls.append(len(entries))
        return super().append(entries)


def test_concurrent_submits_share_appends_that_end_in_cuts(tmp_path: Path) -> None:
    orderer = _Counting(tmp_path / "o.db")
    writer = GroupCommit(orderer, lambda: 0, max_entries=8)
    got: dict[int, list[int]] = {}

    def submit(t: int) -> None:
        got[t] = writer.append([encode_tx_entry(f"t{t}-{k}".encode()) for k in range(5)], 10)

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    writer.close()
    log = orderer.read(0, 1000)
    assert all(n <= 8 for n in orderer.calls)  # never more than an append may take
    assert len(orderer.calls) < 30  # 30 submitted entries: shared, not one append each
    for t, positions in got.items():  # each entry exactly where its submit was told
        assert [log[p] for p in positions] == [
            encode_tx_entry(f"t{t}-{k}".encode()) for k in range(5)]
    ends = [p - 1 for p in _append_ends(orderer.calls)]
    assert all(isinstance(decode_entry(log[p]), Cut) for p in ends)


def test_cut_heights_never_run_ahead_and_every_block_closes(tmp_path: Path) -> None:
    orderer = _Counting(tmp_path / "o.db")
    replica = Replica("t")
    follower_height = [0]  # a follower that lags: it never advances while we append
    writer = GroupCommit(orderer, lambda: follower_height[0], max_entries=4)
    for k in range(7):
        writer.append([encode_tx_entry(f"e{k}-{j}".encode()) for j in range(k % 4 + 1)], 10)
    writer.close()
    blocks = [b for p, e in enumerate(orderer.read(0, 1000))
              if (b := replica.feed(p, e)) is not None]
    assert replica.pending == 0  # no cut guessed a height the log had not reached
    assert [b.header.height for b in blocks] == list(range(len(blocks)))


def test_a_failed_append_fails_its_submits_and_the_writer_goes_on(tmp_path: Path) -> None:
    orderer = _Counting(tmp_path / "o.db")
    writer = GroupCommit(orderer, lambda: 0)
    orderer.fail = True
    with pytest.raises(OrderingError, match="quorum"):
        writer.append([encode_tx_entry(b"lost")], 10)
    orderer.fail = False
    assert writer.append([encode_tx_entry(b"kept")], 10) == [0]
    writer.close()
    assert isinstance(decode_entry(orderer.read(0)[0]), TxEntry)


def _append_ends(calls: list[int]) -> list[int]:
    out, pos = [], 0
    for n in calls:
        pos += n
        out.append(pos)
    return out

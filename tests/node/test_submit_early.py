"""``Node.submit`` starts the worker processes' signature checks of a large submission
before it decodes, orders and applies it (issue 16), and each result still lands on its own
envelope: a forged signature anywhere in the batch is refused, the rest apply. The workers
run below the node's priority (node/pool.py)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from glucoledger.bench.ledger import account_envelopes
from glucoledger.ledger.tx import Signature, SignedTx
from glucoledger.node.pool import WORKER_NICE
from glucoledger.node.service import Node


def _forged(envelope: bytes) -> bytes:
    stx = SignedTx.decode(envelope)
    sig = stx.sigs[0]
    bad = Signature(sig.key, bytes([sig.sig[0] ^ 1]) + sig.sig[1:])
    return SignedTx.create(stx.tx, [bad]).raw


def test_a_large_submission_is_checked_on_the_workers_before_it_is_ordered(
        tmp_path: Path) -> None:
    node = Node.init(tmp_path / "node", workers=2)
    try:
        envs = account_envelopes(node.chain, 400)
        forged_at = {0, 137, 255, 256, 399}
        for i in forged_at:
            envs[i] = _forged(envs[i])
        node.trust.clear()  # signed in this process: make the node check them as foreign
        events: list[str] = []
        on_workers, append = node._on_workers, node.orderer.append

        def recorded_on_workers(*args: Any) -> Any:
            events.append("workers")
            return on_workers(*args)

        def recorded_append(entries: list[bytes]) -> int:
            events.append("append")
            return append(entries)

        node._on_workers = recorded_on_workers  # type: ignore[method-assign]
        node.orderer.append = recorded_append  # type: ignore[method-assign]
        receipts = node.submit(envs)
        # started once, before anything was ordered; the replay found every result there
        assert events[:2] == ["workers", "append"] and events.count("workers") == 1
        assert [i for i, r in enumerate(receipts) if not r.ok] == sorted(forged_at)
        assert {receipts[i].result.code for i in forged_at} == {"bad_signature"}
        assert not node._early  # forgotten once applied
        # the workers run below the node's priority, so the node keeps its core
        pool = node._pool
        assert isinstance(pool, ProcessPoolExecutor) and pool._processes
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pool._processes} == {
            min(mine + WORKER_NICE, 19)}
        # the same bytes replayed with no cache and no early checks agree
        assert node.verify().rejected == len(forged_at)
    finally:
        node.close()

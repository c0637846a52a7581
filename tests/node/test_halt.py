"""A node that stopped answers its waiting submits at once with the reason (no hang)."""

from __future__ import annotations

import threading
import time

import pytest

from glucoledger.bench.ledger import account_envelopes
from glucoledger.errors import OrderingError
from glucoledger.node.service import Node


def test_halt_releases_a_submit_waiting_for_its_block(node: Node) -> None:
    # Submits go through the group-commit writer and wait for a follower that never comes
    # (as when the member loop stopped on a failure); halting must answer them at once.
    node.start_group_commit()
    envelopes = account_envelopes(node.chain, 2)
    timer = threading.Timer(0.5, node.halt, args=("block 3: CBORDecodeEOF in state",))
    timer.start()
    start = time.monotonic()
    with pytest.raises(OrderingError, match="CBORDecodeEOF in state") as exc:
        node.submit(envelopes, timeout=30)
    assert time.monotonic() - start < 5
    assert exc.value.code == "node_halted"
    timer.join()

"""A member in bad faith writes a cut from the future, on a real consortium (3 etcd members
with TLS, client certificates and auth; 3 ``glucoledger node`` processes).

org-2 appends, with its own etcd credentials and through the append protocol, a transaction
and a cut that closes its block 30 days from now. Accepted, that block would move the
consortium's time forward for good: every grant and emergency request would expire at once
and grants, studies and recovery windows dated next month would open today. Instead every
node stops before deriving it (``Node.sync``): no node stores the block, each one's status
names the position, org-2, and what to do, its peers learn it from ``health/``, and a
submit is answered at once with the reason instead of hanging.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from glucoledger.errors import GlucoledgerError
from glucoledger.ledger.block import BlockHeader
from glucoledger.ledger.log import MAX_CUT_AHEAD_MS, encode_cut, encode_tx_entry
from glucoledger.node import control
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import EtcdOrderer

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until

MALLORY = 2  # org-2


def _last_time(c: Consortium, i: int) -> int:
    db = sqlite3.connect(f"file:{c.folders[i] / 'chain.db'}?mode=ro", uri=True)
    try:
        (raw,) = db.execute("SELECT header FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return BlockHeader.decode(bytes(raw)).time


def test_a_members_cut_from_the_future_stops_every_node_and_names_it(
        consortium: Consortium) -> None:
    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(2)))
    done = wait_until(c.converged, 30, "convergence")
    height = int(done["height"])
    times = [_last_time(c, i) for i in range(3)]
    future = int(time.time() * 1000) + 30 * 24 * 3600_000
    orderer = EtcdOrderer.from_url(c.etcd_url(MALLORY), etcd_chain_key(CHAIN))
    try:
        assert orderer.writer == "org-2"
        pos = orderer.append([encode_tx_entry(patient_envelopes(1)[0]),
                              encode_cut(height + 1, future)])
    finally:
        orderer.close()
    sts = [wait_until(lambda i=i: c.status(i)["refusing"] and c.status(i), 30,
                      f"node {i} to refuse the cut") for i in range(3)]
    for i, st in enumerate(sts):
        reason = st["refusing"]
        assert f"the cut closing block {height + 1} at log position {pos + 1}" in reason, reason
        assert "appended by member 'org-2'" in reason and "29 days" in reason, reason
        assert "remove 'org-2' by governance" in reason, reason
        assert st["height"] == height
        assert _last_time(c, i) == times[i] < future - MAX_CUT_AHEAD_MS  # nothing derived
    # Each node's peers learn it from its health report.
    for i in range(3):
        for j in range(3):
            if j != i:
                name = c.state["nodes"][i]["name"]
                wait_until(lambda j=j, name=name: any(d["node"] == name
                                                      for d in c.status(j)["diverged"]),
                           20, f"node {j} to report {name}")
    # A submit is answered with the reason (a hanging one would time out with another).
    with pytest.raises(GlucoledgerError, match="ahead of this node's clock") as answer:
        control.submit(c.urls[0], patient_envelopes(1), c.node_key(0), timeout=10)
    assert "restore its store" not in answer.value.message  # the store is not at fault

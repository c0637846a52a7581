"""A member that was down catches up: from the log, or past compaction from a peer."""

from __future__ import annotations

import pytest

from glucoledger.node.service import etcd_chain_key, verify_folder
from glucoledger.ordering.etcd import EtcdOrderer

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


@pytest.mark.slow
def test_catch_up_past_compaction_from_a_peer_verified(consortium: Consortium) -> None:
    consortium.submit(patient_envelopes(5))
    wait_until(consortium.converged, 30, "convergence")
    consortium.kill_node(2, hard=False)
    before = consortium.status(0)["height"]
    for _ in range(3):
        consortium.submit(patient_envelopes(10))
    top = wait_until(lambda: (c := consortium.converged([0, 1])) and c["height"] > before and c,
                     30, "the others to finalize")
    orderer = EtcdOrderer.from_url(consortium.etcd_url(), etcd_chain_key(CHAIN))
    try:
        orderer.compact(orderer.size())  # as an operator would, past the stopped member
        assert orderer.first() > 0
    finally:
        orderer.close()
    consortium.start_node(2)
    wait_until(lambda: consortium.status(2)["height"] == top["height"], 30,
               "the restarted member to fetch and verify the blocks")
    assert consortium.status(2)["refusing"] is None
    consortium.submit(patient_envelopes(3), prefer=2)
    wait_until(consortium.converged, 30, "all three to converge again")
    consortium.kill_node(2, hard=False)
    report = verify_folder(consortium.folders[2], workers=1)
    assert report.blocks == consortium.status(0)["height"] + 1

"""Start-up: a node answers signed requests only once it knows who the members are.

The race behind a flaky anchoring test: a node's control endpoint was up before the node
had derived its genesis block, so its set of current members was empty and a member's
signed submit was refused with 401 ("not signed by the node key of a current member").
Now such a request gets 503 ``node_not_ready`` (not a verdict on the caller), the client
retries it, and ``devcluster.wait_controls`` waits for ``members_known`` in status.json.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.errors import OrderingError
from glucoledger.node import control, devcluster
from glucoledger.node.consortium import ConsortiumNode
from glucoledger.node.genesis_file import member_of
from glucoledger.ordering.cluster import EtcdCluster

from ..servers import start_etcd
from .conftest import patient_envelopes


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = start_etcd(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_node_before_its_genesis_answers_not_ready_and_the_client_retries(
        etcd: EtcdCluster, tmp_path: Path) -> None:
    [folder] = devcluster.create_consortium(tmp_path, 1, etcd)
    cn = ConsortiumNode(folder)
    cn.node.follow_here()
    cn.node.start_group_commit()
    server = control.ControlServer(cn)
    server.start()
    stop = threading.Event()
    loop = threading.Thread(target=lambda: [cn.step(wait=0.1) for _ in iter(stop.is_set, True)])
    try:
        key = member_of(folder)[1].load("node")
        assert cn.status.members_known is False and not cn.current_members
        with pytest.raises(OrderingError) as refused:
            control.submit(server.url, patient_envelopes(1), key, timeout=0.3)
        assert refused.value.code == "node_not_ready"
        assert "not derived the consortium's genesis block yet" in refused.value.message
        assert cn.node.store.height() == 0  # the refused request changed nothing
        # The loop derives the genesis block while the client keeps retrying.
        loop.start()
        receipts = control.submit(server.url, patient_envelopes(2), key,
                                  timeout=devcluster.patience(60))
        assert [r["code"] for r in receipts] == ["ok", "ok"]
        assert cn.status.members_known is True
    finally:
        stop.set()
        if loop.is_alive():
            loop.join(30)
        server.stop()
        cn.close()

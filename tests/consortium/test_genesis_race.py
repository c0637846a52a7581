"""Block 0 must be the genesis the founders signed (audit #3: the first genesis in etcd
won; the honest members lost their etcd access).

Between `consortium etcd-auth` (every member has its etcd user) and the members' `consortium
init` the log is empty. On a real TLS consortium (3 etcd members with access control, 3
`glucoledger node` processes) org-2 gets there first, under its own etcd user, with its own
``chain.genesis`` naming only itself (threshold 1). Every node must refuse to derive it,
name org-2 as the writer of position 0 and say what to do; the honest members' own signed
requests are answered "stopped" (not "not a member"), and the node holding etcd's root
revokes nobody's etcd user.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from glucoledger.errors import InputError, OrderingError
from glucoledger.ledger.log import encode_cut, encode_tx_entry
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node import control, devcluster
from glucoledger.node.chainstore import ChainStore
from glucoledger.node.genesis_file import Genesis, create_member, init_member, member_of
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.state.accounts_model import account_id, single_key_policy

from ..servers import free_ports, require_etcd, start_etcd
from .conftest import CHAIN, patient_envelopes


def _forged_genesis(base: Path) -> bytes:
    """org-2's own genesis: only org-2, threshold 1, signed with its own node key."""
    wallet = member_of(base / "node-2")[1]
    org, node = wallet.load("org"), wallet.load("node")
    policy = single_key_policy(org.public)
    body = {"orgs": [{"name": "org-2", "policy": policy, "node": node.public.to_value()}],
            "threshold": 1, "access_records": 2}
    return sign(Transaction(CHAIN, "chain.genesis", body, account_id("organization", policy),
                            0), [node]).raw


def test_a_genesis_placed_first_by_one_member_stops_every_node_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_etcd()
    base = tmp_path / "c"
    real_init = devcluster.init_member
    placed: list[int] = []

    def org2_first(folder: Path, genesis: Any, url: str, orderer: Any) -> None:
        if not placed:  # org-2, with its own etcd user, before any member's init
            shutil.copy(base / "trust.pem", base / "node-2" / "tls" / "trust.pem")
            own = devcluster._CLUSTERS[base / "etcd"].url_for(base / "node-2" / "tls", 2)
            with EtcdOrderer.from_url(own, etcd_chain_key(CHAIN),  # its own etcd member
                                      writer="org-2") as evil:
                placed.append(evil.append([encode_tx_entry(_forged_genesis(base)),
                                           encode_cut(0, 0)]))
        real_init(folder, genesis, url, orderer)

    monkeypatch.setattr(devcluster, "init_member", org2_first)
    state = devcluster.up(base, 3, base_port=free_ports(11), tls=True)
    try:
        assert placed == [0]
        folders = [Path(n["data"]) for n in state["nodes"]]
        status = [json.loads((f / "status.json").read_text()) for f in folders]
        for st in status:
            assert st["refusing"] is not None, st
            assert ("position 0 of the ordered log (appended by member 'org-2') is not the "
                    "genesis in") in st["refusing"], st["refusing"]
            assert "revoke the etcd user of member 'org-2'" in st["refusing"]
            assert st["members_known"] is False and st["members"] == []
        # org-0's own signed submit at its own node: "stopped", with the reason, not 401.
        key0 = member_of(folders[0])[1].load("node")
        with pytest.raises(OrderingError, match="stopped and refuses to work: position 0 "
                           ".*'org-2'") as stopped:
            control.submit(state["nodes"][0]["control"], patient_envelopes(1), key0,
                           timeout=10)
        assert stopped.value.code == "node_stopped"
        assert "rejoin" not in stopped.value.message
        # Rounds go on (the root holder, node-0, included): nobody's etcd user is revoked.
        time.sleep(3)
        for i in range(len(folders)):
            with EtcdOrderer.from_url(devcluster.urls(base, f"org-{i}")[0],
                                      etcd_chain_key(CHAIN), writer=f"org-{i}") as o:
                assert o.size() == 2  # the etcd user still authenticates
        log0 = (folders[0] / "node.log").read_text()
        assert "revoked the etcd access" not in log0
        for f in folders:  # nothing derived, nothing signed
            store = ChainStore(f / "chain.db")
            try:
                assert store.height() == 0
            finally:
                store.close()
    finally:
        devcluster.down(base)


def test_members_placing_the_genesis_at_once_append_it_once(tmp_path: Path) -> None:
    """`consortium init` appends with a compare on an empty log: of members initializing
    at the same moment exactly one genesis lands, whole."""
    cluster = start_etcd(tmp_path / "etcd", members=1)
    try:
        folders = [tmp_path / f"m{i}" for i in range(4)]
        members = [create_member(f, f"org-{i}") for i, f in enumerate(folders)]
        genesis = Genesis(CHAIN, 3, tuple(members), {}, access_records=2)
        for f in folders:
            name, wallet = member_of(f)
            genesis = genesis.sign(name, wallet.load("node"))
        chain = etcd_chain_key(CHAIN) + "-race"
        orderers = [EtcdOrderer(cluster.endpoints, chain, writer=f"org-{i}")
                    for i in range(len(folders))]
        for o in orderers:  # every member sees the log empty before anyone appends
            assert o.size() == 0
        seen = threading.Barrier(len(folders))
        real_size = EtcdOrderer.size

        def size_then_wait(self: EtcdOrderer) -> int:
            n = real_size(self)
            seen.wait(timeout=10)
            return n

        EtcdOrderer.size = size_then_wait  # type: ignore[method-assign]
        try:
            threads = [threading.Thread(target=init_member,
                                        args=(f, genesis, cluster.url, o))
                       for f, o in zip(folders, orderers, strict=True)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            EtcdOrderer.size = real_size  # type: ignore[method-assign]
            entries = orderers[0].read(0)
            assert entries == [encode_tx_entry(genesis.envelope()), encode_cut(0, 0)]
        finally:
            EtcdOrderer.size = real_size  # type: ignore[method-assign]
            for o in orderers:
                o.close()
    finally:
        cluster.stop()


def test_a_consortium_that_fails_to_come_up_leaves_no_process_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cluster up` failing halfway (here: the members' init) had nothing recorded for
    `cluster down`, and left its etcd members running (a test above leaked three)."""
    require_etcd()
    base = tmp_path / "c"

    pids: list[int | None] = []

    def broken(*_: Any) -> None:
        pids.extend(m.pid for m in devcluster._CLUSTERS[base / "etcd"].members)
        raise InputError("the members' init failed")

    monkeypatch.setattr(devcluster, "init_member", broken)
    with pytest.raises(InputError, match="init failed"):
        devcluster.up(base, 3, base_port=free_ports(11), tls=True)
    assert len(pids) == 3 and all(pids), pids  # etcd ran when it failed
    for pid in pids:  # stopped and reaped: no such process any more
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (base / "consortium.json").exists()

"""A consortium member's store and the etcd log check each other at start and in verify.

Real etcd (one member on free loopback ports, tests/servers.py), a real member folder (genesis file,
keys, node.json naming the cluster). The member derives blocks from the etcd log; then the
cluster's data is lost (a fresh cluster on the same address: the log is empty, the store is
ahead of it), and then the address serves another consortium's log of the same chain name
(a fork: same genesis cut, other transactions). Each time:

- ``Node`` on the folder refuses to start, naming the etcd log, both ends and what to do;
- ``ConsortiumNode`` (what ``glucoledger node`` runs) refuses as a member: ``status.refusing``
  says why, and nothing is appended to the log;
- ``verify`` names it as a log finding (exit 3 from the CLI);
- an unreachable cluster refuses start (nothing is appended unchecked), while ``verify`` still
  checks the store on its own and says the log was not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.bench.ledger import account_envelopes
from glucoledger.errors import StorageError
from glucoledger.node.consortium import ConsortiumNode
from glucoledger.node.devcluster import create_consortium
from glucoledger.node.service import Node, etcd_chain_key, verify_folder
from glucoledger.node.verify import IntegrityError
from glucoledger.ordering.cluster import EtcdCluster
from glucoledger.ordering.etcd import EtcdOrderer

from ..cli.test_cli import run
from ..servers import free_ports, start_etcd

CHAIN = "glucoledger/consortium"


class Etcd:
    """One etcd member; ``fresh()`` replaces it by an empty one on the same address."""

    def __init__(self, base: Path) -> None:
        self.base, self.port, self.n = base, free_ports(2), 0
        self.cluster = self._start()

    def _start(self) -> EtcdCluster:
        self.n += 1
        return start_etcd(self.base / f"etcd-{self.n}", self.port)

    def fresh(self) -> None:
        self.cluster.stop()
        self.cluster = self._start()

    def size(self) -> int:
        with EtcdOrderer.from_url(self.cluster.url, etcd_chain_key(CHAIN)) as o:
            return o.size()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    e = Etcd(tmp_path)
    try:
        yield e
    finally:
        e.cluster.stop()


def _member_with_blocks(base: Path, etcd: Etcd, patients: int) -> Path:
    """A one-member consortium on ``etcd``: genesis plus ``patients`` account transactions."""
    (folder,) = create_consortium(base, 1, etcd.cluster.url, chain=CHAIN, threshold=1)
    cnode = ConsortiumNode(folder)
    try:
        assert cnode.status.refusing is None
        receipts = cnode.node.submit(account_envelopes(CHAIN, patients))
        assert all(r.ok for r in receipts)
        assert cnode.node.store.height() >= 2
    finally:
        cnode.close()
    return folder


def _refused_everywhere(folder: Path, etcd: Etcd, kind: str, words: str) -> None:
    size = etcd.size()
    with pytest.raises(StorageError) as start:
        Node(folder, workers=1)
    assert start.value.code == kind, start.value.message
    msg = start.value.message
    assert "etcd log" in msg and words in msg and "consortium rejoin" in msg, msg
    cnode = ConsortiumNode(folder)
    try:
        assert cnode.status.refusing is not None and words in cnode.status.refusing
        assert cnode.node.halted is not None
        cnode.step()  # a round of the member loop derives and appends nothing
    finally:
        cnode.close()
    with pytest.raises(IntegrityError) as ver:
        verify_folder(folder, workers=1)
    assert ver.value.finding.kind == "log" and ver.value.finding.what == kind
    r = run("verify", "--data", str(folder))
    assert r.returncode == 3 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert etcd.size() == size  # nothing was appended by any of them


def test_a_store_ahead_of_a_wiped_etcd_log_refuses(etcd: Etcd, tmp_path: Path) -> None:
    folder = _member_with_blocks(tmp_path / "a", etcd, 6)
    verify_folder(folder, workers=1)  # agrees with its log: OK
    etcd.fresh()
    assert etcd.size() == 0
    _refused_everywhere(folder, etcd, "short_log", "the store is ahead of its log")


def test_a_store_of_another_history_than_the_etcd_log_refuses(etcd: Etcd,
                                                              tmp_path: Path) -> None:
    folder = _member_with_blocks(tmp_path / "a", etcd, 3)
    etcd.fresh()
    # Another consortium, same chain name, on the same address: its log is longer than
    # the first member's store, and shares its genesis cut entry (height 0, time 0).
    _member_with_blocks(tmp_path / "b", etcd, 12)
    _refused_everywhere(folder, etcd, "other_log", "different histories")


def test_an_unreachable_etcd_refuses_start_and_verify_checks_the_store_alone(
        etcd: Etcd, tmp_path: Path) -> None:
    folder = _member_with_blocks(tmp_path / "a", etcd, 2)
    etcd.cluster.stop()
    with pytest.raises(StorageError) as start:
        Node(folder, workers=1)
    assert start.value.code == "unreadable_log" and "cannot be read" in start.value.message
    report = verify_folder(folder, workers=1)
    assert any("not checked against the log" in n for n in report.notes), report.notes

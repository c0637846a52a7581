"""Fixtures for the orderer contract suite: one ``orderer_factory`` per backend.

``ListOrderer`` is an in-memory reference implementation of the contract, here only so the
suite has a backend it can always run against; the embedded (SQLite) backend joins the
``orderer_factory`` parameters when it lands.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from glucoledger.errors import OrderingError
from glucoledger.ordering.base import MAX_ENTRY, Orderer
from glucoledger.ordering.cluster import ClusterError, EtcdCluster, find_etcd
from glucoledger.ordering.embedded import EmbeddedOrderer
from glucoledger.ordering.etcd import EtcdOrderer
from tests.servers import require_etcd, start_etcd

OrdererFactory = Callable[[], Orderer]


class ListOrderer(Orderer):
    """The contract in its simplest form: a list, a lock, a condition."""

    def __init__(self) -> None:
        self._entries: list[bytes | None] = []
        self._first = 0
        self._cond = threading.Condition()

    def append(self, entries: Sequence[bytes]) -> int:
        batch = [bytes(e) for e in entries]
        if not batch:
            raise ValueError("append() needs at least one entry")
        if any(len(e) > MAX_ENTRY for e in batch):
            raise ValueError(f"an entry exceeds the {MAX_ENTRY}-byte limit")
        with self._cond:
            position = len(self._entries)
            self._entries.extend(batch)
            self._cond.notify_all()
            return position

    def read(self, start: int, limit: int = 1000) -> list[bytes]:
        if start < 0 or limit < 0:
            raise ValueError("read(start, limit) needs start >= 0 and limit >= 0")
        with self._cond:
            if start < self._first:
                raise OrderingError(
                    f"position {start} was compacted; the log starts at {self._first}"
                )
            return [e for e in self._entries[start : start + limit] if e is not None]

    def size(self) -> int:
        with self._cond:
            return len(self._entries)

    def first(self) -> int:
        with self._cond:
            return self._first

    def compact(self, below: int) -> None:
        if below < 0:
            raise ValueError("compact(below) needs below >= 0")
        with self._cond:
            target = min(below, len(self._entries))
            for k in range(self._first, target):
                self._entries[k] = None
            self._first = max(self._first, target)

    def wait(self, size: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._entries) <= size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return len(self._entries)


def etcd_installed() -> bool:
    try:
        find_etcd()
    except ClusterError:
        return False
    return True


@pytest.fixture
def needs_etcd() -> None:
    require_etcd()


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One 3-member cluster for the whole session; tests isolate themselves by chain name."""
    cluster = start_etcd(Path(tmp_path_factory.mktemp("etcd-shared")), members=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A 3-member cluster of its own, for tests that kill members."""
    cluster = start_etcd(tmp_path / "etcd", members=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["list", "embedded", "etcd"])
def orderer_factory(request: pytest.FixtureRequest) -> Iterator[OrdererFactory]:
    """A callable making fresh, empty orderers of one backend; all closed at teardown."""
    made: list[Orderer] = []
    if request.param == "list":

        def make() -> Orderer:
            made.append(ListOrderer())
            return made[-1]

    elif request.param == "embedded":
        folder: Path = request.getfixturevalue("tmp_path")

        def make() -> Orderer:
            made.append(EmbeddedOrderer(folder / f"log-{uuid.uuid4().hex[:8]}.db"))
            return made[-1]

    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")

        def make() -> Orderer:
            made.append(EtcdOrderer(cluster.endpoints, f"t-{uuid.uuid4().hex[:12]}"))
            return made[-1]

    yield make
    for orderer in made:
        orderer.close()

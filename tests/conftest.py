"""Shared fixtures: real nodes on real SQLite in temporary folders."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.service import Node
from glucoledger.node.world import World


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "node", workers=1)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A node with a simulated maker, ready to add patients and devices."""
    n = Node.init(tmp_path / "node", workers=1)
    w = World.create(n)
    yield w
    n.close()


@pytest.fixture
def ingest(world: World) -> Iterator[IngestService]:
    vault = open_vault(world.node, fsync=False)
    yield IngestService(world.node, vault)
    vault.close()


@pytest.fixture
def checkpoint_threads() -> Callable[[], list[str]]:
    """The names of the chain stores' checkpoint threads (sqlitetx.Checkpointer) started
    since the test began and still running: a store another test left open is not this
    test's."""
    before = set(threading.enumerate())

    def started() -> list[str]:
        return sorted(t.name for t in threading.enumerate()
                      if t not in before and t.name.startswith("checkpoint "))
    return started

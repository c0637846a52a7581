"""Shared fixtures: real nodes on real SQLite in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
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

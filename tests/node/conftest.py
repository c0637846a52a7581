from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.service import Node
from glucoledger.node.world import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    node = Node.init(tmp_path / "node", workers=1)
    w = World.create(node)
    yield w
    node.close()


@pytest.fixture
def ingest(world: World) -> Iterator[IngestService]:
    vault = open_vault(world.node, fsync=False)
    yield IngestService(world.node, vault)
    vault.close()

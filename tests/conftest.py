"""Shared fixtures: real nodes on real SQLite in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.node.service import Node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "node", workers=1)
    try:
        yield n
    finally:
        n.close()

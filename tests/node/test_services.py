"""The one composition root (node/services.py): one vault shared by every service, built on
first use, closed once; the same objects the HTTP edge holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger.api.context import ServerContext
from glucoledger.errors import NotFoundError
from glucoledger.node.service import Node
from glucoledger.node.services import NodeServices


def test_services_share_one_vault_and_are_built_on_first_use(tmp_path: Path) -> None:
    Node.init(tmp_path / "n").close()
    with NodeServices.open(tmp_path / "n") as s:
        assert s.node.store.height() >= 1
        # `blocks` and the like never open the vault: no vault file appears for them.
        assert not list((tmp_path / "n").glob("vault.db*"))
        vault = s.vault
        assert list((tmp_path / "n").glob("vault.db*"))
        assert s.ingest.vault is vault and s.access.vault is vault
        assert s.erasure.vault is vault
        assert s.access is s.access and s.ingest is s.ingest  # one of each
        assert s.nightscout is s.nightscout
    s.close()  # idempotent


def test_of_leaves_the_node_open_and_open_closes_it(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "n")
    try:
        with NodeServices.of(node) as s:
            _ = s.access
        assert node.store.height() >= 1  # still usable: the caller closes it
    finally:
        node.close()


def test_the_http_edge_holds_the_same_services(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "n")
    c = ServerContext.create(node)
    try:
        assert isinstance(c.svc, NodeServices) and c.svc.node is node
        # One vault for every service the routes reach, and one way to reach them (no
        # untyped by-name mapping beside the typed ``svc``).
        assert c.svc.access.vault is c.svc.vault and c.svc.ingest.vault is c.svc.vault
        assert c.readers is not None
        assert not hasattr(c, "services")
    finally:
        c.close()
        node.close()


def test_opening_a_folder_without_a_node_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="glucoledger init"):
        NodeServices.open(tmp_path / "nothing")

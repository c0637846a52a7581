"""A demo node served over HTTP: in-process (TestClient) and by a real uvicorn thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.api.app import create_app
from glucoledger.api.context import ServerContext, ServerSettings
from glucoledger.node.demo_site import seed_demo
from glucoledger.node.service import Node

from ..servers import UvicornThread, free_port

__all__ = ["Served", "Site", "free_port"]


class Site:
    def __init__(self, folder: Path, *, secure: bool = True) -> None:
        self.node = Node.init(folder, workers=1)
        self.ctx = ServerContext.create(self.node, ServerSettings(secure_cookies=secure))
        self.info = seed_demo(self.node, self.ctx.svc.nightscout, days=3)
        self.app = create_app(self.node, context=self.ctx)

    def close(self) -> None:
        self.ctx.close()
        self.node.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path / "node")
    yield s
    s.close()


@pytest.fixture
def client(site: Site):  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    with TestClient(site.app, base_url="https://testserver") as c:
        yield c


# One port helper and one uvicorn thread for every test (tests/servers.py).
Served = UvicornThread


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Site, Served]]:
    s = Site(tmp_path / "node", secure=True)
    srv = Served(s.app)
    yield s, srv
    srv.stop()
    s.close()

"""A demo node served over HTTP: in-process (TestClient) and by a real uvicorn thread."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from glucoledger.api.app import create_app
from glucoledger.api.context import ServerContext, ServerSettings
from glucoledger.node.demo_site import seed_demo
from glucoledger.node.service import Node


class Site:
    def __init__(self, folder: Path, *, secure: bool = True) -> None:
        self.node = Node.init(folder, workers=1)
        self.ctx = ServerContext.create(self.node, ServerSettings(secure_cookies=secure))
        self.info = seed_demo(self.node, self.ctx.services["nightscout"], days=3)
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


def free_port() -> int:
    """A free loopback port: the system's choice, or one of ``GLUCOLEDGER_TEST_PORTS``
    (``lo-hi``) when a machine shared by several test runs gives each run its own range."""
    span = os.environ.get("GLUCOLEDGER_TEST_PORTS")
    ports = [0]
    if span:
        lo, hi = (int(x) for x in span.split("-"))
        ports = random.sample(range(lo, hi + 1), hi - lo + 1)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port in {span}")


class Served:
    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Site, Served]]:
    s = Site(tmp_path / "node", secure=True)
    srv = Served(s.app)
    yield s, srv
    srv.stop()
    s.close()

"""A demo node served over HTTP: in-process (TestClient) and by a real uvicorn thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from glucoledger.api.app import create_app
from glucoledger.api.context import ServerContext, ServerSettings
from glucoledger.node.accounts import identity
from glucoledger.node.demo_site import seed_demo
from glucoledger.node.service import Node
from glucoledger.node.zkclaims import ZkClaims
from glucoledger.zk.toolchain import PROFILES, Toolchain

from ..servers import UvicornThread, free_port

__all__ = ["Served", "Site", "cover_claim_days", "free_port"]


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


def cover_claim_days(site: Site, days: int, post: Callable[[str, Any], None]) -> int:
    """Make sure each of alice's last ``days`` whole days has readings in every slot of its
    window of the zero-knowledge test profile (the first 50 minutes), uploading them through
    Nightscout with ``post(path, entries)`` where a slot has none; the number of days filled.

    The demo's simulated sensor has warm-ups and signal-loss gaps placed relative to the
    moment the site was seeded, so at some times of day (06:25 to 07:00 UTC, for one) a gap
    covers part or all of a day's first 50 minutes, and a claim over it is refused, rightly:
    "no CGM reading between ...", or readings in under 70 % of the slots. A claim test is
    about claims, so it fills such a day as a patient's uploader would."""
    zk = ZkClaims(site.node, site.ctx.svc.vault, Toolchain(PROFILES["test"]))
    alice = identity(site.node, "alice").id
    filled = 0
    for start, end in zk.period(alice, days, int(time.time() * 1000)):
        empty = [start + i * 300_000 + 60_000
                 for i, v in enumerate(zk.slots(alice, start, end)) if not v]
        if not empty:
            continue
        post("/api/v1/entries", [
            {"type": "sgv", "sgv": 110 + i, "date": t, "direction": "Flat",
             "dateString": datetime.fromtimestamp(t / 1000, UTC).isoformat(),
             "device": "cover_claim_days"}
            for i, t in enumerate(empty)])
        filled += 1
    return filled

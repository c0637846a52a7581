"""The socket.io channel's bounds, with the real python-socketio client over real HTTP.

Connections in all and per client address are counted at the Engine.IO handshake; sockets
per credential at ``authorize``; ``authorize`` calls per connection. Each bound refuses with
a message a person can act on (the client's ``connect_error``, or the ``authorize`` ack),
leaves the connections already open working, is in the security log, and frees its slot as
soon as a connection closes. The bounds are set small on the running server's channel
(``NsSocket.limits``) so that a few clients reach them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import socketio  # type: ignore[import-untyped]

from glucoledger.api.nssocket import SocketLimits
from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from ..servers import UvicornThread
from .conftest import Site

SECRET = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
AUTH = {"client": "Android_AAPS", "history": 1, "status": False, "from": 0, "secret": SECRET}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, str]]:
    site = Site(tmp_path_factory.mktemp("limits") / "node", secure=False)
    srv = UvicornThread(site.app)
    try:
        yield site, srv.url
    finally:
        srv.stop()
        site.close()


class Phone:
    """A python-socketio client that keeps what a refused connection was told."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.refusals: list[Any] = []
        self.sio.on("connect_error", self._refused)

    async def _refused(self, data: Any = None) -> None:
        self.refusals.append(data)

    async def connect(self, url: str, transports: tuple[str, ...] = ("websocket",)) -> bool:
        try:
            await self.sio.connect(url, transports=list(transports), wait_timeout=20)
        except socketio.exceptions.ConnectionError:
            return False
        return True

    async def authorize(self) -> Any:
        return await self.sio.call("authorize", AUTH, timeout=60)

    async def close(self) -> None:
        await self.sio.disconnect()
        await asyncio.sleep(0.3)  # the server sees the close


def _limits(site: Site, **kw: int) -> None:
    site.app.state.nssocket.limits = SocketLimits(**kw)


def _refusals(site: Site) -> list[dict[str, Any]]:
    return [dataclasses.asdict(e) for e in site.ctx.seclog.recent(200)
            if e.code == "too_many_connections"]


def _open(site: Site) -> int:
    """Sessions the server holds: admitted ones, and refused ones it has not closed yet."""
    channel = site.app.state.nssocket
    return len(channel._sessions) + len(channel._over_bound)


async def _wait_closed(site: Site, n: int) -> None:
    for _ in range(100):
        if _open(site) == n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{_open(site)} sessions open, expected {n}")


def test_connections_per_address_and_in_all(served) -> None:  # type: ignore[no-untyped-def]
    site, url = served

    async def run() -> None:
        # per address: two from 127.0.0.1, the third refused with what to do
        _limits(site, connections=10, per_address=2)
        a, b, c = Phone(), Phone(), Phone()
        assert await a.connect(url) and await b.connect(url)
        assert not await c.connect(url)
        [told] = c.refusals
        assert told["data"]["code"] == "too_many_connections"
        assert "your address already has 2" in told["message"]
        assert "close one" in told["message"]
        # the same over polling then websocket (socket.io-client-java's default, AndroidAPS)
        d = Phone()
        assert not await d.connect(url, ("polling", "websocket"))
        assert "your address already has 2" in d.refusals[0]["message"]
        await _wait_closed(site, 2)  # the server closed both refused sessions
        assert (await a.authorize())["read"] is True  # the open ones still work
        await b.close()
        await _wait_closed(site, 1)
        again = Phone()
        assert await again.connect(url), again.refusals  # the freed slot is reusable
        await again.close()
        await a.close()
        await _wait_closed(site, 0)

        # in all: the server's own bound, with its own message
        _limits(site, connections=2, per_address=10)
        a, b, c = Phone(), Phone(), Phone()
        assert await a.connect(url) and await b.connect(url)
        assert not await c.connect(url)
        assert "holds its limit of 2 socket.io connections" in c.refusals[0]["message"]
        await a.close()
        await _wait_closed(site, 1)
        assert await c.connect(url), c.refusals
        await b.close()
        await c.close()
        await _wait_closed(site, 0)

    before = len(_refusals(site))
    asyncio.run(run())
    logged = _refusals(site)[before:]
    assert len(logged) == 3 and all(e["route"] == "socket.io connect" for e in logged)
    assert SECRET not in repr(logged)


def test_sockets_per_credential_and_authorize_per_connection(served) -> None:  # type: ignore[no-untyped-def]
    site, url = served

    async def run() -> None:
        _limits(site, connections=10, per_address=10, per_credential=1,
                authorize_per_connection=2)
        a, b = Phone(), Phone()
        assert await a.connect(url) and await b.connect(url)
        assert (await a.authorize())["write"] is True
        refused = await b.authorize()
        assert refused["read"] is False and refused["code"] == "too_many_connections"
        assert "already connected 1 times, the limit is 1" in refused["message"]
        await _wait_closed(site, 1)  # the refused socket is closed; a keeps its feed
        # a's second authorize is allowed (its own slot), a third is over the bound and
        # leaves its feed as it was
        assert (await a.authorize())["read"] is True
        over = await a.authorize()
        assert over["read"] is False and "sent authorize 2 times" in over["message"]
        assert a.sio.connected
        await a.close()
        await _wait_closed(site, 0)
        other = socketio.AsyncClient(reconnection=False)  # one namespace per connection
        with pytest.raises(socketio.exceptions.ConnectionError):
            await other.connect(url, namespaces=["/alarm"], transports=["websocket"],
                                wait_timeout=20)
        await other.disconnect()
        await _wait_closed(site, 0)
        b = Phone()  # the credential's slot is free again
        assert await b.connect(url)
        assert (await b.authorize())["read"] is True
        await b.close()

    asyncio.run(run())
    assert {e["route"] for e in _refusals(site)} >= {"socket.io authorize"}


def test_a_flood_of_handshakes_is_refused_at_the_handshake(served) -> None:  # type: ignore[no-untyped-def]
    """Bare Engine.IO handshakes (plain HTTP polling, no socket.io connect): one over the
    bound is held only to be refused and closed; beyond twice the bound the handshake
    itself is answered 401 with the message; closing frees the slot."""
    site, url = served
    _limits(site, connections=1, per_address=10)
    path = "/socket.io/?EIO=4&transport=polling"
    with httpx.Client(base_url=url, timeout=30) as http:
        first = http.get(path)
        assert first.status_code == 200 and first.text.startswith("0"), first.text
        sid = json.loads(first.text[1:])["sid"]
        assert http.get(path).status_code == 200  # over the bound: refused at its connect
        flood = http.get(path)
        assert flood.status_code == 401
        assert flood.json()["code"] == "too_many_connections"
        assert "holds its limit of 1 socket.io connections" in flood.json()["message"]
        assert http.post(f"{path}&sid={sid}", content=b"1").status_code == 200  # close
        for _ in range(300):  # the held one is closed by the server within 10 s
            if _open(site) == 0:
                break
            time.sleep(0.05)
        assert _open(site) == 0
        again = http.get(path)
        assert again.status_code == 200, again.text
        sid = json.loads(again.text[1:])["sid"]
        assert http.post(f"{path}&sid={sid}", content=b"1").status_code == 200

"""The listening socket a worker inherits (api/workers.py ``inherited_listener``).

uvicorn's ``Config(fd=...)`` wraps an inherited descriptor as AF_UNIX, so the event loop
never set TCP_NODELAY on the connections it accepted (every keep-alive request then waited
40 ms for a delayed ACK). The worker now rebuilds the socket with its real family; these
tests accept a real connection on the worker's own event loop and read the option back.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from glucoledger.api.workers import _new_loop, inherited_listener


def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of the server side of one connection accepted through ``listener``."""
    loop = _new_loop()
    seen: list[int] = []

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def run() -> None:
        server = await loop.create_server(Proto, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert seen, "no connection was accepted"
    return seen[0]


def _bound() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_an_inherited_tcp_listener_keeps_its_family_and_its_connections_get_nodelay() -> None:
    bound = _bound()
    listener = inherited_listener(bound.detach())  # the descriptor, as a worker receives it
    assert listener.family == socket.AF_INET
    assert _accepted_nodelay(listener) == 1


def test_the_same_descriptor_wrapped_as_unix_leaves_nagle_on() -> None:
    """The control: what ``uvicorn.Config(fd=...)`` did. Shows the test above can fail."""
    bound = _bound()
    wrapped = socket.fromfd(bound.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    bound.close()
    assert _accepted_nodelay(wrapped) == 0


def test_a_descriptor_that_is_not_tcp_is_refused() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with pytest.raises(ValueError, match="not a TCP socket"):
            inherited_listener(a.fileno())
        assert a.fileno() >= 0  # not taken over: the caller still owns it
    finally:
        a.close()
        b.close()

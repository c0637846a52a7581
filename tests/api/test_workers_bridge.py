"""api/workers.py's two ends in one process, over a real socketpair: what the ordering
process's application sees is the request the worker received (method, path, query,
headers, body, the client address), a streamed answer arrives whole, concurrent requests
on one channel get their own answers, and a worker whose ordering process is gone answers
503 in words (never a traceback) and asks to stop."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from glucoledger.api.workers import Bridge, _serve_channel


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    if request.query_params.get("wait"):
        await asyncio.sleep(float(request.query_params["wait"]))
    return JSONResponse({"method": request.method, "path": request.url.path,
                         "query": request.url.query, "body": body.decode(),
                         "client": list(request.client or ()),
                         "x": request.headers.get("x-thing")},
                        headers={"x-answer": "yes"})


async def _stream(request: Request) -> StreamingResponse:
    async def parts() -> Any:
        for i in range(3):
            yield f"part{i};".encode()

    return StreamingResponse(parts(), media_type="text/plain")


APP = Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST"]),
                        Route("/stream", _stream)])


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_request_crosses_the_channel_as_the_worker_received_it() -> None:
    async def go() -> None:
        ours, theirs = socket.socketpair()
        serving = asyncio.ensure_future(_serve_channel(APP, ours))
        lost: list[bool] = []
        bridge = Bridge(theirs, 0, lambda: lost.append(True))
        transport = httpx.ASGITransport(app=bridge, client=("10.1.2.3", 5555))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            # The first requests arrive together: one stream over the channel for all.
            first = await asyncio.gather(*(c.get(f"/echo?n={i}") for i in range(8)))
            assert [f.json()["query"] for f in first] == [f"n={i}" for i in range(8)]
            r = await c.post("/echo?a=1&b=%C3%A9", content=b"hello",
                             headers={"x-thing": "t"})
            assert r.status_code == 200 and r.headers["x-answer"] == "yes"
            assert r.json() == {"method": "POST", "path": "/echo", "query": "a=1&b=%C3%A9",
                                "body": "hello", "client": ["10.1.2.3", 5555], "x": "t"}
            s = await c.get("/stream")
            assert s.text == "part0;part1;part2;"
            missing = await c.get("/nowhere")
            assert missing.status_code == 404
            # Concurrent requests on one channel: each gets its own answer (the slow first
            # does not hold up the others, and answers are matched by id, not by order).
            slow, *fast = await asyncio.gather(
                c.get("/echo?wait=0.3&n=0"), *(c.get(f"/echo?n={i}") for i in range(1, 6)))
            assert slow.json()["query"] == "wait=0.3&n=0"
            assert [f.json()["query"] for f in fast] == [f"n={i}" for i in range(1, 6)]
        assert not lost
        bridge.close()
        await asyncio.wait_for(serving, 5)  # the ordering side ends with the channel

    _run(go())


def test_a_worker_whose_ordering_process_is_gone_answers_503_and_asks_to_stop() -> None:
    async def go() -> None:
        ours, theirs = socket.socketpair()
        ours.close()  # the ordering process died
        lost: list[bool] = []
        bridge = Bridge(theirs, 0, lambda: lost.append(True))
        transport = httpx.ASGITransport(app=bridge)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            r = await c.post("/api/v1/entries", content=b"[]")
            for _ in range(50):
                if lost:
                    break
                await asyncio.sleep(0.02)
            again = await c.get("/api/status")
        for answer in (r, again):
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "unavailable"
            assert "retry" in answer.json()["message"]
            assert answer.headers["retry-after"] == "60"
        assert lost == [True]

    _run(go())


def test_a_frame_that_is_not_a_request_is_refused_not_fatal() -> None:
    async def go() -> None:
        from glucoledger.api.workers import _read_frame, encode_frame

        ours, theirs = socket.socketpair()
        serving = asyncio.ensure_future(_serve_channel(APP, ours))
        reader, writer = await asyncio.open_unix_connection(sock=theirs)
        bad = [7, "GET", "http", "/echo", b"/echo", b"", [["not", "a", "pair"]], None,
               None, "1.1", b"", None]
        writer.write(encode_frame(bad))
        answer = await asyncio.wait_for(_read_frame(reader), 5)
        assert answer[0] == 7 and answer[1] == 400
        assert json.loads(answer[3])["code"] == "malformed"
        writer.write(b"\x00\x00\x00\x02\xff\xff")  # not CBOR: the channel is closed
        assert await asyncio.wait_for(_read_frame(reader), 5) is None
        await asyncio.wait_for(serving, 5)
        writer.close()

    _run(go())


def test_a_port_held_by_another_server_is_refused_before_any_worker_starts() -> None:
    import pytest

    from glucoledger.api.workers import Orderer

    from .conftest import free_port

    for reuse in (False, True):  # a plain server, or another ``serve --workers`` group
        held = socket.socket()
        if reuse:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        port = free_port()
        held.bind(("127.0.0.1", port))
        held.listen(1)
        try:
            orderer = Orderer(APP, "127.0.0.1", port, 2)
            with pytest.raises(OSError):
                orderer.start()
            assert orderer.procs == []
        finally:
            held.close()


def test_an_ordering_process_that_stops_mid_request_is_not_said_to_have_changed_nothing(
        ) -> None:
    async def go() -> None:
        from glucoledger.api.workers import _read_frame

        ours, theirs = socket.socketpair()

        async def orderer_dies_after_reading() -> None:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            assert await _read_frame(reader) is not None  # handed over, then gone
            writer.close()

        dying = asyncio.ensure_future(orderer_dies_after_reading())
        bridge = Bridge(theirs, 0, lambda: None)
        transport = httpx.ASGITransport(app=bridge)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            r = await c.post("/api/v1/entries", content=b"[]")
        await dying
        assert r.status_code == 503
        assert "may or may not have been done" in r.json()["message"]
        assert "nothing was changed" not in r.json()["message"]

    _run(go())

"""HTTP worker processes in front of the one process that orders and stores (issue 16, item 4).

``serve --workers N`` (N >= 2) runs N + 1 processes:

- the **ordering process** (the parent) opens the node, holds the only ``ServerContext``
  (node, services, sessions, CSRF tokens, the RFC 9421 nonce cache, the login backoff, the
  cost limits, the upload pipeline) and runs the FastAPI application; it never speaks HTTP;
- **N worker processes** each run uvicorn (httptools, uvloop) on their own listening socket,
  all bound by the parent to the same address with ``SO_REUSEPORT`` (Linux spreads new
  connections over them by a hash of the connection's addresses). A worker terminates TCP and
  HTTP/1.1 (keep-alive, parsing, body limit, proxy headers when ``--forwarded-allow-ips``
  names proxies) and checks Nightscout uploads (``node.checked``: JSON, then every document
  as ``interop.nsaccept`` judges it), then hands the request to the ordering process as one
  frame over its own ``socketpair`` (no path on disk: nothing else can connect) and writes
  the answer back. It holds no key, no master key, no session, no database handle.

The security state lives in one place, so it is shared by every worker by construction: a
session opened through one worker works through another, an RFC 9421 nonce seen through one
is a replay through another, failed logins through every worker count against one address
(tests/api/test_workers.py shows the three against a real ``serve --workers 2``).

The ordering process trusts a worker for nothing it cannot check: the frame is data only
(CBOR, never pickle); every credential (api-secret, session cookie, CSRF token, RFC 9421
signature, device signature inside a signed upload) is checked in the ordering process,
which runs the same application on the request as the worker received it (workers check
no credential); a worker's checked upload is rebuilt and re-validated there
(``node.checked.accept_checked``: every record's type and range, batch order and counts, no
future time, records matching the documents, the worker's clock) before
``NightscoutService.post_judged`` stores it, and anything off makes the ordering process
judge the body itself. What a compromised worker could do is what a client holding the
credentials it sees could do: send requests. The client address the backoff counts is the
one the worker's uvicorn derived (the TCP peer, or a configured proxy's
``X-Forwarded-For``), as in one process.

Frames: 4-byte big-endian length, then CBOR. Worker to orderer:
``[id, method, scheme, path, raw_path, query, headers, client, server, http_version, body,
checked]``; orderer to worker: ``[id, status, headers, body]``. Answers are sent whole
(streaming bodies are collected first). WebSockets are not bridged (refused).

If the ordering process goes away, workers answer 503 and exit; if a worker dies, the
ordering process stops the others and exits non-zero (fail-stop: the service manager restarts
the whole node, never half of it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..runtime import long_running_gc

__all__ = ["MAX_FRAME", "Orderer", "decode_frame", "encode_frame", "worker_main"]

log = logging.getLogger("glucoledger.workers")

#: The largest frame either side accepts: a body at the server's limit plus headers, or an
#: answer (an export) of up to 64 MiB.
MAX_FRAME: Final = 64 * 1024 * 1024
_LEN: Final = struct.Struct(">I")
#: Tests set this to see which worker answered (``x-glucoledger-worker``); off by default,
#: so a server does not describe its processes.
WORKER_HEADER_ENV: Final = "GLUCOLEDGER_WORKER_HEADER"
_UNAVAILABLE: Final = (b'{"code":"unavailable","message":"the node\'s ordering process is '
                       b'not answering; nothing was changed by this request; retry in a '
                       b'minute"}')
#: The ordering process went away after the request was handed to it: it may have been done.
_INTERRUPTED: Final = (b'{"code":"unavailable","message":"the node\'s ordering process stopped '
                       b'while handling this request, which may or may not have been done; '
                       b'check before repeating it (uploads may be resent: they are '
                       b'deduplicated)"}')


def encode_frame(value: Any) -> bytes:
    """One frame: length, then the CBOR of ``value`` (plain data only)."""
    try:
        data = cbor2.dumps(value)
    except Exception as exc:  # cbor2's encode error is not a ValueError
        raise ValueError(f"not plain data: {type(exc).__name__}") from None
    if len(data) > MAX_FRAME:
        raise ValueError(f"a frame of {len(data)} bytes is over {MAX_FRAME}")
    return _LEN.pack(len(data)) + data


def decode_frame(data: bytes) -> Any:
    """The value of a frame's payload; ValueError for anything that is not CBOR."""
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises its own errors, ValueError and more
        raise ValueError(f"not a CBOR frame: {type(exc).__name__}") from None


async def _read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next frame's value, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LEN.size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise ValueError(f"a frame of {n} bytes is over {MAX_FRAME}")
    try:
        return decode_frame(await reader.readexactly(n))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


# --- the ordering process -----------------------------------------------------------------

async def _answer(app: ASGIApp, frame: list[Any]) -> list[Any]:
    """Run ``app`` on one forwarded request; the answer frame (500 if the app failed)."""
    (rid, method, scheme, path, raw_path, query, headers, client, server, http_version,
     body, checked) = frame
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": str(http_version), "method": str(method), "scheme": str(scheme),
        "path": str(path), "raw_path": bytes(raw_path), "query_string": bytes(query),
        "root_path": "", "headers": [(bytes(k), bytes(v)) for k, v in headers],
        "client": tuple(client) if client else None,
        "server": tuple(server) if server else None, "state": {},
    }
    if checked is not None:
        scope["state"]["checked_upload"] = checked
    done = asyncio.Event()
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}
        await done.wait()  # a streaming answer listens for a disconnect: none until sent
        return {"type": "http.disconnect"}

    status = 500
    out_headers: list[list[bytes]] = []
    chunks: list[bytes] = []

    async def send(msg: Message) -> None:
        nonlocal status, out_headers
        if msg["type"] == "http.response.start":
            status = int(msg["status"])
            out_headers = [[bytes(k), bytes(v)] for k, v in msg.get("headers", ())]
        elif msg["type"] == "http.response.body":
            chunks.append(bytes(msg.get("body", b"")))

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("the application failed on a forwarded %s %s", method, path)
        return [rid, 500, [[b"content-type", b"application/json"]],
                b'{"code":"internal","message":"the server failed unexpectedly; report it '
                b'with the time"}']
    finally:
        done.set()
    return [rid, status, out_headers, b"".join(chunks)]


async def _serve_channel(app: ASGIApp, sock: socket.socket) -> None:
    """Answer one worker's frames until it closes its end."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
    tasks: set[asyncio.Task[None]] = set()

    async def one(frame: list[Any]) -> None:
        try:
            answer = await _answer(app, frame)
        except Exception:  # a frame whose fields are of the wrong types
            log.error("a worker sent a request frame that is not a request")
            answer = [frame[0], 400, [[b"content-type", b"application/json"]],
                      b'{"code":"malformed","message":"the request could not be read"}']
        try:
            data = encode_frame(answer)
        except ValueError:
            log.error("an answer to %s %s is too large for a worker's channel", frame[1],
                      frame[3])
            data = encode_frame([answer[0], 500, [[b"content-type", b"application/json"]],
                                 b'{"code":"too_large","message":"the answer is larger than '
                                 b'a worker can pass on (64 MiB); ask for a shorter period"}'])
        writer.write(data)

    try:
        while True:
            try:
                frame = await _read_frame(reader)
            except ValueError as exc:
                log.error("a worker sent a bad frame (%s); closing its channel", exc)
                return
            if frame is None:
                return
            if not isinstance(frame, list) or len(frame) != 12:
                log.error("a worker sent a frame of the wrong shape; closing its channel")
                return
            t = asyncio.ensure_future(one(frame))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()
        writer.close()


def _probe(host: str, port: int) -> None:
    """OSError if anything holds ``host:port``, even another process's ``SO_REUSEPORT``
    group (a second ``serve --workers`` on the same port would otherwise join it, and the
    kernel would split the clients between two nodes)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, port))


def _listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    # Bound, not listening: the worker's event loop listens once it serves, so a client
    # connecting before then is refused (and retries), never left waiting on a backlog.
    s.set_inheritable(True)
    return s


@dataclass
class Orderer:
    """The ordering process's side: binds ``host:port`` once per worker (``SO_REUSEPORT``),
    starts the workers, answers their frames with ``app`` on its own event loop.

    ``start()`` returns once every worker listens; ``stop()`` ends them and the loop.
    Raises OSError (the address is taken) before any worker starts.
    """

    app: ASGIApp
    host: str
    port: int
    workers: int
    proxies: tuple[str, ...] = ()
    max_body: int = 2 * 1024 * 1024
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _channels: list[socket.socket] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        if self.workers < 1:
            raise ValueError("at least one worker")
        if self.port:
            _probe(self.host, self.port)
        listeners = [_listener(self.host, self.port) for _ in range(self.workers)]
        if self.port == 0:  # tests: every listener on the first one's port
            for s in listeners:
                s.close()
            self.port = _free_port_for(self.host)
            listeners = [_listener(self.host, self.port) for _ in range(self.workers)]
        ready: list[int] = []
        try:
            for i, lst in enumerate(listeners):
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                status_r, status_w = os.pipe()
                theirs.set_inheritable(True)
                cmd = [sys.executable, "-m", "glucoledger.api.workers",
                       "--listen-fd", str(lst.fileno()), "--channel-fd", str(theirs.fileno()),
                       "--ready-fd", str(status_w), "--index", str(i),
                       "--max-body", str(self.max_body)]
                if self.proxies:
                    cmd += ["--forwarded-allow-ips", ",".join(self.proxies)]
                self.procs.append(subprocess.Popen(
                    cmd, pass_fds=(lst.fileno(), theirs.fileno(), status_w),
                    env=dict(os.environ)))
                theirs.close()
                os.close(status_w)
                self._channels.append(mine)
                ready.append(status_r)
        finally:
            for lst in listeners:
                lst.close()  # each worker holds its own; a dead worker's leaves the group
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name="orderer-bridge", daemon=True)
        self._thread.start()
        for i, r in enumerate(ready):  # each worker writes one byte once it listens
            try:
                got = os.read(r, 1) if select.select([r], [], [], 120)[0] else b""
            finally:
                os.close(r)
            if got != b"1":
                self.stop()
                raise RuntimeError(f"HTTP worker {i} did not start; see its messages above")

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        # The loop keeps only weak references to tasks: hold them.
        self._tasks = [self._loop.create_task(_serve_channel(self.app, ch))
                       for ch in self._channels]
        self._loop.run_forever()

    def dead(self) -> list[int]:
        """The indexes of workers that exited."""
        return [i for i, p in enumerate(self.procs) if p.poll() is not None]

    def stop(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after 10 s), then the loop."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        for ch in self._channels:
            ch.close()
        self._channels = []


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (as uvicorn uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _free_port_for(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- a worker process ---------------------------------------------------------------------

def inherited_listener(fd: int) -> socket.socket:
    """The listening TCP socket the ordering process bound, as a socket of its real family.

    Not uvicorn's ``Config(fd=...)``: that wraps the descriptor as ``AF_UNIX`` whatever it
    is, so the event loop takes every accepted connection for a Unix stream and leaves
    Nagle's algorithm on. An answer goes out as two writes (head, then body), and the second
    then waits for the client's delayed ACK: 44 ms a request on a keep-alive connection,
    against under 1 ms with it (one client in a loop; ``bench.server`` for the rates).
    Built here with the family the kernel reports, the loop sets TCP_NODELAY on each
    connection as it does for a socket it bound itself. ValueError if ``fd`` is not TCP."""
    sock = socket.socket(fileno=fd)
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError(f"descriptor {fd} is not a TCP socket")
    return sock


class Bridge:
    """A worker's ASGI application: every HTTP request goes to the ordering process as one
    frame; the answer comes back whole. Nightscout uploads are checked here first."""

    def __init__(self, channel: socket.socket, index: int, on_lost: Any) -> None:
        self._sock = channel
        self._index = index
        self._on_lost = on_lost
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[list[Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Future[None] | None = None
        self._opening: asyncio.Future[asyncio.StreamWriter] | None = None
        self._lost = False
        self._mark = [(b"x-glucoledger-worker", str(index).encode())] if os.environ.get(
            WORKER_HEADER_ENV) == "1" else []

    async def connect(self) -> None:
        """Open the channel now (a worker does at start, so that it sees the ordering
        process go away even before its first request)."""
        await self._connect()

    async def _connect(self) -> asyncio.StreamWriter:
        # Once, however many requests arrive together: one stream over the channel.
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> asyncio.StreamWriter:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock,
                                                                  limit=MAX_FRAME)
        self._reader_task = asyncio.ensure_future(self._read(reader))
        return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                frame = await _read_frame(reader)
                if frame is None:
                    break
                fut = self._pending.pop(int(frame[0]), None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
        except (ValueError, OSError) as exc:
            log.error("the channel to the ordering process failed (%s)", exc)
        self._lost = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the ordering process went away"))
        self._pending.clear()
        self.close()
        self._on_lost()

    def close(self) -> None:
        """Close the channel (the ordering process sees its end close)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        else:
            self._sock.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1011})
            return
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        from ..node.checked import check_upload  # loaded by worker_main

        checked = check_upload(scope["method"], scope["path"], body)
        rid = next(self._ids)
        frame = [rid, scope["method"], scope.get("scheme", "http"), scope["path"],
                 scope.get("raw_path") or scope["path"].encode(),
                 scope.get("query_string", b""),
                 [[k, v] for k, v in scope.get("headers", ())],
                 list(scope["client"]) if scope.get("client") else None,
                 list(scope["server"]) if scope.get("server") else None,
                 scope.get("http_version", "1.1"), body, checked]
        handed = False
        try:
            if self._lost:
                raise ConnectionError("the ordering process went away")
            writer = await self._connect()
            if self._lost:  # lost while connecting
                raise ConnectionError("the ordering process went away")
            fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._pending[rid] = fut
            try:
                writer.write(encode_frame(frame))
            except ValueError:  # over MAX_FRAME: the body limit is far below it
                self._pending.pop(rid, None)
                raise ConnectionError("the request is too large to pass on") from None
            handed = True
            _, status, headers, out = await fut
        except (ConnectionError, OSError):
            status, out = 503, _INTERRUPTED if handed else _UNAVAILABLE
            headers = [[b"content-type", b"application/json"], [b"retry-after", b"60"]]
        out_headers = [(bytes(k), bytes(v)) for k, v in headers]
        if not any(k.lower() == b"content-length" for k, _ in out_headers) \
                and scope["method"] != "HEAD":  # sent whole: say how long (no chunks)
            out_headers.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": status,
                    "headers": out_headers + self._mark})
        await send({"type": "http.response.body", "body": bytes(out)})


def worker_main(argv: Sequence[str] | None = None) -> int:
    """A worker process: ``python -m glucoledger.api.workers --listen-fd ... --channel-fd
    ...`` (started by ``Orderer``, never by hand)."""
    import uvicorn

    # Imported now, before the worker says it is ready: the first upload must not wait for it.
    from ..node.checked import check_upload  # noqa: F401
    from .app import BodyLimit

    ap = argparse.ArgumentParser(prog="glucoledger.api.workers")
    ap.add_argument("--listen-fd", type=int, required=True)
    ap.add_argument("--channel-fd", type=int, required=True)
    ap.add_argument("--ready-fd", type=int, required=True)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--max-body", type=int, default=2 * 1024 * 1024)
    ap.add_argument("--forwarded-allow-ips", default="")
    a = ap.parse_args(argv)
    proxies = [p for p in a.forwarded_allow_ips.split(",") if p]
    channel = socket.socket(fileno=a.channel_fd)
    server: uvicorn.Server | None = None

    def lost() -> None:
        if server is not None:
            server.should_exit = True

    bridge = Bridge(channel, a.index, lost)
    listener = inherited_listener(a.listen_fd)
    config = uvicorn.Config(BodyLimit(bridge, a.max_body), loop="auto",
                            http="auto", lifespan="off", log_level="warning",
                            access_log=False, proxy_headers=bool(proxies),
                            forwarded_allow_ips=proxies or None, ws="none")
    server = uvicorn.Server(config)
    ready_fd = a.ready_fd

    orig_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await bridge.connect()  # watch the channel from the start: exit when it closes
        await orig_startup(sockets)
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    server.startup = startup  # type: ignore[method-assign]
    long_running_gc()
    server.run(sockets=[listener])
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())

"""Nightscout's v1 socket.io channel (AndroidAPS's v1 NSClient), served beside the routes.

What cgm-remote-monitor serves (lib/server/websocket.js) and AndroidAPS's v1 client sends
(plugins/sync/.../nsclient/services/NSClientService.kt, acks/NSAuthAck, NSAddAck,
NSUpdateAck), over Engine.IO 4 / Socket.IO 5 (python-socketio; the client is
socket.io-client-java 2.x):

- ``authorize`` ``{client, secret: sha1hex, token?, history: hours, status, from}`` -> ack
  ``{read, write, write_treatment}``; then ``connected`` and a full ``dataUpdate``.
- ``dbAdd`` ``{collection, data: doc | [docs]}`` -> ack ``[stored docs with _id]``, one per
  document sent (node/nightscout.py); ``dbUpdate`` ``{collection, _id, data}`` (the fields to
  set) and ``dbRemove`` ``{collection, _id}`` -> ack ``{result: "success"}``.
- Refusals answer as Nightscout does, so the client reacts as it does there
  (``{result: "Not authorized" | "Not permitted" | "Wrong collection" | "Missing _id"}``),
  plus ``code`` and a ``message`` that says what to do; never a traceback.
- ``dataUpdate`` pushes to followers: ``interop/nsfeed.py`` (a full set after
  ``authorize``, then deltas).

Invariants, the same as the HTTP routes':

- One credential check (``NightscoutService.authenticate``); an unknown credential is
  answered ``{read: false, ..., error: true}``, logged in the security log, and the socket
  is closed.
- Every write goes through ``NightscoutService.post``/``delete``: the same per-document
  acceptance, gateway-signed batches, versions and refusal log as a POST/PUT/DELETE.
- Every push is a read through ``NightscoutService.read``: decided by consent and ordered
  as an ``access`` transaction *before* the data is emitted (write-ahead). A follower with no
  raw grant, a summary grant, or a revoked grant gets the reason (the read's denial, itself
  audited) and the socket is closed. A collection the grant does not cover is left out of
  the feed for the session (one audited denial at ``authorize``, not one per push).
- Bounded (``SocketLimits``): Engine.IO sessions on this process in all and per client
  address, counted at the handshake. A session over a bound is refused at its socket.io
  connect, with ``{message, data: {code: "too_many_connections"}}`` (the client's
  ``connect_error``, over polling and websocket alike), and the server closes it; beyond
  twice ``connections`` (a flood) the handshake itself is answered 401 with that message (a
  websocket-only client then sees only the refused upgrade); sockets authorized with one
  credential (an ``authorize`` over the bound is answered ``{read: false, ..., code,
  message}`` and the socket closed, the other sockets untouched); and subscriptions per
  connection: one namespace (``/``, the only one served: any other is refused by python-
  socketio) and at most ``authorize_per_connection`` ``authorize`` calls (each is a full
  audited read), over which the ack refuses and the socket keeps its feed. A closed
  connection frees its slots at once. Every refusal is in the security log and says what to
  do.
- Pushes are driven by ``NightscoutService.marker`` (which reads no data): a socket is read
  for again only when its patient's data moved (a committed batch, a version), checked every
  ``interval`` seconds and at once after a write on a socket of this process. A push reads
  only the hours where something changed (``NightscoutService.follow``: new batches, edited,
  moved or deleted documents; the whole window after an erasure), and a collection where
  nothing changed is not read, so a follower's push every 5 minutes lists a batch or two in
  its access record, not 48 hours of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

import socketio  # type: ignore[import-untyped]
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__, jsonin
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    MalformedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from ..interop import nightscout as ns
from ..interop.nsfeed import COLLECTIONS, Feed
from ..interop.nsfields import TIMES
from ..node.nightscout import Binding, Followed, NightscoutService
from .context import ServerContext

__all__ = ["NsSocket", "SocketLane"]

log = logging.getLogger(__name__)

PATH: Final = "/socket.io/"
#: The collections a socket may write (cgm-remote-monitor's also take food and activity,
#: which this node does not keep).
WRITABLE: Final = ("entries", "treatments", "devicestatus", "profile")
MAX_HISTORY_H: Final = 14 * 24
_UNEXPECTED: Final = ("the server failed unexpectedly; nothing was changed by this "
                      "request's failure; report it with the time")


class _TooMany(PermissionDeniedError):
    """A socket.io bound (``SocketLimits``) refused the request: 429 in the security log."""

    http_status = 429
    code = "too_many_connections"


def _now() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """Bounds of the socket.io channel, per server process (``serve --workers N``: each
    worker has its own). AndroidAPS keeps one connection per phone; a household with a few
    phones and followers behind one address stays far below ``per_address``."""

    connections: int = 256
    per_address: int = 16
    per_credential: int = 4
    authorize_per_connection: int = 8


@dataclass
class _Client:
    remote: str | None
    binding: Binding | None = None
    history_ms: int = 48 * 3_600_000
    collections: list[str] = field(default_factory=list)
    feed: Feed = field(default_factory=Feed)
    seen: dict[str, Followed] = field(default_factory=dict)  # by collection: the last read
    credential: tuple[str, str, bytes] | None = None  # (role, account, patient) once bound
    authorized: int = 0  # authorize calls on this connection


class NsSocket:
    """The socket.io server and its push loop, for one ServerContext."""

    def __init__(self, c: ServerContext, *, interval: float = 2.0,
                 limits: SocketLimits | None = None) -> None:
        self.c = c
        self.interval = interval
        self.limits = limits or SocketLimits()
        self._sessions: dict[str, str | None] = {}  # Engine.IO sid -> client address
        self._over_bound: dict[str, str] = {}  # Engine.IO sid -> why it is refused
        # json=jsonin: packets are parsed with bounded nesting, as HTTP bodies are
        self.sio = socketio.AsyncServer(async_mode="asgi", max_http_buffer_size=c.settings.max_body,
                                        logger=False, engineio_logger=False, json=jsonin)
        self.app = socketio.ASGIApp(self.sio, socketio_path=PATH.strip("/"))
        self._clients: dict[str, _Client] = {}
        self._markers: dict[bytes, tuple[int, int]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        for name in ("connect", "disconnect", "authorize", "dbAdd", "dbUpdate", "dbRemove"):
            self.sio.on(name, getattr(self, f"_on_{name}"))
        # The Engine.IO handshake, before socket.io's own handler: the connection bounds.
        self._eio_connect = self.sio.eio.handlers["connect"]
        self._eio_disconnect = self.sio.eio.handlers["disconnect"]
        self.sio.eio.on("connect", self._on_session)
        self.sio.eio.on("disconnect", self._on_session_end)

    @property
    def svc(self) -> NightscoutService:
        svc: NightscoutService = self.c.svc.nightscout
        return svc

    # --- connection bounds ------------------------------------------------------------------
    def _over(self, remote: str | None) -> str | None:
        """Why a new session from ``remote`` would break a bound, or None."""
        lim = self.limits
        if len(self._sessions) >= lim.connections:
            return (f"this server holds its limit of {lim.connections} socket.io "
                    "connections; try again in a minute, or use the REST API "
                    "(/api/v1 or /api/v3), which needs no connection")
        mine = sum(1 for r in self._sessions.values() if r == remote)
        if mine >= lim.per_address:
            return (f"your address already has {mine} socket.io connections, the limit "
                    f"is {lim.per_address}; close one (an app connected twice, a second "
                    "phone) and connect again")
        return None

    async def _on_session(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        client = environ.get("asgi.scope", {}).get("client")
        remote = client[0] if client else None
        why = self._over(remote)
        if why is not None:
            self.c.seclog.record(status=429, code="too_many_connections", who=None,
                                 route="socket.io connect", remote=remote, reason=why)
            if len(self._sessions) + len(self._over_bound) >= 2 * self.limits.connections:
                return {"message": why, "code": "too_many_connections"}
            self._over_bound[eio_sid] = why  # refused, with the reason, at its connect
            self._end_soon(eio_sid, 10.0)  # even if it never asks to connect
        else:
            self._sessions[eio_sid] = remote
        return await self._eio_connect(eio_sid, environ)

    async def _on_session_end(self, eio_sid: str, *args: Any) -> None:
        self._sessions.pop(eio_sid, None)
        self._over_bound.pop(eio_sid, None)
        await self._eio_disconnect(eio_sid, *args)

    def _end_soon(self, eio_sid: str, seconds: float) -> None:
        async def end() -> None:
            await asyncio.sleep(seconds)
            if eio_sid in self.sio.eio.sockets:
                await self.sio.eio.disconnect(eio_sid)
        asyncio.get_running_loop().create_task(end())

    def _credential_full(self, client: _Client, binding: Binding) -> str | None:
        """Why ``client`` may not authorize as ``binding`` now, or None."""
        lim = self.limits
        if client.authorized > lim.authorize_per_connection:
            return (f"this connection already sent authorize {lim.authorize_per_connection} "
                    "times; its feed stays as it is: disconnect and connect again to "
                    "start over")
        key = (binding.role, binding.account, binding.patient)
        holders = sum(1 for c in self._clients.values()
                      if c is not client and c.binding is not None and c.credential == key)
        if holders >= lim.per_credential:
            return (f"this secret or token is already connected {holders} times, the limit "
                    f"is {lim.per_credential}; close the app's other connection (another "
                    "phone or follower using it) or give each its own token")
        return None

    # --- connection and authorization -----------------------------------------------------
    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        why = self._over_bound.get(eio_sid)
        if why is not None:
            self._end_soon(eio_sid, 0.5)  # the client may ignore the refusal
            raise socketio.exceptions.ConnectionRefusedError(
                why, {"code": "too_many_connections"})
        scope = environ.get("asgi.scope", {})
        client = scope.get("client")
        self._clients[sid] = _Client(client[0] if client else None)

    async def _on_disconnect(self, sid: str, *args: Any) -> None:
        self._clients.pop(sid, None)

    def _refused(self, sid: str, event: str, exc: GlucoledgerError, who: str | None) -> None:
        client = self._clients.get(sid)
        self.c.seclog.record(status=exc.http_status, code=exc.code, who=who,
                             route=f"socket.io {event}", remote=client.remote if client else None,
                             reason=exc.message)

    async def _on_authorize(self, sid: str, message: Any = None) -> dict[str, Any]:
        client = self._clients.setdefault(sid, _Client(None))
        message = message if isinstance(message, dict) else {}
        denied = {"read": False, "write": False, "write_treatment": False, "error": True}
        client.authorized += 1
        try:
            secret, token = message.get("secret"), message.get("token")
            binding = self.svc.authenticate(secret if isinstance(secret, str) else None,
                                            token if isinstance(token, str) else None)
        except GlucoledgerError as exc:
            self._refused(sid, "authorize", exc, None)
            self._close_soon(sid)
            return dict(denied, code=exc.code, message=exc.message)
        why = self._credential_full(client, binding)
        if why is not None:
            self._refused(sid, "authorize", _TooMany(why), binding.account)
            if client.binding is None:  # nothing to keep: a refused first authorize closes
                self._close_soon(sid)
            return dict(denied, code="too_many_connections", message=why)
        hours = message.get("history", 48)
        if isinstance(hours, (int, float)) and not isinstance(hours, bool) and hours > 0:
            client.history_ms = int(min(hours, MAX_HISTORY_H) * 3_600_000)
        client.binding = binding
        client.credential = (binding.role, binding.account, binding.patient)
        client.collections = list(COLLECTIONS)
        try:
            data = await self._read(sid, client, full=True)
        except PermissionDeniedError as exc:  # the read's denial is on the ledger
            self._refused(sid, "authorize", exc, binding.account)
            client.binding = None
            self._close_soon(sid)
            return dict(denied, code=exc.code, message=exc.message)
        await self.sio.emit("connected", to=sid)
        if message.get("status"):
            data["status"] = ns.status_doc(
                name=self.c.node.config.name, version=f"15.0.0-glucoledger-{__version__}",
                now_ms=_now())
        await self.sio.emit("dataUpdate", data, to=sid)
        self._markers.setdefault(binding.patient, await asyncio.to_thread(
            self.svc.marker, binding.patient))
        self._start_loop()
        write = binding.role == "upload"
        return {"read": True, "write": write, "write_treatment": write}

    def _close_soon(self, sid: str) -> None:
        async def close() -> None:
            await asyncio.sleep(0.2)  # after the ack is on its way
            await self.sio.disconnect(sid)
        asyncio.get_running_loop().create_task(close())

    # --- reads and pushes -------------------------------------------------------------------
    async def _read(self, sid: str, client: _Client, *, full: bool) -> dict[str, Any]:
        """What ``client`` may read now, as a ``dataUpdate`` payload (a delta unless
        ``full``). Each collection's read is decided and audited before anything is
        returned; a delta reads only what may have changed (``NightscoutService.follow``).
        Raises PermissionDeniedError when no collection may be read."""
        binding = client.binding
        assert binding is not None
        since = _now() - client.history_ms
        out: dict[str, Any] = {} if full else {"delta": True}
        readable = []
        last: PermissionDeniedError | None = None
        for col in client.collections:
            try:
                docs, spans, seen = await asyncio.to_thread(
                    self.svc.follow, binding, col, since, None if full else client.seen.get(col))
            except PermissionDeniedError as exc:
                last = exc
                if full:  # not covered by the grant: left out for this session
                    continue
                raise
            readable.append(col)
            client.seen[col] = seen
            if docs is not None:
                out.update(client.feed.delta(col, docs, full=full, since_ms=since,
                                             spans=spans))
        if not readable and last is not None:
            raise last
        client.collections = readable
        out["lastUpdated"] = _now()
        return out

    def _start_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while any(c.binding for c in self._clients.values()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self._tick()
            except Exception:  # noqa: BLE001 - the loop outlives one bad round
                log.exception("nightscout socket push round failed")

    async def _tick(self) -> None:
        patients = {c.binding.patient for c in self._clients.values() if c.binding}
        for patient in patients:
            marker = await asyncio.to_thread(self.svc.marker, patient)
            if self._markers.get(patient) == marker:
                continue
            self._markers[patient] = marker
            for sid, client in list(self._clients.items()):
                if client.binding is not None and client.binding.patient == patient:
                    await self._push(sid, client)

    async def _push(self, sid: str, client: _Client) -> None:
        try:
            data = await self._read(sid, client, full=False)
        except RateLimitedError:
            # Over the credential's read budget (node/readguard.py): nothing was read or
            # recorded; this feed stays open and its patient is looked at again next round.
            if client.binding is not None:
                self._markers.pop(client.binding.patient, None)
            return
        except PermissionDeniedError as exc:
            # Access ended (revoked, expired, narrowed): the denial is audited; say why.
            assert client.binding is not None
            self._refused(sid, "dataUpdate", exc, client.binding.account)
            client.binding = None
            await self.sio.emit("announcement", {
                "level": 2, "title": "Access ended", "message": exc.message,
                "code": exc.code, "isAnnouncement": True, "group": "Announcement"}, to=sid)
            self._close_soon(sid)
            return
        if set(data) - {"delta", "lastUpdated"}:
            await self.sio.emit("dataUpdate", data, to=sid)

    # --- writes -----------------------------------------------------------------------------
    def _check(self, sid: str, event: str, data: Any) -> tuple[Binding, str] | dict[str, Any]:
        """(binding, collection), or the answer Nightscout gives (``checkConditions``)."""
        client = self._clients.get(sid)
        if not isinstance(data, dict) or data.get("collection") not in (*WRITABLE, "food",
                                                                          "activity"):
            return {"result": "Wrong collection", "code": "bad_input", "message": (
                f"{event} takes {{collection, data}} with collection one of "
                f"{', '.join(WRITABLE)}")}
        collection = str(data["collection"])
        if client is None or client.binding is None:
            exc: GlucoledgerError = AuthenticationError(
                "send authorize with your API secret (SHA-1 hex) before writing")
            self._refused(sid, event, exc, None)
            return {"result": "Not authorized", "code": exc.code, "message": exc.message}
        if client.binding.role != "upload":
            exc = PermissionDeniedError("this token may read (through a grant), not write; "
                                        "uploaders use their own API secret")
            self._refused(sid, event, exc, client.binding.account)
            return {"result": "Not permitted", "code": exc.code, "message": exc.message}
        if collection not in WRITABLE:
            return {"result": "Wrong collection", "code": "bad_input", "message": (
                f"this node keeps no {collection}; send {', '.join(WRITABLE)}")}
        if event != "dbAdd" and not isinstance(data.get("_id"), str):
            return {"result": "Missing _id", "code": "bad_input",
                    "message": f"{event} needs the _id of the document"}
        return client.binding, collection

    async def _answer(self, sid: str, event: str, data: Any) -> Any:
        checked = self._check(sid, event, data)
        if isinstance(checked, dict):
            return checked
        binding, collection = checked
        try:
            if event == "dbAdd":
                answer: Any = await asyncio.wrap_future(self.svc.post(
                    binding, collection, data.get("data"), _now()))
            elif event == "dbUpdate":
                answer = await self._update(binding, collection, data)
            else:
                result = await asyncio.to_thread(self.svc.delete, binding, collection,
                                                 ns.parse_query(collection,
                                                                [("find[_id]", data["_id"])]))
                answer = {"result": "success", "n": result["n"]}
        except GlucoledgerError as exc:
            self._refused(sid, event, exc, binding.account)
            return {"result": exc.message, "code": exc.code, "message": exc.message}
        self._markers.pop(binding.patient, None)
        self._wake.set()
        return answer

    async def _update(self, binding: Binding, collection: str, data: dict[str, Any]
                      ) -> dict[str, Any]:
        """Nightscout's ``$set``: the fields sent over the current document, as its next
        version (the same path as a PUT with its ``_id``)."""
        fields = data.get("data")
        if not isinstance(fields, dict):
            raise MalformedError("dbUpdate's data is an object of the fields to set")
        found = await asyncio.to_thread(self.svc.read, binding, collection, ns.parse_query(
            collection, [("find[_id]", data["_id"])]))
        if not found:
            raise NotFoundError(f"no {collection} document with _id {data['_id'][:24]!r}: "
                                "add it with dbAdd")
        current = found[0]
        if collection in TIMES and any(t in fields for t in TIMES[collection]):
            current = {k: v for k, v in current.items() if k not in TIMES[collection]}
        doc = {**current, **fields, "_id": current["_id"]}
        [stored] = await asyncio.wrap_future(self.svc.post(binding, collection, [doc], _now(),
                                                           replace=True))
        if "glucoledger" in stored:
            return {"result": stored["glucoledger"]["reason"], "code": "bad_input",
                    "message": stored["glucoledger"]["reason"]}
        return {"result": "success"}

    async def _on_dbAdd(self, sid: str, data: Any = None) -> Any:
        return await self._guarded(sid, "dbAdd", data)

    async def _on_dbUpdate(self, sid: str, data: Any = None) -> Any:
        return await self._guarded(sid, "dbUpdate", data)

    async def _on_dbRemove(self, sid: str, data: Any = None) -> Any:
        return await self._guarded(sid, "dbRemove", data)

    async def _guarded(self, sid: str, event: str, data: Any) -> Any:
        try:
            return await self._answer(sid, event, data)
        except Exception:  # noqa: BLE001 - an ack, never a traceback, for the client
            log.exception("socket.io %s failed", event)
            return {"result": _UNEXPECTED, "code": "internal", "message": _UNEXPECTED}


class SocketLane:
    """Requests under ``/socket.io/`` to the socket.io server, everything else to the app
    (inside the body limit and security headers, like the upload lane)."""

    def __init__(self, app: ASGIApp, channel: NsSocket) -> None:
        self.app = app
        self.channel = channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("path", "").startswith(PATH):
            await self.channel.app(scope, receive, send)
            return
        await self.app(scope, receive, send)

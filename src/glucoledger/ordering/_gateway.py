"""A small client for etcd's v3 JSON gateway (grpc-gateway in front of the KV API).

Private to ``glucoledger.ordering``; :class:`glucoledger.ordering.etcd.EtcdOrderer` turns every
:class:`GatewayError` into an OrderingError with a message a person can act on.

What the etcd 3.4 gateway does that is easy to trip over (all checked against 3.4.23):
- every request is ``POST`` with a JSON body, even reads; keys and values are base64;
- 64-bit integers (revisions, counts) travel as JSON *strings*;
- proto3 defaults are left out: a failed txn has no ``succeeded`` field, an empty range has no
  ``kvs`` and no ``count``, revision 0 and ``leader`` 0 are absent;
- errors come back as HTTP 4xx/5xx with ``{"error", "message", "code"}`` where ``code`` is the
  gRPC status code (3 invalid argument, 4 deadline exceeded, 11 compacted, 14 unavailable);
- ``/v3/watch`` answers with newline-delimited JSON objects, each wrapped in ``{"result": ...}``;
- without quorum a write is not refused but hangs until etcd's own timeout (about 5 s plus
  two election timeouts), so every request here carries a client-side deadline.

TLS: ``etcd://host:port,...?tls=DIR`` speaks HTTPS to every member, verifies the members'
certificates against ``DIR/trust.pem`` (the consortium's bundle of member CAs) and presents
``DIR/node.pem`` / ``DIR/node.key`` as this node's client certificate (etcd started with
``--client-cert-auth`` refuses connections without one from a trusted CA).

Users (etcd auth, ``ordering.etcd_rbac``): when ``DIR/etcd-user.json`` exists (``{"user",
"password"}``, mode 0600), the client presents ``DIR/etcd-client.pem`` / ``etcd-client.key``
instead (a certificate with no CommonName: etcd 3.4's gateway refuses CN certificates once
auth is on), authenticates (``/v3/auth/authenticate``) and sends the token in the
``Authorization`` header of every request; a token etcd no longer accepts (gRPC code 16,
expired or its user deleted) is renewed once per call. The password never appears in a
message or a repr.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Gateway", "GatewayError", "Reply", "TlsFiles", "b64", "parse_endpoint",
           "parse_etcd_url", "unb64"]

#: gRPC status codes worth retrying on another member (or later on the same one).
_TRANSIENT_CODES = frozenset({1, 4, 10, 14})  # canceled, deadline, aborted, unavailable

JSON = dict[str, Any]


class GatewayError(Exception):
    """A request failed. ``transient``: another member, or a later try, may succeed."""

    def __init__(self, message: str, *, code: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Reply:
    body: JSON
    #: True when an earlier attempt of this same request may have reached etcd (it timed out or
    #: the connection dropped after sending); a write may then have been applied already.
    maybe_applied_before: bool


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """CA bundle to verify the members by; this node's certificate and key (None: present
    no client certificate)."""

    ca: str
    cert: str | None = None
    key: str | None = None
    #: etcd user and password (auth enabled); the password is never shown.
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def in_dir(cls, folder: str) -> TlsFiles:
        """The identity in ``folder``: an etcd user's (``etcd-user.json``) if present."""
        account = Path(folder) / "etcd-user.json"
        try:
            doc = json.loads(account.read_text())
        except FileNotFoundError:
            return cls(f"{folder}/trust.pem", f"{folder}/node.pem", f"{folder}/node.key")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{account} is unreadable ({type(exc).__name__}): restore it "
                             "from the member's backup or re-create the member's etcd "
                             "user") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("user"), str) or \
                not isinstance(doc.get("password"), str):
            raise ValueError(f"{account} must hold {{\"user\": ..., \"password\": ...}}")
        return cls(f"{folder}/trust.pem", f"{folder}/etcd-client.pem",
                   f"{folder}/etcd-client.key", doc["user"], doc["password"])

    def context(self) -> ssl.SSLContext:
        """A client context (TLS 1.2+, hostname checked). Raises ValueError on bad files."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_verify_locations(self.ca)
            if self.cert is not None:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"etcd TLS files unusable ({exc}): expected trust.pem, node.pem "
                             "and node.key from `glucoledger consortium keys`") from None
        return ctx


def parse_etcd_url(url: str) -> tuple[list[str], TlsFiles | None]:
    """``etcd://host:port[,host:port...][?tls=DIR]`` -> (endpoints, TLS files or None)."""
    scheme, sep, rest = url.partition("://")
    if scheme != "etcd" or not sep:
        raise ValueError(f"{url!r} is not an etcd URL; expected etcd://host:port[,host:port]")
    rest, _, query = rest.partition("?")
    tls = None
    if query:
        key, _, value = query.partition("=")
        if key != "tls" or not value:
            raise ValueError(f"{url!r}: the only option is ?tls=FOLDER")
        tls = TlsFiles.in_dir(value)
    endpoints = [e for e in rest.rstrip("/").split(",") if e]
    if not endpoints:
        raise ValueError(f"{url!r} names no endpoint; expected etcd://host:port[,host:port]")
    return endpoints, tls


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``http(s)://host:port`` or ``host:port`` -> (host, port)."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"etcd endpoint {endpoint!r}: use host:port")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"etcd endpoint {endpoint!r} needs a host and a port, like 127.0.0.1:2379")
    if parts.path not in ("", "/"):
        raise ValueError(f"etcd endpoint {endpoint!r} must not carry a path")
    return parts.hostname, parts.port


class Gateway:
    """Keep-alive connections per thread, failover across endpoints, a deadline per call."""

    def __init__(self, endpoints: Sequence[str], timeout: float,
                 tls: TlsFiles | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self._tls = tls
        self._ssl = tls.context() if tls is not None else None
        self._tls_stamp = _stamp(tls)
        self._ssl_generation = 0
        self._account = (tls.user, tls.password) if tls is not None and tls.user and \
            tls.password is not None else None
        self._token: str | None = None
        self._preferred = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all_conns: list[http.client.HTTPConnection] = []
        self._closed = False

    @property
    def preferred(self) -> int:
        """The endpoint that answered last; calls start there."""
        return self._preferred

    def call_one(self, i: int, path: str, body: JSON, *, timeout: float) -> JSON:
        """One attempt at endpoint ``i`` only (for health probes)."""
        payload = json.dumps(body).encode()
        try:
            return self._post(i, path, payload, timeout)
        except _Sent as exc:
            raise exc.error from exc

    # -- one request, failing over -------------------------------------------------------------

    def call(self, path: str, body: JSON, *, deadline: float | None = None) -> Reply:
        """POST ``body`` to ``path``, trying each endpoint in turn until ``deadline``.

        Raises GatewayError: transient when the deadline passed without an answer, or at once
        (not transient) when etcd refused the request itself.
        """
        if self._closed:
            raise GatewayError("the etcd orderer was closed", transient=False)
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        if self._account is not None and path != "/v3/auth/authenticate":
            if self._token is None:
                self._authenticate(deadline)
            try:
                return self._call(path, body, deadline)
            except GatewayError as exc:
                if exc.code != 16:  # 16 unauthenticated: the token expired or was revoked
                    raise
                self._token = None
                self._authenticate(deadline)
        return self._call(path, body, deadline)

    def _authenticate(self, deadline: float) -> None:
        """Get a token for this client's etcd user. Raises GatewayError (not transient
        when etcd refuses the user or the password)."""
        assert self._account is not None
        user, password = self._account
        reply = self._call("/v3/auth/authenticate", {"name": user, "password": password},
                           deadline)
        token = reply.body.get("token")
        if not isinstance(token, str) or not token:
            raise GatewayError(f"etcd gave no token to user {user!r}: is auth enabled?",
                               transient=False)
        self._token = token

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = self._token
        return headers

    def _call(self, path: str, body: JSON, deadline: float) -> Reply:
        payload = json.dumps(body, separators=(",", ":")).encode()
        n = len(self.endpoints)
        maybe_applied = False
        last: GatewayError | None = None
        rounds = 0
        while True:
            start = self._preferred
            for k in range(n):
                i = (start + k) % n
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Never give one member the whole budget: a hung member must not stop failover.
                per_try = min(remaining, max(0.5, self.timeout / 2)) if n > 1 else remaining
                try:
                    result = self._post(i, path, payload, per_try)
                except _Sent as exc:
                    maybe_applied = True
                    last = exc.error
                    continue
                except GatewayError as exc:
                    if not exc.transient:
                        raise
                    last = exc
                    continue
                self._preferred = i
                return Reply(result, maybe_applied)
            rounds += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.05 * min(rounds, 4)))
        if last is None:
            last = GatewayError("no time left to ask etcd", transient=True)
        raise GatewayError(str(last), code=last.code, transient=True) from last

    def _conn(self, i: int, timeout: float) -> http.client.HTTPConnection:
        conns: dict[int, http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        self._reload_tls()
        conn = conns.get(i)
        if conn is not None and getattr(conn, "_gl_generation", 0) != self._ssl_generation:
            self._drop(i)  # made with an identity since replaced: reconnect with the new one
            conn = None
        if conn is None:
            host, port = self.endpoints[i]
            conn = self._new_conn(host, port, timeout)
            conns[i] = conn
            with self._lock:
                self._all_conns.append(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _reload_tls(self) -> None:
        """Rebuild the TLS context when the files changed (a certificate rotated by
        governance, ``node.tlsrotation``): new connections use the new identity and trust.
        Unusable new files keep the old context (the next call tries again)."""
        if self._tls is None:
            return
        stamp = _stamp(self._tls)
        if stamp == self._tls_stamp:
            return
        try:
            context = self._tls.context()
        except ValueError:
            return
        with self._lock:
            self._ssl, self._tls_stamp = context, stamp
            self._ssl_generation += 1

    def _new_conn(self, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn._gl_generation = self._ssl_generation  # type: ignore[attr-defined]
        return conn

    def _drop(self, i: int) -> None:
        conns: dict[int, http.client.HTTPConnection] = getattr(self._local, "conns", {})
        conn = conns.pop(i, None)
        if conn is not None:
            conn.close()
            with self._lock:
                if conn in self._all_conns:
                    self._all_conns.remove(conn)

    def _post(self, i: int, path: str, payload: bytes, timeout: float) -> JSON:
        name = f"{self.endpoints[i][0]}:{self.endpoints[i][1]}"
        conn = self._conn(i, timeout)
        sent = False
        try:
            if conn.sock is None:
                conn.connect()
            conn.request("POST", path, body=payload, headers=self._headers())
            sent = True
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            self._drop(i)
            err = GatewayError(f"{name}: {type(exc).__name__}: {exc}", transient=True)
            if sent:
                raise _Sent(err) from exc
            raise err from exc
        return _decode(name, status, data)

    # -- streaming (watch) ---------------------------------------------------------------------

    def stream(self, i: int, path: str, body: JSON, deadline: float) -> Generator[JSON, None, None]:
        """Yield the JSON objects of a streaming response until ``deadline`` (then TimeoutError).

        Uses its own connection, closed when the iterator is closed or exhausted.
        """
        host, port = self.endpoints[i]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed before the watch started")
        self._reload_tls()
        conn = self._new_conn(host, port, remaining)
        try:
            conn.request(
                "POST",
                path,
                body=json.dumps(body).encode(),
                headers=self._headers(),
            )
            sock = conn.sock
            resp = conn.getresponse()
            if resp.status != 200:
                _decode(f"{host}:{port}", resp.status, resp.read())
                raise GatewayError(f"{host}:{port}: HTTP {resp.status}", transient=True)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("watch deadline passed")
                if sock is not None:
                    sock.settimeout(remaining)
                try:
                    line = resp.readline()
                except http.client.HTTPException as exc:
                    raise GatewayError(
                        f"{host}:{port}: watch broke: {exc!r}", transient=True
                    ) from exc
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all_conns = self._all_conns, []
        for conn in conns:
            conn.close()


def _stamp(tls: TlsFiles | None) -> tuple[int, ...]:
    """When the TLS files last changed (0 for a missing one)."""
    if tls is None:
        return ()
    out = []
    for name in (tls.ca, tls.cert, tls.key):
        try:
            out.append(Path(name).stat().st_mtime_ns if name else 0)
        except OSError:
            out.append(0)
    return tuple(out)


class _Sent(Exception):
    """The request left this process and then the connection failed: outcome unknown."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(str(error))
        self.error = error


def _decode(name: str, status: int, data: bytes) -> JSON:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = None
    if status == 200 and isinstance(body, dict):
        return body
    if isinstance(body, dict) and "error" in body:
        code = body.get("code")
        code = int(code) if isinstance(code, int | str) and str(code).isdecimal() else None
        message = str(body.get("message") or body.get("error"))
        raise GatewayError(
            f"{name}: {message} (gRPC code {code})",
            code=code,
            transient=code in _TRANSIENT_CODES or status >= 500 and code is None,
        )
    snippet = data[:200].decode("utf-8", "replace").strip()
    raise GatewayError(
        f"{name}: HTTP {status} {snippet!r} (is this an etcd 3.4+ client URL?)",
        transient=status >= 500,
    )

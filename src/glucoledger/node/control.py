"""A node's control endpoint (HTTP on 127.0.0.1, or HTTPS with mutual TLS on a host the other
members reach) and its client.

``glucoledger node`` serves it so that other processes (the CLI, tests, the benchmark, peers
fetching blocks) can use a running node without opening its store:

- ``POST /submit``: body = CBOR list of transaction envelopes (at most ``_MAX_SUBMIT`` bytes,
  read only after the certificate, the signature's key and its time were checked; ``submit``
  splits a longer list); answer JSON
  ``{"receipts": [{"tx_hash", "index", "height", "code", "message"}]}`` once they are in
  blocks on this node (or ``{"error", "code"}`` with the error's HTTP status). Idempotent
  per envelope (``Node.submit(retry=True)``): a client that lost the answer submits again;
- ``GET /status``: the node's ``Status`` as JSON (height, final checkpoint, divergences,
  the members in force);
- ``GET /checkpoint`` (``?final=1`` for the cosigned one): the C2SP note;
- ``GET /blocks?from=H``: a block export (``blockexport.export_blocks``) up to the final
  checkpoint, for a peer catching up past compaction.

Node to node (``/submit``, ``/blocks``, ``/status``): the request must be signed (RFC 9421
HTTP Message Signatures, ``crypto.httpsig``: ``@method``, ``@target-uri``, ``created``,
``nonce``, ``keyid``; ``content-digest``, RFC 9530, over a body) by the node key of a member
**in force at this node's height** as the ledger records it (``node.peerauth``), not by
just any key a member once held. No signature, a bad one, a replayed nonce or a key the
ledger never named: 401 and nothing learned. A verified signature by a removed member's key:
403 "org-2 was removed from the consortium at height h" (by a key replaced by
``gov.rotate_key``: 403 naming the height). Either way nothing is served or ordered, and the
refusal is logged (path, caller address, reason; never a header). The organization's tools
sign with the node key of their member folder. ``/checkpoint`` is public read-only. A node
that stopped answers everything at once with 503 and its reason (``/status`` still, to a
member: it says why). The error table maps error codes to HTTP statuses; the client turns
them back into errors of the same kind.

Across machines (``glucoledger node --host a.example.org``; ``--tls`` on loopback too):
nothing leaves the machine in the clear. The endpoint serves TLS 1.2+ with the member's node
certificate (``tls/node.pem``, whose subject alternative names must name the host: `consortium
keys --host`), and asks every client for a certificate issued by a member CA of the
consortium's trust bundle (``tls/trust.pem``, from the genesis). A certificate from another CA
fails the handshake; the node-to-node routes also refuse a client that presented none (401,
before the signature is looked at), while ``/checkpoint`` stays public. The client verifies
the node's certificate against the same bundle and host name, and presents its own member
certificate: ``tls`` (a member folder's ``tls/``) in ``submit``, ``get_status``,
``fetch_blocks``. TLS is the transport's guard (confidentiality, the server's identity, only
member organizations connect); the signature stays the authorization (which member in force,
at this node's height). Handshakes run on the request's thread with a timeout, so a client
that stalls one does not hold up the others. What governance changes in ``tls/`` (a
removed member's CA leaves the bundle, a rotated identity comes in: ``tlsrotation``) holds
for the next connection, without a restart.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import codec, jsonin
from ..crypto import PrivateKey, PublicKey
from ..crypto.httpsig import NonceCache, claimed_key_id, sign_request, verify_request
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    InputError,
    MalformedError,
    NotFoundError,
    OrderingError,
    PermissionDeniedError,
    RejectedError,
    SignatureError,
)
from ..files import atomic_write
from ..ledger.tx import MAX_TX_BYTES
from .blockexport import export_blocks
from .consortium import ConsortiumNode

__all__ = ["ControlServer", "client_context", "fetch_blocks", "get_status", "is_loopback",
           "server_context", "submit"]


#: The largest submit body: 16 transactions of the largest size (``MAX_TX_BYTES``, 256 KiB)
#: and their CBOR framing; ``submit`` splits a longer list into several requests. Read only
#: after the caller's certificate and its signature's key and time were checked.
_MAX_SUBMIT = 16 * MAX_TX_BYTES + 4096
#: Requests handled at once (one thread each); a connection beyond them is closed at once.
_MAX_REQUESTS = 64
#: Seconds a client has to complete the TLS handshake and send its request.
_HANDSHAKE_S = 30.0
#: The files of a member folder's ``tls/`` the endpoint and its clients use.
_TLS_FILES = ("trust.pem", "node.pem", "node.key")
log = logging.getLogger("glucoledger.control")
#: Error classes by HTTP status, so that a refusal keeps its kind (and the CLI's exit code).
_BY_STATUS: dict[int, type[GlucoledgerError]] = {
    400: InputError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: RejectedError}


def _refuse_if_stopped(cn: ConsortiumNode) -> None:
    """A stopped node answers at once (503, the reason), never after a timeout."""
    if cn.status.refusing:
        # A cut from the future names its own remedy (clock or log); the rest is the store's.
        todo = ("" if cn.refused_what in ("cut_from_future", "genesis_mismatch") else
                "; its operator must restore its store (`glucoledger consortium rejoin`)")
        raise OrderingError(f"this node stopped and refuses to work: {cn.status.refusing}. "
                            f"Submit to another member{todo}", code="node_stopped")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) stays on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_files(tls: Path) -> tuple[Path, Path, Path]:
    """(trust bundle, node certificate, node key) of a member folder's ``tls/``. Raises
    InputError naming what is missing and how to make it."""
    paths = tuple(Path(tls) / f for f in _TLS_FILES)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{tls} lacks {', '.join(missing)}: a member folder made by "
                         "`glucoledger consortium keys` and initialized from the genesis file "
                         "has them (tls/trust.pem comes from the genesis)")
    return paths[0], paths[1], paths[2]


def server_context(tls: Path, host: str) -> ssl.SSLContext:
    """The endpoint's TLS context: the member's node certificate, which must name ``host``;
    client certificates from the trust bundle's member CAs (optional at the handshake, so
    ``/checkpoint`` stays public; required by the node-to-node routes). Raises InputError."""
    from ..crypto.tls import hosts_of

    trust, cert, key = _tls_files(tls)
    named = hosts_of(cert.read_bytes())
    if host not in named:
        raise InputError(f"the node certificate {cert} names {', '.join(named)}, not {host}: "
                         "clients would refuse it. Serve on one of those names, or make the "
                         "member's keys with `consortium keys --host " + host + "`")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=str(trust))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(tls: Path) -> ssl.SSLContext:
    """A client's TLS context: the node's certificate must chain to a member CA of the trust
    bundle and name the host; the caller presents its own member certificate. Raises
    InputError."""
    trust, cert, key = _tls_files(tls)
    ctx = ssl.create_default_context(cafile=str(trust))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _HANDSHAKE_S  # a client that stalls is dropped, not waited on

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc: GlucoledgerError) -> None:
        self._send(exc.http_status, json.dumps({"error": exc.message, "code": exc.code}).encode())

    def do_POST(self) -> None:
        cn = self.server.cnode
        try:
            if urlsplit(self.path).path != "/submit":
                raise NotFoundError(f"no route {self.path}")
            _refuse_if_stopped(cn)
            self._claimed_member()  # before a byte of the body is read
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise MalformedError("Content-Length is not a number") from None
            if not 0 <= length <= _MAX_SUBMIT:
                self.close_connection = True  # the body is not read
                raise MalformedError(f"a submit is at most {_MAX_SUBMIT} bytes: send fewer "
                                     "transactions a request")
            raw = self.rfile.read(length)
            self._member_signed(raw)
            envelopes = codec.decode(raw, max_size=_MAX_SUBMIT)
            if not isinstance(envelopes, list) or not all(isinstance(e, bytes) for e in envelopes):
                raise MalformedError("submit takes a CBOR list of envelopes")
            receipts = cn.node.submit(envelopes, retry=True)
            self._send(200, json.dumps({"receipts": [
                {"tx_hash": None if r.tx_hash is None else r.tx_hash.hex(), "index": r.index,
                 "height": r.height, "code": r.result.code, "message": r.result.message}
                for r in receipts]}).encode())
        except GlucoledgerError as exc:
            self._error(exc)

    def _refuse(self, exc: GlucoledgerError) -> GlucoledgerError:
        """Log a refusal of this request (path, caller, reason; never a header)."""
        log.warning("refused %s %s from %s: %s", self.command, urlsplit(self.path).path,
                    self.client_address[0], exc.message)
        return exc

    def _require_certificate(self) -> None:
        if self.server.tls is not None and not self.connection.getpeercert():
            log.warning("refused %s %s from %s: no client certificate", self.command,
                        urlsplit(self.path).path, self.client_address[0])
            self.close_connection = True
            raise AuthenticationError("present your member's TLS certificate (the member "
                                      "folder's tls/node.pem): this route is for members")

    def _require_members_known(self) -> None:
        cn = self.server.cnode
        if not cn.peers.current:
            if cn.status.refusing:  # before its genesis: not a verdict on the caller
                raise OrderingError(f"this node stopped and refuses to work: "
                                    f"{cn.status.refusing}", code="node_stopped")
            # Not a verdict on the caller: before its genesis block a node cannot tell
            # members from strangers. Transient (503); the client retries.
            raise OrderingError("this node has not derived the consortium's genesis block "
                                "yet, so it cannot check who signed the request; retry in a "
                                "moment", code="node_not_ready")

    def _claimed_member(self) -> None:
        """What can be judged before reading a body: the client certificate (under TLS),
        and a signature whose ``created`` is fresh and whose ``keyid`` names a key the
        ledger gave a member (in force, or former: its holder learns why once the signature
        verifies). A stranger is refused (401) without the node holding its body; the
        signature itself is verified over the body afterwards (``_member_signed``)."""
        self._require_certificate()
        self._require_members_known()
        peers = self.server.cnode.peers
        try:
            key_id = claimed_key_id({k.lower(): v for k, v in self.headers.items()})
        except SignatureError as exc:
            self.close_connection = True
            raise self._refuse(AuthenticationError(exc.message)) from None
        if key_id not in peers.current and key_id not in peers.former:
            self.close_connection = True
            raise self._refuse(AuthenticationError(
                "the request is not signed by the node key of a current member of this "
                "consortium"))

    def _member_signed(self, body: bytes = b"") -> str:
        """The member in force whose node key signed this request (``node.peerauth``).

        Raises AuthenticationError (401: unsigned, bad or replayed signature, a key the
        ledger never named), PermissionDeniedError (403: a verified signature by a removed
        member's key or a replaced key, with the height), OrderingError (503: the node
        cannot tell members from strangers yet). Every refusal is logged: the path, the
        caller's address and, for a verified former key, whose it was; never a header."""
        path = urlsplit(self.path).path
        self._require_certificate()
        self._require_members_known()
        peers = self.server.cnode.peers

        def lookup(key_id: bytes) -> PublicKey:
            found = peers.current.get(key_id)
            if found is not None:
                return found.key
            if key_id in peers.former:
                # Checked like a current key: only the key's holder learns why it is refused.
                return peers.former[key_id].key
            raise AuthenticationError("the request is not signed by the node key of a "
                                      "current member of this consortium")

        try:
            signed = verify_request(
                method=self.command, target_uri=self.server.url + self.path, path=path,
                headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                lookup=lookup, nonces=self.server.nonces)
        except SignatureError as exc:  # unsigned, stale, replayed: not authenticated (401)
            log.warning("refused %s %s from %s: %s", self.command, path,
                        self.client_address[0], exc.message)
            raise AuthenticationError(exc.message) from None
        except AuthenticationError as exc:
            log.warning("refused %s %s from %s: %s", self.command, path,
                        self.client_address[0], exc.message)
            raise
        former = peers.former.get(signed.key_id)
        if former is not None:
            log.warning("refused %s %s from %s: %s", self.command, path,
                        self.client_address[0], former.message())
            raise PermissionDeniedError(former.message(),
                                        code="removed_member" if former.removed
                                        else "replaced_key")
        return peers.current[signed.key_id].name

    def do_GET(self) -> None:
        cn = self.server.cnode
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/status":  # a stopped node still says why, to its members
                self._member_signed()
                doc = dict(cn.status.__dict__, etcd_requests=cn.etcd_requests())
                self._send(200, json.dumps(doc).encode())
                return
            _refuse_if_stopped(cn)
            if url.path == "/checkpoint":
                if query.get("final"):
                    if cn.final is None:
                        raise NotFoundError("no final checkpoint yet")
                    self._send(200, cn.final.note, "text/plain; charset=utf-8")
                else:
                    self._send(200, cn.node.checkpoint(), "text/plain; charset=utf-8")
            elif url.path == "/blocks":
                self._member_signed()
                raw_start = query.get("from", ["0"])[0]
                if not raw_start.isdecimal():
                    raise MalformedError("from= is a block height (a number)")
                start = int(raw_start)
                self._send(200, export_blocks(cn.node, start), "application/cbor")
            else:
                raise NotFoundError(f"no route {url.path}")
        except GlucoledgerError as exc:
            self._error(exc)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    cnode: ConsortiumNode
    url: str
    nonces: NonceCache
    tls: _TlsState | None = None
    #: Free request slots (``_MAX_REQUESTS``); made per server.
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per request, at most ``_MAX_REQUESTS`` at once: a connection beyond
        them is closed at once (the client retries) rather than given a thread."""
        if not self.slots.acquire(blocking=False):
            log.warning("refused a connection from %s: %d requests already in progress",
                        client_address[0], _MAX_REQUESTS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """On the request's own thread: the TLS handshake (bounded by the handler's
        timeout), then the request. A failed handshake (no common protocol, a certificate
        from another CA) closes the connection; it never reaches a handler."""
        if self.tls is not None:
            request.settimeout(_HANDSHAKE_S)
            try:
                request = self.tls.context().wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s failed: %s", client_address[0],
                         type(exc).__name__)
                request.close()
                return
        super().finish_request(request, client_address)


class _TlsState:
    """The endpoint's TLS context, rebuilt when ``tls/`` changes under it: governance writes
    a new trust bundle at a removal's or a rotation's height (``tlsrotation``) and swaps in
    the member's next identity, so a removed member's CA stops completing the handshake
    here from that height, without a restart. Checked per connection (three ``stat``s); a
    half-written change (certificate and key not yet a pair) keeps the last good context
    until the next connection."""

    def __init__(self, tls: Path, host: str) -> None:
        self.tls, self.host = Path(tls), host
        self._lock = threading.Lock()
        self._seen = self._signature()
        self._ctx = server_context(self.tls, host)

    def _signature(self) -> tuple[tuple[int, int], ...]:
        out = []
        for name in _TLS_FILES:
            try:
                st = (self.tls / name).stat()
            except OSError:
                return ()
            out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def context(self) -> ssl.SSLContext:
        seen = self._signature()
        with self._lock:
            if seen and seen != self._seen:
                try:
                    self._ctx = server_context(self.tls, self.host)
                    self._seen = seen
                    log.warning("control endpoint: TLS files changed; new trust bundle and "
                                "identity in force")
                except (GlucoledgerError, ssl.SSLError, OSError) as exc:
                    log.warning("control endpoint: TLS files changed but do not load yet "
                                "(%s); keeping the previous ones", type(exc).__name__)
            return self._ctx


class _Server6(_Server):
    address_family = socket.AF_INET6


class ControlServer:
    """Serve ``cnode`` on ``host``:``port`` (0: any free port) in a background thread, over
    TLS when ``tls`` (a member folder's ``tls/``) is given: required off this machine."""

    def __init__(self, cnode: ConsortiumNode, port: int = 0, *, host: str = "127.0.0.1",
                 tls: Path | None = None) -> None:
        if tls is None and not is_loopback(host):
            raise InputError(f"{host} is reachable from other machines: the control endpoint "
                             "serves it over TLS only (the member folder's tls/)")
        state = None if tls is None else _TlsState(tls, host)
        try:
            self.httpd = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.httpd.cnode = cnode
        self.httpd.tls = state
        shown = f"[{host}]" if ":" in host else host
        self.url = (f"{'https' if state else 'http'}://{shown}:"
                    f"{self.httpd.server_address[1]}")
        self.httpd.url = self.url
        self.httpd.nonces = NonceCache()
        self.httpd.slots = threading.BoundedSemaphore(_MAX_REQUESTS)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _context(url: str, tls: Path | None) -> ssl.SSLContext | None:
    if not url.startswith("https://"):
        return None
    if tls is None:
        raise InputError(f"{url} is served over TLS: call it from a member folder (--data), "
                         "whose tls/ holds the consortium's trust bundle and your certificate")
    return client_context(tls)


def _request(url: str, data: bytes | None = None, timeout: float = 60.0,
             headers: dict[str, str] | None = None, tls: Path | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers=headers or {})
    context = _context(url, tls)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            doc = jsonin.loads(exc.read())
            err = _BY_STATUS.get(exc.code, GlucoledgerError)(str(doc["error"]),
                                                             code=str(doc["code"]))
        except (ValueError, KeyError, TypeError):
            err = OrderingError(f"node at {url} answered HTTP {exc.code}")
        if exc.code in (502, 503, 504):
            raise OrderingError(err.message, code=err.code) from None
        raise err from None
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise AuthenticationError(f"the node at {url} did not prove it is a member: "
                                      f"{reason.verify_message}. Check the URL and that "
                                      "your tls/trust.pem is the genesis file's bundle"
                                      ) from None
        if isinstance(reason, ssl.SSLError) and "ALERT" in str(reason).upper():
            raise AuthenticationError(f"the node at {url} refused this member's TLS "
                                      f"certificate ({reason.reason}): it accepts certificates "
                                      "of the member CAs in force (a removed member's and a "
                                      "rotated-out CA's are refused)") from None
        raise OrderingError(f"node at {url} is unreachable ({exc}); is it running?") from None


def _signed(method: str, target: str, node_key: PrivateKey, timeout: float,
            data: bytes | None = None, tls: Path | None = None) -> bytes:
    """One signed request (a fresh signature and nonce per try), retried while the node
    answers that it is not ready yet (it is starting), until ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        headers = sign_request(node_key, method=method, url=target, body=data or b"",
                               nonce=secrets.token_hex(16))
        try:
            return _request(target, data, max(deadline - time.monotonic(), 1.0), headers,
                            tls)
        except OrderingError as exc:
            if exc.code != "node_not_ready" or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def submit(url: str, envelopes: list[bytes], node_key: PrivateKey,
           timeout: float = 60.0, *, tls: Path | None = None) -> list[dict[str, Any]]:
    """Submit to a member's control endpoint, signing the request with ``node_key`` (a
    current member's node key); over TLS with the member folder's ``tls`` (https URLs)."""
    target = url.rstrip("/") + "/submit"
    receipts: list[dict[str, Any]] = []
    for part in _submit_parts(envelopes):  # each within the endpoint's _MAX_SUBMIT
        body = _signed("POST", target, node_key, timeout, codec.encode(part), tls)
        receipts.extend(jsonin.loads(body)["receipts"])
    return receipts


def _submit_parts(envelopes: list[bytes]) -> list[list[bytes]]:
    """``envelopes`` in order, in lists whose CBOR encoding fits ``_MAX_SUBMIT`` (9 bytes
    of framing an item at most)."""
    parts: list[list[bytes]] = [[]]
    size = 9
    for e in envelopes:
        if parts[-1] and size + len(e) + 9 > _MAX_SUBMIT:
            parts.append([])
            size = 9
        parts[-1].append(e)
        size += len(e) + 9
    return parts


def get_status(url: str, node_key: PrivateKey, timeout: float = 5.0, *,
               tls: Path | None = None) -> dict[str, Any]:
    """A member's status (``consortium.Status`` as JSON, with its ``etcd_requests`` so far
    by kind), asked with a request signed by ``node_key`` (a current member's node key)."""
    doc: dict[str, Any] = jsonin.loads(_signed("GET", url.rstrip("/") + "/status", node_key,
                                             timeout, None, tls))
    return doc


def fetch_blocks(url: str, start: int, node_key: PrivateKey, *,
                 tls: Path | None = None) -> bytes:
    """A peer's block export from ``start``, asked with a request signed by ``node_key``."""
    return _signed("GET", f"{url.rstrip('/')}/blocks?from={start}", node_key, 120.0, None,
                   tls)


def run_node(data_dir: Any, *, port: int = 0, stop: threading.Event | None = None,
             wait: float = 0.2, compact_every: int = 20_000,
             anchor_endpoint: str | None = None, anchor_every: float = 60.0,
             host: str = "127.0.0.1", tls: bool = False, workers: int = 1) -> None:
    """Run a consortium member until ``stop`` is set: control endpoint plus the follow loop.

    The control endpoint listens on ``host`` (over TLS with the folder's ``tls/`` when
    ``tls`` or when ``host`` is not loopback). Its URL is published in etcd (``ctl/``) and,
    after the first round of the loop, written to ``<data>/control.json``. ``workers``:
    processes checking signatures of large reads and submits (``Node``; 1: in process).
    """
    stop = stop or threading.Event()
    tls_dir = Path(data_dir) / "tls" if tls or not is_loopback(host) else None
    if tls_dir is not None:
        server_context(tls_dir, host)  # refuse before opening anything
    cnode = ConsortiumNode(Path(data_dir), workers=workers, compact_every=compact_every,
                           stop=stop)
    if anchor_endpoint:
        cnode.set_anchoring(anchor_endpoint, anchor_every)
    # This thread follows the log; submits from the control endpoint go through the
    # group-commit writer and wait for it (node.groupcommit).
    cnode.node.follow_here()
    # Follow etcd by watch, not by polling (ordering.etcd_watch). GLUCOLEDGER_FOLLOW=poll
    # keeps the polling loop: a diagnostic, for benchmarks comparing the two in one run.
    if os.environ.get("GLUCOLEDGER_FOLLOW", "watch") != "poll":
        cnode.start_watch()
    cnode.node.start_group_commit()
    try:
        server = ControlServer(cnode, port, host=host, tls=tls_dir)
    except BaseException:
        cnode.close()
        raise
    cnode.status.control = server.url
    server.start()
    try:
        while not stop.is_set():
            try:
                cnode.kv.put(f"ctl/{cnode.name}", server.url.encode())
                break
            except GlucoledgerError:
                stop.wait(0.5)
        announced = False
        while not stop.is_set():
            cnode.step(wait=wait)
            if not announced:
                # Only after a first round: status.json is then this run's, and a node that
                # derived its genesis knows whom to accept (devcluster.wait_controls).
                atomic_write(Path(data_dir) / "control.json",
                             (json.dumps({"url": server.url}) + "\n").encode())
                announced = True
            if cnode.status.error:
                stop.wait(0.2)
    finally:
        server.stop()
        cnode.close()

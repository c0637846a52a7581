"""A node's local control endpoint (HTTP on 127.0.0.1) and its client.

``glucoledger node`` serves it so that other processes on the machine (the CLI, tests, the
benchmark, peers fetching blocks) can use a running node without opening its store:

- ``POST /submit``: body = CBOR list of transaction envelopes; answer JSON
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
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import codec, jsonin
from ..crypto import PrivateKey, PublicKey
from ..crypto.httpsig import NonceCache, sign_request, verify_request
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
from .blockexport import export_blocks
from .consortium import ConsortiumNode

__all__ = ["ControlServer", "fetch_blocks", "get_status", "submit"]


_MAX_SUBMIT = 64 << 20
log = logging.getLogger("glucoledger.control")
#: Error classes by HTTP status, so that a refusal keeps its kind (and the CLI's exit code).
_BY_STATUS: dict[int, type[GlucoledgerError]] = {
    400: InputError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: RejectedError}


def _refuse_if_stopped(cn: ConsortiumNode) -> None:
    """A stopped node answers at once (503, the reason), never after a timeout."""
    if cn.status.refusing:
        raise OrderingError(f"this node stopped and refuses to work: {cn.status.refusing}. "
                            "Submit to another member; its operator must restore its store "
                            "(`glucoledger consortium rejoin`)", code="node_stopped")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

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
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise MalformedError("Content-Length is not a number") from None
            if not 0 <= length <= _MAX_SUBMIT:
                raise MalformedError(f"a submit is at most {_MAX_SUBMIT} bytes")
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

    def _member_signed(self, body: bytes = b"") -> str:
        """The member in force whose node key signed this request (``node.peerauth``).

        Raises AuthenticationError (401: unsigned, bad or replayed signature, a key the
        ledger never named), PermissionDeniedError (403: a verified signature by a removed
        member's key or a replaced key, with the height), OrderingError (503: the node
        cannot tell members from strangers yet). Every refusal is logged: the path, the
        caller's address and, for a verified former key, whose it was; never a header."""
        cn = self.server.cnode
        peers = cn.peers
        if not peers.current:
            if cn.status.refusing:  # before its genesis: not a verdict on the caller
                raise OrderingError(f"this node stopped and refuses to work: "
                                    f"{cn.status.refusing}", code="node_stopped")
            # Not a verdict on the caller: before its genesis block a node cannot tell
            # members from strangers. Transient (503); the client retries.
            raise OrderingError("this node has not derived the consortium's genesis block "
                                "yet, so it cannot check who signed the request; retry in a "
                                "moment", code="node_not_ready")

        def lookup(key_id: bytes) -> PublicKey:
            found = peers.current.get(key_id)
            if found is not None:
                return found.key
            if key_id in peers.former:
                # Checked like a current key: only the key's holder learns why it is refused.
                return peers.former[key_id].key
            raise AuthenticationError("the request is not signed by the node key of a "
                                      "current member of this consortium")

        path = urlsplit(self.path).path
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
                self._send(200, json.dumps(cn.status.__dict__).encode())
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


class ControlServer:
    """Serve ``cnode`` on 127.0.0.1:``port`` (0: any free port) in a background thread."""

    def __init__(self, cnode: ConsortiumNode, port: int = 0) -> None:
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.cnode = cnode
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.httpd.url = self.url
        self.httpd.nonces = NonceCache()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _request(url: str, data: bytes | None = None, timeout: float = 60.0,
             headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
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
        raise OrderingError(f"node at {url} is unreachable ({exc}); is it running?") from None


def _signed(method: str, target: str, node_key: PrivateKey, timeout: float,
            data: bytes | None = None) -> bytes:
    """One signed request (a fresh signature and nonce per try), retried while the node
    answers that it is not ready yet (it is starting), until ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        headers = sign_request(node_key, method=method, url=target, body=data or b"",
                               nonce=secrets.token_hex(16))
        try:
            return _request(target, data, max(deadline - time.monotonic(), 1.0), headers)
        except OrderingError as exc:
            if exc.code != "node_not_ready" or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def submit(url: str, envelopes: list[bytes], node_key: PrivateKey,
           timeout: float = 60.0) -> list[dict[str, Any]]:
    """Submit to a member's control endpoint, signing the request with ``node_key`` (a
    current member's node key)."""
    target = url.rstrip("/") + "/submit"
    body = _signed("POST", target, node_key, timeout, codec.encode(envelopes))
    receipts: list[dict[str, Any]] = jsonin.loads(body)["receipts"]
    return receipts


def get_status(url: str, node_key: PrivateKey, timeout: float = 5.0) -> dict[str, Any]:
    """A member's status (``consortium.Status`` as JSON), asked with a request signed by
    ``node_key`` (a current member's node key)."""
    doc: dict[str, Any] = jsonin.loads(_signed("GET", url.rstrip("/") + "/status", node_key,
                                             timeout))
    return doc


def fetch_blocks(url: str, start: int, node_key: PrivateKey) -> bytes:
    """A peer's block export from ``start``, asked with a request signed by ``node_key``."""
    return _signed("GET", f"{url.rstrip('/')}/blocks?from={start}", node_key, 120.0)


def run_node(data_dir: Any, *, port: int = 0, stop: threading.Event | None = None,
             wait: float = 0.2, compact_every: int = 20_000,
             anchor_endpoint: str | None = None, anchor_every: float = 60.0) -> None:
    """Run a consortium member until ``stop`` is set: control endpoint plus the follow loop.

    The control URL is published in etcd (``ctl/``) and, after the first round of the loop,
    written to ``<data>/control.json``.
    """
    from pathlib import Path

    stop = stop or threading.Event()
    cnode = ConsortiumNode(Path(data_dir), compact_every=compact_every)
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
    server = ControlServer(cnode, port)
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

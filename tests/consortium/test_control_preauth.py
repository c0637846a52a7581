"""The control endpoint judges a submit before reading its body (audit #12: six unsigned,
unfinished 64 MiB bodies took a node from 71 MB to 449 MB, one thread each, unbounded).

On a real consortium (3 etcd members, 3 `glucoledger node` processes): a POST /submit
whose headers already fail (no signature, a stale one, a key the ledger never named, a body
over the cap) is answered at once while its body is still unsent; connections beyond the
request limit are closed at once; members' submits of more than one request's worth are
split by the client and all ordered.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from urllib.parse import urlsplit

from glucoledger.crypto import generate
from glucoledger.crypto.httpsig import sign_request
from glucoledger.node import control

from .conftest import Consortium, patient_envelopes


def _open(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _post_headers_only(url: str, length: int, headers: dict[str, str]) -> tuple[int, str]:
    """POST /submit announcing ``length`` body bytes, sending none: the status and error
    the node answers without the body (a node that waits for the body times out here)."""
    with _open(url) as s:
        lines = ["POST /submit HTTP/1.1", "Host: x", f"Content-Length: {length}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        s.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise AssertionError(f"no answer before the body was sent (got {data[:200]!r})"
                                 ) from None
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def test_a_submit_is_judged_before_its_body_is_read(consortium: Consortium) -> None:
    c = consortium
    url = c.urls[0]
    target = url + "/submit"
    big = 1 << 20  # within the old 64 MiB cap, beyond the new one
    # No signature at all.
    status, error = _post_headers_only(url, big, {})
    assert status == 401 and "not signed" in error, error
    # A key the ledger never named (a stranger's, freshly made).
    stranger = generate("ed25519")
    headers = sign_request(stranger, method="POST", url=target, body=b"x",
                           nonce=secrets.token_hex(16))
    status, error = _post_headers_only(url, big, headers)
    assert status == 401 and "current member" in error, error
    # A member's key, but a signature made long ago.
    headers = sign_request(c.node_key(1), method="POST", url=target, body=b"x",
                           nonce=secrets.token_hex(16), created=int(time.time()) - 3600)
    status, error = _post_headers_only(url, big, headers)
    assert status == 401 and "created" in error, error
    # A member's fresh signature announcing a body over the cap: refused unread.
    headers = sign_request(c.node_key(1), method="POST", url=target, body=b"x",
                           nonce=secrets.token_hex(16))
    status, error = _post_headers_only(url, 8 << 20, headers)  # 8 MiB: twice the cap
    assert status == 400 and "at most" in error, error
    log = (c.folders[0] / "node.log").read_text()
    assert "refused POST /submit from 127.0.0.1" in log
    # Members still submit, also more than one request holds (the client splits it).
    envelopes = patient_envelopes(3)
    pad = control._MAX_SUBMIT // 2
    parts = control._submit_parts([bytes(pad), bytes(pad), *envelopes])
    assert [len(p) for p in parts] == [1, 4]
    receipts = control.submit(url, envelopes, c.node_key(0), timeout=30)
    assert [r["code"] for r in receipts] == ["ok"] * 3


def test_requests_beyond_the_limit_are_closed_at_once(consortium: Consortium) -> None:
    c = consortium
    url = c.urls[2]
    held = [_open(url) for _ in range(control._MAX_REQUESTS)]
    try:
        for s in held:  # each holds a request thread: headers never finished
            s.sendall(b"POST /submit HTTP/1.1\r\n")
        time.sleep(0.5)
        extra = _open(url)
        extra.settimeout(5)
        extra.sendall(b"GET /checkpoint HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = extra.recv(100)
        except ConnectionResetError:
            answer = b""
        extra.close()
        assert answer == b"", answer  # closed without a thread, not served
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    assert control.get_status(url, c.node_key(2))["name"] == "org-2"

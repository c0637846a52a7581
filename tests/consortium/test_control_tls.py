"""The control endpoint across machines: mutual TLS with the consortium's PKI, on a real
consortium (3 etcd members, 3 `glucoledger node` processes).

org-1's node is restarted with ``--tls`` (what ``--host a.example.org`` does off loopback).
Then, from the outside:

- the members' CLI and clients reach it (status, submit, a peer's block export) with their
  folder's ``tls/``; the node republishes its https URL in etcd for the peers;
- a client that does not trust the consortium's bundle refuses the node (the server is
  authenticated), and says what to check;
- a client without a certificate reads ``/checkpoint`` (public) and nothing else: 401
  before its signature is even looked at; a certificate from another CA does not complete
  the handshake; a plain-HTTP client gets nothing;
- a node asked to listen off loopback without TLS, or on a host its certificate does not
  name, refuses to start, with the fix in the message, and without a traceback.
"""

from __future__ import annotations

import datetime
import json
import secrets
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from glucoledger.crypto import tls as pki
from glucoledger.crypto.httpsig import sign_request
from glucoledger.errors import AuthenticationError, InputError, OrderingError
from glucoledger.node import control

from .conftest import Consortium, patient_envelopes, wait_until

TLS_NODE = 1


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glucoledger", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=120)


def _get(url: str, context: ssl.SSLContext | None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _no_cert_context(trust: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(trust))


def _stranger_context(trust: Path, tmp: Path) -> ssl.SSLContext:
    """A well-formed member-style identity from a CA the consortium never listed."""
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.make_ca("mallory", now)
    leaf = pki.issue(ca, "mallory", ["127.0.0.1"], now)
    (tmp / "m.pem").write_bytes(leaf.cert_pem)
    (tmp / "m.key").write_bytes(leaf.key_pem)
    ctx = ssl.create_default_context(cafile=str(trust))
    ctx.load_cert_chain(tmp / "m.pem", tmp / "m.key")
    return ctx


def test_members_reach_a_node_over_mutual_tls_and_nobody_else_does(
        consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(2)))
    wait_until(c.converged, 30, "convergence")
    c.kill_node(TLS_NODE, hard=False)
    c.start_node(TLS_NODE, extra=("--tls",))
    url = c.urls[TLS_NODE]
    assert url.startswith("https://127.0.0.1:"), url
    mine, other = c.folders[TLS_NODE], c.folders[0]
    trust = other / "tls" / "trust.pem"

    # Members: the CLI from another member's folder, a submit, a peer's block export.
    out = _cli("consortium", "status", "--to", url, "--data", other)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["members"] == ["org-0", "org-1", "org-2"]
    receipts = control.submit(url, patient_envelopes(2), c.node_key(0), tls=other / "tls")
    assert all(r["code"] == "ok" for r in receipts), receipts
    export = control.fetch_blocks(url, 0, c.node_key(2), tls=c.folders[2] / "tls")
    assert export[:1] and len(export) > 100
    # The peers learn the https URL from etcd (catch-up past compaction uses it).
    wait_until(lambda: c.status(0)["height"] >= receipts[0]["height"], 30, "org-0 follows")
    assert json.loads((mine / "control.json").read_text())["url"] == url

    # The server is authenticated: a client that trusts only the system's CAs refuses it.
    with pytest.raises(urllib.error.URLError) as refused:
        _get(url + "/checkpoint", ssl.create_default_context())
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    # and the project's client says what to check, as an AuthenticationError (exit 4)
    wrong = tmp_path / "wrong-tls"
    wrong.mkdir()
    for f in ("node.pem", "node.key"):
        (wrong / f).write_bytes((other / "tls" / f).read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    (wrong / "trust.pem").write_bytes(pki.make_ca("elsewhere", now).cert_pem)
    with pytest.raises(AuthenticationError, match="did not prove it is a member"):
        control.get_status(url, c.node_key(0), tls=wrong)
    # An https URL without a member folder: told what to pass, nothing sent.
    with pytest.raises(InputError, match="member folder"):
        control.get_status(url, c.node_key(0))

    # No client certificate: /checkpoint is public, the member routes are not (401 before
    # the signature is looked at: a valid member signature does not help).
    plain = _no_cert_context(trust)
    status, body = _get(url + "/checkpoint", plain)
    assert status == 200 and body.startswith(b"glucoledger/consortium\n"), body[:80]
    for path in ("/status", "/blocks?from=0"):
        headers = sign_request(c.node_key(0), method="GET", url=url + path, body=b"",
                               nonce=secrets.token_hex(16))
        status, body = _get(url + path, plain, headers)
        assert status == 401, (path, body)
        assert "TLS certificate" in json.loads(body)["error"]
    # ... and a submit without one is refused before its body is read (audit #12).
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw, \
            plain.wrap_socket(raw, server_hostname=parts.hostname) as tls_sock:
        tls_sock.sendall(b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        tls_sock.settimeout(5)
        answer = b""
        while b"}" not in answer:  # a node waiting for the body times out here
            chunk = tls_sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 401") and b"TLS certificate" in answer, answer[:300]
    # A certificate from a CA the consortium never listed: no handshake, nothing served.
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        _get(url + "/checkpoint", _stranger_context(trust, tmp_path))
    # Plain HTTP to the TLS port: no answer a client could take for the node's.
    with pytest.raises((urllib.error.URLError, ConnectionResetError, OSError)):
        _get(url.replace("https://", "http://") + "/checkpoint", None)
    with pytest.raises(OrderingError):
        control.get_status(url.replace("https://", "http://"), c.node_key(0), timeout=2)
    log = (mine / "node.log").read_text()
    assert "refused GET /status from 127.0.0.1: no client certificate" in log

    # The remaining pair and the TLS node still agree.
    wait_until(c.converged, 40, "convergence with the TLS node")


def test_a_node_refuses_to_listen_off_loopback_in_the_clear_or_under_a_wrong_name(
        consortium: Consortium) -> None:
    """Checked before the node opens anything, so the running node is untouched."""
    folder = consortium.folders[2]
    named = pki.hosts_of((folder / "tls" / "node.pem").read_bytes())
    assert "192.0.2.7" not in named  # TEST-NET-1 (RFC 5737): never this machine's address
    out = _cli("node", "--data", folder, "--host", "192.0.2.7", "--port", "0")
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 2, said  # the user's input: exit 2 (README)
    assert "names" in said and "not 192.0.2.7" in said and "consortium keys --host" in said
    assert "Traceback" not in said
    bare = folder.parent / "bare"
    bare.mkdir()
    with pytest.raises(InputError, match="lacks trust.pem, node.pem, node.key"):
        control.server_context(bare, "127.0.0.1")
    with pytest.raises(InputError, match="over TLS only"):
        control.ControlServer(None, 0, host="192.0.2.7")  # type: ignore[arg-type]
    assert consortium.status(2)["height"] >= 0 and not consortium.status(2)["refusing"]


def test_a_removed_members_certificate_stops_at_the_tls_endpoint_without_a_restart(
        consortium: Consortium, tmp_path: Path) -> None:
    """Governance writes the new trust bundle at the removal's height; the endpoint reads it
    for the next connection, so org-2's certificate no longer completes the handshake."""
    from .test_removed_member import remove_member

    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(2)))
    wait_until(c.converged, 30, "convergence")
    c.kill_node(TLS_NODE, hard=False)
    c.start_node(TLS_NODE, extra=("--tls",))
    url, gone = c.urls[TLS_NODE], c.folders[2]
    trust = c.folders[TLS_NODE] / "tls" / "trust.pem"
    assert control.get_status(url, c.node_key(2), tls=gone / "tls")["height"] >= 0
    bundle = trust.read_bytes()
    h = remove_member(c, tmp_path)
    # it holds from block h: any transaction makes one
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(1)))
    wait_until(lambda: c.status(TLS_NODE)["height"] >= h, 30, "the removal's height")
    wait_until(lambda: trust.read_bytes() != bundle, 30, "the new trust bundle")
    with pytest.raises((OrderingError, AuthenticationError)) as refused:
        control.get_status(url, c.node_key(2), tls=gone / "tls")
    said = str(refused.value)  # at the handshake: TLS's word for it, not the 403's
    assert "refused this member's TLS certificate" in said or "unreachable" in said, said
    raw = ssl.create_default_context(cafile=str(trust))
    raw.load_cert_chain(gone / "tls" / "node.pem", gone / "tls" / "node.key")
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        _get(url + "/checkpoint", raw)
    # the members in force are served, over the same endpoint, by the same process
    assert control.get_status(url, c.node_key(0), tls=c.folders[0] / "tls")["members"] == [
        "org-0", "org-1"]
    assert "TLS files changed; new trust bundle" in (
        c.folders[TLS_NODE] / "node.log").read_text()

"""etcd's own access control between members (``ordering.etcd_rbac``), on a real consortium:
3 etcd members with TLS, client-certificate authentication and auth enabled, 3 nodes.

A malicious member talks to etcd directly with its own credentials: etcd refuses every write
outside its own keys, and refused requests change nothing.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from glucoledger.crypto import tls
from glucoledger.errors import OrderingError
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering._gateway import Gateway, GatewayError, TlsFiles, b64
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.ordering.etcd_kv import EtcdKV

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until

PREFIX = f"/glucoledger/{etcd_chain_key(CHAIN)}/"


def _endpoints(c: Consortium, i: int) -> list[str]:
    """Member i's own etcd member: the only one that accepts member i's certificates."""
    return [c.etcd_endpoint(i)]


def _gw(c: Consortium, files: TlsFiles, i: int) -> Gateway:
    return Gateway(_endpoints(c, i), 3.0, files)


def _get(gw: Gateway, key: str) -> bytes | None:
    kvs = gw.call("/v3/kv/range", {"key": b64(key)}).body.get("kvs", [])
    return None if not kvs else base64.b64decode(kvs[0].get("value", ""))


def _log(c: Consortium) -> list[bytes]:
    """The whole ordered log, read with member org-2's own credentials."""
    with EtcdOrderer.from_url(c.etcd_url(2), etcd_chain_key(CHAIN)) as o:
        out: list[bytes] = []
        while len(out) < o.size():
            out.extend(o.read(len(out)))
        return out


#: How a refused TLS handshake reads (the server's alert, or its closing the connection).
HANDSHAKE = ("SSLError", "SSLEOFError", "SSLZeroReturnError", "ConnectionResetError",
             "BrokenPipeError", "RemoteDisconnected")


def _handshake_refusal(endpoint: str, tls: TlsFiles, tries: int = 3) -> str:
    """What a call with ``tls`` to ``endpoint`` is refused with. A handshake that times out
    (an etcd member just restarted, on a loaded machine: CI saw one at 3 s) says nothing
    either way, so it is tried again, with more time."""
    said = ""
    for _ in range(tries):
        gw = Gateway([endpoint], 10.0, tls)
        try:
            with pytest.raises(GatewayError) as refused:
                gw.call("/v3/kv/range", {"key": b64(PREFIX + "head/org-0")})
        finally:
            gw.close()
        said = str(refused.value)
        if "TimeoutError" not in said:
            break
    return said


def _refused(gw: Gateway, path: str, body: dict[str, object]) -> str:
    with pytest.raises(GatewayError) as exc:
        gw.call(path, body)
    return str(exc.value)


def test_a_member_writes_only_its_own_keys_and_etcd_refuses_the_rest(
        consortium: Consortium) -> None:
    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(3)))
    wait_until(c.converged, 30, "convergence with etcd auth on")
    admin = c.folders[0] / "etcd-admin"
    assert json.loads((admin / "etcd-user.json").read_text())["user"] == "root"
    assert not (c.folders[1] / "etcd-admin").exists()  # only the operator holds root
    mallory = _gw(c, TlsFiles.in_dir(str(c.folders[1] / "tls")), 1)  # org-1, gone rogue
    root = _gw(c, TlsFiles.in_dir(str(admin)), 0)
    try:
        # Its own keys: allowed (the positive control: the refusals below are about ranges).
        mallory.call("/v3/kv/put", {"key": b64(PREFIX + "sig/org-1/probe"), "value": b64("1")})
        assert _get(mallory, PREFIX + "health/org-0") is not None  # reading is allowed
        # Layout 2 of the log: org-0 appended (the genesis, at least) under its own keys.
        org0 = root.call("/v3/kv/range", {"key": b64(PREFIX + "batch/org-0/"),
                                          "range_end": b64(PREFIX + "batch/org-00"),
                                          "keys_only": True}).body.get("kvs", [])
        assert org0, "org-0 has appended no batch of its own"
        victim_batch = base64.b64decode(org0[0]["key"]).decode()[len(PREFIX):]
        victims = {k: _get(root, PREFIX + k) for k in
                   ("health/org-0", "ctl/org-0", "stored/org-2", victim_batch, "head/org-0")}
        log_before = _log(c)
        assert all(v is not None for v in victims.values()), victims
        sig0 = root.call("/v3/kv/range", {"key": b64(PREFIX + "sig/org-0/"),
                                          "range_end": b64(PREFIX + "sig/org-00"),
                                          "count_only": True}).body.get("count")
        assert int(sig0 or 0) > 0
        attacks = {
            "overwrite another member's health": ("/v3/kv/put", {
                "key": b64(PREFIX + "health/org-0"), "value": b64('{"ok": false}')}),
            "point another member's control URL elsewhere": ("/v3/kv/put", {
                "key": b64(PREFIX + "ctl/org-0"), "value": b64("http://127.0.0.1:1")}),
            "forge another member's cosignature": ("/v3/kv/put", {
                "key": b64(PREFIX + "sig/org-0/99999999999999999999"), "value": b64("x")}),
            "delete another member's cosignatures": ("/v3/kv/deleterange", {
                "key": b64(PREFIX + "sig/org-0/"), "range_end": b64(PREFIX + "sig/org-00")}),
            "delete another member's stored report": ("/v3/kv/deleterange", {
                "key": b64(PREFIX + "stored/org-2")}),
            "append a batch under another member's name": ("/v3/kv/put", {
                "key": b64(PREFIX + "batch/org-0/99999999999999999999"), "value": b64("x")}),
            "rewrite another member's ordered batch": ("/v3/kv/put", {
                "key": b64(PREFIX + victim_batch), "value": b64("x")}),
            "delete another member's batches": ("/v3/kv/deleterange", {
                "key": b64(PREFIX + "batch/org-0/"), "range_end": b64(PREFIX + "batch/org-00")}),
            "move another member's head": ("/v3/kv/put", {
                "key": b64(PREFIX + "head/org-0"), "value": b64("99999")}),
            "raise another member's compaction floor": ("/v3/kv/put", {
                "key": b64(PREFIX + "first/org-2"), "value": b64("99999")}),
            "write a shared log key (layout 1's head)": ("/v3/kv/put", {
                "key": b64(PREFIX + "head"), "value": b64("0")}),
            "write a shared batch key (layout 1)": ("/v3/kv/put", {
                "key": b64(PREFIX + "batch/00000000000000000000"), "value": b64("x")}),
            "write outside the chain": ("/v3/kv/put", {
                "key": b64("/glucoledger/other-chain/head"), "value": b64("0")}),
            "grant itself a role": ("/v3/auth/user/grant", {
                "user": "member:org-1", "role": "root"}),
            "add a user": ("/v3/auth/user/add", {"name": "eve", "password": "x"}),
            "turn auth off": ("/v3/auth/disable", {}),
        }
        for what, (path, body) in attacks.items():
            message = _refused(mallory, path, body)
            assert "permission denied" in message, (what, message)
        # Nothing changed: the keys, and the ordered log as a fresh reader reads it.
        assert {k: _get(root, PREFIX + k) for k in victims} == victims
        assert _log(c) == log_before
        assert _get(root, PREFIX + "head") is None
        assert _get(root, PREFIX + "batch/00000000000000000000") is None
        assert root.call("/v3/kv/range", {"key": b64(PREFIX + "sig/org-0/"),
                                          "range_end": b64(PREFIX + "sig/org-00"),
                                          "count_only": True}).body.get("count") == sig0
        assert _get(root, "/glucoledger/other-chain/head") is None
        # The same through the node's own client: OrderingError, with etcd's reason.
        kv = EtcdKV(_endpoints(c, 1), etcd_chain_key(CHAIN), timeout=3.0,
                    tls=TlsFiles.in_dir(str(c.folders[1] / "tls")))
        try:
            with pytest.raises(OrderingError, match="permission denied"):
                kv.put("health/org-2", b'{"ok": false}')
        finally:
            kv.close()
    finally:
        mallory.close()
        root.close()
    # The consortium still works after the attempts.
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(2), prefer=1))
    wait_until(c.converged, 30, "convergence after the refused writes")
    # org-1's node appended those under its own keys, with its restricted role.
    keys = [k for k in _layout(c) if k.startswith("batch/org-1/")]
    assert keys, _layout(c)


def _layout(c: Consortium) -> list[str]:
    root = _gw(c, TlsFiles.in_dir(str(c.folders[0] / "etcd-admin")), 0)
    try:
        kvs = root.call("/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(PREFIX[:-1] + "0"),
                                         "keys_only": True}).body.get("kvs", [])
    finally:
        root.close()
    return [base64.b64decode(kv["key"]).decode()[len(PREFIX):] for kv in kvs]


def test_member_certificates_alone_get_no_etcd_access(consortium: Consortium,
                                                      tmp_path: Path) -> None:
    """The TLS certificate is necessary, not sufficient: with auth on, a request needs the
    member's etcd user too, and a certificate with a CommonName is refused by the gateway
    (so a member's node certificate cannot pass as the etcd member's own identity)."""
    c = consortium
    tls_dir = c.folders[1] / "tls"
    trust = str(tls_dir / "trust.pem")
    node_cert = TlsFiles(trust, str(tls_dir / "node.pem"), str(tls_dir / "node.key"))
    no_user = TlsFiles(trust, str(tls_dir / "etcd-client.pem"), str(tls_dir / "etcd-client.key"))
    wrong_password = TlsFiles(trust, str(tls_dir / "etcd-client.pem"),
                              str(tls_dir / "etcd-client.key"), "member:org-1", "guess")
    now = datetime.datetime.now(datetime.UTC)
    rogue = tls.issue_client(tls.make_ca("org-1", now), "org-1", now)
    (tmp_path / "r.pem").write_bytes(rogue.cert_pem)
    (tmp_path / "r.key").write_bytes(rogue.key_pem)
    password = json.loads((tls_dir / "etcd-user.json").read_text())["password"]
    other_ca = TlsFiles(trust, str(tmp_path / "r.pem"), str(tmp_path / "r.key"),
                        "member:org-1", password)
    expected = {
        "a node certificate (with a CommonName)": (node_cert, "CommonName"),
        "the client certificate without the user": (no_user, "permission denied"),
        "a wrong password": (wrong_password, "authentication failed"),
        "the right password, another CA's certificate": (other_ca, ""),
    }
    for what, (files, reason) in expected.items():
        gw = Gateway(_endpoints(c, 1), 2.0, files)
        try:
            message = _refused(gw, "/v3/kv/put", {"key": b64(PREFIX + "sig/org-1/x"),
                                                  "value": b64(what)})
        finally:
            gw.close()
        assert reason in message, (what, message)
    root = _gw(c, TlsFiles.in_dir(str(c.folders[0] / "etcd-admin")), 0)
    try:
        assert _get(root, PREFIX + "sig/org-1/x") is None
    finally:
        root.close()
    assert "password" not in repr(other_ca) and password not in repr(other_ca)


def test_a_certificate_a_member_mints_for_etcds_root_reaches_only_its_own_etcd_member(
        consortium: Consortium, tmp_path: Path) -> None:
    """A member (or whoever copied a node's folder) issues itself a certificate with the
    CommonName ``root`` from its own CA (``tls/ca.key``) and calls etcd with etcd's own
    client, etcdctl, over gRPC, which takes a certificate's CommonName as the etcd user
    (``--client-cert-auth``; etcd 3.4 cannot turn that off). Every other organization's etcd
    member refuses it in the TLS handshake: its client port accepts its own organization's
    CA alone. Its own etcd member takes it for root: that is the member's own etcd, which
    could propose anything through Raft in any case (docs/threat-model.md, Consortium)."""
    c = consortium
    folder = c.folders[1] / "tls"
    own_ca = tls.Identity((folder / "ca.key").read_bytes(), (folder / "ca.pem").read_bytes())
    forged = tls.issue(own_ca, "root", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    (tmp_path / "root.pem").write_bytes(forged.cert_pem)
    (tmp_path / "root.key").write_bytes(forged.key_pem)
    (tmp_path / "root.key").chmod(0o600)
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:  # not a skip: without it this test proves nothing either way
        raise RuntimeError("etcdctl is missing: apt-get install etcd-client (.ci/install-etcd.sh)")

    def user_list(i: int) -> subprocess.CompletedProcess[str]:  # as an attacker would
        return subprocess.run(
            [etcdctl, "--endpoints", f"https://{c.etcd_endpoint(i)}",
             "--cacert", str(folder / "trust.pem"), "--cert", str(tmp_path / "root.pem"),
             "--key", str(tmp_path / "root.key"), "--dial-timeout", "5s",
             "--command-timeout", "5s", "user", "list"],
            capture_output=True, text=True, timeout=60, check=False)

    forged_files = TlsFiles(str(folder / "trust.pem"), str(tmp_path / "root.pem"),
                            str(tmp_path / "root.key"))
    for i in (0, 2):
        # etcdctl itself retries a refused handshake until its own deadline and then says
        # only "context deadline exceeded" (or hangs past it): the handshake says why.
        said = _handshake_refusal(c.etcd_endpoint(i), forged_files)
        assert any(f"{kind}:" in said for kind in HANDSHAKE), said
        member = _gw(c, TlsFiles.in_dir(str(c.folders[i] / "tls")), i)  # it is up
        try:
            assert _get(member, PREFIX + "head/org-0") is not None
        finally:
            member.close()
    own = user_list(1)  # the positive control: the forged certificate is etcd's root, and
    # it works where its CA is trusted (what the others refuse is the CA, not the certificate)
    assert own.returncode == 0 and "member:org-1" in own.stdout, own.stdout + own.stderr


def test_revoking_a_member_stops_its_writes_at_once(consortium: Consortium) -> None:
    c = consortium
    kv = EtcdKV(_endpoints(c, 2), etcd_chain_key(CHAIN), timeout=3.0,
                tls=TlsFiles.in_dir(str(c.folders[2] / "tls")))
    admin = c.etcd_admin(0)
    try:
        kv.put("sig/org-2/probe", b"first")  # its token works
        kv._gw._token = "expired.1"  # a token etcd no longer knows is renewed, once
        kv.put("sig/org-2/probe", b"before")
        assert kv._gw._token != "expired.1"
        assert "member:org-2" in admin.users()
        admin.revoke("org-2")
        assert "member:org-2" not in admin.users()
        with pytest.raises(OrderingError, match="authentication failed"):
            kv.put("sig/org-2/probe", b"after")  # the token is dead, a new one refused
    finally:
        kv.close()
        admin.close()
    root = _gw(c, TlsFiles.in_dir(str(c.folders[0] / "etcd-admin")), 0)
    try:
        assert _get(root, PREFIX + "sig/org-2/probe") == b"before"
    finally:
        root.close()

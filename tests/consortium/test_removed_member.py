"""A member removed by governance is shut out at once, on a real consortium (3 etcd members
with TLS, client certificates and auth; 3 ``glucoledger node`` processes).

org-0 proposes ``member-remove --name org-2``, org-1 cosigns, org-1 submits (the README's
"Remove a member", as CLI commands). From the height the removal holds, with org-2's own
credentials, nothing works, and without waiting for etcd to restart:

- etcd: org-2's user was deleted by the node holding etcd's root (``ordering.etcd_rbac``
  ``reconcile``): a put to its own keys or another member's and a read are refused, and
  nothing changes;
- every node-to-node endpoint of both remaining nodes (``/submit``, ``/blocks``,
  ``/status``) answers org-2's signed requests 403 "org-2 was removed from the consortium
  at height h"; the CLI says so with exit code 4 and no traceback; the refusal is logged
  without the request's signature or nonce; nothing is ordered;
- unsigned requests and keys the ledger never named get 401 (the stranger's analogue of a
  certificate from another CA; etcd's refusal of those is in test_tls.py, test_rbac.py);
- org-0 and org-1 keep committing and finalizing, 2 of 2.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from glucoledger import codec, crypto
from glucoledger.crypto import tls
from glucoledger.crypto.httpsig import sign_request
from glucoledger.errors import AuthenticationError, PermissionDeniedError
from glucoledger.node import control, devcluster
from glucoledger.ordering._gateway import Gateway, GatewayError, TlsFiles, b64

from .conftest import Consortium, patient_envelopes, wait_until
from .test_rbac import HANDSHAKE, PREFIX, _endpoints, _get, _handshake_refusal
from .test_rejoin import cli

GONE = 2  # org-2 is removed


def remove_member(c: Consortium, tmp: Path, name: str = f"org-{GONE}") -> int:
    """Remove ``name`` by governance through the CLI (org-0 proposes, org-1 cosigns and
    submits); return the height from which the removal holds."""
    proposal = tmp / f"remove-{name}.cbor"
    for args in (("propose", "member-remove", "--name", name, "--out", proposal, "--data",
                  c.folders[0]),
                 ("cosign", proposal, "--data", c.folders[1])):
        out = cli("consortium", *args)
        assert out.returncode == 0, out.stdout + out.stderr
    done = cli("consortium", "submit", proposal, "--to", c.urls[1], "--data", c.folders[1])
    assert done.returncode == 0 and " ok" in done.stdout, done.stdout + done.stderr
    return int(done.stdout.split(" block ")[1].split()[0]) + 1  # from the next block


def _root(c: Consortium) -> Gateway:
    return Gateway(_endpoints(c, 0), 3.0, TlsFiles.in_dir(str(c.folders[0] / "etcd-admin")))


def _etcd_refuses_the_removed_member(c: Consortium) -> None:
    admin = c.etcd_admin(0)
    try:
        wait_until(lambda: "member:org-2" not in admin.users(), 20, "org-2's etcd user gone")
        assert {"member:org-0", "member:org-1"} <= set(admin.users())
    finally:
        admin.close()
    root = _root(c)
    # Keys nobody else writes meanwhile (org-0 publishes its health only at start; org-1's
    # stored report moves with its blocks, so it is only checked to be there afterwards).
    watched = ("sig/org-2/probe", "health/org-0", "head/org-2")
    try:
        before = {k: _get(root, PREFIX + k) for k in watched}
        mallory = Gateway(_endpoints(c, GONE), 3.0,  # its own etcd member, still running
                          TlsFiles.in_dir(str(c.folders[GONE] / "tls")))
        secret = json.loads((c.folders[GONE] / "tls" / "etcd-user.json").read_text())["password"]
        attempts = {
            "its own cosignature key": ("/v3/kv/put", {
                "key": b64(PREFIX + "sig/org-2/probe"), "value": b64("x")}),
            "its own log head": ("/v3/kv/put", {
                "key": b64(PREFIX + "head/org-2"), "value": b64("99999")}),
            "another member's health": ("/v3/kv/put", {
                "key": b64(PREFIX + "health/org-0"), "value": b64('{"ok": false}')}),
            "another member's stored report": ("/v3/kv/deleterange", {
                "key": b64(PREFIX + "stored/org-1")}),
            "a read of the log heads": ("/v3/kv/range", {
                "key": b64(PREFIX + "head/"), "range_end": b64(PREFIX + "head0")}),
        }
        try:
            for what, (path, body) in attempts.items():
                with pytest.raises(GatewayError) as refused:
                    mallory.call(path, body)
                assert "authentication failed" in str(refused.value), (what, refused.value)
                assert secret not in str(refused.value) and secret not in repr(refused.value)
        finally:
            mallory.close()
        assert {k: _get(root, PREFIX + k) for k in watched} == before  # nothing changed
        assert _get(root, PREFIX + "stored/org-1") is not None
    finally:
        root.close()
    # The positive control: a member in force still writes its own keys.
    ok = Gateway(_endpoints(c, 1), 3.0, TlsFiles.in_dir(str(c.folders[1] / "tls")))
    try:
        ok.call("/v3/kv/put", {"key": b64(PREFIX + "sig/org-1/probe"), "value": b64("1")})
    finally:
        ok.close()


def _raw(url: str, method: str, key: crypto.PrivateKey | None, body: bytes = b""
         ) -> tuple[int, dict[str, str], dict[str, str]]:
    """One request, signed by ``key`` (or unsigned): (status, answer JSON, headers sent)."""
    headers = {} if key is None else sign_request(key, method=method, url=url, body=body,
                                                  nonce=secrets.token_hex(16))
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {}, headers
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), headers


def _endpoints_refuse_the_removed_member(c: Consortium, h: int) -> None:
    removed = c.node_key(GONE)
    stranger = crypto.generate()
    said = f"org-2 was removed from the consortium at height {h}"
    body = codec.encode(patient_envelopes(1))
    sent: list[dict[str, str]] = []
    for i in (0, 1):
        before = c.status(i)["height"]
        routes = {"POST": [c.urls[i] + "/submit"],
                  "GET": [c.urls[i] + "/blocks?from=0", c.urls[i] + "/status"]}
        for method, urls in routes.items():
            for url in urls:
                data = body if method == "POST" else b""
                status, doc, headers = _raw(url, method, removed, data)
                assert (status, doc.get("code")) == (403, "removed_member"), (url, doc)
                assert doc["error"].startswith(said), doc
                sent.append(headers)
                for key in (None, stranger):  # unsigned; a key the ledger never named
                    status, doc, _ = _raw(url, method, key, data)
                    assert status == 401, (url, key, doc)
                    assert "org-2" not in doc["error"], doc  # a stranger learns nothing
        # The client library keeps the kind: PermissionDeniedError (the CLI's exit 4).
        with pytest.raises(PermissionDeniedError, match=said):
            control.submit(c.urls[i], patient_envelopes(1), removed)
        with pytest.raises(PermissionDeniedError, match=said):
            control.fetch_blocks(c.urls[i], 0, removed)
        with pytest.raises(PermissionDeniedError, match=said):
            control.get_status(c.urls[i], removed)
        with pytest.raises(AuthenticationError, match="current member"):
            control.submit(c.urls[i], patient_envelopes(1), stranger)
        # Public read-only stays public.
        with urllib.request.urlopen(c.urls[i] + "/checkpoint", timeout=10) as r:
            assert r.status == 200
        # Nothing was ordered by the refused submits; a member in force is served.
        assert c.status(i)["height"] == before
        assert control.fetch_blocks(c.urls[i], 0, c.node_key(1 - i))[:1]  # a CBOR export
        assert control.get_status(c.urls[i], c.node_key(1 - i))["height"] == before
    for i in (0, 1):  # logged, with the reason, without the signature or the nonce
        log = (c.folders[i] / "node.log").read_text()
        assert f"refused POST /submit from 127.0.0.1: {said}" in log, log[-2000:]
        assert f"refused GET /blocks from 127.0.0.1: {said}" in log
        for headers in sent:
            assert headers["signature"].split(":")[1] not in log
            nonce = headers["signature-input"].split('nonce="')[1].split('"')[0]
            assert nonce not in log
    # The CLI from org-2's folder: the message, exit 4, no traceback.
    for args in (("status", "--to", c.urls[0]), ("status", "--to", c.urls[1])):
        out = cli("consortium", *args, "--data", c.folders[GONE])
        assert out.returncode == 4, out.stdout + out.stderr
        assert said in " ".join((out.stdout + out.stderr).split()), out.stdout + out.stderr
        assert "Traceback" not in out.stdout + out.stderr


def test_a_removed_member_can_neither_write_to_etcd_nor_call_a_node(
        consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(3)))
    wait_until(c.converged, 30, "convergence")
    # Before: org-2's credentials work (the refusals below are about its removal).
    assert control.get_status(c.urls[0], c.node_key(GONE))["members"] == [
        "org-0", "org-1", "org-2"]
    own = Gateway(_endpoints(c, GONE), 3.0, TlsFiles.in_dir(str(c.folders[GONE] / "tls")))
    try:
        own.call("/v3/kv/put", {"key": b64(PREFIX + "sig/org-2/probe"), "value": b64("0")})
    finally:
        own.close()

    h = remove_member(c, tmp_path)
    for i in (0, 1):
        wait_until(lambda i=i: c.status(i)["height"] >= h - 1, 30, f"node {i} at the removal")
        assert c.status(i)["members"] == ["org-0", "org-1"]
    _etcd_refuses_the_removed_member(c)
    _endpoints_refuse_the_removed_member(c, h)
    gone = c.status(GONE)
    if gone["height"] >= h - 1:  # it derived the removal before its etcd user went
        assert gone["removed"].startswith(f"org-2 was removed from the consortium at "
                                          f"height {h}"), gone

    # The two remaining members keep committing, through either, 2 of 2 signing.
    for k in range(3):
        receipts = c.submit(patient_envelopes(3), prefer=k % 2)
        assert all(r["code"] == "ok" for r in receipts), receipts
    top = wait_until(lambda: (s := c.converged([0, 1])) and s["final_height"] > h and s, 40,
                     "the remaining pair to finalize past the removal")
    assert sorted(top["final_signers"]) == ["org-0", "org-1"]
    assert c.status(0)["rbac"] is None
    # A "stopped" report left under the removed member's name is no longer news.
    root = _root(c)
    try:
        root.call("/v3/kv/put", {"key": b64(PREFIX + "health/org-2"), "value": b64(json.dumps(
            {"ok": False, "height": 1, "reason": "left behind"}))})
    finally:
        root.close()
    mark = c.submit(patient_envelopes(1))[0]["height"]
    wait_until(lambda: (s := c.converged([0, 1])) and s["final_height"] >= mark, 40,
               "a round after the stale report")
    assert not [d for i in (0, 1) for d in c.status(i)["diverged"]], c.status(0)["diverged"]

    # No waiting for a restart: the remaining members' etcd never took a client certificate
    # from org-2's CA (each accepts its own organization's alone, devcluster), so one from
    # it, even naming etcd's root (test_rbac.py), fails the TLS handshake there.
    t1, t2 = c.folders[1] / "tls", c.folders[GONE] / "tls"
    secret = json.loads((t2 / "etcd-user.json").read_text())["password"]
    stale = TlsFiles(str(t1 / "trust.pem"), str(t2 / "etcd-client.pem"),
                     str(t2 / "etcd-client.key"), "member:org-2", secret)
    for k in (0, 1):
        endpoint = c.etcd_endpoint(k)
        said = _handshake_refusal(endpoint, stale)  # before any user check
        assert any(f"{kind}:" in said for kind in HANDSHAKE), said
        assert "authentication failed" not in said and secret not in said, said
        member = Gateway([endpoint], 3.0, TlsFiles.in_dir(str(c.folders[k] / "tls")))
        try:  # the positive control: the member's own organization gets in
            assert _get(member, PREFIX + "head/org-0") is not None
        finally:
            member.close()
    # Their peer ports still trust org-2's CA until they restart: the remaining nodes name
    # it and ask for the restart.
    dropped = f"CA sha256 {tls.fingerprint((t2 / 'ca.pem').read_bytes())[:16]}"
    for i in (0, 1):
        wait_until(lambda i=i: dropped in (c.status(i)["tls"] or "")
                   and "peer" in c.status(i)["tls"], 30,
                   f"node {i}'s status to name org-2's CA as still trusted by etcd")
    # Once the operators restart etcd with the bundle in force (what `cluster restart-etcd`
    # does), org-2's etcd member is out of the Raft cluster.
    lines = devcluster.restart_etcd(c.base)
    assert lines[0] == "removed etcd m2 of org-2 from the cluster", lines
    assert sum(line.startswith("restarted etcd") for line in lines) == 2, lines
    root = _root(c)
    try:
        listed = root.call("/v3/cluster/member/list", {}).body["members"]
        assert sorted(m["name"] for m in listed) == ["m0", "m1"]
    finally:
        root.close()
    receipts = c.submit(patient_envelopes(2), prefer=1)
    assert all(r["code"] == "ok" for r in receipts), receipts
    wait_until(lambda: (s := c.converged([0, 1])) and s["height"] >= receipts[0]["height"], 60,
               "the remaining pair to finalize after the etcd restart")

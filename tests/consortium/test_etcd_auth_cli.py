"""`consortium etcd-auth`: the documented member setup turns etcd access control on.

Two organizations' folders (`consortium keys`), a signed genesis, a real etcd with TLS and
client-certificate authentication; one operator runs `etcd-auth`; each member keeps its
user file; `consortium init` then works for both, and each member's credentials write only
its own keys.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from glucoledger.errors import OrderingError
from glucoledger.node.genesis_file import Genesis, create_member, member_of
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import TlsFiles
from glucoledger.ordering.etcd_kv import EtcdKV

from ..servers import start_etcd
from .conftest import require_etcd
from .test_rejoin import cli

CHAIN = "glucoledger/two-orgs"


def test_etcd_auth_then_init_each_member_writes_only_its_own_keys(tmp_path: Path) -> None:
    require_etcd()
    folders = [tmp_path / "a", tmp_path / "b"]
    members = [create_member(f, n) for f, n in zip(folders, ["org-a", "org-b"], strict=True)]
    genesis = Genesis(CHAIN, 2, tuple(members), {})
    for f in folders:
        name, wallet = member_of(f)
        genesis = genesis.sign(name, wallet.load("node"))
    gfile = tmp_path / "genesis.json"
    gfile.write_text(genesis.to_json())
    (tmp_path / "trust.pem").write_bytes(genesis.trust_bundle())
    ids = [TlsFiles(str(tmp_path / "trust.pem"), str(folders[0] / "tls" / "node.pem"),
                    str(folders[0] / "tls" / "node.key"))]
    cluster = start_etcd(tmp_path / "etcd", ids=ids)
    try:
        admin = tmp_path / "etcd-admin"
        out = cli("consortium", "etcd-auth", "--genesis", gfile, "--orderer", cluster.url,
                  "--admin", admin, "--data", folders[0])
        assert out.returncode == 0, out.stdout + out.stderr
        assert "member:org-a" in out.stdout and "member:org-b" in out.stdout
        handed = admin / "users" / "org-b" / "etcd-user.json"
        assert stat.S_IMODE(handed.stat().st_mode) == 0o600
        assert stat.S_IMODE((admin / "etcd-user.json").stat().st_mode) == 0o600
        assert json.loads((folders[0] / "tls" / "etcd-user.json").read_text())["user"] == \
            "member:org-a"
        (folders[1] / "tls" / "etcd-user.json").write_bytes(handed.read_bytes())
        (folders[1] / "tls" / "etcd-user.json").chmod(0o600)
        # A second run refuses, and says why (no traceback).
        again = cli("consortium", "etcd-auth", "--genesis", gfile, "--orderer", cluster.url,
                    "--admin", admin, "--data", folders[0])
        assert again.returncode != 0 and "already holds etcd's root" in again.stdout + \
            again.stderr and "Traceback" not in again.stderr
        for f in folders:
            done = cli("consortium", "init", "--genesis", gfile, "--orderer",
                       f"{cluster.url}?tls={f / 'tls'}", "--data", f)
            assert done.returncode == 0, done.stdout + done.stderr
        kvs = [EtcdKV.from_url(f"{cluster.url}?tls={f / 'tls'}", etcd_chain_key(CHAIN))
               for f in folders]
        try:
            kvs[1].put("health/org-b", b'{"ok": true}')
            with pytest.raises(OrderingError, match="permission denied"):
                kvs[1].put("health/org-a", b'{"ok": false}')
            with pytest.raises(OrderingError, match="permission denied"):
                kvs[0].put("ctl/org-b", b"http://127.0.0.1:1")
            assert kvs[0].scan("health/") == {"org-b": b'{"ok": true}'}
        finally:
            for kv in kvs:
                kv.close()
        # org-b lost its user file: a new password; the old one stops working.
        old = (folders[1] / "tls" / "etcd-user.json").read_bytes()
        renewed = cli("consortium", "etcd-user", "--name", "org-b", "--genesis", gfile,
                      "--orderer", cluster.url, "--admin", admin)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        assert handed.read_bytes() != old
        stale = EtcdKV.from_url(f"{cluster.url}?tls={folders[1] / 'tls'}",
                                etcd_chain_key(CHAIN))
        try:
            with pytest.raises(OrderingError, match="authentication failed"):
                stale.put("health/org-b", b'{"ok": true}')
        finally:
            stale.close()
        (folders[1] / "tls" / "etcd-user.json").write_bytes(handed.read_bytes())
        fresh = EtcdKV.from_url(f"{cluster.url}?tls={folders[1] / 'tls'}",
                                etcd_chain_key(CHAIN))
        try:
            fresh.put("health/org-b", b'{"ok": true, "again": 1}')
            # org-b is removed while the root holder's node is not running: root's operator
            # revokes it by hand; its live token and its password stop working at once.
            gone = cli("consortium", "etcd-user", "--name", "org-b", "--revoke", "--genesis",
                       gfile, "--orderer", cluster.url, "--admin", admin)
            assert gone.returncode == 0 and "deleted" in gone.stdout, gone.stdout + gone.stderr
            assert not handed.exists()
            with pytest.raises(OrderingError, match="authentication failed"):
                fresh.put("health/org-b", b'{"ok": true, "after": 1}')
            again = cli("consortium", "etcd-user", "--name", "org-b", "--revoke", "--genesis",
                        gfile, "--orderer", cluster.url, "--admin", admin)
            assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
        finally:
            fresh.close()
        ok = EtcdKV.from_url(f"{cluster.url}?tls={folders[0] / 'tls'}", etcd_chain_key(CHAIN))
        try:
            ok.put("health/org-a", b'{"ok": true}')  # the other member is untouched
            assert json.loads(ok.scan("health/")["org-b"]) == {"ok": True, "again": 1}
        finally:
            ok.close()
    finally:
        cluster.stop()

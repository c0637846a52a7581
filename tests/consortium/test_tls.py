"""etcd with TLS and client certificate authentication, from the consortium's own PKI."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from glucoledger.crypto import tls
from glucoledger.errors import OrderingError
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import TlsFiles
from glucoledger.ordering.etcd_kv import EtcdKV

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


def _kv(c: Consortium, files: TlsFiles | None, scheme: str = "",
        members: tuple[int, ...] = (1,)) -> EtcdKV:
    """A client of these etcd members (default org-1's own, whose identity the tests use)."""
    endpoints = [c.etcd_endpoint(i) for i in members]
    return EtcdKV([scheme + e for e in endpoints], etcd_chain_key(CHAIN), timeout=2.0,
                  tls=files)


def test_etcd_refuses_clients_without_a_member_certificate(consortium: Consortium,
                                                           tmp_path: Path) -> None:
    c = consortium
    assert c.state["tls"] is True
    # The nodes themselves work over TLS: blocks are derived, cosigned and final.
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(3)))
    wait_until(c.converged, 30, "convergence over TLS")
    bundle = str(c.base / "trust.pem")
    member = TlsFiles.in_dir(str(c.folders[1] / "tls"))
    ok = _kv(c, member)
    try:
        ok.put("sig/org-1/probe", b"1")  # its own key range (ordering.etcd_rbac)
        assert ok.scan("sig/org-1/")["probe"] == b"1"
    finally:
        ok.close()
    # Another CA's certificate, with the same member name and host: refused.
    now = datetime.datetime.now(datetime.UTC)
    rogue_ca = tls.make_ca("org-1", now)
    rogue = tls.issue(rogue_ca, "org-1", ["127.0.0.1"], now)
    (tmp_path / "rogue.pem").write_bytes(rogue.cert_pem)
    (tmp_path / "rogue.key").write_bytes(rogue.key_pem)
    attempts = {
        "no client certificate": TlsFiles(bundle),
        "a certificate from another CA": TlsFiles(bundle, str(tmp_path / "rogue.pem"),
                                                  str(tmp_path / "rogue.key")),
    }
    for what, files in attempts.items():
        kv = _kv(c, files, members=(0, 1, 2))  # refused by every etcd member
        try:
            with pytest.raises(OrderingError):
                kv.put("probe/intruder", what.encode())
        finally:
            kv.close()
    plain = _kv(c, None)  # plain HTTP to a TLS-only member
    try:
        with pytest.raises(OrderingError):
            plain.put("probe/intruder", b"plain")
    finally:
        plain.close()
    check = _kv(c, member)
    try:
        assert check.scan("probe/") == {}  # no intruder write landed
        assert check.scan("sig/org-1/")["probe"] == b"1"
    finally:
        check.close()

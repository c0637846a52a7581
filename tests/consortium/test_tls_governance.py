"""``gov.rotate_tls`` in the state machine (pure) and the trust bundle in force at a height
(``node.tlsrotation``): refusals change nothing, the bundle follows the stated height and
the member set, and the CLI refuses a file that is no CA with a message."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from glucoledger.crypto import tls
from glucoledger.errors import MalformedError
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node import tlsrotation
from glucoledger.state import Replica
from glucoledger.state.accounts_model import account_id, single_key_policy
from glucoledger.state.governance import tls_changes

from .test_governance import CHAIN, _founders, _run
from .test_rejoin import cli

NOW = datetime.datetime.now(datetime.UTC)


def test_rotate_tls_needs_the_threshold_a_member_a_ca_and_a_later_height() -> None:
    g, orgs, _ = _founders()
    replica = Replica(CHAIN)
    assert _run(replica, [g.envelope()]) == ["ok"]
    sender = account_id("organization", single_key_policy(orgs[0].public))
    ca = tls.make_ca("org-1", NOW).cert_pem

    def tx(body: dict[str, object], nonce: int = 0, signers: int = 2) -> bytes:
        return sign(Transaction(CHAIN, "gov.rotate_tls", body, sender, nonce),
                    orgs[:signers]).raw

    refused = [tx({"name": "org-1", "tls_ca": ca}, signers=1),
               tx({"name": "org-9", "tls_ca": ca}),
               tx({"name": "org-1", "tls_ca": b"not a certificate"}),
               tx({"name": "org-1", "tls_ca": ca + ca}),
               tx({"name": "org-1", "tls_ca": ca, "at": 1}),
               tx({"name": "org-1", "tls_ca": ca, "extra": 1})]
    codes = _run(replica, refused)
    assert codes == ["insufficient_signatures", "not_member", "malformed", "malformed",
                     "bad_height", "malformed"], codes
    assert tls_changes(replica.state) == []
    assert _run(replica, [tx({"name": "org-1", "tls_ca": ca, "at": 5})]) == ["ok"]
    assert tls_changes(replica.state) == [(5, "org-1", ca)]
    # A later change cannot be scheduled before one already recorded.
    assert _run(replica, [tx({"name": "org-2", "tls_ca": ca, "at": 4}, nonce=1)]) == [
        "bad_height"]
    assert tls_changes(replica.state) == [(5, "org-1", ca)]


def test_the_bundle_follows_the_stated_height_and_the_member_set() -> None:
    cas = {m: tls.make_ca(m, NOW).cert_pem for m in ("a", "b", "c")}
    new_b = tls.make_ca("b", NOW).cert_pem
    changes = [(5, "b", new_b)]
    assert tlsrotation.bundle_at(cas, changes, ["a", "b", "c"], 4) == cas["a"] + cas["b"] + cas["c"]
    assert tlsrotation.bundle_at(cas, changes, ["a", "b", "c"], 5) == cas["a"] + new_b + cas["c"]
    # A removed member drops out; an added one is trusted once its CA is recorded.
    assert tlsrotation.bundle_at(cas, changes, ["a", "b"], 6) == cas["a"] + new_b
    assert tlsrotation.bundle_at(cas, [(7, "d", cas["c"])], ["a", "d"], 6) == cas["a"]
    assert tlsrotation.bundle_at(cas, [(7, "d", cas["c"])], ["a", "d"], 7) == cas["a"] + cas["c"]


def test_apply_without_the_prepared_identity_says_which_ca_is_missing(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.pem").write_bytes(b"old")
    new = tls.make_ca("org-1", NOW).cert_pem
    try:
        tlsrotation.apply(tmp_path, "org-1", b"bundle", new)
    except Exception as exc:  # noqa: BLE001 - the type and message are the assertion
        assert type(exc).__name__ == "InputError"
        assert tls.fingerprint(new) in str(exc) and "rotate-cert" in str(exc)
    else:
        raise AssertionError("apply accepted a CA it does not hold")
    assert (tmp_path / "tls" / "ca.pem").read_bytes() == b"old"  # nothing changed
    assert not (tmp_path / "tls" / "trust.pem").exists()


def test_a_ca_leaving_the_bundle_is_named_with_what_etcd_still_allows(tmp_path: Path) -> None:
    """etcd's peer ports trust a dropped CA until they restart, and a removed organization's
    own etcd member takes its certificates, one naming etcd's root included (test_rbac.py),
    until it leaves the cluster: the change names the CA and says what to do. A bundle that
    only grows says neither."""
    (tmp_path / "tls").mkdir()
    cas = {m: tls.make_ca(m, NOW).cert_pem for m in ("a", "b", "c")}
    tlsrotation.apply(tmp_path, "a", cas["a"] + cas["b"] + cas["c"], None)
    changed = tlsrotation.apply(tmp_path, "a", cas["a"] + cas["b"], None)  # c removed
    said = " ".join(changed)
    assert f"CA sha256 {tls.fingerprint(cas['c'])[:16]}" in said, said
    assert "peer ports trust until they restart" in said and "member remove" in said, said
    for kept in "ab":
        assert tls.fingerprint(cas[kept])[:16] not in said, said
    assert (tmp_path / "tls" / "trust.pem").read_bytes() == cas["a"] + cas["b"]
    grown = tlsrotation.apply(tmp_path, "a", cas["a"] + cas["b"] + cas["c"], None)
    assert grown == ["the trust bundle (tls/trust.pem)"], grown
    assert tlsrotation.apply(tmp_path, "a", cas["a"] + cas["b"] + cas["c"], None) == []
    # A damaged bundle on disk is replaced, with nothing named as dropped from it.
    (tmp_path / "tls" / "trust.pem").write_bytes(cas["a"][:-40])
    assert tlsrotation.apply(tmp_path, "a", cas["a"], None) == [
        "the trust bundle (tls/trust.pem)"]
    assert (tmp_path / "tls" / "trust.pem").read_bytes() == cas["a"]
    assert tls.bundle_fingerprints(cas["a"] + cas["b"]) == {tls.fingerprint(cas["a"]),
                                                            tls.fingerprint(cas["b"])}
    with pytest.raises(MalformedError, match="not a bundle of PEM certificates"):
        tls.bundle_fingerprints(cas["a"][:-40])


def test_cli_refuses_a_file_that_is_no_ca(tmp_path: Path) -> None:
    leaf = tls.issue(tls.make_ca("x", NOW), "x", ["127.0.0.1"], NOW).cert_pem
    (tmp_path / "leaf.pem").write_bytes(leaf)
    out = cli("consortium", "propose", "rotate-cert", "--name", "org-1", "--ca",
              tmp_path / "leaf.pem", "--out", tmp_path / "p.cbor", "--data", tmp_path / "none")
    assert out.returncode != 0 and "not a CA" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "p.cbor").exists()
    missing = cli("consortium", "propose", "rotate-cert", "--name", "org-1",
                  "--out", tmp_path / "p.cbor", "--data", tmp_path / "none")
    assert missing.returncode != 0 and "--ca" in missing.stdout + missing.stderr
    nofolder = cli("consortium", "rotate-cert", "--data", tmp_path / "none")
    assert nofolder.returncode != 0 and "consortium keys" in nofolder.stdout + nofolder.stderr
    assert "Traceback" not in nofolder.stdout + nofolder.stderr

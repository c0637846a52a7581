"""Governance from the command line on a running consortium; finality by the set at h."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from glucoledger.errors import GlucoledgerError, SignatureError
from glucoledger.ledger.checkpoint import Checkpoint, parse_note, sign_checkpoint
from glucoledger.ledger.finality import cosign, verify_final_at
from glucoledger.node.service import Node
from glucoledger.state.governance import member_schedule

from .conftest import Consortium, patient_envelopes, wait_until
from .test_rejoin import cli


def _note(c: Consortium, i: int, height: int) -> bytes:
    db = sqlite3.connect(f"file:{c.folders[i] / 'chain.db'}?mode=ro", uri=True)
    try:
        (raw,) = db.execute("SELECT checkpoint FROM blocks WHERE height = ?",
                            (height,)).fetchone()
        return bytes(raw)
    finally:
        db.close()


@pytest.mark.slow
def test_remove_a_member_by_cli_old_checkpoints_keep_their_set(consortium: Consortium,
                                                                tmp_path: Path) -> None:
    c = consortium
    c.submit(patient_envelopes(3))
    wait_until(c.converged, 30, "convergence")
    proposal = tmp_path / "remove-org-2.cbor"
    out = cli("consortium", "propose", "member-remove", "--name", "org-2", "--threshold", "2",
              "--out", proposal, "--data", c.folders[0])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gov.member_remove" in out.stdout
    # One signature is not enough: the state machine refuses it and nothing changes.
    early = cli("consortium", "submit", proposal, "--to", c.urls[0], "--data", c.folders[0])
    assert early.returncode == 0 and "insufficient_signatures" in early.stdout, early.stdout
    signed = cli("consortium", "cosign", proposal, "--data", c.folders[1])
    assert signed.returncode == 0 and "2 signature(s)" in signed.stdout, signed.stdout
    again = cli("consortium", "cosign", proposal, "--data", c.folders[1])
    assert again.returncode != 0 and "already" in again.stdout + again.stderr
    done = cli("consortium", "submit", proposal, "--to", c.urls[1], "--data", c.folders[1])
    assert done.returncode == 0 and " ok" in done.stdout, done.stdout
    block = int(done.stdout.split(" block ")[1].split()[0])
    h = block + 1  # the removal takes effect from the next block
    c.submit(patient_envelopes(3))
    c.submit(patient_envelopes(3))
    wait_until(lambda: (s := c.converged([0, 1])) and s["final_height"] > h, 40,
               "finality after the removal")
    assert "org-2" not in c.status(0)["final_signers"]
    _only_current_members_call_node_endpoints(c)
    _removed_member_loses_etcd_access(c)
    c.kill_node(0, hard=False)
    with Node(c.folders[0], workers=1) as n:
        schedule = member_schedule(n.state)
    names_before = [v.name for v in schedule.at(h - 1)[0]]
    assert names_before == ["org-0", "org-1", "org-2"]
    assert [v.name for v in schedule.at(h)[0]] == ["org-0", "org-1"]
    # Before h: org-0 + org-2 are 2 of the 3 members then: final.
    def both(height: int, i: int, j: int) -> bytes:
        a, b = parse_note(_note(c, i, height)), parse_note(_note(c, j, height))
        assert a.text == b.text
        return cosign(a.text, [a, b])

    assert verify_final_at(both(h - 1, 0, 2), schedule).height == h - 1
    # From h on: org-2 no longer counts, org-0 + org-1 are needed. (org-2's node cannot
    # derive block h: its etcd user is gone; its key signs org-0's note text instead.)
    mine = parse_note(_note(c, 0, h))
    removed = sign_checkpoint(Checkpoint.parse_body(mine.text), c.node_key(2), "org-2")
    with pytest.raises(SignatureError, match="1 valid signature"):
        verify_final_at(cosign(mine.text, [mine, removed]), schedule)
    assert verify_final_at(both(h, 0, 1), schedule).height == h


def _removed_member_loses_etcd_access(c: Consortium) -> None:
    """Applying the removal revoked org-2's etcd user (node-0 holds the RBAC duty): its
    own credentials no longer write, not even its own keys; org-1's still do."""
    from glucoledger.node.service import etcd_chain_key
    from glucoledger.ordering.etcd import TlsFiles
    from glucoledger.ordering.etcd_kv import EtcdKV
    from glucoledger.ordering.etcd_rbac import EtcdAdmin

    from .conftest import CHAIN

    admin = EtcdAdmin.from_folder(str(c.state["etcd"]), c.folders[0] / "etcd-admin")
    try:
        wait_until(lambda: "member:org-2" not in admin.users(), 20, "org-2's etcd user gone")
        assert "member:org-1" in admin.users()
    finally:
        admin.close()
    endpoints = str(c.state["etcd"]).partition("://")[2].split(",")
    for i, allowed in ((2, False), (1, True)):
        kv = EtcdKV(endpoints, etcd_chain_key(CHAIN), timeout=3.0,
                    tls=TlsFiles.in_dir(str(c.folders[i] / "tls")))
        try:
            if allowed:
                kv.put(f"sig/org-{i}/probe", b"1")
            else:
                with pytest.raises(GlucoledgerError, match="authentication failed"):
                    kv.put(f"sig/org-{i}/probe", b"1")
        finally:
            kv.close()


def _only_current_members_call_node_endpoints(c: Consortium) -> None:
    """/blocks (node to node) needs an RFC 9421 signature by a current member's node key."""
    import urllib.error
    import urllib.request

    from glucoledger import codec, crypto
    from glucoledger.node import control
    from glucoledger.node.genesis_file import member_of

    url = c.urls[0]
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(url + "/blocks?from=0", timeout=10)
    assert unsigned.value.code == 401
    unsigned.value.close()
    removed = member_of(c.folders[2])[1].load("node")
    for key in (removed, crypto.generate()):
        with pytest.raises(GlucoledgerError, match="current member"):
            control.fetch_blocks(url, 0, key)
    member = member_of(c.folders[1])[1].load("node")
    assert control.fetch_blocks(url, 0, member)[:1]  # a CBOR export
    # /submit too: unsigned, a stranger's or the removed member's key: 401, nothing ordered.
    envelopes = patient_envelopes(1)
    req = urllib.request.Request(url + "/submit", data=codec.encode(envelopes), method="POST")
    with pytest.raises(urllib.error.HTTPError) as unsigned_post:
        urllib.request.urlopen(req, timeout=10)
    assert unsigned_post.value.code == 401
    unsigned_post.value.close()
    for key in (removed, crypto.generate()):
        with pytest.raises(GlucoledgerError, match="current member"):
            control.submit(url, envelopes, key)
    before = c.status(0)["height"]
    [r] = control.submit(url, envelopes, member)
    assert r["code"] == "ok" and r["height"] > before  # ordered only now, exactly once

"""Governance from the command line on a running consortium; finality by the set at h."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from glucoledger.errors import SignatureError
from glucoledger.ledger.checkpoint import Checkpoint, parse_note, sign_checkpoint
from glucoledger.ledger.finality import cosign, verify_final_at
from glucoledger.node.service import Node
from glucoledger.state.governance import member_schedule

from ..servers import local_consortium
from .conftest import Consortium, patient_envelopes, wait_until
from .test_compressed_log import _batch_versions
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
    # (What org-2 can still do with its credentials: nothing; test_removed_member.py.)
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

    # org-2's last block: h - 1 if it derived that one before the root holder, deriving it
    # too, revoked its etcd user (a race it may lose: it reads through its own etcd member).
    db = sqlite3.connect(f"file:{c.folders[2] / 'chain.db'}?mode=ro", uri=True)
    try:
        (last,) = db.execute("SELECT MAX(height) FROM blocks WHERE height < ?",
                             (h,)).fetchone()
    finally:
        db.close()
    assert last is not None and last >= 1, last
    assert verify_final_at(both(last, 0, 2), schedule).height == last
    # From h on: org-2 no longer counts, org-0 + org-1 are needed. (org-2's node cannot
    # derive block h: its etcd user is gone; its key signs org-0's note text instead.)
    mine = parse_note(_note(c, 0, h))
    removed = sign_checkpoint(Checkpoint.parse_body(mine.text), c.node_key(2), "org-2")
    with pytest.raises(SignatureError, match="1 valid signature"):
        verify_final_at(cosign(mine.text, [mine, removed]), schedule)
    assert verify_final_at(both(h, 0, 1), schedule).height == h


@pytest.mark.slow
def test_a_consortium_founded_before_rule_set_2_upgrades_by_proposal(tmp_path: Path) -> None:
    """Every member derives the upgrade the same way (one final root for all three), from
    the transaction after it; one member's signature alone is refused."""
    from glucoledger.state.accounts import access_records, rules

    with local_consortium(tmp_path / "c", rules=1, access_records=1) as state:
        c = Consortium(tmp_path / "c", state)
        c.submit(patient_envelopes(2))
        assert set(_batch_versions(c).values()) == {1}  # rule set 1: plain batches
        proposal = tmp_path / "upgrade.cbor"
        out = cli("consortium", "propose", "upgrade", "--out", proposal, "--data", c.folders[0])
        assert out.returncode == 0, out.stdout + out.stderr
        assert "gov.upgrade" in out.stdout and "'rules': 5" in out.stdout, out.stdout
        early = cli("consortium", "submit", proposal, "--to", c.urls[0], "--data", c.folders[0])
        assert early.returncode == 0 and "insufficient_signatures" in early.stdout, early.stdout
        assert cli("consortium", "cosign", proposal, "--data", c.folders[2]).returncode == 0
        done = cli("consortium", "submit", proposal, "--to", c.urls[2], "--data", c.folders[2])
        assert done.returncode == 0 and " ok" in done.stdout, done.stdout
        c.submit(patient_envelopes(2))
        top = int(done.stdout.split(" block ")[1].split()[0])
        wait_until(lambda: (s := c.converged()) and s["final_height"] > top, 40,
                   "every member final past the upgrade")
        assert 2 in _batch_versions(c).values()  # rule set 5: compressed from then on
        nothing = cli("consortium", "propose", "upgrade", "--out", tmp_path / "again.cbor",
                      "--data", c.folders[1])
        assert nothing.returncode == 2 and "nothing to propose" in nothing.stderr
        c.kill_node(1, hard=False)
        with Node(c.folders[1], workers=1) as n:
            assert (rules(n.state), access_records(n.state)) == (5, 2)

"""A member's node key rotated by governance (``gov.rotate_key``) on a running consortium.

org-1 makes a new key (`consortium node-key`), the members propose, cosign and submit the
rotation; from the height it states, org-1's node signs its checkpoints with the new key
and the old key counts for nothing (finality, node-to-node requests), while checkpoints
before that height keep verifying with the old one. The three nodes go on finalizing blocks
across the rotation, and org-1's node restarts cleanly with blocks signed by both keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger.errors import PermissionDeniedError, SignatureError
from glucoledger.ledger.checkpoint import Checkpoint, NoteVerifier, parse_note, sign_checkpoint
from glucoledger.ledger.finality import cosign, verify_final_at
from glucoledger.node import control
from glucoledger.node.genesis_file import member_of
from glucoledger.node.service import Node
from glucoledger.node.verifyfolder import verify_folder
from glucoledger.state.governance import member_schedule

from .conftest import Consortium, patient_envelopes, wait_until
from .test_governance_cli import _note
from .test_rejoin import cli


def test_a_rotated_node_key_signs_from_its_height_and_the_old_one_is_refused(
        consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    c.submit(patient_envelopes(3))
    wait_until(c.converged, 30, "convergence")
    old_key = member_of(c.folders[1])[1].load("node")
    made = cli("consortium", "node-key", "--data", c.folders[1])
    assert made.returncode == 0, made.stdout + made.stderr
    vkey = made.stdout.strip().replace("\n", "")
    new_public = NoteVerifier.parse(vkey).key
    assert new_public != old_key.public
    proposal = tmp_path / "rotate-org-1.cbor"
    out = cli("consortium", "propose", "rotate-key", "--name", "org-1", "--vkey", vkey,
              "--out", proposal, "--data", c.folders[0])
    assert out.returncode == 0 and "gov.rotate_key" in out.stdout, out.stdout + out.stderr
    signed = cli("consortium", "cosign", proposal, "--data", c.folders[1])
    assert signed.returncode == 0, signed.stdout + signed.stderr
    done = cli("consortium", "submit", proposal, "--to", c.urls[0], "--data", c.folders[0])
    assert done.returncode == 0 and " ok" in done.stdout, done.stdout
    h = int(done.stdout.split(" block ")[1].split()[0]) + 1  # in force from the next block
    for _ in range(3):
        c.submit(patient_envelopes(2))
    st = wait_until(lambda: (s := c.converged()) and s["final_height"] > h and s, 60,
                    "finality across the rotation on all three nodes")
    # org-1 still cosigns (with its new key): nobody reports it diverged or stopped.
    assert all(not c.status(i)["diverged"] and c.status(i)["refusing"] is None
               for i in range(3))
    # org-1's own notes: old key before h, new key from h on.
    before, after = parse_note(_note(c, 1, h - 1)), parse_note(_note(c, 1, h))
    old_v, new_v = NoteVerifier("org-1", old_key.public), NoteVerifier("org-1", new_public)
    assert before.verify([old_v]) == ["org-1"]
    assert after.verify([new_v]) == ["org-1"]
    with pytest.raises(SignatureError):
        after.verify([old_v])
    with Node(c.folders[0], workers=1) as n:
        schedule = member_schedule(n.state)
    # Finality by the set at each height: org-0 + org-1(old) is final before h ...
    ours = parse_note(_note(c, 0, h - 1))
    assert verify_final_at(cosign(ours.text, [ours, before]), schedule).height == h - 1
    # ... and from h on the old key's signature counts for nothing, the new one's does.
    ours = parse_note(_note(c, 0, h))
    stale = sign_checkpoint(Checkpoint.parse_body(ours.text), old_key, "org-1")
    with pytest.raises(SignatureError, match="1 valid signature"):
        verify_final_at(cosign(ours.text, [ours, stale]), schedule)
    assert verify_final_at(cosign(ours.text, [ours, after]), schedule).height == h
    # Node-to-node requests: the old key is no longer a current member's (403, the height).
    with pytest.raises(PermissionDeniedError, match=f"replaced at height {h}") as refused:
        control.submit(c.urls[0], patient_envelopes(1), old_key, timeout=10)
    assert refused.value.code == "replaced_key" and "org-1" in refused.value.message
    # The member's tools move on to the wallet's next key by themselves.
    status = cli("consortium", "status", "--to", c.urls[0], "--data", c.folders[1])
    assert status.returncode == 0 and '"org-1"' in status.stdout, status.stdout + status.stderr
    new_key = next(k for k in (member_of(c.folders[1])[1].load(n)
                               for n in member_of(c.folders[1])[1].names())
                   if k.public == new_public)
    [r] = control.submit(c.urls[0], patient_envelopes(1), new_key, timeout=30)
    assert r["code"] == "ok"
    # org-1's node restarts: its store (blocks signed by both keys) passes the check.
    c.kill_node(1, hard=True)
    c.start_node(1)
    c.submit(patient_envelopes(2), prefer=2)
    st = wait_until(lambda: (s := c.converged()) and s["final_height"] > h + 1 and s, 60,
                    "convergence after org-1 restarted")
    assert all(not c.status(i)["diverged"] for i in range(3))
    assert c.status(1)["refusing"] is None and st["height"] == c.status(1)["height"]
    top = parse_note(_note(c, 1, st["final_height"]))
    assert top.verify([new_v]) == ["org-1"]
    # `glucoledger verify` of org-1's folder checks each block with the key of its height.
    report = verify_folder(c.folders[1], workers=1)
    assert report.blocks > st["final_height"], report


def test_a_node_without_its_rotated_key_stops_and_says_which_key_then_resumes(
        consortium: Consortium, tmp_path: Path) -> None:
    """The rotation names a key org-1's wallet does not hold: at that height its node stops
    (it must not sign with a key the consortium no longer counts), says which key to add,
    and the others name it and go on; with the key added it resumes."""
    from glucoledger.crypto import generate

    c = consortium
    c.submit(patient_envelopes(2))
    wait_until(c.converged, 30, "convergence")
    elsewhere = generate("ed25519")  # made on another machine, not in org-1's wallet
    vkey = NoteVerifier("org-1", elsewhere.public).vkey()
    proposal = tmp_path / "rotate.cbor"
    assert cli("consortium", "propose", "rotate-key", "--name", "org-1", "--vkey", vkey,
               "--out", proposal, "--data", c.folders[0]).returncode == 0
    assert cli("consortium", "cosign", proposal, "--data", c.folders[2]).returncode == 0
    done = cli("consortium", "submit", proposal, "--to", c.urls[0], "--data", c.folders[0])
    assert done.returncode == 0 and " ok" in done.stdout, done.stdout
    h = int(done.stdout.split(" block ")[1].split()[0]) + 1
    c.submit(patient_envelopes(2), prefer=0)
    st = wait_until(lambda: c.status(1)["refusing"] and c.status(1), 40, "org-1 to stop")
    assert "wallet does not hold it" in st["refusing"] and vkey in st["refusing"]
    assert "consortium node-key" in st["refusing"]
    assert st["height"] == h - 1  # nothing at or after h was signed with the old key
    report = wait_until(lambda: [d for d in c.status(0)["diverged"] if d["node"] == "org-1"],
                        30, "org-0 naming org-1")[0]
    assert "stopped" in report["text"]
    wait_until(lambda: c.converged([0, 2]) and c.status(0)["final_height"] >= h, 40,
               "org-0 and org-2 finalizing without org-1")
    # The operator adds the key and restarts the node: it signs from h with it.
    c.kill_node(1, hard=False)
    member_of(c.folders[1])[1].save("node-7", elsewhere)
    c.start_node(1)
    c.submit(patient_envelopes(2), prefer=0)
    wait_until(lambda: c.converged() and c.status(1)["refusing"] is None, 60,
               "org-1 back and converged")
    assert parse_note(_note(c, 1, h)).verify([NoteVerifier("org-1", elsewhere.public)]) == \
        ["org-1"]

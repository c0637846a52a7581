"""``finality.decide`` against notes a misbehaving member publishes under its own key.

A member writes only ``sig/<its name>/<height>`` but may put any bytes there. These pin
what it can no longer do (docs/threat-model.md, "Cosigned checkpoints"): put lines in other
members' names into the final note (each note counts only for its writer's verified line),
have its note attributed to another member (the etcd key's name decides, not the note's
first line), or stop finality with a signed note that is not a checkpoint (reported, named,
and the other notes judged without it). The same rule runs against a live consortium in
tests/consortium/test_side_key_misbehaviour.py.
"""

from __future__ import annotations

from glucoledger import crypto
from glucoledger.ledger.checkpoint import (
    Checkpoint,
    NoteVerifier,
    SignedNote,
    parse_note,
    sign_checkpoint,
)
from glucoledger.ledger.finality import MemberSchedule, decide, verify_final_at

NAMES = ["org-0", "org-1", "org-2"]
KEYS = {n: crypto.generate("ed25519") for n in NAMES}
SCHEDULE = MemberSchedule.fixed([NoteVerifier(n, KEYS[n].public) for n in NAMES], 2)


def _cp(height: int, root: bytes = b"\x01" * 32) -> Checkpoint:
    return Checkpoint("glucoledger/test", 10 + height, root, height, b"\x02" * 32,
                      1_700_000_000_000 + height)


def _note(cp: Checkpoint, name: str) -> SignedNote:
    return sign_checkpoint(cp, KEYS[name], name)


def test_lines_in_other_members_names_never_reach_the_final_note() -> None:
    cp = _cp(5)
    good0 = _note(cp, "org-0")
    good2 = _note(cp, "org-2")
    # org-2's note: its own valid line plus a junk line in org-0's name (org-0's cosigner
    # key id, a zero signature), listed after org-0's real one would be merged.
    junk = ("org-0", NoteVerifier("org-0", KEYS["org-0"].public).cosigner_key_id, bytes(72))
    evil = SignedNote(cp.body(), (good2.signatures[0], junk)).encode()
    published = {5: {"org-0": good0.encode(), "org-2": evil}}
    final, diverged = decide(published, SCHEDULE, {5: cp.body()})
    assert final is not None and final.checkpoint == cp and not diverged
    assert final.signers == ("org-0", "org-2")
    assert verify_final_at(final.note, SCHEDULE) == cp  # org-0's real line, not the junk
    lines = parse_note(final.note).signatures
    assert sorted(s[0] for s in lines) == ["org-0", "org-2"]
    assert good0.signatures[0] in lines


def test_a_note_counts_for_its_key_s_member_only() -> None:
    cp = _cp(5)
    # org-2 republishes org-0's and org-1's valid lines under its own key: they count for
    # nobody (org-2's key holds no line of org-2), so nothing is final on org-2's word.
    both = SignedNote(cp.body(), (_note(cp, "org-0").signatures[0],
                                  _note(cp, "org-1").signatures[0])).encode()
    final, _ = decide({5: {"org-2": both}}, SCHEDULE, {})
    assert final is None


def test_a_forked_note_is_blamed_on_its_writer_not_the_first_line_s_name() -> None:
    cp, fork = _cp(5), _cp(5, b"\x09" * 32)
    junk = ("org-0", NoteVerifier("org-0", KEYS["org-0"].public).cosigner_key_id, bytes(72))
    evil = SignedNote(fork.body(), (junk, _note(fork, "org-2").signatures[0])).encode()
    published = {5: {"org-0": _note(cp, "org-0").encode(), "org-1": _note(cp, "org-1").encode(),
                     "org-2": evil}}
    final, diverged = decide(published, SCHEDULE, {5: cp.body()})
    assert final is not None and final.signers == ("org-0", "org-1")
    assert [(d.node, d.detail) for d in diverged] == [("org-2", "different log root")]


def test_a_signed_note_that_is_not_a_checkpoint_is_reported_and_finality_goes_on() -> None:
    cp4, cp5 = _cp(4), _cp(5)
    bad = SignedNote(b"not a checkpoint\n", ()).cosign(KEYS["org-2"], "org-2", 0).encode()
    published = {4: {"org-0": _note(cp4, "org-0").encode(), "org-2": bad},
                 5: {"org-0": _note(cp5, "org-0").encode(),
                     "org-1": _note(cp5, "org-1").encode()}}
    final, diverged = decide(published, SCHEDULE, {4: cp4.body(), 5: cp5.body()})
    assert final is not None and final.checkpoint == cp5
    assert len(diverged) == 1 and diverged[0].node == "org-2" and diverged[0].height == 4
    assert "not a checkpoint" in diverged[0].detail
    assert "org-2" in diverged[0].describe()


def test_a_checkpoint_published_as_another_height_is_reported() -> None:
    cp4, cp5 = _cp(4), _cp(5)
    published = {5: {"org-0": _note(cp5, "org-0").encode(), "org-1": _note(cp5, "org-1").encode(),
                     "org-2": _note(cp4, "org-2").encode()}}
    final, diverged = decide(published, SCHEDULE, {5: cp5.body()})
    assert final is not None and final.checkpoint == cp5
    assert [d.node for d in diverged] == ["org-2"]
    assert "height 4" in diverged[0].detail

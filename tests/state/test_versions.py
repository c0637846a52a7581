"""The ``doc.version`` contract's record of a move: a change that gives a document another
identity keeps one version chain (state/versions.py). Every refusal has its reason code and
changes nothing."""

from __future__ import annotations

from typing import Any

from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.world import World
from glucoledger.state.versions import alias_of, versions_of

A, B, C, D = (bytes([i]) * 32 for i in (1, 2, 3, 4))
CT1, CT2, CT3 = (bytes([0x40 + i]) * 32 for i in (1, 2, 3))


def _version(world: World, patient: Any, **body: Any) -> tuple[bool, str]:
    node = world.node
    stx = sign(Transaction(node.chain, "doc.version", {"patient": patient.id, **body},
                           patient.id, node.next_nonce(patient.id)), [patient.key])
    receipt = node.submit([stx.raw])[0]
    return receipt.ok, receipt.result.code


def test_a_move_keeps_one_chain_and_refusals_change_nothing(world: World) -> None:
    alice = world.add_patient("alice")
    state = world.node.state
    assert alias_of(state, alice.id, B) == B
    assert _version(world, alice, doc=A, n=2, cts=[CT1], moved=B) == (True, "ok")
    assert alias_of(state, alice.id, B) == A
    assert versions_of(state, alice.id, A)[-1]["moved"] == B
    assert versions_of(state, alice.id, B) == []
    # moving again to an identity it already has, or back to its own: fine
    assert _version(world, alice, doc=A, n=3, cts=[CT2], moved=B)[0]
    assert _version(world, alice, doc=D, n=2, cts=[CT3])[0]  # D: a document of its own
    refusals = [
        ({"doc": C, "n": 2, "cts": [CT3], "moved": B}, "identity_taken"),  # B is A's
        ({"doc": A, "n": 4, "cts": [CT3], "moved": D}, "identity_taken"),  # D has versions
        ({"doc": B, "n": 2, "cts": [CT3]}, "malformed"),  # B names no document
        ({"doc": A, "n": 4, "cts": [CT3], "moved": A}, "malformed"),
        ({"doc": A, "n": 4, "cts": [], "moved": C}, "malformed"),  # a deletion moves nothing
        ({"doc": A, "n": 4, "cts": [CT3], "moved": b"short"}, "malformed"),
        ({"doc": A, "n": 4, "cts": [CT3], "moved": C, "extra": 1}, "malformed"),
    ]
    for body, code in refusals:
        before = (versions_of(state, alice.id, A), alias_of(state, alice.id, C),
                  versions_of(state, alice.id, C), alias_of(state, alice.id, D))
        assert _version(world, alice, **body) == (False, code), body
        assert (versions_of(state, alice.id, A), alias_of(state, alice.id, C),
                versions_of(state, alice.id, C), alias_of(state, alice.id, D)) == before
    # another patient's identities are her own: the same tags move freely there
    bob = world.add_patient("bob")
    assert _version(world, bob, doc=C, n=2, cts=[CT3], moved=B) == (True, "ok")
    assert alias_of(state, bob.id, B) == C and alias_of(state, alice.id, B) == A

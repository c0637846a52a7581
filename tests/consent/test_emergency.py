"""Emergency access in two steps: the clinician asks, the trusted party approves elsewhere.

On a real node (SQLite, real signatures), through the node functions every edge calls
(node/emergency.py), and straight at the state machine with hand-signed transactions (what a
client holding its own keys could send). Each refusal says why, and changes nothing: not the
state, and (for the node functions, which check first) not even the log's height.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from glucoledger.crypto import generate
from glucoledger.errors import (
    ExpiredError,
    GlucoledgerError,
    OutOfRangeError,
    PermissionDeniedError,
    RejectedError,
)
from glucoledger.ledger.tx import SignedTx, Transaction, sign
from glucoledger.node import accounts
from glucoledger.node import emergency as em
from glucoledger.node.access import AccessDeniedError
from glucoledger.node.audit import audit_trail
from glucoledger.node.devices import create_keyed_account
from glucoledger.state.accounts_model import make_policy
from glucoledger.state.emergency import REQUEST_TTL_MS

from .conftest import HOUR, Care, Person


def _ask(care: Care, *, hours: int = 4, days: int = 3,
         reason: str = "unresponsive, suspected hypo") -> em.EmergencyRequest:
    r, new = em.request(care.node, care.endo.id, care.endo.keys, care.alice.id, hours=hours,
                        days=days, reason=reason)
    assert new and r.status == "pending"
    return r


def _frozen(care: Care) -> tuple[int, dict[str, bytes]]:
    return care.node.store.height(), care.node.state.snapshot()


def _refused(care: Care, fn: Callable[[], Any], error: type[GlucoledgerError], code: str,
             words: str) -> GlucoledgerError:
    """``fn`` raises ``error`` with ``code`` and a message saying ``words``; nothing changes."""
    before = _frozen(care)
    with pytest.raises(error) as info:
        fn()
    assert info.value.code == code, info.value
    assert words in info.value.message, info.value.message
    assert _frozen(care) == before, "a refused request changed the ledger"
    return info.value


def test_request_waits_then_trusted_party_approves_from_her_own_account(care: Care) -> None:
    r = _ask(care, hours=4)
    # pending: on the ledger, first in alice's audit trail, but nothing opens yet
    trail = audit_trail(care.node, care.alice.id)
    assert trail[0].kind == "emergency_request" and trail[0].emergency
    assert trail[0].who == care.endo.id and "suspected hypo" in trail[0].detail
    with pytest.raises(AccessDeniedError) as denied:
        care.access.read(care.request(care.endo).raw)
    assert denied.value.code == "no_grant"
    # rosa sees it with who asks, why and for how long; carer (nobody's trusted party) doesn't
    [seen] = em.pending_for(care.node, care.rosa.id)
    assert (seen.id, seen.clinician, seen.patient, seen.hours, seen.reason) == (
        r.id, care.endo.id, care.alice.id, 4, "unresponsive, suspected hypo")
    assert seen.expires_ms == seen.requested_ms + REQUEST_TTL_MS
    assert em.pending_for(care.node, care.carer.id) == []
    assert em.pending_for(care.node, care.endo.id) == []
    alice_nonce = care.node.next_nonce(care.alice.id)

    done = em.approve(care.node, care.rosa.id, care.rosa.keys, r.id)
    assert done.status == "approved" and done.grant == r.id and done.decided_by == care.rosa.id
    assert care.node.next_nonce(care.alice.id) == alice_nonce  # never the patient's nonce
    assert em.pending_for(care.node, care.rosa.id) == []
    rel = care.access.read(care.request(care.endo).raw)
    assert rel.grounds.emergency and rel.grounds.grant == r.id and rel.records
    # open for the requested hours from the approval's block, then expired
    care.clock.advance(4 * HOUR + 1)
    with pytest.raises(AccessDeniedError) as late:
        care.access.read(care.request(care.endo).raw)
    assert late.value.code == "expired"
    trail = audit_trail(care.node, care.alice.id)
    # emergencies first (newest first among them): the emergency read, the opening, the request
    assert [e.kind for e in trail[:3]] == ["access", "emergency", "emergency_request"]
    assert all(e.emergency for e in trail[:3]) and not any(e.emergency for e in trail[3:])
    assert trail[3].kind == "access" and trail[3].decision == "deny"  # the late read
    opened = next(e for e in trail if e.kind == "emergency")
    assert opened.who == care.endo.id and opened.outcome == "opened"
    assert opened.decided_by == care.rosa.id
    assert "rosa" not in opened.detail  # names are not on the ledger; ids are


def test_second_request_of_the_same_clinician_is_the_same_request(care: Care) -> None:
    r = _ask(care)
    height = care.node.store.height()
    again, new = em.request(care.node, care.endo.id, care.endo.keys, care.alice.id, hours=2,
                            days=1, reason="double click")
    assert not new and again.id == r.id and care.node.store.height() == height


def test_wrong_trusted_party_cannot_approve(care: Care) -> None:
    r = _ask(care)
    _refused(care, lambda: em.approve(care.node, care.carer.id, care.carer.keys, r.id),
             PermissionDeniedError, "not_trusted_party", "not a trusted party of this patient")
    _refused(care, lambda: em.approve(care.node, care.nurse.id, care.nurse.keys, r.id),
             PermissionDeniedError, "not_trusted_party", "not a trusted party")
    assert em.get(care.node, r.id).status == "pending"


def test_trusted_party_of_another_patient_cannot_approve(care: Care) -> None:
    tom = Person("tom", *_custodial(care, "tom", "trusted"))
    accounts.create_account(care.node, "pat", "patient", trusted="tom")
    r = _ask(care)
    _refused(care, lambda: em.approve(care.node, tom.id, tom.keys, r.id),
             PermissionDeniedError, "not_trusted_party", "not a trusted party")
    assert em.pending_for(care.node, tom.id) == []


def test_clinician_cannot_approve_her_own_request(care: Care) -> None:
    r = _ask(care)
    _refused(care, lambda: em.approve(care.node, care.endo.id, care.endo.keys, r.id),
             PermissionDeniedError, "self_approval", "trusted party decides")


def test_request_expires_unapproved(care: Care) -> None:
    r = _ask(care)
    care.clock.advance(REQUEST_TTL_MS + 1)
    assert em.get(care.node, r.id).status == "expired"
    assert em.pending_for(care.node, care.rosa.id) == []
    _refused(care, lambda: em.approve(care.node, care.rosa.id, care.rosa.keys, r.id),
             ExpiredError, "expired", "the clinician must ask again")
    # asking again works, and makes a new request
    assert _ask(care).id != r.id


def test_approving_twice_is_harmless(care: Care) -> None:
    r = _ask(care)
    em.approve(care.node, care.rosa.id, care.rosa.keys, r.id)
    grants = care.node.state.get("grants/" + care.alice.id.hex())
    _refused(care, lambda: em.approve(care.node, care.rosa.id, care.rosa.keys, r.id),
             RejectedError, "already_approved", "access is open")
    assert care.node.state.get("grants/" + care.alice.id.hex()) == grants


def test_request_by_non_clinician_is_refused(care: Care) -> None:
    for who in (care.rosa, care.alice):
        _refused(care, lambda who=who: em.request(care.node, who.id, who.keys, care.alice.id,
                                                  hours=2, days=1, reason="let me in"),
                 PermissionDeniedError, "not_clinician", "requested by a clinician")


@pytest.mark.parametrize(("scope", "words"), [
    ({"hours": 25}, "1 to 24 hours"), ({"hours": 0}, "1 to 24 hours"),
    ({"days": 91}, "1 to 90 days"), ({"reason": ""}, "1 to 200 characters"),
    ({"reason": "x" * 201}, "1 to 200 characters")])
def test_out_of_range_request_is_refused_with_the_rule(care: Care, scope: dict[str, Any],
                                                       words: str) -> None:
    _refused(care, lambda: em.request(care.node, care.endo.id, care.endo.keys, care.alice.id,
                                      **{"hours": 4, "days": 3, "reason": "x", **scope}),
             OutOfRangeError, "out_of_range", words)
    # the state machine holds the same rule for a client signing its own request
    stx = _tx(care, care.endo, "emergency.request",
              {"patient": care.alice.id, "hours": 4, "days": 3, "reason": "x", **scope})
    _machine_refuses(care, stx, "malformed")


def test_decline_closes_the_request(care: Care) -> None:
    r = _ask(care)
    done = em.decline(care.node, care.rosa.id, care.rosa.keys, r.id)
    assert done.status == "declined"
    _refused(care, lambda: em.approve(care.node, care.rosa.id, care.rosa.keys, r.id),
             RejectedError, "already_declined", "asks again")
    with pytest.raises(AccessDeniedError):
        care.access.read(care.request(care.endo).raw)
    kinds = [e.kind for e in audit_trail(care.node, care.alice.id) if e.emergency]
    assert "emergency_declined" in kinds and "emergency" not in kinds


def test_patient_may_decline_but_not_approve(care: Care) -> None:
    r = _ask(care)
    _refused(care, lambda: em.approve(care.node, care.alice.id, care.alice.keys[:1], r.id),
             PermissionDeniedError, "not_trusted_party", "not a trusted party")
    assert em.decline(care.node, care.alice.id, care.alice.keys[:1], r.id).status == "declined"


def _custodial(care: Care, name: str, kind: str) -> tuple[bytes, list[Any]]:
    ident, _ = accounts.create_account(care.node, name, kind)
    return ident.id, accounts.keys_of(care.node, ident)


def test_two_trusted_parties_both_needed_when_her_policy_says_so(care: Care) -> None:
    t1 = Person("t1", *_custodial(care, "t1", "trusted"))
    t2 = Person("t2", *_custodial(care, "t2", "trusted"))
    k1, k2 = generate(), generate()
    owner = {"default": 1, "emergency": 0}
    trusted = {"default": 0, "cosigners": 1, "emergency": 1}
    policy = make_policy([(k1.public, owner), (k2.public, owner), (t1.keys[0].public, trusted),
                          (t2.keys[0].public, trusted)],
                         {"default": 1, "cosigners": 2, "emergency": 2})
    pid = create_keyed_account(care.node, "patient", [k1, k2], policy=policy)
    r, _ = em.request(care.node, care.endo.id, care.endo.keys, pid, hours=2, days=1,
                      reason="found unconscious")
    half = em.approve(care.node, t1.id, t1.keys, r.id)
    assert half.status == "pending" and len(half.approvals) == 1
    assert em.pending_for(care.node, t1.id) == []  # she did her part
    assert [x.id for x in em.pending_for(care.node, t2.id)] == [r.id]
    _refused(care, lambda: em.approve(care.node, t1.id, t1.keys, r.id),
             RejectedError, "already_approved", "other cosigners")
    assert em.approve(care.node, t2.id, t2.keys, r.id).status == "approved"


# --- straight at the state machine: what a client signing its own transactions could send --

def _tx(care: Care, who: Person, type_: str, body: dict[str, Any],
        keys: list[Any] | None = None, nonce: int | None = None) -> SignedTx:
    n = care.node.next_nonce(who.id) if nonce is None else nonce
    return sign(Transaction(care.node.chain, type_, body, who.id, n), keys or who.keys[:1])


def _machine_refuses(care: Care, stx: SignedTx, code: str) -> None:
    state = care.node.state.snapshot()
    r = care.node.submit([stx.raw])[0]
    assert r.result.code == code, r.result
    assert r.result.message  # every refusal says why
    assert care.node.state.snapshot() == state


def test_the_machine_refuses_what_the_node_checks(care: Care) -> None:
    r = _ask(care)
    body = {"request": r.id, "patient": care.alice.id}
    # another trusted party, on her own account
    _machine_refuses(care, _tx(care, care.carer, "emergency.approve", body), "not_trusted_party")
    # the clinician herself, even adding a key that is not hers
    _machine_refuses(care, _tx(care, care.endo, "emergency.approve", body), "self_approval")
    # rosa's key on carer's account: a key of another account
    _machine_refuses(care, _tx(care, care.carer, "emergency.approve", body,
                               keys=care.rosa.keys[:1]), "not_cosigner")
    # a wrong patient for the request
    _machine_refuses(care, _tx(care, care.rosa, "emergency.approve",
                               {**body, "patient": care.bob.id}), "malformed")
    # a request by a trusted party
    _machine_refuses(care, _tx(care, care.rosa, "emergency.request", {
        "patient": care.alice.id, "hours": 2, "days": 1, "reason": "r"}), "not_clinician")
    # a second live request by the same clinician
    _machine_refuses(care, _tx(care, care.endo, "emergency.request", {
        "patient": care.alice.id, "hours": 2, "days": 1, "reason": "r"}), "already_requested")
    ok = _tx(care, care.rosa, "emergency.approve", body)
    assert care.node.submit([ok.raw])[0].ok
    # replayed, and approved again with a fresh nonce
    _machine_refuses(care, ok, "bad_nonce")
    _machine_refuses(care, _tx(care, care.rosa, "emergency.approve", body), "already_approved")


def test_the_machine_refuses_an_expired_request(care: Care) -> None:
    r = _ask(care)
    care.clock.advance(REQUEST_TTL_MS)
    _machine_refuses(care, _tx(care, care.rosa, "emergency.approve",
                               {"request": r.id, "patient": care.alice.id}), "expired")


def test_refused_approval_is_in_the_patients_audit_trail(care: Care) -> None:
    r = _ask(care)
    stx = _tx(care, care.carer, "emergency.approve", {"request": r.id, "patient": care.alice.id})
    care.node.submit([stx.raw])
    refused = [e for e in audit_trail(care.node, care.alice.id) if e.kind == "refused"]
    assert [(e.tx_hash, e.who, e.reason, e.emergency) for e in refused] == [
        (stx.tx_hash, care.carer.id, "not_trusted_party", True)]

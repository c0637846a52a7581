"""Ending an open emergency early (``emergency.end``): the patient or her trusted party.

Real node (SQLite, real signatures): through node/emergency.py's ``end`` (what the portal
calls) and straight at the state machine. Each refusal says why and changes nothing.
"""

from __future__ import annotations

import pytest

from glucoledger.errors import NotFoundError, PermissionDeniedError, RejectedError
from glucoledger.node import emergency as em
from glucoledger.node.access import AccessDeniedError
from glucoledger.node.audit import audit_trail

from .conftest import HOUR, Care
from .test_emergency import _ask, _machine_refuses, _refused, _tx


def _open(care: Care) -> em.EmergencyRequest:
    r = _ask(care, hours=4)
    done = em.approve(care.node, care.rosa.id, care.rosa.keys, r.id)
    assert done.status == "approved"
    assert care.access.read(care.request(care.endo).raw).grounds.emergency
    return done


@pytest.mark.parametrize("ender", ["alice", "rosa"])
def test_patient_or_trusted_party_ends_it_and_the_next_read_is_denied(care: Care,
                                                                       ender: str) -> None:
    r = _open(care)
    who = getattr(care, ender)
    [mine] = em.approved_by(care.node, care.rosa.id)
    assert mine["status"] == "open" and mine["request"].id == r.id
    em.end(care.node, who.id, who.keys, r.id)
    with pytest.raises(AccessDeniedError) as denied:
        care.access.read(care.request(care.endo).raw)
    assert denied.value.code == "revoked"
    [mine] = em.approved_by(care.node, care.rosa.id)
    assert mine["status"] == "ended"
    ended = [e for e in audit_trail(care.node, care.alice.id) if e.kind == "emergency_ended"]
    assert [(e.who, e.outcome, e.emergency) for e in ended] == [(who.id, "ended", True)]


def test_refusals_change_nothing(care: Care) -> None:
    r = _open(care)
    _refused(care, lambda: em.end(care.node, care.carer.id, care.carer.keys, r.id),
             PermissionDeniedError, "not_trusted_party", "trusted party")
    _refused(care, lambda: em.end(care.node, care.endo.id, care.endo.keys, r.id),
             PermissionDeniedError, "not_trusted_party", "trusted party")
    _refused(care, lambda: em.end(care.node, care.alice.id, care.alice.keys, b"\x01" * 32),
             NotFoundError, "not_found", "no emergency access")
    em.end(care.node, care.alice.id, care.alice.keys, r.id)
    _refused(care, lambda: em.end(care.node, care.rosa.id, care.rosa.keys, r.id),
             RejectedError, "already_ended", "already ended")


def test_a_run_out_emergency_cannot_be_ended(care: Care) -> None:
    r = _open(care)
    care.clock.advance(4 * HOUR + 1)
    _refused(care, lambda: em.end(care.node, care.alice.id, care.alice.keys, r.id),
             RejectedError, "expired", "ran out")
    assert em.approved_by(care.node, care.rosa.id)[0]["status"] == "ran out"


def test_the_machine_refuses_what_the_node_checks(care: Care) -> None:
    r = _open(care)
    body = {"grant": r.id, "patient": care.alice.id}
    _machine_refuses(care, _tx(care, care.carer, "emergency.end", body), "not_trusted_party")
    _machine_refuses(care, _tx(care, care.endo, "emergency.end", body), "not_trusted_party")
    _machine_refuses(care, _tx(care, care.carer, "emergency.end", body,
                               keys=care.rosa.keys[:1]), "not_cosigner")
    _machine_refuses(care, _tx(care, care.rosa, "emergency.end",
                               {**body, "patient": care.bob.id}), "malformed")
    _machine_refuses(care, _tx(care, care.rosa, "emergency.end", {"grant": r.id}), "malformed")
    _machine_refuses(care, _tx(care, care.rosa, "emergency.end",
                               {**body, "grant": b"\x02" * 32}), "unknown_grant")
    ok = _tx(care, care.rosa, "emergency.end", body)
    assert care.node.submit([ok.raw])[0].ok
    _machine_refuses(care, ok, "bad_nonce")
    _machine_refuses(care, _tx(care, care.alice, "emergency.end", body), "already_ended")

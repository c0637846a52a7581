"""Emergency ("break-glass") access: a clinician asks, the patient's trusted party decides.

DESIGN.md: emergency access needs a clinician plus the trusted party, is time-limited,
flagged and shown to the patient. Two ways reach the same emergency grant:

- ``emergency.request`` (sent on the clinician's account, with her nonce, action class
  ``default``). Body ``{patient, hours (1-24), days (1-90 days of data), reason}``. The
  request is recorded at ``emreq/<tx hash>`` (pending, expiring ``REQUEST_TTL_MS`` after its
  block) and listed in ``emopen/<patient>``; it is the first entry about it in the patient's
  audit trail. A clinician has at most one live request per patient (``already_requested``),
  a patient at most ``MAX_OPEN`` live requests (``too_many_requests``).
- ``emergency.approve`` (auth "self"; sent on the approver's *own* account with its nonce and
  signed by its keys, so a trusted party approves from her own device and session and never
  touches the patient's nonce). Body ``{request, patient}``. The signers' weights for the
  class ``emergency`` on the patient's account are added to the request's approvals (as
  ``multisig.cosign`` adds weights); once they reach her ``emergency`` threshold the
  emergency grant opens: raw, every stream, the last ``days`` days, from this block for
  ``hours`` hours, id = the request's id, flagged ``emergency`` in her audit trail.
- ``emergency.decline`` (auth "self", same shape): the patient herself, or a signer with
  ``emergency`` weight on her account, closes the request; nothing opens.
- ``emergency.end`` (auth "self", body ``{grant, patient}``): the patient herself, or a
  signer with ``emergency`` weight on her account (her trusted party), ends an open
  emergency grant before its hours run out. The grant becomes ``revoked`` (``decide``
  denies with ``revoked`` from the next block) and ``emergency_ended`` is added to her audit
  trail. Refusals: ``malformed``, ``bad_nonce``, ``not_cosigner``,
  ``insufficient_signatures``, ``unknown_grant``, ``not_emergency``, ``not_trusted_party``,
  ``already_ended``, ``expired``.
- ``emergency.open`` (auth "self"): the request and the cosignatures collected off-chain in
  one envelope: signed by the clinician (her account and nonce) plus the patient's cosigners
  reaching the ``emergency`` threshold. Opens the same grant at once (the operator's CLI path
  when both keys are at hand; tests of the rules).

Why not ``multisig.propose``/``cosign`` (state/multisig.py): a cosign is sent on the target's
(the patient's) account and nonce, so an approval would race the patient's own transactions;
the proposed action would run as the patient and could not name the clinician as grantee
without trusting the proposer's body; the proposer chooses the expiry; nothing checks the
request until it is approved; a standing rule could open emergencies without the trusted
party; and there is no decline. The weights, thresholds and ``not_cosigner`` checks are the
same as multisig's.

Refusals: ``malformed``, ``not_clinician``, ``not_patient``, ``already_requested``,
``too_many_requests``, ``unknown_request``, ``self_approval``, ``not_trusted_party``,
``already_approved``, ``already_declined``, ``expired``, ``bad_nonce``, ``not_cosigner``,
``insufficient_signatures``, ``unknown_grant``, ``not_emergency``, ``already_ended``.
Pure: no I/O, clock or randomness; time is the block's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..glucose.readings import STREAMS
from ..ledger.tx import SignedTx
from .accounts_model import Account, load_account
from .consent import grant_key
from .grants import EMERGENCY_MAX_DAYS, EMERGENCY_MAX_HOURS, HOUR_MS, add_grant, audit_append
from .machine import Body, Context, bump_nonce, need, register, require
from .store import State

__all__ = ["MAX_OPEN", "REQUEST_TTL_MS", "open_key", "request_key"]

#: An emergency request nobody approved within this time expires (the clinician asks again).
REQUEST_TTL_MS: Final = HOUR_MS
MAX_OPEN: Final = 16


def request_key(request_id: bytes) -> str:
    return "emreq/" + request_id.hex()


def open_key(patient: bytes) -> str:
    return "emopen/" + patient.hex()


@dataclass(frozen=True, slots=True)
class EmergencyAsk(Body):
    """The body of ``emergency.request`` and ``emergency.open``: patient, hours (1-24), days
    (the data window), reason. ``parse`` checks the field names; the handler checks the
    values after the sender's and the patient's accounts (``_scope``), as results always
    were."""

    patient: Any
    hours: Any
    days: Any
    reason: Any

    @classmethod
    def parse_as(cls, body: dict[str, Any], tx_type: str) -> EmergencyAsk:
        require(set(body) == {"patient", "hours", "days", "reason"}, "malformed",
                f"{tx_type} takes patient, hours (1-24), days (data window), reason")
        return cls.of(body)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> EmergencyAsk:
        return cls.parse_as(body, "emergency.request")


@dataclass(frozen=True, slots=True)
class EmergencyDecision(Body):
    """The body of ``emergency.approve`` and ``emergency.decline``: ``{request, patient}``
    (values checked by the handler after the sender's authorization)."""

    request: Any
    patient: Any

    @classmethod
    def parse_as(cls, body: dict[str, Any], verb: str) -> EmergencyDecision:
        require(set(body) == {"request", "patient"}, "malformed",
                f"emergency.{verb} takes request (its id) and patient")
        return cls.of(body)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> EmergencyDecision:
        return cls.parse_as(body, "approve")


@dataclass(frozen=True, slots=True)
class EmergencyEnd(Body):
    """The body of ``emergency.end``: ``{grant, patient}`` (values checked by the handler
    after the sender's authorization)."""

    grant: Any
    patient: Any

    @classmethod
    def parse(cls, body: dict[str, Any]) -> EmergencyEnd:
        require(set(body) == {"grant", "patient"}, "malformed",
                "emergency.end takes grant (the emergency's id) and patient")
        return cls.of(body)


def _scope(state: State, b: EmergencyAsk) -> tuple[Account, int, int, str]:
    """The patient, hours, days and reason of a request body (names checked by ``parse``)."""
    patient_id = need(b.patient, "patient", bytes)
    patient = load_account(state, patient_id)
    require(patient.kind == "patient", "not_patient", f"{patient_id.hex()[:16]} is not a patient")
    hours = need(b.hours, "hours", int)
    days = need(b.days, "days", int)
    reason = need(b.reason, "reason", str)
    require(1 <= hours <= EMERGENCY_MAX_HOURS, "malformed",
            f"emergency access lasts 1 to {EMERGENCY_MAX_HOURS} hours; renew it for more")
    require(1 <= days <= EMERGENCY_MAX_DAYS, "malformed",
            f"an emergency shows 1 to {EMERGENCY_MAX_DAYS} days of data")
    require(0 < len(reason) <= 200, "malformed", "give a reason of 1 to 200 characters")
    return patient, hours, days, reason


def _clinician(state: State, account: bytes) -> Account:
    clinician = load_account(state, account)
    require(clinician.kind == "clinician", "not_clinician",
            f"emergency access is requested by a clinician, not a {clinician.kind}")
    return clinician


def _open_grant(state: State, ctx: Context, grant_id: bytes, patient: bytes, clinician: bytes,
                hours: int, days: int, reason: str) -> None:
    add_grant(state, {"id": grant_id, "patient": patient, "grantee": clinician,
                       "streams": list(STREAMS), "view": "raw",
                       "window": {"last_days": days}, "valid_from": ctx.time_ms,
                       "valid_until": ctx.time_ms + hours * HOUR_MS, "purpose": "emergency",
                       "alerts": False, "status": "active", "emergency": True,
                       "created": ctx.height, "changed": ctx.height, "revoked_by": None,
                       "revoked_height": None, "reason": reason})
    audit_append(state, patient, "emergency", grant_id, emergency=True)


def _live(state: State, patient: bytes, time_ms: int) -> list[dict[str, Any]]:
    """The patient's pending requests that have not expired at ``time_ms``."""
    out = []
    for rid in state.get(open_key(patient)) or []:
        rec = state.get(request_key(rid))
        if rec is not None and rec["status"] == "pending" and rec["expires"] > time_ms:
            out.append(rec)
    return out


def _close(state: State, record: dict[str, Any], status: str, stx: SignedTx,
           ctx: Context) -> None:
    patient = record["patient"]
    state.put(request_key(record["id"]), {**record, "status": status,
                                          "decided_by": stx.tx.account,
                                          "decided_tx": stx.tx_hash,
                                          "decided_height": ctx.height,
                                          "decided_time": ctx.time_ms})
    left = [rid for rid in state.get(open_key(patient)) or [] if rid != record["id"]]
    if left:
        state.put(open_key(patient), left)
    else:
        state.delete(open_key(patient))


@register("emergency.request", body=EmergencyAsk)
def _request(state: State, stx: SignedTx, ctx: Context) -> None:
    """A clinician asks for emergency access; it waits for the patient's trusted party."""
    b = EmergencyAsk.parse_as(stx.tx.body, stx.tx.type)
    clinician = _clinician(state, stx.tx.account)
    patient, hours, days, reason = _scope(state, b)
    live = _live(state, patient.id, ctx.time_ms)
    mine = [r for r in live if r["clinician"] == clinician.id]
    require(not mine, "already_requested",
            f"you already asked ({mine[0]['id'].hex()[:16] if mine else ''}); it waits for the "
            "patient's trusted party until it expires")
    require(len(live) < MAX_OPEN, "too_many_requests",
            f"this patient has {MAX_OPEN} pending emergency requests; wait for one to be "
            "decided or to expire")
    rid = stx.tx_hash
    state.put(request_key(rid), {
        "id": rid, "clinician": clinician.id, "patient": patient.id, "hours": hours,
        "days": days, "reason": reason, "time": ctx.time_ms, "height": ctx.height,
        "expires": ctx.time_ms + REQUEST_TTL_MS, "status": "pending", "approvals": [],
        "decided_by": None, "decided_tx": None, "decided_height": None,
        "decided_time": None})
    state.put(open_key(patient.id), [*(r["id"] for r in live), rid])
    audit_append(state, patient.id, "emergency_request", rid, emergency=True)


def _sender(state: State, stx: SignedTx, verb: str) -> Account:
    """The sender, authorized by its own nonce and keys (class ``default``)."""
    sender = load_account(state, stx.tx.account)
    require(stx.tx.nonce == sender.nonce, "bad_nonce",
            f"nonce {stx.tx.nonce} is not account {sender.id.hex()[:16]}'s next "
            f"({sender.nonce}): a replay? fetch the nonce and re-sign")
    for kid in sorted(stx.signer_ids):
        require(kid in sender.keys, "not_cosigner",
                f"key {kid.hex()[:16]} is not a key of account {sender.id.hex()[:16]}; "
                f"{verb} with your own account's keys")
    weight = sum(sender.weights("default").get(k, 0) for k in stx.signer_ids)
    require(weight >= sender.threshold("default"), "insufficient_signatures",
            f"account {sender.id.hex()[:16]} signed with weight {weight}; "
            f"{sender.threshold('default')} needed")
    return sender


def _decision(state: State, stx: SignedTx, ctx: Context, verb: str
              ) -> tuple[Account, Account, dict[str, Any]]:
    """Checks shared by approve and decline: the sender's own authorization (its nonce and
    keys), then the request (known, this patient's, pending, not expired, not one's own)."""
    b = EmergencyDecision.parse_as(stx.tx.body, verb)
    sender = _sender(state, stx, verb)
    rid = need(b.request, "request", bytes)
    record = state.get(request_key(rid))
    require(record is not None, "unknown_request",
            f"no emergency request {rid.hex()[:16]}; check its id")
    require(record["patient"] == need(b.patient, "patient", bytes), "malformed",
            f"emergency request {rid.hex()[:16]} is about another patient")
    require(sender.id != record["clinician"], "self_approval",
            f"you asked for this access; you cannot {verb} your own request: the patient's "
            "trusted party decides it")
    require(record["status"] == "pending", f"already_{record['status']}",
            f"emergency request {rid.hex()[:16]} was already {record['status']}")
    require(record["expires"] > ctx.time_ms, "expired",
            f"emergency request {rid.hex()[:16]} expired unapproved; the clinician asks again")
    return sender, load_account(state, record["patient"]), dict(record)


@register("emergency.approve", auth="self", body=EmergencyDecision)
def _approve(state: State, stx: SignedTx, ctx: Context) -> None:
    """The patient's trusted party approves a pending request from her own account."""
    sender, patient, record = _decision(state, stx, ctx, "approve")
    weights = patient.weights("emergency")
    mine = sorted(k for k in stx.signer_ids if weights.get(k, 0) > 0)
    require(bool(mine), "not_trusted_party",
            "your keys carry no 'emergency' weight on this patient's account: only her "
            "trusted party approves her emergency requests")
    require(not set(mine) <= set(record["approvals"]), "already_approved",
            "you approved this request already; it waits for the patient's other cosigners")
    approvals = sorted({*record["approvals"], *mine})
    if sum(weights.get(k, 0) for k in approvals) >= patient.threshold("emergency"):
        _close(state, {**record, "approvals": approvals}, "approved", stx, ctx)
        _open_grant(state, ctx, record["id"], record["patient"], record["clinician"],
                    record["hours"], record["days"], record["reason"])
    else:
        state.put(request_key(record["id"]), {**record, "approvals": approvals})
    bump_nonce(state, sender)


@register("emergency.decline", auth="self", body=EmergencyDecision)
def _decline(state: State, stx: SignedTx, ctx: Context) -> None:
    """The patient, or her trusted party, declines a pending request: nothing opens."""
    sender, patient, record = _decision(state, stx, ctx, "decline")
    weights = patient.weights("emergency")
    require(sender.id == patient.id or any(weights.get(k, 0) > 0 for k in stx.signer_ids),
            "not_trusted_party",
            "only the patient or her trusted party declines her emergency requests")
    _close(state, record, "declined", stx, ctx)
    audit_append(state, patient.id, "emergency_declined", record["id"], emergency=True)
    bump_nonce(state, sender)


@register("emergency.end", auth="self", body=EmergencyEnd)
def _end(state: State, stx: SignedTx, ctx: Context) -> None:
    """The patient, or her trusted party, ends an open emergency grant before it runs out."""
    b = EmergencyEnd.parse(stx.tx.body)
    sender = _sender(state, stx, "end")
    gid = need(b.grant, "grant", bytes)
    record = state.get(grant_key(gid))
    require(record is not None, "unknown_grant", f"no grant {gid.hex()[:16]}; check its id")
    require(record["patient"] == need(b.patient, "patient", bytes), "malformed",
            f"grant {gid.hex()[:16]} is about another patient")
    require(bool(record.get("emergency")), "not_emergency",
            f"grant {gid.hex()[:16]} is not an emergency; the patient revokes it instead")
    patient = load_account(state, record["patient"])
    weights = patient.weights("emergency")
    require(sender.id == patient.id or any(weights.get(k, 0) > 0 for k in stx.signer_ids),
            "not_trusted_party",
            "only the patient or her trusted party ends her emergency access")
    require(record["status"] == "active", "already_ended",
            f"emergency access {gid.hex()[:16]} was already ended")
    require(record["valid_until"] > ctx.time_ms, "expired",
            f"emergency access {gid.hex()[:16]} already ran out; nothing to end")
    state.put(grant_key(gid), {**record, "status": "revoked", "revoked_by": stx.tx_hash,
                               "revoked_height": ctx.height, "changed": ctx.height,
                               "ended_by": sender.id, "ended_time": ctx.time_ms})
    audit_append(state, patient.id, "emergency_ended", gid, emergency=True)
    bump_nonce(state, sender)


@register("emergency.open", auth="self", body=EmergencyAsk)
def _emergency(state: State, stx: SignedTx, ctx: Context) -> None:
    """Break-glass in one envelope: a clinician's request plus the trusted party's signature."""
    tx = stx.tx
    # the order of these checks is the order of the reason codes on the ledger
    b = EmergencyAsk.parse_as(tx.body, tx.type)
    clinician = _clinician(state, tx.account)
    require(tx.nonce == clinician.nonce, "bad_nonce",
            f"nonce {tx.nonce} is not the clinician's next ({clinician.nonce}): a replay? "
            "fetch the nonce and re-sign")
    patient, hours, days, reason = _scope(state, b)
    mine = {k for k in stx.signer_ids if k in clinician.keys}
    theirs = stx.signer_ids - mine
    c_weight = sum(clinician.keys[k].weight("default") for k in mine)
    require(c_weight >= clinician.threshold("default"), "insufficient_signatures",
            "the clinician's own signature is missing: the request is signed by the clinician")
    for k in sorted(theirs):
        require(k in patient.keys, "not_cosigner",
                f"key {k.hex()[:16]} is neither the clinician's nor a cosigner of the patient")
    p_weight = sum(patient.keys[k].weight("emergency") for k in theirs)
    need = patient.threshold("emergency")
    require(p_weight >= need, "insufficient_signatures",
            f"an emergency needs the patient's trusted party to cosign (weight {p_weight} of "
            f"{need} for 'emergency'): ask them to sign the request")
    _open_grant(state, ctx, stx.tx_hash, patient.id, tx.account, hours, days, reason)
    bump_nonce(state, clinician)

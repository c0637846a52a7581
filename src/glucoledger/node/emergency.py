"""Emergency access, the service side: a clinician asks, the trusted party decides elsewhere.

The contracts are state/emergency.py. Here, for every edge (portal, REST, CLI):

- ``request``: the clinician's ``emergency.request``, signed with her keys. The request is on
  the ledger (and first in the patient's audit trail) and waits; nobody's secret is asked.
- ``pending_for``: the live requests the signed-in account may decide (patients whose account
  gives one of its keys ``emergency`` weight), with who asks, why and for how long;
  ``requests_by`` a clinician's own, ``requests_about`` those about a patient.
- ``approve`` / ``decline``: the trusted party's ``emergency.approve`` / ``decline``, signed
  with *her* keys (her own session, or her own signed requests) on her own account.

Each checks first, against the applied state, what the state machine would refuse, and
raises without ordering anything (a refused request changes nothing, not even the log's
height): ``PermissionDeniedError`` (not a clinician, not this patient's trusted party, one's
own request), ``NotFoundError`` (no such request or patient), ``RejectedError``
(``already_approved``, ``already_declined``, ``already_requested``), ``ExpiredError`` (the
request expired unapproved). Then it signs and submits under the account's lock
(``Node.send``), where the machine checks all of it again at the block's time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..crypto import PrivateKey
from ..errors import (
    ExpiredError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RejectedError,
)
from ..state.accounts_model import Account
from ..state.consent import grant_key
from ..state.emergency import REQUEST_TTL_MS, open_key, request_key
from ..state.grants import EMERGENCY_MAX_DAYS, EMERGENCY_MAX_HOURS
from .registry import Registry
from .service import Node

__all__ = ["EMERGENCY_MAX_DAYS", "EMERGENCY_MAX_HOURS", "REQUEST_TTL_MS", "EmergencyRequest",
           "approve", "approved_by", "decline", "end", "get", "pending_for", "request",
           "requests_about", "requests_by"]


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")


@dataclass(frozen=True, slots=True)
class EmergencyRequest:
    id: bytes
    clinician: bytes
    patient: bytes
    hours: int
    days: int
    reason: str
    requested_ms: int
    expires_ms: int
    #: pending, approved, declined, or expired (pending past ``expires_ms``)
    status: str
    approvals: tuple[bytes, ...]  # key ids
    decided_by: bytes | None
    decided_ms: int | None
    height: int

    @property
    def grant(self) -> bytes | None:
        """The emergency grant it opened (its id is the request's)."""
        return self.id if self.status == "approved" else None


def _now(node: Node, now_ms: int | None) -> int:
    return now_ms if now_ms is not None else node.now_ms()


def _value(rec: dict[str, Any], now_ms: int) -> EmergencyRequest:
    status = rec["status"]
    if status == "pending" and rec["expires"] <= now_ms:
        status = "expired"
    return EmergencyRequest(rec["id"], rec["clinician"], rec["patient"], rec["hours"],
                            rec["days"], rec["reason"], rec["time"], rec["expires"], status,
                            tuple(rec["approvals"]), rec["decided_by"], rec["decided_time"],
                            rec["height"])


def get(node: Node, request_id: bytes, now_ms: int | None = None) -> EmergencyRequest:
    """The request, with its status at ``now_ms``. Raises NotFoundError."""
    rec = node.state.get(request_key(request_id))
    if rec is None:
        raise NotFoundError(f"no emergency request {request_id.hex()[:16]}; the list of pending "
                            "requests shows their ids")
    return _value(rec, _now(node, now_ms))


def _patient_of(node: Node, patient: bytes) -> Account:
    try:
        acct = node.account(patient)
    except NotFoundError:
        raise NotFoundError(f"no patient {Registry(node.data_dir).label(patient)} on this "
                            "ledger") from None
    if acct.kind != "patient":
        raise NotFoundError(f"account {Registry(node.data_dir).label(patient)} is a "
                            f"{acct.kind}, not a patient")
    return acct


def request(node: Node, clinician: bytes, keys: Sequence[PrivateKey], patient: bytes, *,
            hours: int, days: int, reason: str, now_ms: int | None = None
            ) -> tuple[EmergencyRequest, bool]:
    """Ask for emergency access to ``patient``; return the request and whether it is new (a
    live request of the same clinician for the same patient is returned as it is).

    Raises PermissionDeniedError (not a clinician), NotFoundError (no such patient),
    OutOfRangeError (hours, days or reason out of range), RejectedError
    (``too_many_requests``).
    """
    who = node.account(clinician)
    if who.kind != "clinician":
        raise PermissionDeniedError(f"emergency access is requested by a clinician; this "
                                    f"account is a {who.kind}", code="not_clinician")
    if not 1 <= hours <= EMERGENCY_MAX_HOURS:
        raise OutOfRangeError(f"emergency access lasts 1 to {EMERGENCY_MAX_HOURS} hours; "
                              "ask again for more")
    if not 1 <= days <= EMERGENCY_MAX_DAYS:
        raise OutOfRangeError(f"an emergency shows 1 to {EMERGENCY_MAX_DAYS} days of data")
    if not 0 < len(reason) <= 200:
        raise OutOfRangeError("give a reason of 1 to 200 characters")
    _patient_of(node, patient)
    with node.account_lock(clinician):
        now = _now(node, now_ms)
        for rid in node.state.get(open_key(patient)) or []:
            mine = get(node, rid, now)
            if mine.clinician == clinician and mine.status == "pending":
                return mine, False
        stx, _ = node.send("emergency.request", {"patient": patient, "hours": hours,
                                                  "days": days, "reason": reason},
                           clinician, keys)
    return get(node, stx.tx_hash, now_ms), True


def _emergency_keys(patient: Account, key_ids: Iterable[bytes]) -> list[bytes]:
    """Those of ``key_ids`` that weigh for ``emergency`` on the patient's account."""
    weights = patient.weights("emergency")
    return sorted(k for k in key_ids if weights.get(k, 0) > 0)


def pending_for(node: Node, account: bytes, now_ms: int | None = None) -> list[EmergencyRequest]:
    """Live requests ``account`` may decide (oldest first): those of patients for whom one of
    its keys carries ``emergency`` weight, not made by itself, not yet approved by it."""
    now = _now(node, now_ms)
    me = node.account(account)
    out: list[EmergencyRequest] = []
    for key in list(node.state.keys("emopen/")):
        patient = _patient_of(node, bytes.fromhex(key[len("emopen/"):]))
        # a patient's own account lists her trusted party's key: that is not hers to use
        mine = [] if patient.id == account else _emergency_keys(patient, me.keys)
        if not mine:
            continue
        for rid in node.state.get(key) or []:
            r = get(node, rid, now)
            if (r.status == "pending" and r.clinician != account
                    and not set(mine) <= set(r.approvals)):
                out.append(r)
    out.sort(key=lambda r: (r.requested_ms, r.id))
    return out


def requests_about(node: Node, patient: bytes, now_ms: int | None = None
                   ) -> list[EmergencyRequest]:
    """The live requests about ``patient`` (she may decline them), oldest first."""
    now = _now(node, now_ms)
    out = [get(node, rid, now) for rid in node.state.get(open_key(patient)) or []]
    return [r for r in out if r.status == "pending"]


def requests_by(node: Node, clinician: bytes, now_ms: int | None = None
                ) -> list[EmergencyRequest]:
    """The clinician's own requests still waiting or decided in the last day, newest first."""
    now = _now(node, now_ms)
    out = []
    for key in list(node.state.keys("emreq/")):
        rec = node.state.get(key)
        if rec["clinician"] == clinician and rec["time"] > now - 24 * REQUEST_TTL_MS:
            out.append(_value(rec, now))
    out.sort(key=lambda r: (-r.requested_ms, r.id))
    return out


def _check_decider(node: Node, account: bytes, signers: list[bytes], r: EmergencyRequest,
                   verb: str) -> Account:
    if account == r.clinician:
        raise PermissionDeniedError(
            f"you asked for this access yourself; you cannot {verb} your own request: the "
            "patient's trusted party decides it, from her own login", code="self_approval")
    patient = _patient_of(node, r.patient)
    allowed = bool(_emergency_keys(patient, signers)) or (
        verb == "decline" and account == r.patient)
    if not allowed:
        raise PermissionDeniedError(
            f"you are not a trusted party of this patient: only the people her account names "
            f"for emergencies can {verb} her emergency requests", code="not_trusted_party")
    return patient


def _check_open(r: EmergencyRequest, signers: list[bytes], patient: Account, verb: str
                ) -> None:
    if r.status == "approved":
        raise RejectedError(f"emergency request {r.id.hex()[:16]} was already approved; access "
                            "is open, nothing more to do", code="already_approved")
    if r.status == "declined":
        raise RejectedError(f"emergency request {r.id.hex()[:16]} was declined; the clinician "
                            "asks again if it is still needed", code="already_declined")
    if r.status == "expired":
        raise ExpiredError(f"emergency request {r.id.hex()[:16]} expired unapproved at "
                           f"{_hhmm(r.expires_ms)}; the clinician must ask again",
                           code="expired")
    mine = _emergency_keys(patient, signers)
    if verb == "approve" and mine and set(mine) <= set(r.approvals):
        raise RejectedError("you approved this request already; it waits for the patient's "
                            "other cosigners", code="already_approved")


def _decide(node: Node, verb: str, account: bytes, keys: Sequence[PrivateKey],
            request_id: bytes, now_ms: int | None) -> EmergencyRequest:
    with node.account_lock(account):  # a second click waits for the first, then is refused
        r = get(node, request_id, now_ms)
        signers = [k.public.key_id for k in keys]
        patient = _check_decider(node, account, signers, r, verb)
        _check_open(r, signers, patient, verb)
        node.send(f"emergency.{verb}", {"request": r.id, "patient": r.patient}, account, keys)
    return get(node, request_id, now_ms)


def approve(node: Node, account: bytes, keys: Sequence[PrivateKey], request_id: bytes, *,
            now_ms: int | None = None) -> EmergencyRequest:
    """Approve as ``account`` (the patient's trusted party, signing with her own keys).
    Returns the request: ``approved`` (the emergency grant is open) or still ``pending`` if
    her policy needs more cosigners. Raises as the module docstring says."""
    return _decide(node, "approve", account, keys, request_id, now_ms)


def decline(node: Node, account: bytes, keys: Sequence[PrivateKey], request_id: bytes, *,
            now_ms: int | None = None) -> EmergencyRequest:
    """Decline as ``account`` (the patient or her trusted party): nothing opens."""
    return _decide(node, "decline", account, keys, request_id, now_ms)


def end(node: Node, account: bytes, keys: Sequence[PrivateKey], grant_id: bytes) -> None:
    """End an open emergency grant early, as ``account``: the patient herself, or her trusted
    party signing with her own keys (``emergency.end``, state/emergency.py). The clinician's
    next read is denied with ``revoked``. Raises NotFoundError (no such grant),
    PermissionDeniedError (not an emergency of this patient's, or not hers / her trusted
    party's to end), RejectedError (already ended or run out)."""
    with node.account_lock(account):
        g = node.state.get(grant_key(grant_id))
        if g is None or not g.get("emergency"):
            raise NotFoundError(f"no emergency access {grant_id.hex()[:16]}; the list of open "
                                "emergencies shows their ids")
        patient = _patient_of(node, g["patient"])
        signers = [k.public.key_id for k in keys]
        if account != patient.id and not _emergency_keys(patient, signers):
            raise PermissionDeniedError(
                "only the patient or her trusted party can end her emergency access",
                code="not_trusted_party")
        if g["status"] != "active":
            raise RejectedError(f"emergency access {grant_id.hex()[:16]} was already ended; "
                                "nothing more to do", code="already_ended")
        if g["valid_until"] <= node.now_ms():
            raise RejectedError(f"emergency access {grant_id.hex()[:16]} already ran out at "
                                f"{_hhmm(g['valid_until'])}; nothing to end", code="expired")
        node.send("emergency.end", {"grant": grant_id, "patient": g["patient"]}, account, keys)


def approved_by(node: Node, account: bytes) -> list[dict[str, Any]]:
    """The emergencies ``account`` (a trusted party) approved: each request with the grant it
    opened (``valid_until``, ``status``: active, ended, or ran out), newest first."""
    now = node.now_ms()
    out = []
    for key in list(node.state.keys("emreq/")):
        rec = node.state.get(key)
        if rec["status"] != "approved" or rec["decided_by"] != account:
            continue
        g = node.state.get(grant_key(rec["id"]))
        if g is None:
            continue
        status = ("ended" if g["status"] != "active" else
                  "ran out" if g["valid_until"] <= now else "open")
        out.append({"request": _value(rec, now), "valid_until": g["valid_until"],
                    "status": status, "streams": tuple(g["streams"]),
                    "days": g["window"]["last_days"]})
    out.sort(key=lambda r: -r["request"].requested_ms)
    return out

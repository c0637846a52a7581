"""Consent routes: grants (create, narrow/extend, revoke, list), audited reads, audit trail,
emergency access (a clinician asks; the patient's trusted party approves or declines with
her own credentials), erasure, alert rules, devices. Each parses, authenticates, calls node."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from ..codec import parse_hex_id
from ..crypto import PrivateKey
from ..errors import InputError, NotFoundError, PermissionDeniedError
from ..glucose.readings import CgmReading
from ..names import MAX_NAME, NAME_PATTERN
from ..node import consent_actions as ca
from ..node import emergency as em
from ..node.access import RawRelease, SealedRelease, SignedSummary
from ..node.accounts import AddressBook, identity
from ..node.alerts import set_rules
from ..node.audit import AuditEntry, audit_with_refusals
from ..node.devices import uploaders
from ..node.localdays import LocalDays, reader_days
from ..state.consent import Grant, load_grant
from ..state.consent import Request as ReadRequest
from .auth import permission, principal, record_refusal, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS, Strict

__all__ = ["audit_value", "emergency_value", "grant_value", "read_for", "router"]

router = APIRouter(prefix="/api", tags=["consent"])
Who = Annotated[Principal, Depends(principal)]
Stream = Literal["cgm", "smbg", "insulin", "carbs", "settings", "notes"]
DAY_MS = 86_400_000


def _keys(request: Request, who: Principal) -> list[PrivateKey]:
    """The caller's unlocked custodial keys (session), or the wallet's for a signed program."""
    return ctx(request).keys_for(who)


def _name_of(request: Request, account: bytes) -> str:
    for i in AddressBook(ctx(request).node).all():
        if i.id == account:
            return i.name
    return account.hex()[:16]


def grant_value(request: Request, g: Grant) -> dict[str, Any]:
    return {"id": g.id.hex(), "patient": g.patient.hex(), "grantee": g.grantee.hex(),
            "grantee_name": _name_of(request, g.grantee), "streams": list(g.streams),
            "view": g.view, "window": dict(g.window), "valid_from": g.valid_from,
            "valid_until": g.valid_until, "purpose": g.purpose, "alerts": g.alerts,
            "status": g.status, "emergency": g.emergency,
            "active": g.active_at(int(time.time() * 1000))}


class GrantBody(Strict):
    grantee: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    streams: list[Stream] = Field(min_length=1, max_length=6)
    view: Literal["raw", "summary"]
    last_days: int = Field(ge=1, le=3660, description="data window: the last N days")
    valid_days: int = Field(ge=1, le=3660, description="the grant ends after N days")
    purpose: Literal["treatment", "research"] = "treatment"
    alerts: bool = False


class AmendBody(Strict):
    streams: list[Stream] | None = Field(default=None, min_length=1, max_length=6)
    view: Literal["raw", "summary"] | None = None
    last_days: int | None = Field(default=None, ge=1, le=3660)
    valid_days: int | None = Field(default=None, ge=1, le=3660)


class ReadBody(Strict):
    patient: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    streams: list[Stream] = Field(min_length=1, max_length=6)
    view: Literal["raw", "summary"]
    last_days: int | None = Field(default=None, ge=1, le=3660)


class EmergencyBody(Strict):
    patient: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    hours: int = Field(ge=1, le=em.EMERGENCY_MAX_HOURS,
                       description="how long access stays open once approved")
    days: int = Field(ge=1, le=em.EMERGENCY_MAX_DAYS, description="the last N days of data")
    reason: str = Field(min_length=1, max_length=200)


class EraseBody(Strict):
    streams: list[Stream] = Field(min_length=1, max_length=6)
    confirm: Literal["erase"]


class Rule(Strict):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9 _-]+$")
    op: Literal["below", "above"]
    mgdl: int = Field(ge=40, le=400)
    minutes: int = Field(ge=0, le=240)


class AlertBody(Strict):
    rules: list[Rule] | None = Field(default=None, max_length=16)


def _hex_id(text: str, what: str) -> bytes:
    """A 32-byte id given as 64 hex digits; InputError saying ``what`` it should be."""
    return parse_hex_id(text, what)


def _grant_id(text: str) -> bytes:
    return _hex_id(text, "a grant id")


def do_grant(request: Request, who: Principal, body: GrantBody) -> bytes:
    require_kind(request, who, "patient")
    node = ctx(request).node
    grantee = identity(node, body.grantee)
    now = int(time.time() * 1000)
    return ca.grant(node, who.id, _keys(request, who), grantee.id,
                    streams=sorted(set(body.streams)), view=body.view,
                    window={"last_days": body.last_days}, valid_from=now,
                    valid_until=now + body.valid_days * DAY_MS, purpose=body.purpose,
                    alerts=body.alerts)


@router.post("/grants", responses=ERRORS, status_code=201)
def create_grant(body: GrantBody, request: Request, who: Who) -> dict[str, Any]:
    """Grant someone access to your data: which streams, raw or summary, how far back, how
    long. Effective from the next block; returns the grant."""
    gid = do_grant(request, who, body)
    return {"id": gid.hex(), "status": "active"}


@router.get("/grants", responses=ERRORS)
def list_grants(request: Request, who: Who) -> list[dict[str, Any]]:
    """Your grants: the ones you gave (patient) or the ones you hold (others)."""
    node = ctx(request).node
    gs = ca.grants(node, who.id) if who.kind == "patient" else ca.grants_to(node, who.id)
    return [grant_value(request, g) for g in gs]


def do_amend(request: Request, who: Principal, grant_id: str, body: AmendBody) -> None:
    gid = _grant_id(grant_id)
    patient = _grant_patient(request, gid)
    require_kind(request, who, "patient", patient=patient)
    changes: dict[str, Any] = {}
    if body.streams is not None:
        changes["streams"] = sorted(set(body.streams))
    if body.view is not None:
        changes["view"] = body.view
    if body.last_days is not None:
        changes["window"] = {"last_days": body.last_days}
    if body.valid_days is not None:
        changes["valid_until"] = int(time.time() * 1000) + body.valid_days * DAY_MS
    if not changes:
        raise InputError("say what to change: streams, view, last_days or valid_days")
    with permission(request, who, patient=patient):
        ca.amend(ctx(request).node, who.id, _keys(request, who), gid, **changes)


@router.patch("/grants/{grant_id}", responses=ERRORS)
def amend_grant(grant_id: str, body: AmendBody, request: Request, who: Who) -> dict[str, str]:
    """Narrow or extend a grant."""
    do_amend(request, who, grant_id, body)
    return {"id": grant_id, "status": "amended"}


@router.delete("/grants/{grant_id}", responses=ERRORS)
def revoke_grant(grant_id: str, request: Request, who: Who) -> dict[str, str]:
    """Revoke a grant, effective from the next block."""
    do_revoke(request, who, grant_id)
    return {"id": grant_id, "status": "revoked"}


def do_revoke(request: Request, who: Principal, grant_id: str) -> None:
    """Revoke as ``who``: only the grant's patient; any other caller is a 403 (logged, and
    in the grant's patient's audit trail)."""
    gid = _grant_id(grant_id)
    patient = _grant_patient(request, gid)
    require_kind(request, who, "patient", patient=patient)
    with permission(request, who, patient=patient):
        ca.revoke(ctx(request).node, who.id, _keys(request, who), gid)


def _grant_patient(request: Request, grant_id: bytes) -> bytes | None:
    """The patient whose grant this is (so a refusal about it is in her audit trail)."""
    g = load_grant(ctx(request).node.state, grant_id)
    return None if g is None else g.patient


def read_for(request: Request, who: Principal, patient: bytes, streams: list[str], view: str,
             last_days: int | None, *, span: LocalDays | None = None
             ) -> RawRelease | SignedSummary:
    """One audited read as ``who`` (write-ahead: the access record is ordered first). A
    summary of the last N days covers N whole local days (node/localdays.py); ``span``: read
    exactly those whole local days, whatever the view (a report's period)."""
    c = ctx(request)
    access = c.svc.access
    window: dict[str, int] | None = {"last_days": last_days} if last_days else None
    if span is not None:
        window = span.window()
    wanted = tuple(sorted(set(streams)))
    if span is None and last_days and view == "summary":
        window = reader_days(c.node.state, c.node.data_dir, who.id, patient, last_days,
                             c.node.now_ms(), wanted).window()
    req = ReadRequest(patient, wanted, view, window)
    try:
        out = access.read_as(who.id, _keys(request, who), req)
        assert not isinstance(out, SealedRelease)  # no wrap_to: released in the clear
        return out
    except PermissionDeniedError as exc:
        record_refusal(request, exc, who.name)
        raise


def summary_value(s: Any) -> dict[str, Any]:
    return {"start_ms": s.start_ms, "end_ms": s.end_ms, "count": s.count,
            "tir": s.tir, "tbr70": s.tbr70, "tbr54": s.tbr54, "tar180": s.tar180,
            "tar250": s.tar250, "mean": s.mean, "sd": s.sd, "cv": s.cv, "gmi": s.gmi,
            "active": s.active, "days_with_data": s.days_with_data,
            "sufficient": s.sufficient, "censored_low": s.censored_low,
            "censored_high": s.censored_high, "superseded": s.superseded, "gri": s.gri,
            "gri_zone": s.gri_zone, "lbgi": s.lbgi, "hbgi": s.hbgi, "j_index": s.j_index,
            "mage": s.mage,
            "episodes": {"hypo1": s.hypo1_episodes, "hypo2": s.hypo2_episodes,
                         "hypo_extended": s.hypo_extended_episodes,
                         "hyper1": s.hyper1_episodes, "hyper2": s.hyper2_episodes}}


@router.post("/reads", responses=ERRORS)
def read(body: ReadBody, request: Request, who: Who) -> dict[str, Any]:
    """Read a patient's data through consent: raw records or a signed summary. Audited."""
    patient = identity(ctx(request).node, body.patient)
    rel = read_for(request, who, patient.id, list(body.streams), body.view, body.last_days)
    g = rel.grounds
    grounds = {"access_tx": g.access_tx.hex(), "grant": g.grant.hex(),
               "emergency": g.emergency, "from": g.start_ms, "to": g.end_ms}
    if isinstance(rel, SignedSummary):
        return {"view": "summary", "grounds": grounds, "summary": summary_value(rel.summary),
                "signature": rel.signature.hex()}
    # ``history``: the patient's own read only (node/access.py): earlier versions of edited
    # Nightscout documents and deleted ones, which no summary or other reader counts.
    return {"view": "raw", "grounds": grounds,
            "records": [r.to_value() for r in rel.records],
            "history": [r.to_value() for r in rel.history]}


def audit_value(request: Request, e: AuditEntry) -> dict[str, Any]:
    who = _name_of(request, e.who)
    return {"kind": e.kind, "tx": e.tx_hash.hex(), "height": e.height, "time_ms": e.time_ms,
            "emergency": e.emergency, "who": e.who.hex(), "who_name": who,
            "requester": e.who.hex(), "requester_name": who, "outcome": e.outcome,
            "decision": e.decision, "reason": e.reason, "view": e.view,
            "streams": list(e.streams), "grant": e.grant.hex() if e.grant else None,
            "detail": e.detail, "decided_by": e.decided_by.hex() if e.decided_by else None,
            "decided_by_name": _name_of(request, e.decided_by) if e.decided_by else None}


@router.get("/audit", responses=ERRORS)
def audit(request: Request, who: Who) -> list[dict[str, Any]]:
    """Your audit trail: who saw what, when, under which grant, every emergency request and
    every refused attempt; emergencies first."""
    require_kind(request, who, "patient")
    c = ctx(request)
    return [audit_value(request, e) for e in audit_with_refusals(c.node, c.seclog, who.id,
                                                                  vault=c.svc.vault)]


def emergency_value(request: Request, r: em.EmergencyRequest, role: str) -> dict[str, Any]:
    return {"id": r.id.hex(), "role": role, "patient": r.patient.hex(),
            "patient_name": _name_of(request, r.patient), "clinician": r.clinician.hex(),
            "clinician_name": _name_of(request, r.clinician), "hours": r.hours,
            "days": r.days, "reason": r.reason, "requested_ms": r.requested_ms,
            "expires_ms": r.expires_ms, "status": r.status, "approvals": len(r.approvals),
            "grant": r.grant.hex() if r.grant else None}


def _request_id(text: str) -> bytes:
    return _hex_id(text, "an emergency request id (from the list of requests)")


def _refusals_logged(request: Request, who: Principal, fn: Any, *args: Any,
                     **kwargs: Any) -> Any:
    """Call a node function; a PermissionDeniedError also goes to the security log (403)."""
    try:
        return fn(*args, **kwargs)
    except PermissionDeniedError as exc:
        record_refusal(request, exc, who.name)
        raise


def do_emergency_request(request: Request, who: Principal, body: EmergencyBody
                         ) -> tuple[em.EmergencyRequest, bool]:
    require_kind(request, who, "clinician")
    node = ctx(request).node
    patient = identity(node, body.patient)
    return _refusals_logged(request, who, em.request, node, who.id,  # type: ignore[no-any-return]
                            _keys(request, who), patient.id, hours=body.hours, days=body.days,
                            reason=body.reason)


def emergency_requests(request: Request, who: Principal) -> list[dict[str, Any]]:
    """The requests that concern ``who``: waiting for her decision, made by her (the last
    day), or (a patient) pending about her."""
    node = ctx(request).node
    out = [emergency_value(request, r, "decide") for r in em.pending_for(node, who.id)]
    if who.kind == "clinician":
        out += [emergency_value(request, r, "asked") for r in em.requests_by(node, who.id)]
    if who.kind == "patient":
        out += [emergency_value(request, r, "about_you") for r in em.requests_about(node, who.id)]
    return out


def do_emergency_decision(request: Request, who: Principal, request_id: str, verb: str
                          ) -> em.EmergencyRequest:
    fn = em.approve if verb == "approve" else em.decline
    return _refusals_logged(request, who, fn, ctx(request).node,  # type: ignore[no-any-return]
                            who.id, _keys(request, who), _request_id(request_id))


@router.post("/emergency", responses=ERRORS, status_code=201)
def emergency(body: EmergencyBody, request: Request, response: Response,
              who: Who) -> dict[str, Any]:
    """Break-glass, step 1 (a clinician): ask for emergency access to a patient. The request
    is on the ledger, first in the patient's audit trail, and waits (at most an hour) for
    the patient's trusted party to approve it with her own login. 201 with the request;
    200 with your request already waiting, if there is one."""
    r, new = do_emergency_request(request, who, body)
    if not new:
        response.status_code = 200
    return emergency_value(request, r, "asked")


@router.get("/emergency/requests", responses=ERRORS)
def list_emergency_requests(request: Request, who: Who) -> list[dict[str, Any]]:
    """Emergency requests that concern you: ``decide`` (waiting for your approval, as a
    patient's trusted party), ``asked`` (yours, as a clinician), ``about_you`` (a patient)."""
    return emergency_requests(request, who)


@router.get("/emergency/requests/{request_id}", responses=ERRORS)
def get_emergency_request(request_id: str, request: Request, who: Who) -> dict[str, Any]:
    """One emergency request and its status (pending, approved, declined, expired)."""
    r = em.get(ctx(request).node, _request_id(request_id))
    for item in emergency_requests(request, who):
        if item["id"] == r.id.hex():
            return item
    if who.id in (r.clinician, r.patient):
        return emergency_value(request, r, "asked" if who.id == r.clinician else "about_you")
    exc = PermissionDeniedError("this emergency request is not yours, not about you and not "
                                "waiting for your decision")
    record_refusal(request, exc, who.name)
    raise exc


@router.post("/emergency/requests/{request_id}/approve", responses=ERRORS)
def approve_emergency(request_id: str, request: Request, who: Who) -> dict[str, Any]:
    """Break-glass, step 2 (the patient's trusted party, signing with her own keys): approve.
    The emergency grant opens from the next block, for the hours asked."""
    r = do_emergency_decision(request, who, request_id, "approve")
    return emergency_value(request, r, "decide")


@router.post("/emergency/requests/{request_id}/decline", responses=ERRORS)
def decline_emergency(request_id: str, request: Request, who: Who) -> dict[str, Any]:
    """Decline an emergency request (the patient's trusted party, or the patient): nothing
    opens; the decision is on the ledger and in the patient's audit trail."""
    r = do_emergency_decision(request, who, request_id, "decline")
    return emergency_value(request, r, "decide")


@router.post("/erase", responses=ERRORS)
def erase(body: EraseBody, request: Request, who: Who) -> dict[str, Any]:
    """Erase your data of some streams (GDPR art. 17): the keys and blobs are destroyed."""
    require_kind(request, who, "patient")
    tx = ctx(request).erase(who.id, _keys(request, who), sorted(set(body.streams)))
    return {"tx": tx.hex(), "streams": list(body.streams)}


@router.put("/alerts", responses=ERRORS)
def alerts(body: AlertBody, request: Request, who: Who) -> dict[str, Any]:
    """Set your alert rules (none: the consensus defaults)."""
    require_kind(request, who, "patient")
    rules = None if body.rules is None else [r.model_dump() for r in body.rules]
    set_rules(ctx(request).node, who.id, _keys(request, who), rules)
    return {"rules": rules}


@router.get("/devices", responses=ERRORS)
def devices(request: Request, who: Who) -> list[dict[str, Any]]:
    """The devices and gateways bound to you (patient), or registered by you (maker)."""
    require_kind(request, who, "patient", "maker")
    mine = {"patient": who.id} if who.kind == "patient" else {"maker": who.id}
    return [{"id": u.id.hex(), "kind": u.kind, "status": u.status, "model": u.model,
             "serial": u.serial, "name": _name_of(request, u.id), "last_seq": u.last_seq,
             "bound": u.patient is not None}
            for u in uploaders(ctx(request).node, **mine)]


def cgm_of(rel: RawRelease) -> list[CgmReading]:
    return [r for r in rel.records if isinstance(r, CgmReading)]


def patient_by_id(request: Request, text: str) -> bytes:
    try:
        return identity(ctx(request).node, text).id
    except NotFoundError:
        raise NotFoundError(f"no patient {text[:64]!r} on this node") from None

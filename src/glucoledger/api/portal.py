"""The web portal: server-rendered pages (Jinja2) for patients, clinicians and everyone.

Every action is a small form (POST, with the session's CSRF token) that redirects back (303)
to a confirmation that receives focus. Pages are plain semantic HTML with labels, visible
focus, high contrast, 44 px targets and a single-column layout on phones. One small
same-origin script (static/portal.js) refreshes the patient's current glucose and moves focus
to confirmations; everything works without it. Every data view is an audited read.

Pages: ``/portal`` (a patient's home: portal_patient.py; a clinician's or trusted party's
workspace: portal_clinician.py), ``/portal/audit`` (her audit trail), ``/portal/settings``
(units and time zone), ``/portal/status`` (the ledger's integrity), ``/portal/login``.

Emergency access takes two people on two devices: a clinician asks on her page; the
patient's trusted party sees the request on her own page (her own login) and approves or
declines it; the patient or the trusted party can end it early. Nobody types another
person's password.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ..errors import AuthenticationError, OutOfRangeError
from ..node import emergency as em
from ..node.accounts import AddressBook
from ..node.alerts import set_rules
from . import portal_clinician, portal_patient, portal_pdf
from .auth import login, login_with_code, logout, optional_session, set_session_cookie
from .context import ctx
from .portal_base import HERE, back, error_page, fmt_of, form, prefs, render, who
from .portal_view import MMOL, zones
from .routes_consent import (
    AmendBody,
    EmergencyBody,
    EraseBody,
    GrantBody,
    Rule,
    _grant_id,
    do_amend,
    do_emergency_decision,
    do_emergency_request,
    do_grant,
    do_revoke,
)
from .routes_ledger import VERIFY_EVERY_S, status_value
from .security import PRE_CSRF_COOKIE

__all__ = ["error_page", "router", "static_files"]

router = APIRouter(include_in_schema=False)
router.include_router(portal_patient.router)
router.include_router(portal_clinician.router)
router.include_router(portal_pdf.router)


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(HERE / "static"))


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/portal", status_code=303)


@router.get("/portal/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", pre_csrf=token)
    resp.set_cookie(PRE_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/portal",
                    secure=ctx(request).settings.secure_cookies)
    return resp


def account_name(request: Request, typed: str) -> str:
    """The account ``typed`` names, ignoring case and surrounding spaces (a phone may
    capitalise the first letter). An exact match wins; otherwise the one account whose name
    is equal ignoring case; otherwise ``typed`` as it is (the password check refuses it)."""
    typed = typed.strip()
    book = [i.name for i in AddressBook(ctx(request).node).all()]
    if typed in book:
        return typed
    same = [n for n in book if n.lower() == typed.lower()]
    return same[0] if len(same) == 1 else typed


@router.post("/portal/login")
def login_submit(request: Request, name: Annotated[str, Form(max_length=64)],
                 csrf: Annotated[str, Form(max_length=256)],
                 password: Annotated[str, Form(max_length=1024)] = "",
                 recovery_code: Annotated[str, Form(max_length=64)] = "") -> Response:
    cookie = request.cookies.get(PRE_CSRF_COOKIE)
    if not cookie or cookie != csrf:
        raise AuthenticationError("the login form expired; reload it and try again")
    if recovery_code:  # the second factor she holds: works while her name is hammered
        s, _ = login_with_code(request, account_name(request, name), recovery_code)
    else:
        s = login(request, account_name(request, name), password)
    resp = RedirectResponse("/portal", status_code=303)
    set_session_cookie(request, resp, s)
    resp.delete_cookie(PRE_CSRF_COOKIE, path="/portal")
    return resp


@router.post("/portal/logout")
def logout_submit(request: Request, csrf: Annotated[str, Form(max_length=256)]) -> Response:
    who(request, csrf)
    resp = RedirectResponse("/portal/login", status_code=303)
    logout(request, resp)
    return resp


@router.get("/portal/status", response_class=HTMLResponse)
def status_page(request: Request) -> HTMLResponse:
    c = ctx(request)
    note = c.node.checkpoint().decode()
    return render(request, "status.html", status=status_value(request), checkpoint=note)


@router.post("/portal/verify")
def verify_now(request: Request, csrf: Annotated[str, Form(max_length=256)]) -> Response:
    s, _ = who(request, csrf)
    c = ctx(request)
    c.costly.spend(s.ident.id.hex(), "verify", VERIFY_EVERY_S)  # as POST /api/verify
    with c.costly.slot():
        r = c.node.verify()
    c.last_verify = {"ok": True, "blocks": r.blocks,
                                 "transactions": r.transactions, "rejected": r.rejected,
                                 "at_ms": int(time.time() * 1000),
                                 "seconds": round(r.seconds, 3)}
    return back(msg="Verified: every block, signature and link checks out",
                path="/portal/status")


@router.get("/portal/settings", response_class=HTMLResponse)
def settings_page(request: Request, msg: str | None = None) -> Response:
    if optional_session(request) is None:
        return RedirectResponse("/portal/login", status_code=303)
    return render(request, "settings.html", notice=msg[:200] if msg else None,
                  zones=zones(), current=fmt_of(request))


@router.post("/portal/settings")
def settings_submit(request: Request, csrf: Annotated[str, Form(max_length=256)],
                    units: Annotated[str, Form(max_length=10)],
                    tz: Annotated[str, Form(max_length=64)]) -> Response:
    s, _ = who(request, csrf)
    f = prefs(request).set(s.ident.id, units, tz)
    return back(msg=f"Saved: glucose in {f.units}, times in {f.tz}", path="/portal/settings")


@router.get("/portal", response_class=HTMLResponse)
def home(request: Request, msg: str | None = None) -> Response:
    if optional_session(request) is None:
        return RedirectResponse("/portal/login", status_code=303)
    _, p = who(request)
    if p.kind == "patient":
        return portal_patient.home(request, p, msg)
    return portal_clinician.workspace(request, p, msg)


@router.post("/portal/grants")
def grant_submit(request: Request, csrf: Annotated[str, Form(max_length=256)],
                 grantee: Annotated[str, Form(max_length=64)],
                 view: Annotated[str, Form(max_length=10)],
                 last_days: Annotated[int, Form()], valid_days: Annotated[int, Form()],
                 streams: Annotated[list[str] | None, Form()] = None) -> Response:
    _, p = who(request, csrf)
    if not streams:
        raise OutOfRangeError("tick at least one kind of data to share (for example sensor "
                              "glucose); nothing was shared")
    body = form(GrantBody, grantee=grantee, streams=streams, view=view,
                last_days=last_days, valid_days=valid_days)
    do_grant(request, p, body)
    what = "every reading" if body.view == "raw" else "summaries only"
    return back(msg=f"Access given to {grantee}: {what}")


@router.post("/portal/grants/{grant_id}/{action}")
def grant_action(request: Request, grant_id: str, action: str,
                 csrf: Annotated[str, Form(max_length=256)]) -> Response:
    _, p = who(request, csrf)
    if action == "revoke":
        do_revoke(request, p, grant_id)
        return back(msg="Access revoked")
    if action == "narrow":
        do_amend(request, p, grant_id, AmendBody(view="summary"))
        return back(msg="Now summaries only")
    if action == "extend":
        do_amend(request, p, grant_id, AmendBody(valid_days=90))
        return back(msg="Extended to 90 days from today")
    raise OutOfRangeError(f"unknown action {action[:20]!r}: revoke, narrow or extend")


@router.post("/portal/erase")
def erase_submit(request: Request, csrf: Annotated[str, Form(max_length=256)],
                 confirm: Annotated[str, Form(max_length=10)],
                 streams: Annotated[list[str] | None, Form()] = None) -> Response:
    _, p = who(request, csrf)
    if not streams:
        raise OutOfRangeError("tick at least one kind of data to erase; nothing was erased")
    body = form(EraseBody, streams=streams, confirm=confirm)
    ctx(request).erase(p.id, p.session.keys if p.session else [], sorted(set(body.streams)))
    return back(msg="Erased")


@router.post("/portal/alerts")
def alerts_submit(request: Request, csrf: Annotated[str, Form(max_length=256)],
                  low: Annotated[float, Form()], high: Annotated[float, Form()]) -> Response:
    _, p = who(request, csrf)
    if fmt_of(request).units == "mmol/L":  # the form is in her units; the rules in mg/dL
        low, high = low * MMOL, high * MMOL
    rules = [form(Rule, name="low", op="below", mgdl=round(low), minutes=15).model_dump(),
             form(Rule, name="high", op="above", mgdl=round(high), minutes=15).model_dump()]
    set_rules(ctx(request).node, p.id, p.session.keys if p.session else [], rules)
    return back(msg="Alert settings saved")


@router.post("/portal/emergency")
def emergency_submit(request: Request, csrf: Annotated[str, Form(max_length=256)],
                     patient: Annotated[str, Form(max_length=64)],
                     reason: Annotated[str, Form(max_length=200)],
                     hours: Annotated[int, Form()] = 4,
                     days: Annotated[int, Form()] = 14) -> Response:
    """A clinician asks; the request waits for the patient's trusted party."""
    _, p = who(request, csrf)
    r, new = do_emergency_request(request, p, form(
        EmergencyBody, patient=patient, hours=hours, days=days, reason=reason))
    said = "Emergency request sent" if new else "Your emergency request is already waiting"
    return back(msg=f"{said}: {patient}'s trusted person must approve it by "
                f"{fmt_of(request).when(r.expires_ms)}")


@router.post("/portal/emergency/{request_id}/{verb}")
def emergency_decide(request: Request, request_id: str, verb: str,
                     csrf: Annotated[str, Form(max_length=256)]) -> Response:
    """The trusted party (or the patient) approves, declines, or ends an open emergency,
    from her own session."""
    _, p = who(request, csrf)
    if verb == "end":
        em.end(ctx(request).node, p.id, p.session.keys if p.session else [],
               _grant_id(request_id))
        return back(msg="Emergency access ended: the clinician can no longer read")
    if verb not in ("approve", "decline"):
        raise OutOfRangeError(f"unknown action {verb[:20]!r}: approve, decline or end")
    r = do_emergency_decision(request, p, request_id, verb)
    if r.status == "approved":
        msg = f"Approved: emergency access is open for {r.hours} hours"
    elif r.status == "pending":
        msg = "Approved; it still needs the patient's other trusted people"
    else:
        msg = "Declined: no access was opened"
    return back(msg=msg)

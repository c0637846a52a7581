"""The web portal: server-rendered pages (Jinja2) for patients, clinicians and everyone.

No JavaScript is needed: every action is a small form (POST, with the session's CSRF token)
that redirects back (303). Pages are plain semantic HTML with labels, visible focus, high
contrast and a single-column layout on phones. Every data view is an audited read.

Emergency access takes two people on two devices: a clinician asks on her page; the
patient's trusted party sees the request on her own page (her own login) and approves or
declines it. Nobody types another person's password.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, ValidationError

from ..errors import AuthenticationError, GlucoledgerError, OutOfRangeError
from ..glucose.agp import compute_agp
from ..glucose.metrics import summarize
from ..glucose.report import render_html
from ..node import consent_actions as ca
from ..node import emergency as em
from ..node.access import RawRelease, SignedSummary
from ..node.accounts import AddressBook
from ..node.alerts import rules as alert_rules
from ..node.alerts import set_rules
from ..node.audit import audit_with_refusals
from ..node.people import SecurityLog
from .auth import login, login_with_code, logout, optional_session, set_session_cookie
from .context import Principal, ctx
from .routes_consent import (
    AmendBody,
    EmergencyBody,
    EraseBody,
    GrantBody,
    Rule,
    cgm_of,
    do_amend,
    do_emergency_decision,
    do_emergency_request,
    do_grant,
    emergency_requests,
    grant_value,
    read_for,
    summary_value,
)
from .routes_ledger import VERIFY_EVERY_S, status_value
from .security import PRE_CSRF_COOKIE, Session

__all__ = ["error_page", "router", "static_files"]

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(_HERE / "templates"))
router = APIRouter(include_in_schema=False)

STREAM_WORDS = {"cgm": "Sensor glucose (CGM)", "smbg": "Finger-stick glucose",
                "insulin": "Insulin doses", "carbs": "Carbohydrates", "settings":
                "Pump settings", "notes": "Notes and device status"}


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(_HERE / "static"))


def _date(ms: int | None) -> str:
    if ms is None:
        return ""
    return time.strftime("%d %b %Y %H:%M", time.gmtime(ms / 1000)) + " UTC"


templates.env.filters["date"] = _date
templates.env.globals["STREAM_WORDS"] = STREAM_WORDS
templates.env.filters["words"] = lambda streams: ", ".join(
    STREAM_WORDS.get(s, s).lower() for s in streams)


def _render(request: Request, name: str, http_status: int = 200, **values: Any
            ) -> HTMLResponse:
    s = optional_session(request)
    return templates.TemplateResponse(request, name, {"session": s, **values},
                                      status_code=http_status)


def error_page(request: Request, exc: GlucoledgerError) -> HTMLResponse:
    return _render(request, "error.html", exc.http_status, error=exc)


def _who(request: Request, csrf: str | None = None) -> tuple[Session, Principal]:
    s = optional_session(request)
    if s is None:
        raise AuthenticationError("log in first")
    if request.method == "POST" and not s.check_csrf(csrf):
        raise AuthenticationError("this form is stale (missing or wrong CSRF token); reload "
                                  "the page and try again")
    return s, Principal(s.ident, "session", s)


_M = TypeVar("_M", bound=BaseModel)


def _form(model: type[_M], **values: Any) -> _M:
    """Parse form values into the route's model; a value out of range (a tampered form) is a
    400 naming the field, not a server error."""
    try:
        return model(**values)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e.get("loc", ())) or "form"
        raise OutOfRangeError(f"{where}: {e.get('msg', 'invalid')}; reload the form and "
                              "choose one of its values") from None


def _back(anchor: str = "", msg: str = "") -> RedirectResponse:
    q = f"?msg={quote(msg)}" if msg else ""
    return RedirectResponse(f"/portal{q}{anchor}", status_code=303)


def _agp(readings: list[Any], label: str) -> Markup | None:
    if len(readings) < 12:
        return None
    html_doc = render_html(compute_agp(readings), summarize(readings), patient=label)
    style = re.search(r"<style>(.*?)</style>", html_doc, re.DOTALL)
    body = re.search(r"<body>(.*?)</body>", html_doc, re.DOTALL)
    inner = body.group(1) if body else ""
    inner = inner.replace("<h1>", "<h3>").replace("</h1>", "</h3>").replace(
        "<h2>", "<h4>").replace("</h2>", "</h4>")
    css = style.group(1) if style else ""
    scoped = []
    for sel, rule in re.findall(r"([^{}@]+){([^{}]*)}", css):
        sel = sel.strip()
        if not sel or sel.startswith("body") or "print" in sel:
            continue
        sel = sel.replace("h1", "h3").replace("h2", "h4")
        scoped.append(",".join(f".agp-report {x.strip()}" for x in sel.split(",")) +
                      "{" + rule + "}")
    return Markup(f'<style>{"".join(scoped)}</style><div class="agp-report">{inner}</div>')


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/portal", status_code=303)


@router.get("/portal/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    import secrets

    token = secrets.token_urlsafe(24)
    resp = _render(request, "login.html", pre_csrf=token)
    resp.set_cookie(PRE_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/portal",
                    secure=ctx(request).settings.secure_cookies)
    return resp


@router.post("/portal/login")
def login_submit(request: Request, name: Annotated[str, Form(max_length=64)],
                 csrf: Annotated[str, Form(max_length=64)],
                 password: Annotated[str, Form(max_length=1024)] = "",
                 recovery_code: Annotated[str, Form(max_length=64)] = "") -> Response:
    cookie = request.cookies.get(PRE_CSRF_COOKIE)
    if not cookie or cookie != csrf:
        raise AuthenticationError("the login form expired; reload it and try again")
    if recovery_code:  # the second factor she holds: works while her name is hammered
        s, _ = login_with_code(request, name, recovery_code)
    else:
        s = login(request, name, password)
    resp = RedirectResponse("/portal", status_code=303)
    set_session_cookie(request, resp, s)
    resp.delete_cookie(PRE_CSRF_COOKIE, path="/portal")
    return resp


@router.post("/portal/logout")
def logout_submit(request: Request, csrf: Annotated[str, Form(max_length=64)]) -> Response:
    _who(request, csrf)
    resp = RedirectResponse("/portal/login", status_code=303)
    logout(request, resp)
    return resp


@router.get("/portal/status", response_class=HTMLResponse)
def status_page(request: Request) -> HTMLResponse:
    c = ctx(request)
    note = c.node.checkpoint().decode()
    return _render(request, "status.html", status=status_value(request), checkpoint=note)


@router.post("/portal/verify")
def verify_now(request: Request, csrf: Annotated[str, Form(max_length=64)]) -> Response:
    s, _ = _who(request, csrf)
    c = ctx(request)
    c.costly.spend(s.ident.id.hex(), "verify", VERIFY_EVERY_S)  # as POST /api/verify
    with c.costly.slot():
        r = c.node.verify()
    c.services["last_verify"] = {"ok": True, "blocks": r.blocks,
                                 "transactions": r.transactions, "rejected": r.rejected,
                                 "at_ms": int(time.time() * 1000),
                                 "seconds": round(r.seconds, 3)}
    return RedirectResponse("/portal/status", status_code=303)


def _people(request: Request, *kinds: str) -> list[Any]:
    return [i for i in AddressBook(ctx(request).node).all() if i.kind in kinds]


@router.get("/portal", response_class=HTMLResponse)
def home(request: Request, msg: str | None = None) -> Response:
    s = optional_session(request)
    if s is None:
        return RedirectResponse("/portal/login", status_code=303)
    _, who = _who(request)
    node = ctx(request).node
    notice = msg[:200] if msg else None
    if who.kind == "patient":
        readings: list[Any] = []
        try:
            rel = read_for(request, who, who.id, ["cgm"], "raw", 14)
            assert isinstance(rel, RawRelease)
            readings = cgm_of(rel)
        except OutOfRangeError:
            pass
        grants = [grant_value(request, g) for g in ca.grants(node, who.id)]
        grants.sort(key=lambda g: (not g["active"], g["grantee_name"]))
        from .routes_consent import devices as list_devices

        rules = {r["name"]: r["mgdl"] for r in alert_rules(node, who.id)}
        return _render(request, "patient.html", who=who, notice=notice,
                       agp=_agp(readings, who.name), recent=list(reversed(readings[-12:])),
                       grants=grants,
                       audit=audit_with_refusals(node, ctx(request).seclog, who.id, 100),
                       names={i.id: i.name for i in AddressBook(node).all()},
                       devices=list_devices(request, who),
                       grantees=_people(request, "clinician", "trusted"),
                       low=rules.get("low", 70), high=rules.get("high", 250),
                       emergencies=emergency_requests(request, who),
                       denials=SecurityLog(node.data_dir).recent(5))
    views = []
    for g in ca.grants_to(node, who.id):
        if not g.active_at(int(time.time() * 1000)) or "cgm" not in g.streams:
            continue
        entry: dict[str, Any] = {"grant": grant_value(request, g),
                                 "patient": next((i.name for i in AddressBook(node).all()
                                                  if i.id == g.patient), g.patient.hex()[:16])}
        try:
            rel = read_for(request, who, g.patient, ["cgm"], g.view, None)
            if isinstance(rel, SignedSummary):
                entry["summary"] = summary_value(rel.summary)
            elif isinstance(rel, RawRelease):
                rs = cgm_of(rel)
                entry["agp"] = _agp(rs, entry["patient"])
                entry["recent"] = list(reversed(rs[-6:]))
        except GlucoledgerError as exc:
            entry["error"] = exc.message
        views.append(entry)
    requests = emergency_requests(request, who)
    return _render(request, "clinician.html", who=who, notice=notice, views=views,
                   patients=_people(request, "patient"),
                   to_decide=[r for r in requests if r["role"] == "decide"],
                   asked=[r for r in requests if r["role"] == "asked"],
                   max_hours=em.EMERGENCY_MAX_HOURS)


@router.post("/portal/grants")
def grant_submit(request: Request, csrf: Annotated[str, Form(max_length=64)],
                 grantee: Annotated[str, Form(max_length=64)],
                 view: Annotated[str, Form(max_length=10)],
                 last_days: Annotated[int, Form()], valid_days: Annotated[int, Form()],
                 streams: Annotated[list[str], Form()]) -> Response:
    _, who = _who(request, csrf)
    body = _form(GrantBody, grantee=grantee, streams=streams, view=view,
                 last_days=last_days, valid_days=valid_days)
    do_grant(request, who, body)
    return _back("#access", f"Access given to {grantee}")


@router.post("/portal/grants/{grant_id}/{action}")
def grant_action(request: Request, grant_id: str, action: str,
                 csrf: Annotated[str, Form(max_length=64)]) -> Response:
    _, who = _who(request, csrf)
    if action == "revoke":
        from .routes_consent import do_revoke

        do_revoke(request, who, grant_id)
        return _back("#access", "Access revoked")
    if action == "narrow":
        do_amend(request, who, grant_id, AmendBody(view="summary"))
        return _back("#access", "Now summaries only")
    if action == "extend":
        do_amend(request, who, grant_id, AmendBody(valid_days=90))
        return _back("#access", "Extended to 90 days from today")
    raise OutOfRangeError(f"unknown action {action[:20]!r}")


@router.post("/portal/erase")
def erase_submit(request: Request, csrf: Annotated[str, Form(max_length=64)],
                 confirm: Annotated[str, Form(max_length=10)],
                 streams: Annotated[list[str], Form()]) -> Response:
    _, who = _who(request, csrf)
    body = _form(EraseBody, streams=streams, confirm=confirm)
    ctx(request).erase(who.id, who.session.keys if who.session else [],
                       sorted(set(body.streams)))
    return _back("", "Erased")


@router.post("/portal/alerts")
def alerts_submit(request: Request, csrf: Annotated[str, Form(max_length=64)],
                  low: Annotated[int, Form()], high: Annotated[int, Form()]) -> Response:
    _, who = _who(request, csrf)
    rules = [_form(Rule, name="low", op="below", mgdl=low, minutes=15).model_dump(),
             _form(Rule, name="high", op="above", mgdl=high, minutes=15).model_dump()]
    set_rules(ctx(request).node, who.id, who.session.keys if who.session else [], rules)
    return _back("#alerts", "Alert settings saved")


@router.post("/portal/emergency")
def emergency_submit(request: Request, csrf: Annotated[str, Form(max_length=64)],
                     patient: Annotated[str, Form(max_length=64)],
                     reason: Annotated[str, Form(max_length=200)],
                     hours: Annotated[int, Form()] = 4,
                     days: Annotated[int, Form()] = 14) -> Response:
    """A clinician asks; the request waits for the patient's trusted party."""
    _, who = _who(request, csrf)
    r, new = do_emergency_request(request, who, _form(
        EmergencyBody, patient=patient, hours=hours, days=days, reason=reason))
    said = "Emergency request sent" if new else "Your emergency request is already waiting"
    return _back("#emergency", f"{said}: {patient}'s trusted person must approve it by "
                 f"{_date(r.expires_ms)}")


@router.post("/portal/emergency/{request_id}/{verb}")
def emergency_decide(request: Request, request_id: str, verb: str,
                     csrf: Annotated[str, Form(max_length=64)]) -> Response:
    """The trusted party (or the patient) approves or declines, from her own session."""
    _, who = _who(request, csrf)
    if verb not in ("approve", "decline"):
        raise OutOfRangeError(f"unknown action {verb[:20]!r}: approve or decline")
    r = do_emergency_decision(request, who, request_id, verb)
    if r.status == "approved":
        msg = f"Approved: emergency access is open for {r.hours} hours"
    elif r.status == "pending":
        msg = "Approved; it still needs the patient's other trusted people"
    else:
        msg = "Declined: no access was opened"
    return _back("#emergency", msg)

"""The portal's research page, ``/portal/research``, for the three roles (issue 18).

- A patient sees every study she joined: what she shares, until when, every release and
  query that held her data (with its form), and her credit; she withdraws with one button.
  She sees the open studies in plain words and opts in, narrowing streams and fields; her
  details (for the generalised age, sex, region and diabetes type) are asked the first time
  and kept sealed on the node (node/research_store.py).
- A research organization sees the studies it sponsors: terms, the privacy budget spent,
  how many participants count now, every release and query; it asks a differentially
  private statistic (the answer is shown once, in the confirmation), receives a
  de-identified record-level release as a file, and closes a study.
- Anyone signed in checks a release bundle against this node's checkpoint key (the same
  check as ``glucoledger research verify``); a patient is also told whether her data is in
  it.

Thin: parse the form, call node/research.py, redirect with a confirmation (portal_base.back)
or render. Every POST carries the session's CSRF token (``portal_base.who``); refusals are
the portal's HTML error page and change nothing. ``GET /research`` (the page's first
address) redirects here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from ..codec import parse_hex_id
from ..errors import InputError, OutOfRangeError, PermissionDeniedError
from ..node.deid import SEXES, TYPES, Profile
from ..node.research import STATISTIC_WORDS, verify_bundle
from ..node.research_view import open_studies, participation, sponsored
from ..state.consent import DAY_MS
from ..state.research import load_study
from .auth import optional_session
from .context import Principal, ctx
from .portal_base import back, form, names, render, who
from .routes_research import research_service

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
PAGE = "/portal/research"
FIELD_WORDS = {"age": "Age (in bands of 5 years or wider; over 89 as 90+)",
               "sex": "Sex", "region": "Region (US state or wider; never a town or ZIP)",
               "diabetes_type": "Type of diabetes"}
Csrf = Annotated[str, Form(max_length=256)]


class JoinForm(BaseModel):
    streams: list[Literal["cgm", "smbg", "insulin", "carbs"]] = Field(min_length=1)
    fields: list[Literal["age", "sex", "region", "diabetes_type"]] = Field(max_length=4)
    days: int = Field(ge=1, le=3660)


class QueryForm(BaseModel):
    statistic: str
    epsilon: float = Field(gt=0, le=100)


def _require_kind(p: Principal, *kinds: str) -> None:
    if p.kind not in kinds:
        raise PermissionDeniedError(f"this is for a {' or '.join(kinds)} account; you are "
                                    f"signed in as a {p.kind}", code="wrong_kind")


def _keys(p: Principal) -> list[Any]:
    return p.session.keys if p.session is not None else []


@router.get("/research", include_in_schema=False)
def old_address() -> RedirectResponse:
    return RedirectResponse(PAGE, status_code=303)


@router.get(PAGE, response_class=HTMLResponse)
def page(request: Request, msg: str | None = None) -> Response:
    if optional_session(request) is None:
        return RedirectResponse("/portal/login", status_code=303)
    _, p = who(request)
    resp = render(request, "research.html", notice=msg[:300] if msg else None,
                  **_values(request, p))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _values(request: Request, p: Principal, **extra: Any) -> dict[str, Any]:
    c = ctx(request)
    state = c.node.state
    book = names(request)
    values: dict[str, Any] = {"kind": p.kind, "names": book, "FIELD_WORDS": FIELD_WORDS,
                              "STATISTIC_WORDS": STATISTIC_WORDS, "SEXES": SEXES,
                              "TYPES": TYPES, **extra}
    if p.kind == "patient":
        mine = participation(state, p.id)
        counting = {bytes(m.study["id"]) for m in mine if m.grant["status"] == "active"
                    and m.grant["version"] == m.study["scope_version"]}
        values["mine"] = mine
        values["joinable"] = [s for s in open_studies(state)
                              if bytes(s["id"]) not in counting]
        values["has_profile"] = research_service(request).store.has_profile(p.id)
    elif p.kind == "organization":
        values["sponsored"] = sponsored(state, p.id, c.node.now_ms())
    return values


@router.post(PAGE + "/studies/{study_id}/join")
def join(request: Request, study_id: str, csrf: Csrf, days: Annotated[int, Form()],
         streams: Annotated[list[str] | None, Form()] = None,
         fields: Annotated[list[str] | None, Form()] = None,
         name: Annotated[str, Form(max_length=200)] = "",
         birth_date: Annotated[str, Form(max_length=10)] = "",
         sex: Annotated[str, Form(max_length=10)] = "",
         state: Annotated[str, Form(max_length=60)] = "",
         zip: Annotated[str, Form(max_length=12)] = "",
         diabetes_type: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Opt in (or consent again) to a study, with her details the first time."""
    _, p = who(request, csrf)
    _require_kind(p, "patient")
    if not streams:
        raise OutOfRangeError("tick at least one kind of data to share with the study; you "
                              "did not join")
    body = form(JoinForm, streams=streams, fields=fields or [], days=days)
    given = [name, birth_date, sex, state, zip, diabetes_type]
    profile = None
    if any(v.strip() for v in given):
        if not all(v.strip() for v in given):
            raise InputError("fill in every one of your details (name, date of birth, sex, "
                             "state, ZIP code, type of diabetes), or none to keep the ones "
                             "you gave before; you did not join")
        profile = Profile.from_value({"name": name.strip(), "birth_date": birth_date,
                                      "sex": sex, "state": state.strip().upper()
                                      if len(state.strip()) == 2 else state.strip(),
                                      "zip": zip.strip(), "diabetes_type": diabetes_type})
    study = load_study(ctx(request).node.state, parse_hex_id(study_id, "a study id"))
    research_service(request).join(
        p.id, _keys(p), study["id"], sorted(set(body.streams)), sorted(set(body.fields)),
        ctx(request).node.now_ms() + body.days * DAY_MS, profile)
    return back(msg=f"You joined {study['protocol']}: it receives only what you ticked, "
                "de-identified, and every use is listed here", path=PAGE)


@router.post(PAGE + "/grants/{grant_id}/withdraw")
def withdraw(request: Request, grant_id: str, csrf: Csrf) -> Response:
    _, p = who(request, csrf)
    _require_kind(p, "patient")
    research_service(request).withdraw(p.id, _keys(p), parse_hex_id(grant_id, "a grant id"))
    return back(msg="You withdrew: you are in no release or query from now on; the ones "
                "before stay listed", path=PAGE)


@router.post(PAGE + "/studies/{study_id}/query")
def query(request: Request, study_id: str, csrf: Csrf,
          statistic: Annotated[str, Form(max_length=40)],
          epsilon: Annotated[float, Form()]) -> Response:
    """A DP statistic for the sponsor; the budget is charged on the ledger first."""
    _, p = who(request, csrf)
    _require_kind(p, "organization")
    body = form(QueryForm, statistic=statistic, epsilon=epsilon)
    if body.statistic not in STATISTIC_WORDS:
        raise OutOfRangeError(f"unknown statistic {body.statistic[:40]!r}; choose one of the "
                              "list")
    a = research_service(request).query(p.id, _keys(p), parse_hex_id(study_id, "a study id"),
                                        body.statistic, body.epsilon)
    shown = ", ".join(f"{v:.1f}" for v in a.values)
    return back(msg=f"{STATISTIC_WORDS[a.statistic]}: {shown} over {a.participants} "
                f"participants (epsilon {a.epsilon:g}; spent {a.spent:g} of {a.budget:g})",
                path=PAGE)


@router.post(PAGE + "/studies/{study_id}/release")
def release(request: Request, study_id: str, csrf: Csrf) -> Response:
    """A de-identified record-level release for the sponsor, as a file to keep (the same
    bundle as ``POST /api/research/studies/{id}/releases``; it verifies offline)."""
    _, p = who(request, csrf)
    _require_kind(p, "organization")
    study = load_study(ctx(request).node.state, parse_hex_id(study_id, "a study id"))
    raw = research_service(request).release(p.id, _keys(p), study["id"])
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in study["protocol"])
    return Response(raw, media_type="application/json", headers={
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="release-{name[:40]}.json"'})


@router.post(PAGE + "/studies/{study_id}/close")
def close(request: Request, study_id: str, csrf: Csrf) -> Response:
    _, p = who(request, csrf)
    _require_kind(p, "organization")
    research_service(request).close_study(p.id, _keys(p), parse_hex_id(study_id, "a study id"))
    return back(msg="Study closed: no release or query from now on", path=PAGE)


@router.post(PAGE + "/verify", response_class=HTMLResponse)
async def verify(request: Request, csrf: Csrf,
                 bundle: Annotated[UploadFile | None, File()] = None) -> Response:
    """Check a release bundle against this node's checkpoint key (and, for a patient,
    whether her data is in it)."""
    _, p = who(request, csrf)
    raw = await bundle.read() if bundle is not None else b""
    if not raw:
        raise InputError("choose a release bundle file (the JSON a release gave the study)")
    svc = research_service(request)
    got = verify_bundle(raw, ctx(request).node.verifier())
    study = ctx(request).node.state.get("study/" + got.study.hex())
    result: dict[str, Any] = {"rows": got.rows, "participants": got.participants,
                              "batches": len(got.batches), "root": got.root.hex(),
                              "size": got.checkpoint.size, "signer": got.signer,
                              "protocol": study["protocol"] if study else got.study.hex()[:16],
                              "mine": None}
    if p.kind == "patient":
        result["mine"] = len(svc.am_i_in(p.id, raw))
    resp = render(request, "research.html", **_values(request, p, verified=result))
    resp.headers["Cache-Control"] = "no-store"
    return resp

"""The portal's zero-knowledge claims page, ``/portal/claims`` (issue 19).

- A patient shares a proof: she picks a claim (time in range at least P %, no reading below
  54 mg/dL, mean within [A, B], GMI below G), a number of whole days and, optionally, to
  whom; her session's keys sign the disclosure (on the ledger and in her audit trail), the
  node proves under it (node/zkclaims.py) and she downloads the claim file to hand over.
- She sees the disclosures she signed and withdraws one (her node proves nothing more under
  it; files she handed over stay proofs about those days, as the page says).
- Anyone signed in checks a claim file. The result names the claim, the period and the
  checkpoint, and nothing else: a verifier learns no reading.

Thin: parse the form, call node/zkclaims.py, answer a file or render. Every POST carries the
session's CSRF token (``portal_base.who``); refusals are the portal's error page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import InputError, PermissionDeniedError
from ..node.zkclaims import MAX_CLAIM, dumps_claim, verify_claim
from ..zk.claims import FORMS
from ..zk.toolchain import Toolchain, default_profile
from .auth import optional_session
from .context import Principal, ctx
from .portal_base import render, who
from .routes_claims import claims_of, disclosure_view, prove_for, withdraw_for

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
PAGE = "/portal/claims"
Csrf = Annotated[str, Form(max_length=256)]
EXAMPLES = (("tir>=70", "time in range (70-180 mg/dL) at least 70 %"),
            ("tbr54=0", "no reading below 54 mg/dL"),
            ("tbr54<=1", "time below 54 mg/dL at most 1 %"),
            ("mean in 100..160", "mean glucose between 100 and 160 mg/dL"),
            ("gmi<7", "GMI below 7 %"))


@router.get(PAGE, response_class=HTMLResponse)
def page(request: Request) -> Response:
    if optional_session(request) is None:
        return RedirectResponse("/portal/login", status_code=303)
    _, p = who(request)
    resp = render(request, "claims.html", kind=p.kind, examples=EXAMPLES, forms=FORMS,
                  disclosures=_disclosures(request, p))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _disclosures(request: Request, p: Principal) -> list[dict[str, Any]]:
    """The patient's disclosures, newest first, with their period in words."""
    if p.kind != "patient":
        return []
    return [{**disclosure_view(d), "from": _day(d.start), "until": _day(d.end)}
            for d in reversed(claims_of(request).disclosures(p.id))]


@router.post(PAGE + "/withdraw")
async def withdraw(request: Request, csrf: Csrf,
                   disclosure: Annotated[str, Form(max_length=64)]) -> Response:
    """Withdraw one of her disclosures; back to the page, which shows it withdrawn."""
    _, p = who(request, csrf)
    if p.kind != "patient":
        raise PermissionDeniedError("only the patient who signed a disclosure withdraws it",
                                    code="wrong_kind")
    await run_in_threadpool(withdraw_for, request, p, disclosure)
    return RedirectResponse(PAGE + "#disclosures", status_code=303)


@router.post(PAGE + "/make")
async def make(request: Request, csrf: Csrf, claim: Annotated[str, Form(max_length=64)],
               days: Annotated[int, Form(ge=1, le=90)] = 14,
               to: Annotated[str, Form(max_length=80)] = "") -> Response:
    """Sign the disclosure, prove the claim over the patient's last ``days`` whole days;
    download the file."""
    _, p = who(request, csrf)
    if p.kind != "patient":
        raise PermissionDeniedError("only a patient shares proofs about her own glucose",
                                    code="wrong_kind")
    doc = await run_in_threadpool(prove_for, request, p, claim, days, to, None)
    return Response(dumps_claim(doc), media_type="application/json", headers={
        "Cache-Control": "no-store",
        "Content-Disposition": 'attachment; filename="glucose-claim.json"'})


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@router.post(PAGE + "/verify", response_class=HTMLResponse)
async def verify(request: Request, csrf: Csrf,
                 file: Annotated[UploadFile | None, File()] = None) -> Response:
    """Check a claim file against this node's key and verification keys."""
    _, p = who(request, csrf)
    raw = await file.read(MAX_CLAIM + 1) if file is not None else b""
    if not raw:
        raise InputError("choose a claim file (the JSON that “Share a proof” downloaded)")
    node = ctx(request).node
    keys = Toolchain(default_profile()).keys()
    r = await run_in_threadpool(verify_claim, raw, node.verifier(), keys)
    result = {"claim": r.claim, "days": r.days, "from": _day(r.start_ms),
              "to": _day(r.end_ms), "checkpoint": r.checkpoint_size}
    resp = render(request, "claims.html", kind=p.kind, examples=EXAMPLES, forms=FORMS,
                  verified=result, disclosures=_disclosures(request, p))
    resp.headers["Cache-Control"] = "no-store"
    return resp

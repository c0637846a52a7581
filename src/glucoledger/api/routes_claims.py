"""Zero-knowledge claims over HTTP (issue 19): make a claim file, check one.

- ``POST /api/claims``: the patient, for her own data: ``{"claim": "tir>=70", "days": 14,
  "to": "optional, to whom"}``. Her session's keys sign the disclosure (``zk.disclose``: on
  the ledger and in her audit trail) first; then her node proves under it. Or
  ``{"disclosure": "<id>"}``: prove under one she signed already. The answer is the claim
  file ``glucoledger verify-claim FILE --node-key VKEY`` checks offline (node/zkclaims.py),
  byte for byte. Proving takes seconds per day: it runs in a worker thread.
- ``POST /api/claims/verify``: anyone; the claim file as the body. The answer names the
  claim, the period and the checkpoint, and nothing else.
- ``GET /api/claims/disclosures``: the patient's disclosures, newest first (id, claim, days,
  period, to whom, height, ``withdrawn_height``).
- ``POST /api/claims/disclosures/{id}/withdraw``: she withdraws one (``zk.withdraw``, signed
  by her session's keys; in her audit trail): her node proves nothing more under it. Files
  already made stay proofs about those days.

The circuit profile is the node's (``$GLUCOLEDGER_ZK_PROFILE``, zk/toolchain.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import InputError, TooLargeError
from ..node.proofs import load_document
from ..node.zkclaims import (
    CLAIM_KEYS,
    CLAIM_TYPE,
    MAX_CLAIM,
    Disclosure,
    ZkClaims,
    dumps_claim,
    verify_claim,
)
from ..zk.toolchain import Toolchain, default_profile
from .auth import principal, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["claims"])
Who = Annotated[Principal, Depends(principal)]


class ClaimRequest(BaseModel):
    claim: str | None = Field(default=None, min_length=1, max_length=64,
                              description="tir>=P, tbr54<=Q, tbr54=0, 'mean in A..B' or gmi<G")
    days: int = Field(default=14, ge=1, le=90, description="whole local days, to last midnight")
    to: str = Field(default="", max_length=80,
                    description="to whom (optional; sealed on the ledger for her node alone)")
    disclosure: str | None = Field(default=None, min_length=8, max_length=64,
                                   description="prove under this signed disclosure instead")


def claims_of(request: Request) -> ZkClaims:
    c = ctx(request)
    return ZkClaims(c.node, c.svc.vault, Toolchain(default_profile()))


def disclosure_view(d: Disclosure) -> dict[str, Any]:
    """A disclosure as the API and the portal show it to the patient who signed it."""
    return {"id": d.id.hex(), "claim": d.claim, "days": d.days,
            "period": {"from_ms": d.start, "to_ms": d.end}, "to": d.to, "height": d.height,
            "time_ms": d.time_ms, "withdrawn_height": d.withdrawn_height}


def withdraw_for(request: Request, who: Principal, ident: str) -> Disclosure:
    """Sign the patient's withdrawal of her disclosure ``ident`` with her session's keys."""
    return claims_of(request).withdraw(who.id, ctx(request).keys_for(who), ident)


def prove_for(request: Request, who: Principal, claim: str | None, days: int, to: str,
              disclosure: str | None) -> dict[str, Any]:
    """Sign the patient's disclosure with her session's keys (unless she names one), then
    prove under it. Runs in a worker thread."""
    if (claim is None) == (disclosure is None):
        raise InputError("give a claim (you sign a new disclosure) or the id of a disclosure "
                         "you signed, not both")
    c = ctx(request)
    zk = claims_of(request)
    if claim is not None:
        disclosure = zk.disclose(who.id, c.keys_for(who), claim, days, c.node.now_ms(),
                                 to).id.hex()
    assert disclosure is not None
    return zk.prove_claim(who.id, disclosure)


@router.post("/claims", response_class=Response, responses={**ERRORS, 200: {
    "content": {"application/json": {"schema": {"type": "object"}}},
    "description": "the claim file (canonical JSON)"}})
async def make_claim(request: Request, who: Who, body: ClaimRequest) -> Response:
    """Sign a disclosure and prove a claim about your glucose over the last N whole days."""
    require_kind(request, who, "patient")
    doc = await run_in_threadpool(prove_for, request, who, body.claim, body.days, body.to,
                                  body.disclosure)
    return Response(dumps_claim(doc), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.post("/claims/verify", responses=ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"type": "object"}}}}})
async def check_claim(request: Request) -> dict[str, Any]:
    """Check a claim file against this node's key and verification keys."""
    data = await request.body()
    if len(data) > MAX_CLAIM:
        raise TooLargeError(f"a claim file is at most {MAX_CLAIM} bytes")
    load_document(data, limit=MAX_CLAIM, keys=CLAIM_KEYS, doc_type=CLAIM_TYPE,
                  what="claim file")
    node = ctx(request).node
    keys = Toolchain(default_profile()).keys()
    r = await run_in_threadpool(verify_claim, data, node.verifier(), keys)
    return {"valid": True, "claim": r.claim, "days": r.days,
            "period": {"from_ms": r.start_ms, "to_ms": r.end_ms},
            "checkpoint": r.checkpoint_size}


@router.get("/claims/disclosures", responses=ERRORS)
async def my_disclosures(request: Request, who: Who) -> list[dict[str, Any]]:
    """Your disclosures of zero-knowledge claims, newest first."""
    require_kind(request, who, "patient")
    found = await run_in_threadpool(claims_of(request).disclosures, who.id)
    return [disclosure_view(d) for d in reversed(found)]


@router.post("/claims/disclosures/{ident}/withdraw", responses=ERRORS)
async def withdraw(request: Request, who: Who, ident: str) -> dict[str, Any]:
    """Withdraw one of your disclosures: no more proofs under it."""
    require_kind(request, who, "patient")
    return disclosure_view(await run_in_threadpool(withdraw_for, request, who, ident))

"""Zero-knowledge claims over HTTP (issue 19): make a claim file, check one.

- ``POST /api/claims``: the patient, for her own data: ``{"claim": "tir>=70", "days": 14}``.
  The answer is the claim file ``glucoledger verify-claim FILE --node-key VKEY`` checks
  offline (node/zkclaims.py), byte for byte. Proving takes seconds per day: it runs in a
  worker thread.
- ``POST /api/claims/verify``: anyone; the claim file as the body. The answer names the
  claim, the period and the checkpoint, and nothing else.

The circuit profile is the node's (``$GLUCOLEDGER_ZK_PROFILE``, zk/toolchain.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import TooLargeError
from ..node.proofs import load_document
from ..node.zkclaims import (
    CLAIM_KEYS,
    CLAIM_TYPE,
    MAX_CLAIM,
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
    claim: str = Field(min_length=1, max_length=64,
                       description="tir>=P, tbr54<=Q, tbr54=0, 'mean in A..B' or gmi<G")
    days: int = Field(default=14, ge=1, le=90, description="whole local days, to last midnight")


@router.post("/claims", response_class=Response, responses={**ERRORS, 200: {
    "content": {"application/json": {"schema": {"type": "object"}}},
    "description": "the claim file (canonical JSON)"}})
async def make_claim(request: Request, who: Who, body: ClaimRequest) -> Response:
    """Prove a claim about your glucose over the last N whole days; share the file."""
    require_kind(request, who, "patient")
    c = ctx(request)
    zk = ZkClaims(c.node, c.svc.vault, Toolchain(default_profile()))
    doc = await run_in_threadpool(zk.prove_claim, who.id, body.claim, body.days,
                                  c.node.now_ms())
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

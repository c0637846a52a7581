"""Ledger routes: status, sessions, accounts, checkpoints, proofs, verify."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError, NotFoundError, OutOfRangeError
from ..names import MAX_NAME, NAME_PATTERN
from ..node.accounts import AddressBook, identity
from ..node.verify import IntegrityError
from .auth import (
    confirm_password,
    login,
    login_with_code,
    logout,
    principal,
    set_session_cookie,
)
from .context import Principal, ctx

__all__ = ["VERIFY_EVERY_S", "no_store", "router", "status_value"]

VERIFY_EVERY_S = 60.0

router = APIRouter(prefix="/api", tags=["ledger"])
Who = Annotated[Principal, Depends(principal)]


class Strict(BaseModel):
    """Request bodies: unknown fields refused, nothing coerced ("1" is not 1, true is not 1:
    pydantic strict mode) and strings kept exactly as sent (never trimmed: names are
    checked by ``names.NAME_PATTERN``, so " dr-lee " is refused, not stripped)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(Strict):
    # Passwords and codes are taken exactly as typed (nothing is trimmed).
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    recovery_code: str | None = Field(default=None, min_length=1, max_length=64,
                                      description="a one-time recovery code, instead of the "
                                      "password")


def no_store(response: Response) -> None:
    """Answers with secrets or health data are never cached (RFC 9111 section 5.2.2.5)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


class ErrorBody(BaseModel):
    code: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 413, 422, 429)}


def status_value(request: Request) -> dict[str, Any]:
    c = ctx(request)
    node = c.node
    node.sync()
    last = node.last_header()
    verified = c.last_verify
    return {"chain": node.chain, "node": node.config.name,
            "height": last.height if last else None,
            "log_size": last.log_size if last else 0,
            "log_root": base64.b64encode(last.log_root).decode() if last else None,
            "block_time_ms": last.time if last else None,
            "verify": verified}


@router.get("/status", responses=ERRORS)
def status(request: Request) -> dict[str, Any]:
    """The chain, its height and latest root, and the last verify result (public)."""
    return status_value(request)


@router.post("/session", responses=ERRORS)
def open_session(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    """Log in with a password, or a one-time recovery code: a session cookie (Secure,
    HttpOnly, SameSite=Strict). Failed logins slow down the address they come from, never
    the account."""
    if (body.password is None) == (body.recovery_code is None):
        raise InputError("send either password or recovery_code")
    left = None
    if body.recovery_code is not None:
        s, left = login_with_code(request, body.name, body.recovery_code)
    else:
        s = login(request, body.name, body.password or "")
    set_session_cookie(request, response, s)
    no_store(response)
    out: dict[str, Any] = {"name": s.name, "kind": s.ident.kind,
                           "account": s.ident.id.hex(), "csrf": s.csrf}
    if left is not None:
        out["recovery_codes_left"] = left
    return out


class ConfirmBody(Strict):
    password: str | None = Field(default=None, min_length=1, max_length=1024,
                                 description="your password, again (a session's caller)")


@router.post("/recovery-codes", responses=ERRORS, status_code=201)
def recovery_codes(request: Request, response: Response, who: Who,
                   body: ConfirmBody | None = None) -> dict[str, Any]:
    """Ten new one-time recovery codes for your account (the earlier ones stop working).
    Each logs you in once instead of your password, even while someone hammers your name.
    Shown once; the node keeps only Argon2id hashes. Keep them on paper. In a session, send
    your password again (``{"password": ...}``): codes outlive the session, so a stolen
    session alone must not mint them."""
    if who.kind not in ("patient", "trusted", "clinician", "organization", "maker") or \
            who.name == "org":
        raise InputError("recovery codes are for people with a portal login")
    confirm_password(request, who, body.password if body else None)
    codes = ctx(request).recovery.issue(who.ident)
    no_store(response)
    return {"name": who.name, "codes": codes}


@router.delete("/session", responses=ERRORS)
def close_session(request: Request, response: Response) -> dict[str, str]:
    logout(request, response)
    return {"status": "logged out"}


@router.get("/me", responses=ERRORS)
def me(who: Who) -> dict[str, Any]:
    return {"name": who.name, "kind": who.kind, "account": who.id.hex(), "via": who.via}


def _account_value(request: Request, name: str) -> dict[str, Any]:
    node = ctx(request).node
    ident = identity(node, name)
    acct = node.account(ident.id)
    return {"name": ident.name, "kind": ident.kind, "account": ident.id.hex(),
            "nonce": acct.nonce,
            "keys": [{"id": kid.hex(), "alg": c.key.alg, "weights": dict(c.weights)}
                     for kid, c in acct.keys.items()],
            "thresholds": dict(acct.thresholds)}


@router.get("/accounts", responses=ERRORS)
def accounts(request: Request, who: Who) -> list[dict[str, str]]:
    """The accounts this node knows by name (custodial ones), without keys."""
    return [{"name": i.name, "kind": i.kind, "account": i.id.hex()}
            for i in AddressBook(ctx(request).node).all()]


@router.get("/accounts/{name}", responses=ERRORS)
def account(name: Annotated[str, Field(max_length=64)], request: Request,
            who: Who) -> dict[str, Any]:
    """One account: kind, public keys and policy, nonce."""
    return _account_value(request, name)


@router.get("/node-key", response_class=Response, responses={**ERRORS, 200: {
    "content": {"text/plain": {"schema": {"type": "string"}}},
    "description": "the verifier key, one line"}})
def node_key(request: Request) -> PlainTextResponse:
    """This node's checkpoint verifier key (``<name>+<hex key id>+<base64 key>``), what
    ``verify-proof --node-key`` takes. Public; compare it with one you got out of band."""
    return PlainTextResponse(ctx(request).node.verifier().vkey() + "\n")


@router.get("/blocks", responses=ERRORS)
def blocks(request: Request, last: Annotated[int, Query(ge=1, le=100)] = 10
           ) -> list[dict[str, Any]]:
    """The most recent blocks, newest last: height, time, transactions (and how many were
    refused), log size, block hash. Public: hashes and counts only."""
    node = ctx(request).node
    node.sync()
    rows = []
    for h, bhash, header, results in node.store.recent_blocks(last):
        rows.append({"height": h, "time_ms": header.time, "tx_count": header.tx_count,
                     "rejected": sum(1 for r in results if not r.ok),
                     "log_size": header.log_size, "hash": bhash.hex()})
    return rows


@router.get("/checkpoint", response_class=PlainTextResponse, responses=ERRORS)
def checkpoint(request: Request) -> PlainTextResponse:
    """The latest checkpoint, a C2SP signed note (public: it reveals only hashes)."""
    return PlainTextResponse(ctx(request).node.checkpoint().decode("utf-8"))


def _size(request: Request, n: int | None) -> int:
    tree = ctx(request).node.replica.tree
    size = tree.size if n is None else n
    if not 0 < size <= tree.size:
        raise OutOfRangeError(f"tree size {size} is outside 1..{tree.size}")
    return size


@router.get("/proofs/inclusion", responses=ERRORS)
def inclusion(request: Request, index: Annotated[int, Query(ge=0, lt=1 << 48)],
              size: Annotated[int | None, Query(ge=1, lt=1 << 48)] = None) -> dict[str, Any]:
    """RFC 9162 inclusion proof of log entry ``index`` in the tree of ``size`` entries."""
    n = _size(request, size)
    if index >= n:
        raise OutOfRangeError(f"index {index} is not below the tree size {n}")
    proof = ctx(request).node.inclusion_proof(index, n)
    return {"index": index, "size": n,
            "proof": [base64.b64encode(h).decode() for h in proof]}


@router.get("/proofs/consistency", responses=ERRORS)
def consistency(request: Request, first: Annotated[int, Query(ge=1, lt=1 << 48)],
                second: Annotated[int | None, Query(ge=1, lt=1 << 48)] = None
                ) -> dict[str, Any]:
    """RFC 9162 consistency proof between two tree sizes."""
    n = _size(request, second)
    if first > n:
        raise OutOfRangeError(f"first size {first} is above the second {n}")
    proof = ctx(request).node.consistency_proof(first, n)
    return {"first": first, "second": n,
            "proof": [base64.b64encode(h).decode() for h in proof]}


@router.get("/blocks/{height}", responses=ERRORS)
def block(request: Request, height: int) -> dict[str, Any]:
    """One block: header fields and its checkpoint (hashes only)."""
    node = ctx(request).node
    if not 0 <= height < (1 << 48):
        raise NotFoundError(f"no block {height}")
    try:
        _, header_raw, note = node.store.block_row(height)
    except (NotFoundError, IndexError, TypeError):
        raise NotFoundError(f"no block at height {height}") from None
    from ..ledger.block import BlockHeader

    h = BlockHeader.decode(header_raw)
    return {"height": h.height, "time_ms": h.time, "log_size": h.log_size,
            "log_root": base64.b64encode(h.log_root).decode(),
            "checkpoint": note.decode("utf-8")}


@router.post("/verify", responses=ERRORS)
def verify(request: Request, who: Who) -> dict[str, Any]:
    """Re-derive the whole chain from the store: the totals, or (422, code ``integrity``)
    every bad spot in ``findings`` and what the break left ``unchecked``, as the CLI's
    ``verify`` prints them. Costly: once a minute per account, one at a time on the node
    (429 with Retry-After). ``GET /api/status`` shows the last result, failed or not."""
    c = ctx(request)
    c.costly.spend(who.id.hex(), "verify", VERIFY_EVERY_S)
    started = time.time()
    with c.costly.slot():
        try:
            report = c.node.verify()
        except IntegrityError as exc:
            c.last_verify = {"ok": False, "findings": len(exc.findings),
                             "first": exc.finding.describe(), "at_ms": int(started * 1000)}
            raise
    value = {"ok": True, "blocks": report.blocks, "transactions": report.transactions,
             "rejected": report.rejected, "log_size": report.log_size,
             "log_root": base64.b64encode(report.log_root).decode(),
             "seconds": round(report.seconds, 3), "at_ms": int(started * 1000)}
    c.last_verify = value
    return value

"""Account routes: open accounts, first portal passwords, Nightscout credentials.

Who may call what (the rules live in ``node/enrolment.py`` and the state machine):

- ``POST /api/accounts``, ``PUT /api/accounts/{name}/password``: an organization (the node's
  own ``org`` signing with its key, RFC 9421, or an organization account of this node); it
  sponsors what it opens. A patient names her trusted party.
- ``POST /api/accounts/{name}/enrolment-code``: the account's sponsor; for a trusted party,
  only the patient who names her. ``POST /api/enrol``: the owner redeems it (no login).
- ``POST /api/nightscout/uploaders``: the patient, for her own data. ``POST
  /api/nightscout/readers``: the patient *invites* a reader; ``POST
  /api/nightscout/reader-tokens``: the invited reader mints her own token (node/readers.py).
  Secrets and tokens are in the answer once (``Cache-Control: no-store``) and kept on the
  node only as hashes.

Passwords, secrets and tokens are never echoed in answers, errors or logs.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field

from ..crypto.legacy import nightscout_secret_digests
from ..names import MAX_NAME, NAME_PATTERN
from ..node.enrolment import CODE_TTL_S, first_password, open_account
from .auth import permission, principal, redeem_code, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS, Strict, no_store

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["accounts"])
Who = Annotated[Principal, Depends(principal)]
NAME = NAME_PATTERN
AccountName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=NAME)]


#: Bodies with passwords and codes: ``Strict`` (nothing trimmed, nothing coerced).
Exact = Strict


class AccountBody(Exact):
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME,
                      description="a name local to this node (its address book)")
    kind: Literal["patient", "trusted", "clinician", "maker", "organization"]
    trusted: str | None = Field(default=None, min_length=1, max_length=MAX_NAME, pattern=NAME,
                                description="patients: the trusted party's account name")
    password: str | None = Field(default=None, min_length=10, max_length=1024,
                                 description="a first portal password (never echoed)")
    alg: Literal["ed25519", "p256"] = "ed25519"


class PasswordBody(Exact):
    password: str = Field(min_length=10, max_length=1024)


class EnrolBody(Exact):
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    code: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=10, max_length=1024)


class ReaderBody(Strict):
    reader: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME,
                        description="the account you invite to read through its grant")


class ReaderTokenBody(Strict):
    patient: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME,
                         description="the patient who invited you")


@router.post("/accounts", responses=ERRORS, status_code=201)
def create_account(body: AccountBody, request: Request, who: Who) -> dict[str, Any]:
    """Open a custodial account (keys kept in the node's sealed wallet), sponsored by the
    calling organization. A patient names her trusted party. Answers the account, never the
    password."""
    require_kind(request, who, "organization")
    c = ctx(request)
    with permission(request, who):
        ident, receipt = open_account(c.node, c.passwords, c.enrolments, who.ident, body.name,
                                      body.kind,
                                      trusted=body.trusted, password=body.password,
                                      alg=body.alg)
    return {"name": ident.name, "kind": ident.kind, "account": ident.id.hex(),
            "height": receipt.height, "password_set": body.password is not None}


@router.put("/accounts/{name}/password", responses=ERRORS)
def set_first_password(name: AccountName, body: PasswordBody, request: Request,
                       who: Who) -> dict[str, Any]:
    """Set the first portal password of an account that has none, as the organization that
    opened it (its sponsor); 409 ``password_set`` if it has one (a remote operator never
    replaces a password its owner uses). A trusted party is invited by her patient."""
    require_kind(request, who, "organization")
    c = ctx(request)
    with permission(request, who):
        first_password(c.passwords, c.enrolments, who.ident, name, body.password)
    return {"name": name, "password_set": True}


@router.post("/accounts/{name}/enrolment-code", responses=ERRORS, status_code=201)
def enrolment_code(name: AccountName, request: Request, response: Response,
                   who: Who) -> dict[str, Any]:
    """A one-time code that lets ``name``'s owner choose her first password (``POST
    /api/enrol``). Issued by the organization that opened the account, or, for a trusted
    party, only by the patient who names her. Shown once; the node keeps an Argon2id hash."""
    c = ctx(request)
    with permission(request, who):
        code = c.enrolments.issue_code(who.ident, name, c.passwords, time.time())
    no_store(response)
    return {"name": name, "code": code, "valid_s": CODE_TTL_S}


@router.post("/enrol", responses=ERRORS)
def enrol(body: EnrolBody, request: Request, response: Response) -> dict[str, Any]:
    """Redeem a one-time enrolment code and choose your first password (then log in)."""
    ident = redeem_code(request, body.name, body.code, body.password)
    no_store(response)
    return {"name": ident.name, "kind": ident.kind, "password_set": True}


@router.post("/nightscout/uploaders", responses=ERRORS, status_code=201)
def nightscout_uploader(request: Request, response: Response, who: Who) -> dict[str, Any]:
    """Make a Nightscout uploader secret for your data (xDrip+, Loop, AndroidAPS: v1 API
    secret) with a new gateway account bound to you. Shown once; the node keeps a hash."""
    require_kind(request, who, "patient")
    secret = secrets.token_urlsafe(18)
    c = ctx(request)
    with c.account_lock(who.id):
        gw = c.svc.nightscout.add_uploader(who.name, secret)
    no_store(response)
    return {"gateway": gw.name, "account": gw.id.hex(), "api_secret": secret,
            "api_secret_sha1": nightscout_secret_digests(secret)[0]}


@router.post("/nightscout/readers", responses=ERRORS, status_code=201)
def nightscout_reader(body: ReaderBody, request: Request, who: Who) -> dict[str, Any]:
    """Invite ``reader`` (a caregiver's or clinician's app) to follow you through Nightscout.
    No token is made here: the reader mints her own (``POST /api/nightscout/reader-tokens``),
    so reads signed with her key are reads she asked for. She reads only what your grant to
    her allows, and every read is audited."""
    require_kind(request, who, "patient")
    c = ctx(request)
    with permission(request, who):
        reader = c.readers.invite(who.ident, body.reader)
    return {"reader": reader.name, "status": "invited"}


@router.get("/nightscout/reader-invitations", responses=ERRORS)
def reader_invitations(request: Request, who: Who) -> dict[str, Any]:
    """The patients who invited you to follow them through Nightscout."""
    return {"patients": ctx(request).readers.pending(who.ident)}


@router.post("/nightscout/reader-tokens", responses=ERRORS, status_code=201)
def nightscout_reader_token(body: ReaderTokenBody, request: Request, response: Response,
                            who: Who) -> dict[str, Any]:
    """Mint your own Nightscout read token for a patient who invited you. Bound to you;
    shown once (the node keeps hashes)."""
    c = ctx(request)
    with permission(request, who):
        token = c.readers.mint(who.ident, body.patient)
    no_store(response)
    return {"reader": who.name, "patient": body.patient, "token": token}

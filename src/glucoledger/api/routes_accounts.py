"""Account routes: open accounts, first portal passwords, Nightscout credentials.

Who may call what (the rules live in ``node/enrolment.py`` and the state machine):

- ``POST /api/accounts``, ``PUT /api/accounts/{name}/password``: an organization (the node's
  own ``org`` signing with its key, RFC 9421, or an organization account of this node); it
  sponsors what it opens. A patient names her trusted party.
- ``POST /api/nightscout/uploaders``, ``POST /api/nightscout/readers``: the patient, for her
  own data. The secret or token is in the answer once (``Cache-Control: no-store``) and kept
  on the node only as a hash.

Passwords, secrets and tokens are never echoed in answers, errors or logs.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..crypto.legacy import nightscout_secret_digests
from ..node.enrolment import first_password, open_account
from .auth import permission, principal, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS, Strict

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["accounts"])
Who = Annotated[Principal, Depends(principal)]
NAME = r"^[A-Za-z0-9_.@-]+$"
AccountName = Annotated[str, Path(min_length=1, max_length=48, pattern=NAME)]


class Exact(BaseModel):
    """Like ``Strict``, but strings are kept exactly as sent (passwords are not trimmed)."""

    model_config = ConfigDict(extra="forbid")


class AccountBody(Exact):
    name: str = Field(min_length=1, max_length=48, pattern=NAME,
                      description="a name local to this node (its address book)")
    kind: Literal["patient", "trusted", "clinician", "maker", "organization"]
    trusted: str | None = Field(default=None, min_length=1, max_length=48, pattern=NAME,
                                description="patients: the trusted party's account name")
    password: str | None = Field(default=None, min_length=10, max_length=1024,
                                 description="a first portal password (never echoed)")
    alg: Literal["ed25519", "p256"] = "ed25519"


class PasswordBody(Exact):
    password: str = Field(min_length=10, max_length=1024)


class ReaderBody(Strict):
    reader: str = Field(min_length=1, max_length=48, pattern=NAME,
                        description="the account that will read through its grant")


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post("/accounts", responses=ERRORS, status_code=201)
def create_account(body: AccountBody, request: Request, who: Who) -> dict[str, Any]:
    """Open a custodial account (keys kept in the node's sealed wallet), sponsored by the
    calling organization. A patient names her trusted party. Answers the account, never the
    password."""
    require_kind(request, who, "organization")
    c = ctx(request)
    with permission(request, who):
        ident, receipt = open_account(c.node, c.passwords, who.ident, body.name, body.kind,
                                      trusted=body.trusted, password=body.password,
                                      alg=body.alg)
    return {"name": ident.name, "kind": ident.kind, "account": ident.id.hex(),
            "height": receipt.height, "password_set": body.password is not None}


@router.put("/accounts/{name}/password", responses=ERRORS)
def set_first_password(name: AccountName, body: PasswordBody, request: Request,
                       who: Who) -> dict[str, Any]:
    """Set the first portal password of an account that has none (409 ``password_set``
    otherwise: a remote operator never replaces a password its owner uses)."""
    require_kind(request, who, "organization")
    with permission(request, who):
        first_password(ctx(request).passwords, who.ident, name, body.password)
    return {"name": name, "password_set": True}


@router.post("/nightscout/uploaders", responses=ERRORS, status_code=201)
def nightscout_uploader(request: Request, response: Response, who: Who) -> dict[str, Any]:
    """Make a Nightscout uploader secret for your data (xDrip+, Loop, AndroidAPS: v1 API
    secret) with a new gateway account bound to you. Shown once; the node keeps a hash."""
    require_kind(request, who, "patient")
    secret = secrets.token_urlsafe(18)
    c = ctx(request)
    with c.account_lock(who.id):
        gw = c.services["nightscout"].add_uploader(who.name, secret)
    _no_store(response)
    return {"gateway": gw.name, "account": gw.id.hex(), "api_secret": secret,
            "api_secret_sha1": nightscout_secret_digests(secret)[0]}


@router.post("/nightscout/readers", responses=ERRORS, status_code=201)
def nightscout_reader(body: ReaderBody, request: Request, response: Response,
                      who: Who) -> dict[str, Any]:
    """Make a Nightscout read token for ``reader`` following you (a caregiver's app). It
    reads only what your grant to ``reader`` allows, and every read is audited. Shown once."""
    require_kind(request, who, "patient")
    token = secrets.token_urlsafe(18)
    ctx(request).services["nightscout"].add_reader(body.reader, who.name, token)
    _no_store(response)
    return {"reader": body.reader, "token": token}

"""Nightscout API v1 routes, so existing uploaders and followers work unchanged.

Authentication: ``api-secret`` header (SHA-1 or SHA-512 hex of the secret) or ``?token=``;
see node/nightscout.py for what each credential may do. Bodies are read as JSON whatever
the Content-Type (some uploaders send text/plain).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..errors import GlucoledgerError, PermissionDeniedError
from ..interop import nightscout as ns
from ..node.nightscout import Binding, NightscoutService
from .app import error_for, json_body
from .auth import record_refusal
from .context import ctx

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["nightscout"])

_DOC = {"type": "object", "additionalProperties": True,
        "properties": {"type": {"type": "string"}, "sgv": {"type": "number"},
                       "date": {"type": "integer"}, "dateString": {"type": "string"},
                       "direction": {"type": "string"}, "eventType": {"type": "string"},
                       "created_at": {"type": "string"}, "insulin": {"type": "number"},
                       "carbs": {"type": "number"}}}
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [_DOC, {"type": "array", "items": _DOC, "maxItems": 50}]}}}}}
_ERR: dict[int | str, dict[str, Any]] = {s: {"description": d, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"code": {"type": "string"},
                                     "message": {"type": "string"}}}}}}
        for s, d in ((400, "bad input"), (401, "no or wrong credential"),
                     (403, "not allowed (audited)"), (413, "body too large"),
                     (422, "invalid"), (409, "refused by the ledger"))}
_AUTH_PARAMS = {"parameters": [
    {"name": "api-secret", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}}]}


def _svc(request: Request) -> NightscoutService:
    return ctx(request).services["nightscout"]  # type: ignore[no-any-return]


def _auth(request: Request) -> Binding:
    try:
        return _svc(request).authenticate(request.headers.get("api-secret"),
                                          request.query_params.get("token"))
    except GlucoledgerError as exc:
        record_refusal(request, exc, None)
        raise


async def _post(request: Request, collection: str) -> JSONResponse:
    binding = _auth(request)
    body = json_body(await request.body())
    try:
        # Checked here, stored by the upload pipeline's thread with whatever other POSTs
        # arrive meanwhile (one block for all); no thread is held while this one waits.
        pending = _svc(request).post(binding, collection, body, int(time.time() * 1000))
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise
    return JSONResponse(await asyncio.wrap_future(pending))


def _get(request: Request, collection: str, type_: str | None = None) -> JSONResponse:
    binding = _auth(request)
    query = ns.parse_query(collection, request.query_params.multi_items(), type_)
    try:
        docs = _svc(request).read(binding, collection, query)
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise
    return JSONResponse(docs)


def _routes(collection: str, paths: list[str]) -> None:
    async def post(request: Request) -> JSONResponse:
        return await _post(request, collection)

    def get(request: Request) -> JSONResponse:
        return _get(request, collection)

    for p in paths:
        _POSTS[router.prefix + p] = collection
        router.add_api_route(p, post, methods=["POST"], name=f"post_{collection}{p}",
                             summary=f"Upload {collection} (Nightscout v1)",
                             responses=_ERR, openapi_extra={**_BODY, **_AUTH_PARAMS})
        router.add_api_route(p, get, methods=["GET"], name=f"get_{collection}{p}",
                             summary=f"Read {collection} through a grant (Nightscout v1)",
                             responses=_ERR, openapi_extra=_AUTH_PARAMS)


class UploadLane:
    """Nightscout POSTs straight to their handler, before FastAPI's router.

    Uploads are the server's hot path (every uploader, every 5 minutes); FastAPI's routing
    and dependency machinery cost more than the rest of the request's HTTP handling. This
    plain ASGI middleware (inside the body limit and the security headers) answers exactly the
    POST routes below with the same handler and the same error table; everything else, and
    the OpenAPI description of these routes, stays with FastAPI.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        collection = _POSTS.get(scope["path"]) if (
            scope["type"] == "http" and scope["method"] == "POST") else None
        if collection is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await _post(request, collection)
        except GlucoledgerError as exc:
            response = error_for(request, exc)
        await response(scope, receive, send)


_POSTS: dict[str, str] = {}

_routes("entries", ["/entries", "/entries.json"])
_routes("treatments", ["/treatments", "/treatments.json"])
_routes("devicestatus", ["/devicestatus", "/devicestatus.json"])
_routes("profile", ["/profile", "/profile.json"])


@router.get("/entries/sgv.json", responses=_ERR, openapi_extra=_AUTH_PARAMS)
@router.get("/entries/sgv", responses=_ERR, openapi_extra=_AUTH_PARAMS, include_in_schema=False)
def sgv(request: Request) -> JSONResponse:
    """Sensor glucose values only."""
    return _get(request, "entries", "sgv")


@router.get("/entries/current.json", responses=_ERR, openapi_extra=_AUTH_PARAMS)
@router.get("/entries/current", responses=_ERR, openapi_extra=_AUTH_PARAMS,
            include_in_schema=False)
def current(request: Request) -> JSONResponse:
    """The latest entry."""
    binding = _auth(request)
    query = ns.parse_query("entries", [("count", "1")], "sgv")
    return JSONResponse(_svc(request).read(binding, "entries", query))


@router.get("/status.json", responses=_ERR)
@router.get("/status", responses=_ERR, include_in_schema=False)
async def status(request: Request) -> dict[str, Any]:
    """Server status as Nightscout clients expect it (public)."""
    return ns.status_doc(name=ctx(request).node.config.name, version=f"15.0.0-glucoledger-"
                         f"{__version__}", now_ms=int(time.time() * 1000))


@router.get("/verifyauth", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def verifyauth(request: Request) -> dict[str, Any]:
    """Whether the presented credential is known (200 with message OK, else 401)."""
    binding = _auth(request)
    return {"status": 200, "message": {"message": "OK", "canRead": binding.role == "read",
                                       "canWrite": binding.role == "upload", "isAdmin": False,
                                       "rolefound": "FOUND", "permissions": "ROLE"}}


@router.get("/experiments/test", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def experiments_test(request: Request) -> dict[str, Any]:
    """Old uploaders' authorization check."""
    _auth(request)
    return {"status": "ok"}

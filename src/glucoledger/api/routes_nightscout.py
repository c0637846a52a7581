"""Nightscout API v1 routes, so existing uploaders and followers work unchanged.

Authentication: ``api-secret`` header (SHA-1 or SHA-512 hex of the secret) or ``?token=``;
see node/nightscout.py for what each credential may do. Bodies are read as JSON whatever
the Content-Type (some uploaders send text/plain).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    MalformedError,
    PermissionDeniedError,
)
from ..interop import nightscout as ns
from ..interop.nsrender import separated
from ..node.checked import accept_checked
from .app import error_for, json_body
from .auth import record_refusal
from .context import ctx
from .ns_common import AUTH_PARAMS as _AUTH_PARAMS
from .ns_common import ERR_RESPONSES as _ERR
from .ns_common import authenticate as _auth
from .ns_common import now_ms as _now
from .ns_common import ns_service as _svc
from .ns_common import read_collection as _read
from .portal_base import prefs

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
async def _post(request: Request, collection: str) -> JSONResponse:
    binding = _auth(request)
    now = int(time.time() * 1000)
    # An HTTP worker's checked upload (api/workers.py), re-checked cheaply, or None.
    judged = accept_checked(request.scope.get("state", {}).get("checked_upload"),
                            collection, now)
    body = None if judged is not None else json_body(await request.body())
    try:
        # Checked here, stored by the upload pipeline's thread with whatever other POSTs
        # arrive meanwhile (one block for all); no thread is held while this one waits.
        # A PUT (Nightscout's save) replaces the document whose _id it carries.
        replace = request.method == "PUT"
        pending = _svc(request).post(binding, collection, body, now, replace=replace) \
            if judged is None else _svc(request).post_judged(
                binding, collection, judged.outcomes, now, replace=replace,
                batches=judged.batches)
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise
    return JSONResponse(await asyncio.wrap_future(pending))


#: The v1 formats by path suffix (cgm-remote-monitor answers them by content negotiation).
_SEPARATORS: Final = {"csv": ",", "tsv": "\t", "txt": "\t"}
_MEDIA: Final = {"csv": "text/csv", "tsv": "text/tab-separated-values", "txt": "text/plain"}


def _render(docs: list[dict[str, Any]], fmt: str) -> Response:
    if fmt in _SEPARATORS:
        return PlainTextResponse(separated(docs, _SEPARATORS[fmt]), media_type=_MEDIA[fmt])
    return JSONResponse(docs)


def _get(request: Request, collection: str, type_: str | None = None,
         fmt: str = "json") -> Response:
    return _render(_read(request, collection, request.query_params.multi_items(), type_), fmt)


def _delete(request: Request, collection: str, params: list[tuple[str, str]]
            ) -> dict[str, Any]:
    binding = _auth(request)
    query = ns.parse_query(collection, params, now_ms=_now())
    try:
        return _svc(request).delete(binding, collection, query)
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise


def _routes(collection: str, paths: list[str]) -> None:
    async def post(request: Request) -> JSONResponse:
        return await _post(request, collection)

    def get(request: Request) -> Response:
        return _get(request, collection)

    def delete(request: Request) -> dict[str, Any]:
        return _delete(request, collection, request.query_params.multi_items())

    def delete_one(request: Request, doc_id: str) -> dict[str, Any]:
        if not _OBJECT_ID.match(doc_id):
            raise MalformedError(f"{collection}/{doc_id[:40]}: an _id is 24 hex digits")
        return _delete(request, collection, [("find[_id]", doc_id)])

    for p in paths:
        _POSTS[router.prefix + p] = collection
        router.add_api_route(p, post, methods=["POST"], name=f"post_{collection}{p}",
                             summary=f"Upload {collection} (Nightscout v1)",
                             responses=_ERR, openapi_extra={**_BODY, **_AUTH_PARAMS})
        router.add_api_route(p, post, methods=["PUT"], name=f"put_{collection}{p}",
                             summary=f"Upsert {collection}: a changed document becomes its "
                             "next version (Nightscout v1)",
                             responses=_ERR, openapi_extra={**_BODY, **_AUTH_PARAMS})
        router.add_api_route(p, delete, methods=["DELETE"], name=f"delete_{collection}{p}",
                             summary=f"Delete the {collection} a find selects: a deletion "
                             "version each, nothing erased", responses=_ERR,
                             openapi_extra=_AUTH_PARAMS)
        router.add_api_route(p, get, methods=["GET"], name=f"get_{collection}{p}",
                             summary=f"Read {collection} through a grant (Nightscout v1)",
                             responses=_ERR, openapi_extra=_AUTH_PARAMS)
    router.add_api_route(f"{paths[0]}/{{doc_id}}", delete_one, methods=["DELETE"],
                         name=f"delete_{collection}_id", responses=_ERR,
                         summary=f"Delete one of {collection} by _id (a deletion version)",
                         openapi_extra=_AUTH_PARAMS)


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
_OBJECT_ID: Final = re.compile(r"^[0-9a-f]{24}$")

_routes("entries", ["/entries", "/entries.json"])
_routes("treatments", ["/treatments", "/treatments.json"])
_routes("devicestatus", ["/devicestatus", "/devicestatus.json"])
_routes("profile", ["/profile", "/profile.json"])


_SPEC: Final = re.compile(r"^([A-Za-z0-9_-]{1,32})(?:\.(json|csv|tsv|txt))?$")

def _entries_as(fmt: str) -> None:
    def get(request: Request) -> Response:
        return _get(request, "entries", None, fmt)

    router.add_api_route(f"/entries.{fmt}", get, methods=["GET"], responses=_ERR,
                         name=f"entries_{fmt}", openapi_extra=_AUTH_PARAMS,
                         summary=f"Entries as {_MEDIA[fmt]} (Nightscout v1)")


for _fmt in _SEPARATORS:
    _entries_as(_fmt)


@router.get("/entries/current.json", responses=_ERR, openapi_extra=_AUTH_PARAMS)
@router.get("/entries/current", responses=_ERR, openapi_extra=_AUTH_PARAMS,
            include_in_schema=False)
def current(request: Request) -> JSONResponse:
    """The latest entry (Sugarmate-style widgets poll this)."""
    return JSONResponse(_read(request, "entries", [("count", "1")], "sgv"))


@router.get("/entries/{spec}", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def entries_spec(request: Request, spec: str) -> Response:
    """``entries/sgv.json``, ``entries/mbg.csv``...: entries of one type; ``entries/<_id>``:
    that entry (cgm-remote-monitor ``/entries/:spec``)."""
    m = _SPEC.match(spec)
    if m is None:
        raise MalformedError(f"entries/{spec[:40]}: name an entry type (sgv, mbg, cal...) or "
                             "an entry's _id, optionally with .json, .csv, .tsv or .txt")
    name, fmt = m.group(1), m.group(2) or "json"
    if _OBJECT_ID.match(name):
        params = [*request.query_params.multi_items(), ("find[_id]", name)]
        return _render(_read(request, "entries", params), fmt)
    return _get(request, "entries", name, fmt)


@router.get("/count/{storage}/where", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def count(request: Request, storage: str) -> list[dict[str, Any]]:
    """How many documents match the ``find`` (cgm-remote-monitor ``lib/server/aggregate.js``:
    ``[{"_id": null, "count": n}]``), all of them, not a page."""
    if storage not in ns.COLLECTIONS:
        raise MalformedError(f"count/{storage[:20]}: count one of {', '.join(ns.COLLECTIONS)}")
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "count"]
    n = len(_read(request, storage, [*params, ("count", str(ns.MAX_COUNT))]))
    return [{"_id": None, "count": n}]


@router.get("/profile/current", responses=_ERR, openapi_extra=_AUTH_PARAMS)
@router.get("/profile/current.json", responses=_ERR, openapi_extra=_AUTH_PARAMS,
            include_in_schema=False)
def profile_current(request: Request) -> JSONResponse:
    """The newest profile document (Loop's profile import, AndroidAPS)."""
    docs = _read(request, "profile", [("count", "1")])
    return JSONResponse(docs[0] if docs else {})


@router.get("/food", responses=_ERR, openapi_extra=_AUTH_PARAMS)
@router.get("/food.json", responses=_ERR, openapi_extra=_AUTH_PARAMS, include_in_schema=False)
def food(request: Request) -> list[dict[str, Any]]:
    """Nightscout's food database: this node keeps none, so an empty list for a reader."""
    _auth(request)
    return []


@router.get("/status.json", responses=_ERR)
@router.get("/status", responses=_ERR, include_in_schema=False)
async def status(request: Request) -> dict[str, Any]:
    """Server status as Nightscout clients expect it (public), ``settings.thresholds`` too.
    With a credential this node knows (``api-secret``, ``?token=``), ``settings.units`` is
    the units its person chose in the portal (the patient's for her uploader secret, the
    reader's own for a reader token): followers (Nightguard, watch faces, widgets) show
    glucose in the site's ``settings.units``. Without one, or with a wrong one, mg/dL."""
    units = "mg/dl"
    secret, token = request.headers.get("api-secret"), request.query_params.get("token")
    if secret or token:
        try:
            who: bytes | None = _svc(request).viewer(_svc(request).authenticate(secret, token))
        except GlucoledgerError:  # status stays public: a wrong credential changes nothing
            who = None
        if who is not None and prefs(request).get(who).units == "mmol/L":
            units = "mmol"
    return ns.status_doc(name=ctx(request).node.config.name, version=f"15.0.0-glucoledger-"
                         f"{__version__}", now_ms=_now(), units=units)


@router.get("/verifyauth", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def verifyauth(request: Request) -> dict[str, Any]:
    """Whether the presented credential is known: always 200, ``message`` ``OK`` or
    ``UNAUTHORIZED`` (cgm-remote-monitor lib/api/verifyauth.js). A wrong credential is still
    logged as a failed attempt."""
    try:
        binding = _auth(request)
    except AuthenticationError:
        return {"status": 200, "message": {
            "canRead": False, "canWrite": False, "isAdmin": False, "message": "UNAUTHORIZED",
            "rolefound": "NOTFOUND", "permissions": "DEFAULT"}}
    return {"status": 200, "message": {"message": "OK", "canRead": True,
                                       "canWrite": binding.role == "upload", "isAdmin": False,
                                       "rolefound": "FOUND", "permissions": "ROLE"}}


@router.get("/experiments/test", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def experiments_test(request: Request) -> dict[str, Any]:
    """Old uploaders' authorization check."""
    _auth(request)
    return {"status": "ok"}

"""Nightscout API v3, as AndroidAPS's NSClient V3 uses it (core/nssdk NightscoutRemoteService).

- ``GET /api/v2/authorization/request/{token}``: a JWT for an access token (node/nsv3.py);
- ``GET /api/v3/version``, ``/api/v3/status``, ``/api/v3/lastModified``;
- ``GET /api/v3/{col}`` (``field$op=value``, ``sort``/``sort$desc``, ``limit``),
  ``/api/v3/{col}/{identifier}``, ``/api/v3/{col}/history/{ms}`` (what changed after ms,
  deletions included, oldest change first);
- ``POST /api/v3/{col}`` (one document: 201 with its ``identifier``, the client's own when it
  sent one; a document that lands on one already here, by the ``identifier`` sent (a deleted
  one included) or by its Nightscout identity (a re-send without ``identifier``), is that
  document's next version: 200, ``isDeduplication``, unless it changes a field of
  ``nsv3.IMMUTABLE`` of a live one: 400, as ``update/replace.js`` validates it; a document
  that cannot be stored: 400 with the reason, logged for the patient),
  ``PATCH``/``PUT /api/v3/{col}/{identifier}`` (a new version of that document; a PATCH of
  ``created_at`` moves only a document without ``date``; a PUT of an unknown identifier
  creates it under that name, 201, as Nightscout's upsert; a field of ``IMMUTABLE`` sent
  with another value: 400 "Field ... cannot be modified by the client", nothing stored, as
  ``update/validate.js``; ``If-Unmodified-Since`` before ``srvModified``: 412),
  ``DELETE /api/v3/{col}/{identifier}`` (a deletion version; a deleted one again: 200,
  nothing recorded); POST and PUT need ``date`` and ``app`` (``validateCommon``);
  ``GET /api/v3/food`` (empty: no food database here).
- a deleted document: GET and PUT 410 (``read/operation.js``, ``update/operation.js``);
  PATCH 404 where Nightscout answers 410: AndroidAPS takes 404 as done and stops its uploads
  on any other 4xx (nssdk ``NSAndroidClientImpl.updateTreatment``, ``NSClientV3Plugin``).
- ``field$re=<pattern>`` on any field, as MongoDB's ``$regex`` (RE2, interop/nsquery.py).

Every answer is ``{"status": <code>, "result": ...}`` as cgm-remote-monitor's lib/api3 sends
it; errors ``{"status": <code>, "message": ...}`` with the same code (api/app.py
``error_response``). The checks are node/nsv3.py's, each with the Nightscout file and
lines. Reads go through consent (reader tokens) or as the patient (her uploader's token),
audited, like v1.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import (
    GlucoledgerError,
    GoneError,
    InputError,
    MalformedError,
    NotFoundError,
    PermissionDeniedError,
)
from ..interop import nightscout as ns
from ..interop.nsfields import TIMES
from ..interop.nsquery import v3_params
from ..node import nsv3
from ..node.nightscout import Binding, NightscoutService
from ..node.nsv3 import identifier_of
from .app import json_body
from .auth import record_refusal
from .context import ctx
from .ns_common import ERR_RESPONSES, V3_ERR_RESPONSES

__all__ = ["router"]

router = APIRouter(tags=["nightscout v3"])
_COLLECTIONS: Final = (*ns.COLLECTIONS, "food", "settings")
_FIELDS: Final = {"entries": "date", "treatments": "created_at", "devicestatus": "created_at",
                  "profile": "startDate"}


def _svc(request: Request) -> NightscoutService:
    return ctx(request).svc.nightscout


def _now() -> int:
    return int(time.time() * 1000)


def _auth(request: Request) -> Binding:
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    try:
        return _svc(request).v3.authenticate(bearer, _now())
    except GlucoledgerError as exc:
        record_refusal(request, exc, None)
        raise


def _ok(result: Any, status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": status, "result": result, **extra}, status_code=status)


def _collection(col: str) -> str:
    if col not in _COLLECTIONS:
        raise NotFoundError(f"/api/v3/{col[:20]}: no such collection; use "
                            f"{', '.join(_COLLECTIONS)}")
    return col


@router.get("/api/v2/authorization/request/{token}", responses=ERR_RESPONSES)
def authorization_request(request: Request, token: str) -> dict[str, Any]:
    """Trade an access token (the uploader's API secret, or a reader token) for a JWT."""
    try:
        return _svc(request).v3.issue(token, _now())
    except GlucoledgerError as exc:
        record_refusal(request, exc, None)
        raise


@router.get("/api/v3/version", responses=V3_ERR_RESPONSES)
def version() -> JSONResponse:
    return _ok({"version": f"15.0.0-glucoledger-{__version__}", "apiVersion": "3.0.4",
                "srvDate": _now(), "storage": {"storage": "glucoledger",
                                               "version": __version__}})


@router.get("/api/v3/status", responses=V3_ERR_RESPONSES)
def status(request: Request) -> JSONResponse:
    binding = _auth(request)
    perm = "crud" if binding.role == "upload" else "r"
    return _ok({"version": f"15.0.0-glucoledger-{__version__}", "apiVersion": "3.0.4",
                "srvDate": _now(), "storage": {"storage": "glucoledger",
                                               "version": __version__},
                "apiPermissions": {c: perm for c in (*ns.COLLECTIONS, "food", "settings")}})


@router.get("/api/v3/lastModified", responses=V3_ERR_RESPONSES)
def last_modified(request: Request) -> JSONResponse:
    """When each collection last changed (the newest ``srvModified`` of the last 4 days)."""
    binding = _auth(request)
    v3 = _svc(request).v3
    out: dict[str, int] = {}
    for col in ns.COLLECTIONS:
        query = ns.parse_query(col, [("count", str(ns.MAX_COUNT))], now_ms=_now())
        docs = v3.documents(binding, col, query, deleted=True)
        out[col] = max((d["srvModified"] for d in docs), default=0)
    return _ok({"srvDate": _now(), "collections": out})


def _search(request: Request, col: str, params: list[tuple[str, str]],
            deleted: bool = False, after: int | None = None) -> list[dict[str, Any]]:
    binding = _auth(request)
    try:
        return _find(request, binding, col, params, deleted, after)
    except PermissionDeniedError as exc:  # denied by consent: on the ledger, and logged here
        record_refusal(request, exc, binding.account)
        raise


def _find(request: Request, binding: Binding, col: str, params: list[tuple[str, str]],
          deleted: bool, after: int | None) -> list[dict[str, Any]]:
    if col in ("food", "settings"):
        return []
    v1, ascending = v3_params(params)
    limit = next((int(v) for k, v in v1 if k == "count" and v.isdecimal()), None)
    v1 = [(k, v) for k, v in v1 if k != "count"]
    if after is not None:  # history: every change, then the oldest first
        query = ns.parse_query(col, [*v1, ("count", str(ns.MAX_COUNT))], v3=True)
        docs = [d for d in _svc(request).v3.documents(binding, col, query, deleted=True)
                if d["srvModified"] > after]
        docs.reverse()  # oldest first by the document's own time, then (stable) by change
        docs.sort(key=lambda d: d["srvModified"])
        return docs[:limit or 1000]
    query = ns.parse_query(col, [*v1, ("count", str(ns.MAX_COUNT))], now_ms=_now(),
                           v3=True)
    # Newest first by each document's own time, as parsed from what it carries (``date``,
    # ``created_at``...: ``ns.select``), never by a field as sent: a treatment posted
    # through v1 has no ``date``, and a ``date`` may be text.
    docs = _svc(request).v3.documents(binding, col, query, deleted=deleted)
    if ascending:
        docs.reverse()
    return docs[:limit or 100]


@router.get("/api/v3/{col}", responses=V3_ERR_RESPONSES)
def search(request: Request, col: str) -> JSONResponse:
    return _ok(_search(request, _collection(col), request.query_params.multi_items()))


@router.get("/api/v3/{col}/history/{after}", responses=V3_ERR_RESPONSES)
def history(request: Request, col: str, after: int) -> JSONResponse:
    """What changed after ``after`` (ms), deletions included, oldest change first."""
    return _ok(_search(request, _collection(col), request.query_params.multi_items(),
                       after=after))


@router.get("/api/v3/{col}/history", responses=V3_ERR_RESPONSES)
def history_since_header(request: Request, col: str) -> JSONResponse:
    since = request.headers.get("last-modified")
    after = 0
    if since and since.strip().isdecimal():
        after = int(since.strip())
    return _ok(_search(request, _collection(col), request.query_params.multi_items(),
                       after=after))


def _lookup(request: Request, col: str, identifier: str, *, deleted: bool = False
            ) -> dict[str, Any] | None:
    """The current document named ``identifier`` (the client's own, or its ``_id``); with
    ``deleted``, a deleted one when no current one is (``isValid: false``)."""
    binding = _auth(request)
    query = ns.parse_query(col, [("find[$or][0][identifier]", identifier),
                                 ("find[$or][1][_id]", identifier),
                                 ("count", "8" if deleted else "1")])
    found = _svc(request).v3.documents(binding, col, query, deleted=deleted)
    return next((d for d in found if d["isValid"]), found[0] if found else None)


@router.get("/api/v3/{col}/{identifier}", responses=V3_ERR_RESPONSES)
def read_one(request: Request, col: str, identifier: str) -> JSONResponse:
    """The document (404 unknown, 410 deleted: ``lib/api3/generic/read/operation.js``)."""
    found = _lookup(request, _collection(col), identifier, deleted=True)
    if found is None:
        raise NotFoundError(f"no {col} document with identifier {identifier[:40]!r}")
    if not found["isValid"]:
        raise GoneError(f"the {col} document {identifier[:40]!r} was deleted: "
                        f"/api/v3/{col}/history/<ms> lists the deletion (isValid false)")
    return _ok(found)


async def _store(request: Request, col: str, doc: Any, target: dict[str, Any] | None = None,
                 *, create: bool = False) -> JSONResponse:
    """Store ``doc``, as the next version of ``target`` (a document here) when given.

    A create answers as cgm-remote-monitor's ``lib/api3/generic/create``: 201 with the new
    document's ``identifier`` (``create/insert.js``), or, when it landed on a document
    already here, 200 with ``identifier``, ``isDeduplication: true`` and, when that document
    was named otherwise, ``deduplicatedIdentifier`` (``update/replace.js``); ``Location``
    and ``Last-Modified`` both times. An update answers 200 with ``identifier``.

    A create is first checked as Nightscout checks it: ``date``, ``utcOffset`` and ``app``
    (``create/validate.js``, ``operationTools.js`` validateCommon), and, when it lands on a
    live document with other content, that document's immutable fields
    (``update/validate.js``, through ``update/replace.js``): 400, nothing stored. Only then
    is that document read (node/nightscout.py ``landing`` reads none), and the store refuses
    the create if another request changed it in between."""
    binding = _auth(request)
    if not isinstance(doc, dict):
        raise MalformedError("API v3 takes one document (a JSON object) per request")
    sent = doc
    doc = {k: v for k, v in doc.items() if k not in ("_id", "srvModified", "srvCreated",
                                                     "isValid")}
    if target is not None:
        doc["_id"] = target["_id"]  # the document this one replaces (node/nightscout.py)
    svc = _svc(request)
    pin: tuple[str, int] | None = None
    try:
        if create:  # the permission first (create/insert.js line 19, replace.js line 23)
            land = svc.landing(binding, col, doc, _now(), None if target is None
                               else str(target["_id"]))
            nsv3.check_common(sent)
            if land is not None and not land.same:
                pin = (land.doc_id, land.version)
                if not land.deleted:  # a deleted one is written again unchecked (line 36)
                    held = target if target is not None and target["_id"] == land.doc_id \
                        else _lookup(request, col, land.doc_id, deleted=True)
                    if held is not None:
                        nsv3.check_immutable(col, nsv3.identifier_of(held),
                                             nsv3.as_parsed(sent), held, skip=("identifier",))
        answer, existed = await asyncio.wrap_future(svc.post_one(
            binding, col, doc, _now(), replace=target is not None, guard=create, pin=pin))
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise
    if "glucoledger" in answer:
        raise InputError(answer["glucoledger"]["reason"])
    ident = identifier_of(answer)
    now = _now()
    body: dict[str, Any] = {"identifier": ident, "lastModified": now}
    if not create:
        return _ok(body, 200, **body)
    status = 201
    if existed:
        status = 200
        body["isDeduplication"] = True
        # The name the document had: the one its identifier was found under, else its _id
        # (a v1 document's, or one created without an identifier). Not read again: every
        # create would cost a read of the patient's data.
        prior = str(answer["_id"]) if target is None else identifier_of(target)
        if prior != ident:
            body["deduplicatedIdentifier"] = prior
    reply = _ok(body, status, **body)
    base = request.url.path.rstrip("/")
    if request.method == "PUT":  # /api/v3/<col>/<identifier>: the collection's address
        base = base.rsplit("/", 1)[0]
    reply.headers["Location"] = f"{base}/{ident}"
    reply.headers["Last-Modified"] = formatdate(now / 1000, usegmt=True)
    return reply


@router.post("/api/v3/{col}", status_code=201, responses=V3_ERR_RESPONSES)
async def create(request: Request, col: str) -> JSONResponse:
    """A new document (201), or, when it lands on one already here, the next version of
    that one (200, ``isDeduplication``), as cgm-remote-monitor's create does
    (``lib/api3/generic/create/operation.js``): the one named by the ``identifier`` sent,
    a deleted one included, else the one with the same Nightscout identity (a treatment's
    ``eventType`` and time, an entry's ``type`` and ``date``, a devicestatus' ``device``
    and time): AndroidAPS re-sending, without ``identifier``, a document whose answer it
    never got. Whether it landed on one is decided where it is stored (node/nightscout.py
    ``post_one``), so a re-send arriving while the first is being stored is one too."""
    if _collection(col) not in ns.COLLECTIONS:
        raise MalformedError(f"/api/v3/{col}: this node keeps no {col}")
    doc = json_body(await request.body())
    own = doc.get("identifier") if isinstance(doc, dict) else None
    target = _lookup(request, col, own, deleted=True) if isinstance(own, str) and own \
        else None
    return await _store(request, col, doc, target, create=True)


@router.patch("/api/v3/{col}/{identifier}", responses=V3_ERR_RESPONSES)
async def patch(request: Request, col: str, identifier: str) -> JSONResponse:
    """A new version of the document, the fields sent merged into the current ones
    (``lib/api3/generic/patch``): 404 for an unknown or a deleted document."""
    return await _update(request, col, identifier)


@router.put("/api/v3/{col}/{identifier}", responses=V3_ERR_RESPONSES)
async def replace(request: Request, col: str, identifier: str) -> JSONResponse:
    """A new version of the document: the one sent (``lib/api3/generic/update``); an
    unknown identifier is created under that name (201, Nightscout's upsert), a deleted
    document is 410."""
    return await _update(request, col, identifier)


async def _update(request: Request, col: str, identifier: str) -> JSONResponse:
    if _collection(col) not in ns.COLLECTIONS:
        raise MalformedError(f"/api/v3/{col}: this node keeps no {col}")
    sent = json_body(await request.body())
    if not isinstance(sent, dict) or not sent:
        raise MalformedError("send the document (or the fields to change) as a JSON object")
    put = request.method == "PUT"
    current = _lookup(request, col, identifier, deleted=True)
    if current is None:
        if put:  # Nightscout's upsert (update/operation.js: insert when none is found)
            return await _store(request, col, {**sent, "identifier": identifier},
                                create=True)
        raise NotFoundError(f"no {col} document with identifier {identifier[:40]!r}: "
                            f"create it with POST /api/v3/{col} (or PUT to this address)")
    if not current["isValid"]:
        again = f"POST /api/v3/{col} with this identifier writes it again"
        if put:  # update/operation.js updateConditional
            raise GoneError(f"the {col} document {identifier[:40]!r} was deleted: {again}")
        # Nightscout's PATCH answers 410 here; AndroidAPS (NSAndroidClientImpl.update*)
        # takes 404 as done and any other 4xx as an error that stops its uploads, retried
        # at each sync: it would retry this PATCH for ever.
        raise NotFoundError(f"the {col} document {identifier[:40]!r} was deleted, so there "
                            f"is nothing to change: {again}")
    # Nightscout's order: 412 (update/operation.js lines 54-60, patch/operation.js lines
    # 44-50), then update/validate.js (immutable fields, then validateCommon).
    nsv3.check_unmodified_since(request.headers.get("if-unmodified-since"), col, identifier,
                                current)
    # A PUT's document is named by its path (update/operation.js line 35).
    nsv3.check_immutable(col, identifier, sent, current, skip=("identifier",) if put else ())
    nsv3.check_common(sent, patching=not put)
    if nsv3.patch_moves(col, identifier, sent, current) and not put:
        # A document without ``date`` (stored through v1): its time is its created_at, which
        # the PATCH changes; the other time fields (derived from the old one) go with it.
        current = {k: v for k, v in current.items() if k not in TIMES[col]}
    doc = dict(sent) if put else {**current, **sent}
    doc["identifier"] = identifier_of(current)  # the document keeps its name
    if doc["identifier"] == current["_id"]:  # the server's name, not a field sent
        doc.pop("identifier")
    return await _store(request, col, doc, current)


def _delete(request: Request, col: str, identifier: str) -> JSONResponse:
    binding = _auth(request)
    query = ns.parse_query(col, [("find[$or][0][identifier]", identifier),
                                 ("find[$or][1][_id]", identifier)])
    try:
        result = _svc(request).delete(binding, col, query)
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise
    # A deleted document deleted again: 200, as Nightscout (delete/operation.js marks it
    # deleted again); nothing new is recorded.
    if not result["n"] and _lookup(request, col, identifier, deleted=True) is None:
        raise NotFoundError(f"no {col} document with identifier {identifier[:40]!r}")
    return _ok({"identifier": identifier, "lastModified": _now()})


@router.delete("/api/v3/{col}/{identifier}", responses=V3_ERR_RESPONSES)
def delete(request: Request, col: str, identifier: str) -> JSONResponse:
    return _delete(request, _collection(col), identifier)

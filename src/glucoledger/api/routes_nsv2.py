"""Nightscout routes beyond v1 that followers poll, and the patient's refusal log.

- ``GET /api/v2/properties`` and ``/api/v2/properties/{names}`` (Nightguard, watch faces):
  ``bgnow``, ``delta``, ``direction`` (interop/nsviews.py);
- ``GET /pebble`` (Pebble and Garmin watch faces, Sugarmate-style widgets);
- ``GET /api/nightscout/history/{collection}/{_id}``: the patient's view of every version
  of a document (edits and deletions are versions on the ledger, state/versions.py);
- ``GET /api/nightscout/refusals``: the patient's log of documents her uploaders sent that
  could not be stored, with the reason (interop/nsaccept.py, node/nsrefusals.py).

Same credentials as v1 (``api-secret`` header or ``?token=``): a reader token reads through
its grant (audited; 403 with the reason without one), the uploader's secret as its patient.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..errors import MalformedError
from ..interop import nsviews
from ..interop.nightscout import COLLECTIONS
from ..node.nightscout import Binding
from .auth import principal, require_kind
from .context import Principal, ctx
from .ns_common import AUTH_PARAMS as _AUTH_PARAMS
from .ns_common import ERR_RESPONSES as _ERR
from .ns_common import read_collection as _read

__all__ = ["router"]

router = APIRouter(tags=["nightscout"])
Who = Annotated[Principal, Depends(principal)]


def _latest(request: Request, count: int) -> list[dict[str, Any]]:
    return _read(request, "entries", [("count", str(count))], "sgv")


@router.get("/api/v2/properties", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def properties(request: Request) -> dict[str, Any]:
    """Nightscout's computed properties of the newest readings (bgnow, delta, direction)."""
    return nsviews.properties(_latest(request, 12), int(time.time() * 1000))


@router.get("/api/v2/properties/{names}", responses=_ERR, openapi_extra=_AUTH_PARAMS)
def some_properties(request: Request, names: str) -> dict[str, Any]:
    """The properties named, comma-separated (``/api/v2/properties/bgnow,delta``)."""
    return nsviews.properties(_latest(request, 12), int(time.time() * 1000),
                              [n.strip() for n in names.split(",")])


@router.get("/pebble", responses=_ERR, openapi_extra=_AUTH_PARAMS)
@router.get("/pebble.json", responses=_ERR, openapi_extra=_AUTH_PARAMS,
            include_in_schema=False)
def pebble(request: Request,
           count: Annotated[int, Query(ge=1, le=288)] = 1) -> dict[str, Any]:
    """The newest readings as Nightscout's ``/pebble`` answers them."""
    return nsviews.pebble(_latest(request, count + 1), int(time.time() * 1000), count)


@router.get("/api/nightscout/history/{collection}/{doc_id}", responses=_ERR)
def history(request: Request, who: Who, collection: str, doc_id: str) -> list[dict[str, Any]]:
    """Every version of one of your Nightscout documents (by its ``_id``), oldest first:
    who changed it (account), when (block height and time), the ledger transaction, and the
    document as it was (null for a deletion). Your read is audited like any other."""
    require_kind(request, who, "patient")
    if collection not in COLLECTIONS:
        raise MalformedError(f"{collection[:20]}: one of {', '.join(COLLECTIONS)}")
    svc = ctx(request).svc.nightscout
    versions = svc.history(Binding("owner", who.id, who.name), collection, doc_id)
    return [dict(v, by=v["by"].hex() if v["by"] else None,
                 tx=v["tx"].hex() if v["tx"] else None) for v in versions]


@router.get("/api/nightscout/refusals", responses=_ERR)
def refusals(request: Request, who: Who) -> list[dict[str, Any]]:
    """Documents your Nightscout uploaders sent that could not be stored, newest first,
    with the reason: fix the device or app that sent them."""
    require_kind(request, who, "patient")
    log = ctx(request).svc.nightscout.refusals.of(who.id)
    return [{"time_ms": r.time_ms, "uploader": r.uploader, "collection": r.collection,
             "index": r.index, "reason": r.reason} for r in reversed(log)]

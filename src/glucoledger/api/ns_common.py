"""What the Nightscout routes share (v1 in routes_nightscout.py, v2 in routes_nsv2.py, v3 in
routes_nsv3.py): the OpenAPI error and credential declarations, and the authenticated read
of a collection.

Invariant: every read here authenticates first (``api-secret`` header or ``?token=``,
node/nightscout.py) and records a refusal on the security log before the error reaches the
one error table of api/app.py; nothing is read for a caller that was refused.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from ..errors import GlucoledgerError, PermissionDeniedError
from ..interop import nightscout as ns
from ..node.nightscout import Binding, NightscoutService
from .auth import record_refusal
from .context import ctx

__all__ = ["AUTH_PARAMS", "ERR_RESPONSES", "V3_ERR_RESPONSES", "authenticate", "now_ms",
           "ns_service", "read_collection"]

_JSON_ERROR = {"application/json": {"schema": {
    "type": "object", "properties": {"code": {"type": "string"},
                                     "message": {"type": "string"},
                                     "status": {"type": "integer"}}}}}

#: The error answers every Nightscout v1/v2 route documents (the body is errors.py's
#: code/message, and the HTTP status as Nightscout v1 has it: api/app.py error_response).
ERR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": _JSON_ERROR}
    for s, d in ((400, "bad input"), (401, "no or wrong credential"),
                 (403, "not allowed (audited)"), (413, "body too large"),
                 (422, "invalid"), (409, "refused by the ledger"))}

_V3_ERROR = {"application/json": {"schema": {
    "type": "object", "properties": {"status": {"type": "integer"},
                                     "message": {"type": "string"}}}}}

#: API v3's error answers: ``{status, message}`` as cgm-remote-monitor's lib/api3 sends them
#: (``shared/operationTools.js`` sendJSONStatus; api/app.py ``error_response``).
V3_ERR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": _V3_ERROR}
    for s, d in ((400, "bad input"), (401, "no or wrong JWT"), (403, "not allowed (audited)"),
                 (404, "not found"), (410, "deleted"), (412, "modified since"),
                 (413, "body too large"), (422, "invalid"), (409, "refused by the ledger"))}

#: The two credentials Nightscout clients send, declared for OpenAPI.
AUTH_PARAMS = {"parameters": [
    {"name": "api-secret", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}}]}


def now_ms() -> int:
    """The edge's clock, read once per request (the core never reads it)."""
    return int(time.time() * 1000)


def ns_service(request: Request) -> NightscoutService:
    return ctx(request).svc.nightscout


def authenticate(request: Request) -> Binding:
    """The uploader or follower binding of the request's credential; raises
    ``AuthenticationError`` (recorded as a refusal) when there is none or it is wrong."""
    try:
        return ns_service(request).authenticate(request.headers.get("api-secret"),
                                                request.query_params.get("token"))
    except GlucoledgerError as exc:
        record_refusal(request, exc, None)
        raise


def read_collection(request: Request, collection: str, params: list[tuple[str, str]],
                    type_: str | None = None) -> list[dict[str, Any]]:
    """The documents of ``collection`` the caller may read, filtered by Nightscout's query
    ``params``; raises ``PermissionDeniedError`` (recorded, audited by the node) otherwise."""
    binding = authenticate(request)
    query = ns.parse_query(collection, params, type_, now_ms=now_ms())
    try:
        return ns_service(request).read(binding, collection, query)
    except PermissionDeniedError as exc:
        record_refusal(request, exc, binding.account)
        raise

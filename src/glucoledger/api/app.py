"""The FastAPI application: one factory, one error table, one body-size limit.

``create_app(node)`` wires the routes (ledger, Nightscout v1, FHIR, portal) to a
``ServerContext``. Routes parse, authenticate and call node services; they hold no rules.

Errors: every ``GlucoledgerError`` becomes JSON ``{"code", "message"}`` with the error's own
``http_status`` (a missing or wrong credential 401, a valid one without permission 403, bad
input 400, a refused transaction 409, ...). Request validation errors are 422 with the
first problem in words. Anything else is a 500 with a generic message (and is a bug).
Bodies over ``ServerSettings.max_body`` are refused with 413 before they are read in full.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__ as VERSION
from ..errors import GlucoledgerError
from ..node.service import Node
from .context import ServerContext, ServerSettings
from .security import RateLimitedError

__all__ = ["create_app", "error_for", "error_response"]

log = logging.getLogger("glucoledger.api")


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status,
                        headers=headers)


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes (413), counted as they stream in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooBig
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooBig:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = error_response(413, "too_large", f"the request body is larger than "
                              f"{self.limit} bytes; split the upload into smaller batches")
        await resp(scope, receive, send)


class _TooBig(Exception):
    pass


_HEADERS: Final = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                   (b"x-frame-options", b"DENY")]
_CSP: Final = (b"content-security-policy",
               (b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                b"script-src 'self'; frame-ancestors 'none'"))


class SecurityHeaders:
    """Add the security headers every answer carries (and a CSP on HTML), unless set.

    Plain ASGI: it only rewrites the ``http.response.start`` message, so it costs a few
    microseconds a request (Starlette's ``BaseHTTPMiddleware`` costs hundreds).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", ()))
                have = {k.lower() for k, _ in headers}
                headers += [h for h in _HEADERS if h[0] not in have]
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html")
                           for k, v in headers)
                if html and _CSP[0] not in have:
                    headers.append(_CSP)
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, send_with_headers)


def _validation_message(exc: RequestValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return "the request is not valid"
    e = errs[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
    if e.get("type") == "json_invalid":
        return "the body is not valid JSON; check quotes, commas and brackets"
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return f"{where}: {e.get('msg', 'invalid')}{more}"


def error_for(request: Request, exc: GlucoledgerError) -> Any:
    """The answer to a refusal: JSON ``{code, message}`` (an HTML page under /portal)."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(
        exc, RateLimitedError) else None
    if exc.http_status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Signature realm="glucoledger"'}
    if request.url.path.startswith("/portal") or request.url.path == "/":
        from .portal import error_page

        return error_page(request, exc)
    return error_response(exc.http_status, exc.code, exc.message, headers)


def create_app(node: Node, settings: ServerSettings | None = None, *,
               context: ServerContext | None = None) -> FastAPI:
    """The HTTP application for ``node``. The caller owns the node (and closes it)."""
    c = context or ServerContext.create(node, settings)
    app = FastAPI(title="glucoledger", version=VERSION,
                  description="A patient-controlled, tamper-evident ledger and encrypted vault "
                  "for diabetes data: ledger, consent, Nightscout v1 and FHIR R4 routes.")
    app.state.ctx = c

    @app.exception_handler(GlucoledgerError)
    async def _glucoledger_error(request: Request, exc: GlucoledgerError) -> Any:
        return error_for(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "bad_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        msg = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            msg = f"no route {request.url.path}; see /docs for what this server offers"
        return error_response(exc.status_code, code, msg)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "the server failed unexpectedly; nothing was "
                              "changed by this request's failure; report it with the time")

    from . import (
        routes_accounts,
        routes_consent,
        routes_data,
        routes_devices,
        routes_fhir,
        routes_ledger,
        routes_nightscout,
        routes_nsv2,
        routes_nsv3,
    )

    app.include_router(routes_nightscout.router)  # first: uploads are the hot path
    app.include_router(routes_nsv2.router)
    app.include_router(routes_nsv3.router)
    app.include_router(routes_ledger.router)
    app.include_router(routes_consent.router)
    app.include_router(routes_accounts.router)
    app.include_router(routes_devices.router)
    app.include_router(routes_data.router)
    app.include_router(routes_fhir.router)
    try:
        from . import portal
    except ImportError:  # pragma: no cover - jinja2 missing
        pass
    else:
        app.include_router(portal.router)
        app.mount("/static", portal.static_files(), name="static")
    app.add_middleware(routes_nightscout.UploadLane)
    app.add_middleware(BodyLimit, limit=c.settings.max_body)
    app.add_middleware(SecurityHeaders)

    return app


def json_body(raw: bytes) -> Any:
    """Parse a JSON request body; MalformedError with a clear message otherwise."""
    from ..errors import MalformedError

    if not raw.strip():
        raise MalformedError("the request has no body; send JSON")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"the body is not valid JSON ({str(exc)[:80]})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")

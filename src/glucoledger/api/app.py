"""The FastAPI application: one factory, one error table, one body-size limit.

``create_app(node)`` wires the routes (ledger, Nightscout v1, FHIR, portal) to a
``ServerContext``. Routes parse, authenticate and call node services; they hold no rules.

Errors: every ``GlucoledgerError`` becomes JSON ``{"code", "message"}`` (under ``/api/v3``
Nightscout v3's ``{"status", "message"}``) with the error's own
``http_status`` (a missing or wrong credential 401, a valid one without permission 403, bad
input 400, a refused transaction 409, ...). Request validation errors are 422 with the
first problem in words. Anything else is a 500 with a generic message (and is a bug).
Bodies over ``ServerSettings.max_body`` are refused with 413 before they are read in full.

FastAPI's own OpenTelemetry (0.16x: a span, metrics and exception logs per request, exported
as soon as the process has a provider, e.g. ``FASTAPI_OTEL_AUTO_CONFIGURE=true`` or a
platform's auto-instrumentation) is off: its span carries the request's query string, and a
Nightscout follower's ``?token=`` is a read credential (``_NO_TELEMETRY``).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__ as VERSION
from .. import jsonin
from ..errors import GlucoledgerError, PermissionDeniedError, RejectedError
from ..node.service import Node
from .context import ServerContext, ServerSettings
from .security import RateLimitedError

__all__ = ["create_app", "error_for", "error_response"]

log = logging.getLogger("glucoledger.api")


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None,
                   extra: dict[str, object] | None = None,
                   request: Request | None = None) -> JSONResponse:
    """``{code, message}``, plus ``extra`` (an integrity failure's every finding); under
    ``/api/v3`` ``{status, message}``, as cgm-remote-monitor's API v3 answers every error
    (``lib/api3/shared/operationTools.js`` sendJSONStatus, lines 29-46)."""
    if request is not None and _is_nsv3(request):
        return JSONResponse({"status": status, "message": message}, status_code=status,
                            headers=headers)
    body: dict[str, object] = {**(extra or {}), "code": code, "message": message}
    if request is not None and _is_nsv1(request):
        body["status"] = status  # as Nightscout v1's (lib/middleware/send-json-status.js)
    return JSONResponse(body, status_code=status, headers=headers)


def _is_nsv3(request: Request) -> bool:
    """Nightscout API v3 (api/routes_nsv3.py), whose clients read ``{status, message}``."""
    path = request.url.path
    return path == "/api/v3" or path.startswith("/api/v3/")


def _is_nsv1(request: Request) -> bool:
    """Nightscout's v1 and v2 routes (api/routes_nightscout.py, routes_nsv2.py): their
    errors keep ``{code, message}`` (the reason codes clients and tests read) and carry
    ``status`` too, the key cgm-remote-monitor's v1 errors have (``{status, message,
    description}``, lib/middleware/send-json-status.js lines 4-15)."""
    path = request.url.path
    return path.startswith(("/api/v1/", "/api/v2/", "/pebble"))


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
                              f"{self.limit} bytes; split the upload into smaller batches",
                              request=Request(scope))
        await resp(scope, receive, send)


class _TooBig(Exception):
    pass


_HEADERS: Final = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                   (b"x-frame-options", b"DENY")]
#: Every dynamic answer may carry health data or a session: never stored by a browser or a
#: shared cache (RFC 9111 section 5.2.2.5; Pragma for HTTP/1.0 caches). Static files may be.
_NO_STORE: Final = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
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
        extra = _HEADERS if scope.get("path", "").startswith("/static/") else \
            _HEADERS + _NO_STORE

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", ()))
                have = {k.lower() for k, _ in headers}
                headers += [h for h in extra if h[0] not in have]
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html")
                           for k, v in headers)
                if html and _CSP[0] not in have:
                    headers.append(_CSP)
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, send_with_headers)


class PageGzip:
    """gzip for the portal's pages and assets only (``/``, ``/portal``, ``/static``), via
    Starlette's GZipMiddleware when the client accepts it and the body is over 500 bytes.
    Every other path (the API, the plain-ASGI upload lane) passes through untouched, so
    uploads and their answers keep their exact bytes and streaming."""

    def __init__(self, app: ASGIApp) -> None:
        from starlette.middleware.gzip import GZipMiddleware

        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/" or path.startswith(("/portal", "/static/")):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


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
    """The answer to a refusal: JSON ``{code, message}`` (an HTML page under /portal).

    A refusal for lack of permission is always a 403 with its reason code, logged once,
    even when a route forgot ``auth.permission``: 409 stays for true conflicts."""
    from .auth import PERMISSION_CODES, record_refusal

    if isinstance(exc, RejectedError) and exc.code in PERMISSION_CODES:
        exc = PermissionDeniedError(exc.message, code=exc.code)
    if exc.http_status in (401, 403):
        record_refusal(request, exc, getattr(request.state, "who", None))
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(
        exc, RateLimitedError) else None
    if exc.http_status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Signature realm="glucoledger"'}
    if _is_portal(request):
        from .portal import error_page

        resp = error_page(request, exc)
        resp.headers.update(headers or {})
        return resp
    from ..node.verify import IntegrityError

    extra = exc.to_value() if isinstance(exc, IntegrityError) else None
    return error_response(exc.http_status, exc.code, exc.message, headers, extra, request)


def _is_portal(request: Request) -> bool:
    """Pages for people (the portal): errors there are HTML pages with a way back."""
    path = request.url.path
    return (path == "/" or path == "/portal" or path.startswith("/portal/")) and (
        path != "/portal/now.json")


def _portal_error(request: Request, status: int, code: str, message: str) -> Any:
    """The portal's HTML error page for an error outside the GlucoledgerError tree."""
    from ..errors import GlucoledgerError as _E
    from .portal import error_page

    exc = _E(message, code=code)
    exc.http_status = status
    try:
        return error_page(request, exc)
    except Exception:
        log.exception("the error page failed on %s", request.url.path)
        return error_response(status, code, message)


def _form_message(exc: RequestValidationError) -> str:
    """A form problem in words for a person (the field's label, not its location path)."""
    errs = exc.errors()
    if not errs:
        return "the form is not complete; go back and check it"
    e = errs[0]
    field = str(e.get("loc", ("", "form"))[-1])
    words = {"streams": "tick at least one kind of data",
             "csrf": "the form is stale; reload the page and try again",
             "name": "type your account name", "password": "type your password"}
    if e.get("type") == "missing":
        return f"{words.get(field, f'fill in {field}')}; nothing was changed"
    return f"{field}: {e.get('msg', 'invalid')}; go back, correct it and send the form again"


#: FastAPI's built-in telemetry, off (module docstring); ``{}`` for releases without it.
_NO_TELEMETRY: Final[dict[str, Any]] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


def create_app(node: Node, settings: ServerSettings | None = None, *,
               context: ServerContext | None = None) -> FastAPI:
    """The HTTP application for ``node``. The caller owns the node (and closes it)."""
    c = context or ServerContext.create(node, settings)
    app = FastAPI(title="glucoledger", version=VERSION,
                  description="A patient-controlled, tamper-evident ledger and encrypted vault "
                  "for diabetes data: ledger, consent, Nightscout v1 and FHIR R4 routes.",
                  **_NO_TELEMETRY)
    app.state.ctx = c

    @app.exception_handler(GlucoledgerError)
    async def _glucoledger_error(request: Request, exc: GlucoledgerError) -> Any:
        return error_for(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        if _is_portal(request):
            return _portal_error(request, 400, "bad_input", _form_message(exc))
        return error_response(422, "bad_input", _validation_message(exc), request=request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        msg = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            msg = f"no route {request.url.path}; see /docs for what this server offers"
            if _is_portal(request):
                msg = "there is no such page; it may have moved, or the address has a typo"
        if _is_portal(request):
            return _portal_error(request, exc.status_code, code, msg)
        return error_response(exc.status_code, code, msg, request=request)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        msg = ("the server failed unexpectedly; nothing was changed by this request's "
               "failure; report it with the time")
        if _is_portal(request):
            return _portal_error(request, 500, "internal", msg)
        return error_response(500, "internal", msg, request=request)

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
    from . import routes_claims  # zero-knowledge claims (issue 19)

    app.include_router(routes_claims.router)
    from . import routes_research  # research sharing (issue 18)

    app.include_router(routes_research.router)
    from . import portal_research

    app.include_router(portal_research.router)
    from . import portal_claims  # zero-knowledge claims (issue 19)

    app.include_router(portal_claims.router)
    try:
        from . import portal
    except ImportError:  # pragma: no cover - jinja2 missing
        pass
    else:
        app.include_router(portal.router)
        app.mount("/static", portal.static_files(), name="static")
    app.add_middleware(routes_nightscout.UploadLane)
    from .nssocket import NsSocket, SocketLane  # Nightscout's v1 socket.io (AndroidAPS v1)

    app.state.nssocket = NsSocket(c)
    app.add_middleware(SocketLane, channel=app.state.nssocket)
    app.add_middleware(BodyLimit, limit=c.settings.max_body)
    app.add_middleware(PageGzip)
    app.add_middleware(SecurityHeaders)

    return app


def json_body(raw: bytes) -> Any:
    """Parse a JSON request body; MalformedError with a clear message otherwise."""
    from ..errors import MalformedError

    if not raw.strip():
        raise MalformedError("the request has no body; send JSON")
    try:
        return jsonin.loads(raw)
    except ValueError as exc:
        raise MalformedError(f"the body is not valid JSON ({str(exc)[:80]})") from None

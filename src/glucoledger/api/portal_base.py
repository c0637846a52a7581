"""What every portal page shares: the templates, the session check, form parsing, redirects
with a confirmation, the person's display preferences, and the HTML error page.

Invariants: a page is rendered only through ``render`` (so every page gets the session, the
person's units and time zone, and the same error page); a POST is accepted only with the
session's CSRF token (``who``); a form value out of range is a 400 naming the field, never a
server error; a confirmation after a redirect is shown in ``#notice``, which receives focus
(``autofocus`` on a ``tabindex=-1`` element, and portal.js for browsers that ignore it).

The session's CSRF token is never written into a page as it is: each rendered page carries
it XOR-masked with a fresh random pad (``mask_csrf``), so the secret's bytes differ in every
compressed response and a BREACH-style length oracle (gzip plus text reflected from the
address) learns nothing about it. ``who`` unmasks before the constant-time check (and also
takes the bare token that ``/api/session`` hands to programs in ``X-CSRF-Token``).
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError

from ..errors import AuthenticationError, GlucoledgerError, OutOfRangeError
from ..node.accounts import AddressBook
from .auth import optional_session
from .context import Principal, ctx
from .portal_devices import age_words
from .portal_view import Fmt, Prefs
from .security import Session

__all__ = ["STREAM_WORDS", "back", "error_page", "fmt_of", "form", "names", "prefs",
           "render", "templates", "who"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

STREAM_WORDS = {"cgm": "Sensor glucose (CGM)", "smbg": "Finger-stick glucose",
                "insulin": "Insulin doses", "carbs": "Carbohydrates", "settings":
                "Pump settings", "notes": "Notes and device status"}
#: Plain words for what happened, in the audit trail.
KIND_WORDS = {"access": "looked at", "emergency_request": "asked for emergency access",
              "emergency": "emergency access opened", "emergency_declined":
              "emergency request declined", "emergency_ended": "emergency access ended",
              "erase": "erased", "refused": "tried and was refused"}

templates.env.globals["STREAM_WORDS"] = STREAM_WORDS
templates.env.globals["KIND_WORDS"] = KIND_WORDS
templates.env.globals["age_words"] = age_words
templates.env.filters["words"] = lambda streams: ", ".join(
    STREAM_WORDS.get(s, s).lower() for s in streams)


def prefs(request: Request) -> Prefs:
    c = ctx(request)
    p = c.portal_prefs
    if not isinstance(p, Prefs):
        p = c.portal_prefs = Prefs(c.node.data_dir)
    return p


def fmt_of(request: Request) -> Fmt:
    """The signed-in person's units and time zone (defaults when signed out)."""
    s = optional_session(request)
    return prefs(request).get(s.ident.id) if s is not None else Fmt()


def mask_csrf(token: str) -> str:
    """``token`` XOR a fresh random pad, as base64url(pad || masked): different every time."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    return base64.urlsafe_b64encode(pad + bytes(a ^ b for a, b in zip(raw, pad, strict=True))
                                    ).decode().rstrip("=")


def unmask_csrf(text: str | None) -> str | None:
    """The token inside ``mask_csrf``'s output, or None if it is not one."""
    if not text:
        return None
    try:
        blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None
    half = len(blob) // 2
    if half == 0 or len(blob) % 2:
        return None
    try:
        return bytes(a ^ b for a, b in zip(blob[:half], blob[half:], strict=True)).decode()
    except UnicodeDecodeError:
        return None


def render(request: Request, name: str, http_status: int = 200, **values: Any
           ) -> HTMLResponse:
    s = optional_session(request)
    fmt = prefs(request).get(s.ident.id) if s is not None else Fmt()
    csrf = mask_csrf(s.csrf) if s is not None else ""
    return templates.TemplateResponse(request, name, {"session": s, "fmt": fmt, "csrf": csrf,
                                                      **values}, status_code=http_status)


def error_page(request: Request, exc: GlucoledgerError) -> HTMLResponse:
    return render(request, "error.html", exc.http_status, error=exc)


def who(request: Request, csrf: str | None = None) -> tuple[Session, Principal]:
    s = optional_session(request)
    if s is None:
        raise AuthenticationError("log in first")
    if request.method == "POST" and not (s.check_csrf(unmask_csrf(csrf)) or s.check_csrf(csrf)):
        raise AuthenticationError("this form is stale (missing or wrong CSRF token); reload "
                                  "the page and try again")
    return s, Principal(s.ident, "session", s)


_M = TypeVar("_M", bound=BaseModel)


def form(model: type[_M], **values: Any) -> _M:
    """Parse form values into the route's model; a value out of range (a tampered form) is a
    400 naming the field, not a server error."""
    try:
        return model(**values)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e.get("loc", ())) or "form"
        raise OutOfRangeError(f"{where}: {e.get('msg', 'invalid')}; reload the form and "
                              "choose one of its values") from None


def back(anchor: str = "", msg: str = "", path: str = "/portal") -> RedirectResponse:
    """303 to ``path`` with ``msg`` shown as the focused confirmation (``#notice``, at the
    top, so it is in view); ``anchor`` only when there is nothing to confirm."""
    if not msg:
        return RedirectResponse(f"{path}{anchor}", status_code=303)
    return RedirectResponse(f"{path}?msg={quote(msg, safe='')}#notice", status_code=303)


def names(request: Request) -> dict[bytes, str]:
    """Account id -> the name in this node's address book."""
    return {i.id: i.name for i in AddressBook(ctx(request).node).all()}

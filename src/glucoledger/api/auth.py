"""Authentication at the edge: who is asking, as a FastAPI dependency.

- ``principal`` accepts a session cookie (people) or an RFC 9421 signature (programs); no
  credential, or a bad one, is a 401 (``AuthenticationError``) and goes to the security log.
  A cookie-authenticated request that changes state must carry the session's CSRF token
  (``X-CSRF-Token`` header, or the ``csrf`` form field checked by the portal).
- ``login`` checks the password (backoff per client address, never per name), opens a
  session, unlocks the custodial keys; ``login_with_code`` does the same with a one-time
  recovery code, the second factor the owner holds (her key signs requests directly).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request, Response

from ..crypto.httpsig import verify_request
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    InputError,
    PermissionDeniedError,
    RejectedError,
)
from ..node.accounts import Identity, identity, keys_of
from ..node.readguard import RepeatedDenialError
from .context import Principal, ctx
from .security import COOKIE, Argon2Gate, Session

__all__ = ["PERMISSION_CODES", "login", "login_with_code", "logout", "optional_session",
           "permission", "principal", "record_refusal", "redeem_code", "require_kind",
           "set_session_cookie"]

_SAFE = ("GET", "HEAD", "OPTIONS")


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def record_refusal(request: Request, exc: GlucoledgerError, who: str | None, *,
                   patient: bytes | None = None) -> None:
    """Log a refusal once per request; ``patient`` (her account id) when it names her, so it
    is also in her audit trail (``node/audit.py`` ``door_refusals``)."""
    if getattr(request.state, "refusal_logged", False):
        return
    request.state.refusal_logged = True
    if patient is None and isinstance(exc, RepeatedDenialError):
        # not on the ledger (node/readguard.py): her audit trail shows it from here
        patient = exc.patient
    ctx(request).seclog.record(status=exc.http_status, code=exc.code, who=who,
                               route=f"{request.method} {request.url.path}",
                               remote=_remote(request), reason=exc.message,
                               patient=patient.hex() if patient else None)


def optional_session(request: Request) -> Session | None:
    return ctx(request).sessions.get(request.cookies.get(COOKIE))


async def principal(request: Request) -> Principal:
    """The authenticated caller, or AuthenticationError (401, logged)."""
    c = ctx(request)
    try:
        if "signature-input" in request.headers:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            found: dict[str, object] = {}

            def lookup(key_id: bytes):  # type: ignore[no-untyped-def]
                ident, key = c.key_owner(key_id)
                found["ident"] = ident
                return key

            verify_request(method=request.method, target_uri=str(request.url),
                           path=request.url.path, headers=headers, body=body, lookup=lookup,
                           nonces=c.nonces)
            request.state.who = found["ident"].name  # type: ignore[attr-defined]
            return Principal(found["ident"], "signature")  # type: ignore[arg-type]
        s = optional_session(request)
        if s is None:
            raise AuthenticationError("log in first (or sign the request with your key, RFC "
                                      "9421): this needs to know who you are")
        unsafe = request.method not in _SAFE and not request.url.path.startswith("/portal")
        if unsafe and not s.check_csrf(request.headers.get("x-csrf-token")):
            raise AuthenticationError("missing or wrong X-CSRF-Token for this session; "
                                      "reload the page and try again")
        request.state.who = s.name
        return Principal(s.ident, "session", s)
    except AuthenticationError as exc:
        record_refusal(request, exc, None)
        raise
    except GlucoledgerError as exc:  # a malformed signature is a bad credential too
        err = AuthenticationError(exc.message)
        record_refusal(request, err, None)
        raise err from None


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def require_kind(request: Request, who: Principal, *kinds: str,
                 patient: bytes | None = None) -> None:
    """PermissionDeniedError (403, logged; in ``patient``'s audit trail if given) unless
    ``who`` is of one of ``kinds``."""
    if who.kind not in kinds:
        needs = " or ".join(kinds)
        exc = PermissionDeniedError(f"this needs {_a(needs)} {needs} account; "
                                    f"{who.name} is {_a(who.kind)} {who.kind}")
        record_refusal(request, exc, who.name, patient=patient)
        raise exc


#: The state machine's reason codes that mean "authenticated, but not allowed to do this"
#: (state/devices.py, state/firmware.py, state/grants.py, state/research.py): answered 403,
#: the code kept.
PERMISSION_CODES = frozenset({"not_allowed", "not_bound", "not_maker", "not_patient",
                              "not_clinician", "not_your_grant", "model_owned", "wrong_patient",
                              "not_sponsor"})


@contextmanager
def permission(request: Request, who: Principal, *,
               patient: bytes | None = None) -> Iterator[None]:
    """Around a node call made for ``who``: a refusal for lack of permission becomes a 403
    (PermissionDeniedError with the machine's reason code) and goes to the security log
    (and ``patient``'s audit trail, when the request names her). The refused transaction
    itself stays on the ledger, marked with that code."""
    try:
        yield
    except PermissionDeniedError as exc:
        record_refusal(request, exc, who.name, patient=patient)
        raise
    except RejectedError as exc:
        if exc.code not in PERMISSION_CODES:
            raise
        err = PermissionDeniedError(exc.message, code=exc.code)
        record_refusal(request, err, who.name, patient=patient)
        raise err from None


def _addr(request: Request) -> str:
    """The client's address as the server derived it: the TCP peer, or what a proxy named in
    ``--forwarded-allow-ips`` put in ``X-Forwarded-For`` (uvicorn rewrites the peer only
    then); never a header from anyone else."""
    return _remote(request) or "unknown"


def _open(request: Request, ident: Identity) -> Session:
    c = ctx(request)
    return c.sessions.open(ident, keys_of(c.node, ident))


@contextmanager
def _attempt(request: Request, key: str, gate: Argon2Gate) -> Iterator[None]:
    """One credential check at the door, Argon2id inside the block: the attempt is counted
    against ``key`` before the check (``LoginLimiter.reserve``: 429 at once if the address
    must wait), then waits for one of ``gate``'s slots (429 if the node is too busy). A
    wrong credential (AuthenticationError) keeps the count; anything else (a success, a
    busy node, a refusal before the check) gives it back, so a success changes nothing."""
    c = ctx(request)
    held = c.limiter.reserve(key)
    try:
        with gate.slot():
            yield
    except AuthenticationError:
        raise
    except BaseException:
        held.refund()
        raise
    held.refund()


def login(request: Request, name: str, password: str) -> Session:
    """Check the password, open a session. Failures slow down the address they come from
    (exponential backoff, ``LoginLimiter``), never the account: its owner, from elsewhere or
    with a recovery code, always gets in. A success does not clear the address's count.
    The attempt is counted before the Argon2id check and at most ``ServerContext.argon2``
    slots of checks run at once (``_attempt``)."""
    c = ctx(request)
    try:
        with _attempt(request, f"addr:{_addr(request)}", c.argon2):
            ident = c.passwords.verify(name, password)
    except AuthenticationError as exc:
        record_refusal(request, exc, name[:64], patient=_named_patient(request, name))
        raise
    return _open(request, ident)


def confirm_password(request: Request, who: Principal, password: str | None) -> None:
    """A session's owner types her password again before an act a stolen session must not
    do on its own (minting recovery codes, which outlive the session). The check is a login
    attempt (``_attempt``: counted against the address, an Argon2id slot); a caller signing
    with her key (RFC 9421) holds more than a password and is not asked. Raises InputError
    (no password sent) or AuthenticationError (401, logged)."""
    if who.via == "signature":
        return
    if who.session is None:  # a Nightscout token (in phone apps, in URLs) is not a login
        exc = PermissionDeniedError("log in with your password to do this; a Nightscout "
                                    "token only reads", code="needs_login")
        record_refusal(request, exc, who.name)
        raise exc
    if not password:
        raise InputError("confirm with your password: send {\"password\": ...} (a session "
                         "alone does not mint recovery codes)")
    c = ctx(request)
    try:
        with _attempt(request, f"addr:{_addr(request)}", c.argon2):
            ident = c.passwords.verify(who.name, password)
    except AuthenticationError as exc:
        record_refusal(request, exc, who.name, patient=_named_patient(request, who.name))
        raise
    if ident.id != who.id:  # names are unique; a mismatch is a bug, never a pass
        raise AuthenticationError("the password is not this session's account's")


def login_with_code(request: Request, name: str, code: str) -> tuple[Session, int]:
    """Log in with a one-time recovery code (``node/recovery.py``): its own backoff counter,
    so password guessing from the owner's address (a shared network) does not block her,
    and its own Argon2id slot (``ServerContext.argon2_codes``), so a flood of password
    guesses from many addresses does not either. Returns the session and the number of
    codes left."""
    c = ctx(request)
    try:
        with _attempt(request, f"code:{_addr(request)}", c.argon2_codes):
            ident, left = c.recovery.use(name, code)
    except AuthenticationError as exc:
        record_refusal(request, exc, name[:64], patient=_named_patient(request, name))
        raise
    return _open(request, ident), left


def redeem_code(request: Request, name: str, code: str, password: str) -> Identity:
    """Redeem a one-time enrolment code (``node/enrolment.py``), with the login backoff."""
    c = ctx(request)
    try:
        with _attempt(request, f"code:{_addr(request)}", c.argon2_codes):
            return c.enrolments.redeem(name, code, password, c.passwords, time.time())
    except AuthenticationError as exc:
        record_refusal(request, exc, None)
        raise


def _named_patient(request: Request, name: str) -> bytes | None:
    """The account id of ``name`` if it is a patient of this node (for her audit trail)."""
    try:
        ident = identity(ctx(request).node, name)
    except GlucoledgerError:
        return None
    return ident.id if ident.kind == "patient" else None


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path="/",
                        secure=ctx(request).settings.secure_cookies)


def logout(request: Request, response: Response) -> None:
    ctx(request).sessions.close(request.cookies.get(COOKIE))
    response.delete_cookie(COOKIE, path="/")

"""The one exception tree of glucoledger, grouped by whose fault it is.

GlucoledgerError
├── InputError             the caller sent something malformed or out of range
│   ├── MalformedError     bytes that do not parse (bad encoding, wrong types, oversized)
│   └── OutOfRangeError    well-formed but outside what is allowed (a reading of 900 mg/dL)
├── VerificationError      a check of integrity failed: something is not what it claims
│   ├── SignatureError     a signature does not verify, or the key is not allowed to sign
│   ├── ConsistencyError   a proof, a root or a link disagrees (rollback, fork, tamper)
│   ├── ExpiredError       a credential or grant was valid once but is not any more
│   └── AuthenticationError  a missing or wrong credential (password, session, signature)
├── RejectedError          a transaction the state machine refuses (it carries a reason code)
│   └── PreconditionFailedError  the thing changed after the caller's condition (412)
├── PermissionDeniedError  the requester is authenticated but not allowed (carries the reason)
├── RateLimitedError       too many requests, or the node is busy (try after retry_after s)
├── NotFoundError          the named thing does not exist
│   └── GoneError          it existed and was deleted (410)
└── BackendError           storage, ordering or the network failed; retrying may help
    ├── StorageError
    └── OrderingError

Misuse of an API (passing a str where bytes are due) stays TypeError/ValueError.
Every message says what was wrong and what to do about it, and never carries a secret.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackendError",
    "ConsistencyError",
    "ExpiredError",
    "GlucoledgerError",
    "GoneError",
    "InputError",
    "MalformedError",
    "NotFoundError",
    "OrderingError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitedError",
    "RejectedError",
    "SignatureError",
    "StorageError",
    "TooLargeError",
    "UnsupportedMediaError",
    "VerificationError",
]


class GlucoledgerError(Exception):
    """Root of every error glucoledger raises on purpose.

    ``code`` is a stable machine-readable name (used by the HTTP API and the CLI's exit path);
    the message is for a person.
    """

    code: str = "error"
    http_status: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(GlucoledgerError):
    code = "bad_input"
    http_status = 400


class MalformedError(InputError):
    code = "malformed"


class TooLargeError(InputError):
    """A request body (or a part of one) over its size limit."""

    code = "too_large"
    http_status = 413


class UnsupportedMediaError(InputError):
    """A body in a media type the route does not take."""

    code = "unsupported_media_type"
    http_status = 415


class OutOfRangeError(InputError):
    code = "out_of_range"


class VerificationError(GlucoledgerError):
    code = "verification_failed"
    http_status = 422


class SignatureError(VerificationError):
    code = "bad_signature"


class ConsistencyError(VerificationError):
    code = "inconsistent"


class ExpiredError(VerificationError):
    code = "expired"


class RejectedError(GlucoledgerError):
    """A transaction the state machine refused; ``code`` is the reason code on the ledger."""

    code = "rejected"
    http_status = 409


class PreconditionFailedError(RejectedError):
    """The caller's condition (HTTP ``If-Unmodified-Since``) no longer holds: the thing was
    changed after it; nothing was done (HTTP 412 Precondition Failed)."""

    code = "precondition_failed"
    http_status = 412


class PermissionDeniedError(GlucoledgerError):
    code = "denied"
    http_status = 403


class RateLimitedError(GlucoledgerError):
    """Too many requests of one kind from one caller, or the node is busy with costly work:
    nothing was done; ``retry_after`` says in how many seconds to try again (HTTP 429 with
    ``Retry-After``)."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))


class NotFoundError(GlucoledgerError):
    code = "not_found"
    http_status = 404


class GoneError(NotFoundError):
    """The named thing existed and was deleted (HTTP 410 Gone)."""

    code = "gone"
    http_status = 410


class BackendError(GlucoledgerError):
    code = "backend"
    http_status = 503


class StorageError(BackendError):
    code = "storage"


class OrderingError(BackendError):
    code = "ordering"


class AuthenticationError(VerificationError):
    """No credential, or one that does not verify: the HTTP API answers 401."""

    code = "unauthenticated"
    http_status = 401

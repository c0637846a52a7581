"""People and programs at the node's door: password logins and the security log.

- Passwords: one Argon2id hash per custodial account name (argon2-cffi's defaults, RFC 9106
  second recommended profile), in ``<data>/passwords.json`` (mode 0600). The plain password
  is never stored or logged. A login that succeeds yields the account's ``Identity``; its
  custodial keys (sealed in the wallet under the master key) are then loaded for the session
  by the caller and dropped at logout or expiry.
- The security log (``<data>/security.log``, JSON lines): every refused credential (401) and
  every refused permission (403) at the edge, with what was asked, by whom (if known), from
  where and why. Reads refused by consent are also on the ledger as ``access`` records; this
  log covers what never reaches consent (a wrong password, a stale signature, a bad token).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import AuthenticationError, InputError, RejectedError
from ..files import atomic_write_json
from .accounts import Identity, identity
from .service import Node

__all__ = ["MIN_PASSWORD", "Passwords", "SecurityLog", "check_password"]

MIN_PASSWORD = 10
_MAX_PASSWORD = 1024


def check_password(password: object) -> str:
    """The password if its length is acceptable; InputError (never quoting it) otherwise."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        raise InputError(f"a password has {MIN_PASSWORD} to {_MAX_PASSWORD} characters")
    return password


class Passwords:
    def __init__(self, node: Node, hasher: PasswordHasher | None = None) -> None:
        self.node = node
        self.path = node.data_dir / "passwords.json"
        self._hasher = hasher or PasswordHasher()
        self._mu = threading.Lock()
        # A hash to verify against when the name is unknown, so timing does not tell.
        self._decoy = self._hasher.hash("glucoledger-decoy-password")

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def set(self, name: str, password: str, *, first: bool = False) -> None:
        """Set ``name``'s password (with ``first``, only if it has none yet).

        Raises NotFoundError (no such account), InputError (length), RejectedError
        (``first`` and a password is already set: code ``password_set``).
        """
        identity(self.node, name)
        check_password(password)
        with self._mu:
            book = self._load()
            if first and name in book:
                raise RejectedError(f"{name} already has a password; only its owner changes it, "
                                    "or the operator at the node with `glucoledger password`",
                                    code="password_set")
            book[name] = self._hasher.hash(password)
            atomic_write_json(self.path, book, mode=0o600)

    def require_none(self, name: str) -> None:
        """RejectedError ``password_set`` if ``name`` has a password already."""
        if self.has(name):
            raise RejectedError(f"{name} already has a password; only its owner changes it, "
                                "or the operator at the node with `glucoledger password`",
                                code="password_set")

    def has(self, name: str) -> bool:
        return name in self._load()

    def verify(self, name: str, password: str) -> Identity:
        """Return the account if ``password`` is ``name``'s; raise AuthenticationError."""
        stored = self._load().get(name) if isinstance(name, str) else None
        try:
            self._hasher.verify(stored or self._decoy, password[:_MAX_PASSWORD])
            if stored is None:
                raise VerifyMismatchError
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise AuthenticationError("wrong account name or password") from None
        if self._hasher.check_needs_rehash(stored):
            self.set(name, password)
        return identity(self.node, name)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    time_ms: int
    status: int
    code: str
    who: str | None
    route: str
    remote: str | None
    reason: str
    patient: str | None = None  # hex account id of the patient the request named


class SecurityLog:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "security.log"
        self._mu = threading.Lock()

    def record(self, *, status: int, code: str, who: str | None, route: str,
               remote: str | None, reason: str, patient: str | None = None) -> None:
        event: dict[str, Any] = {"time_ms": int(time.time() * 1000), "status": status,
                                 "code": code, "who": who, "route": route[:200],
                                 "remote": remote, "reason": reason[:300]}
        if patient is not None:
            event["patient"] = patient
        line = json.dumps(event, sort_keys=True) + "\n"
        with self._mu, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def recent(self, limit: int = 100, who: str | None = None,
               patient: str | None = None) -> list[SecurityEvent]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in reversed(lines):
            try:
                e = SecurityEvent(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if (who is None or e.who == who) and (patient is None or e.patient == patient):
                out.append(e)
            if len(out) >= limit:
                break
        return out

"""Sessions, CSRF tokens and login rate limits: the edge's own state, kept in memory.

- A session is 32 random bytes (``secrets.token_urlsafe``) in the cookie ``gl_session``
  (``Secure; HttpOnly; SameSite=Strict; Path=/``), idle timeout ``IDLE_S``, absolute
  lifetime ``MAX_AGE_S``. It holds the account and its custodial keys, loaded from the
  wallet at login ("unlocked"), dropped at logout or expiry; a restart logs everyone out.
- CSRF: every session has its own random token; each form carries it in a hidden field
  ``csrf`` and every state-changing form POST must echo it (compared in constant time).
  Before login, the login form uses a double-submit token (cookie ``gl_csrf`` + field).
  JSON routes are not form-submittable cross-site with our CORS-free, SameSite=Strict
  setup, but they also require ``X-CSRF-Token`` when authenticated by cookie.
- Rate limits: at most ``LOGIN_FAILS`` failed logins per account name and per client address
  in ``LOGIN_WINDOW_S``; then 429 with ``Retry-After`` until the window slides.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..crypto import PrivateKey, constant_time_equal
from ..errors import GlucoledgerError
from ..node.accounts import Identity

__all__ = ["LoginLimiter", "RateLimitedError", "Session", "Sessions"]

IDLE_S = 30 * 60
MAX_AGE_S = 12 * 3600
LOGIN_FAILS = 5
LOGIN_WINDOW_S = 300
COOKIE = "gl_session"
PRE_CSRF_COOKIE = "gl_csrf"


class RateLimitedError(GlucoledgerError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Session:
    id: str
    ident: Identity
    keys: list[PrivateKey] = field(repr=False)
    csrf: str
    created: float
    seen: float

    @property
    def name(self) -> str:
        return self.ident.name

    def check_csrf(self, token: str | None) -> bool:
        return token is not None and token != "" and constant_time_equal(token.encode(),
                                                                           self.csrf.encode())


class Sessions:
    def __init__(self, clock: type[time.time] | None = None) -> None:  # type: ignore[valid-type]
        self._by_id: dict[str, Session] = {}
        self._mu = threading.Lock()
        self._clock = time.time

    def open(self, ident: Identity, keys: Sequence[PrivateKey]) -> Session:
        now = self._clock()
        s = Session(secrets.token_urlsafe(32), ident, list(keys), secrets.token_urlsafe(24),
                    now, now)
        with self._mu:
            self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._mu:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.seen > IDLE_S or now - s.created > MAX_AGE_S:
                self._drop(sid)
                return None
            s.seen = now
            return s

    def close(self, sid: str | None) -> None:
        with self._mu:
            if sid:
                self._drop(sid)

    def _drop(self, sid: str) -> None:
        s = self._by_id.pop(sid, None)
        if s is not None:
            s.keys.clear()


class LoginLimiter:
    def __init__(self, fails: int = LOGIN_FAILS, window: int = LOGIN_WINDOW_S) -> None:
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._mu = threading.Lock()
        self.max = fails
        self.window = window

    def check(self, *keys: str) -> None:
        now = time.time()
        with self._mu:
            for k in keys:
                q = self._fails[k]
                while q and q[0] < now - self.window:
                    q.popleft()
                if len(q) >= self.max:
                    wait = int(q[0] + self.window - now) + 1
                    raise RateLimitedError(
                        f"too many failed logins; wait {wait} s before trying again", wait)

    def failed(self, *keys: str) -> None:
        now = time.time()
        with self._mu:
            for k in keys:
                self._fails[k].append(now)

    def succeeded(self, *keys: str) -> None:
        with self._mu:
            for k in keys:
                self._fails.pop(k, None)

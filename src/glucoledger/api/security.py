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
- Login backoff: per client address, exponential after ``LOGIN_FAILS`` free failures, never
  per account name (``LoginLimiter``). The address is the TCP peer; proxy headers count only
  from proxies named in ``--forwarded-allow-ips`` (uvicorn's ``proxy_headers``; default none).
  An attempt is counted as a failure *before* its password is checked (``reserve``: check and
  count in one locked step) and given back when it succeeds or was never checked, so N
  concurrent guesses from one address meet the same count a sequence of N would.
- Argon2id work for unauthenticated callers (``Argon2Gate``): each verification holds 64 MiB
  (argon2-cffi's defaults, RFC 9106's second recommended profile) for about 0.1 s, so at
  most ``slots`` run at once; a few more callers wait their turn briefly, the rest are
  answered 429 with ``Retry-After`` and nothing checked or counted.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..crypto import PrivateKey, constant_time_equal
from ..errors import RateLimitedError
from ..node.accounts import Identity

__all__ = ["Argon2Gate", "CostLimiter", "LoginLimiter", "RateLimitedError", "Reservation",
           "Session", "Sessions"]

IDLE_S = 30 * 60
MAX_AGE_S = 12 * 3600
LOGIN_FAILS = 5
COOKIE = "gl_session"
PRE_CSRF_COOKIE = "gl_csrf"


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
    """Exponential backoff per client address (never per account name).

    The first ``free`` failures from an address cost nothing; each further failure doubles
    the wait before that address may try again (``base`` s, then 2x, 4x ... up to ``cap``).
    The count fades after ``forget`` s without a failure. A success does not clear it (an
    attacker holding one account must not reset the counter it earned guessing another's).
    Keys are opaque strings (``addr:<ip>``, ``code:<ip>``); at most ``limit`` are kept, the
    least recently failed forgotten first, so a flood of addresses costs bounded memory.
    Nobody's name is ever locked: the owner, from her own address or with her second factor,
    always gets through (tests/api/test_attack_table.py shows it against a real server).
    """

    def __init__(self, free: int = LOGIN_FAILS, base: float = 2.0, cap: float = 900.0,
                 forget: float = 3600.0, limit: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._mu = threading.Lock()
        self.free, self.base, self.cap, self.forget, self.limit = free, base, cap, forget, limit
        self._clock = clock

    def _wait(self, count: int) -> float:
        over = count - self.free
        return 0.0 if over < 0 else min(self.cap, self.base * 2.0 ** min(over, 30))

    def check(self, *keys: str) -> None:
        """RateLimitedError (429, ``Retry-After``) if any key must still wait."""
        now = self._clock()
        with self._mu:
            self._check_locked(keys, now)

    def reserve(self, *keys: str) -> Reservation:
        """Check and count one attempt in one locked step, before its credential is checked:
        RateLimitedError (429, ``Retry-After``; nothing counted) if any key must still wait,
        else every key's count goes up by one now, as a failure would. ``refund`` gives it
        back (a success, or an attempt that was never checked); a failure keeps it. So a
        burst of concurrent guesses from one address meets the count the earlier ones of
        the burst already raised: at most ``free`` are ever checked without a wait."""
        now = self._clock()
        with self._mu:
            self._check_locked(keys, now)
            made: dict[str, tuple[tuple[int, float] | None, tuple[int, float]]] = {}
            for k in keys:
                before = self._fails.pop(k, None)
                count = 0 if before is None or now - before[1] > self.forget else before[0]
                after = (count + 1, now)
                self._fails[k] = after
                made[k] = (before, after)
            while len(self._fails) > self.limit:
                self._fails.popitem(last=False)
        return Reservation(self, made)

    def _refund(self, made: dict[str, tuple[tuple[int, float] | None, tuple[int, float]]]
                ) -> None:
        with self._mu:
            for k, (before, after) in made.items():
                cur = self._fails.get(k)
                if cur is None:
                    continue  # forgotten meanwhile (bounded memory): nothing to give back
                if cur == after:  # nobody counted since: as if this attempt never was
                    if before is None:
                        del self._fails[k]
                    else:
                        self._fails[k] = before
                else:  # later attempts counted too: take back ours, keep their time
                    self._fails[k] = (max(0, cur[0] - 1), cur[1])

    def _check_locked(self, keys: Sequence[str], now: float) -> None:
        for k in keys:
            hit = self._fails.get(k)
            if hit is None:
                continue
            count, last = hit
            if now - last > self.forget:
                del self._fails[k]
                continue
            wait = last + self._wait(count) - now
            if wait > 0:
                secs = int(wait) + 1
                raise RateLimitedError(f"too many failed logins from your address; wait "
                                       f"{secs} s (or log in with a recovery code or "
                                       "your key)", secs)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._mu:
            for k in keys:
                count, last = self._fails.pop(k, (0, now))
                self._fails[k] = (0 if now - last > self.forget else count) + 1, now
            while len(self._fails) > self.limit:
                self._fails.popitem(last=False)

    def failures(self, key: str) -> int:
        with self._mu:
            return self._fails.get(key, (0, 0.0))[0]


class Reservation:
    """One attempt counted by ``LoginLimiter.reserve``: ``refund()`` gives it back (once)."""

    def __init__(self, limiter: LoginLimiter,
                 made: dict[str, tuple[tuple[int, float] | None, tuple[int, float]]]) -> None:
        self._limiter, self._made = limiter, made

    def refund(self) -> None:
        made, self._made = self._made, {}
        if made:
            self._limiter._refund(made)


#: Concurrent Argon2id verifications for unauthenticated callers, by default: 64 MiB each.
ARGON2_SLOTS = min(4, max(2, os.cpu_count() or 2))


class Argon2Gate:
    """Bounded Argon2id work at the door (password and code logins, enrolment).

    At most ``slots`` verifications run at once (each holds ~64 MiB for ~0.1 s: argon2-cffi's
    defaults, ``time_cost=3, memory_cost=64 MiB, parallelism=4``); up to ``queue`` more
    callers wait at most ``wait`` s for a turn (a person at a login form during a burst of
    logins notices a short delay, no error); anyone beyond that, or still waiting after
    ``wait`` s, gets RateLimitedError (429, ``Retry-After``) at once with nothing checked
    and nothing counted against the address. Waiting callers hold a server thread each, so
    ``queue`` also bounds the threads a flood of logins can tie up. Peak memory for Argon2
    at the door: ``slots`` x 64 MiB, whatever the number of callers."""

    def __init__(self, slots: int = ARGON2_SLOTS, queue: int | None = None,
                 wait: float = 3.0, what: str = "logins") -> None:
        self.slots = slots
        self.queue = 4 * slots if queue is None else queue
        self.wait, self.what = wait, what
        self._sem = threading.BoundedSemaphore(slots)
        self._mu = threading.Lock()
        self._waiting = 0

    def _busy(self) -> RateLimitedError:
        return RateLimitedError(f"the node is checking many {self.what} right now; nothing was "
                                "checked and your address was not counted: try again in a "
                                "few seconds (or sign the request with your key)", 2,
                                code="busy")

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``slots`` for the length of the block; RateLimitedError if none
        frees up in time (or too many callers are waiting already)."""
        if not self._sem.acquire(blocking=False):
            with self._mu:
                if self._waiting >= self.queue:
                    raise self._busy()
                self._waiting += 1
            try:
                got = self._sem.acquire(timeout=self.wait)
            finally:
                with self._mu:
                    self._waiting -= 1
            if not got:
                raise self._busy()
        try:
            yield
        finally:
            self._sem.release()


class CostLimiter:
    """Costly calls (re-verifying the chain, exports): per account, at most ``burst`` calls of
    each kind of work in any ``every`` seconds, and at most ``running`` verifications at once
    for everybody, so no account (or crowd of accounts) keeps the node's cores busy.
    Refusals are 429 with ``Retry-After``; nothing is queued. Memory: at most ``burst``
    timestamps per (account, kind), at most ``limit`` pairs kept."""

    def __init__(self, running: int = 1, limit: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self._last: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._mu = threading.Lock()
        self._slots = threading.BoundedSemaphore(running)
        self._clock = clock
        self.limit = limit

    def spend(self, account: str, kind: str, every: float, burst: int = 1) -> None:
        """Take one of ``account``'s ``burst`` turns for ``kind`` in ``every`` seconds;
        RateLimitedError if none is left."""
        now = self._clock()
        with self._mu:
            times = [t for t in self._last.pop((account, kind), []) if now - t < every]
            if len(times) >= burst:
                self._last[(account, kind)] = times
                wait = int(times[0] + every - now) + 1
                raise RateLimitedError(f"{kind} is costly: {burst} per {int(every)} s per "
                                       f"account; wait {wait} s", wait)
            self._last[(account, kind)] = [*times, now]
            while len(self._last) > self.limit:
                self._last.popitem(last=False)

    def slot(self) -> _Slot:
        """A context manager holding one of the ``running`` slots; 429 if none is free."""
        return _Slot(self._slots)


class _Slot:
    def __init__(self, sem: threading.BoundedSemaphore) -> None:
        self._sem = sem

    def __enter__(self) -> None:
        if not self._sem.acquire(blocking=False):
            raise RateLimitedError("another costly job (verify, export) is running on this "
                                   "node; retry in a minute", 60)

    def __exit__(self, *exc: object) -> None:
        self._sem.release()

"""Limits on audited reads, in the one place every read passes (``AccessService.read_as``).

Every read is an ``access`` transaction: permanent, in the patient's audit trail. Before
these limits a reader refused by consent (a follower whose grant does not cover a stream,
or was revoked) wrote one transaction per request, as fast as she could send them (300 in
0.9 s). Two limits, per credential (a reader and the patient she reads: a Nightscout token
is bound to exactly that pair; a session or a signed program reads as its account, one
budget per patient it reads):

- **A read budget** (``READ_BURST`` at once, then ``READ_RATE`` a second): past it, a read is
  refused with ``RateLimitedError`` (HTTP 429, ``Retry-After``) before anything is signed or
  ordered: not on the ledger, nothing read. A Nightscout follower polls about once a
  minute, a portal page reads a few times, a clinician's list once per patient: far below.
- **Repeated identical denials collapse**: the first denial of a (reader, patient, streams,
  view) is ordered and audited as always; an identical request within ``COLLAPSE_S`` is
  answered from that record (``RepeatedDenialError``, 403, the same reason code, the first
  record's hash) without a new transaction, and counted. Only denials that nothing but a new
  transaction can turn into a permit are collapsed (``STABLE``: no grant, revoked, expired,
  stream not granted, raw under a summary grant, unknown patient; never ``not_yet_valid``
  or ``outside_window``, which time or the window asked can change), only while no grant of
  the pair is yet to start, and only while the pair's grants are exactly as they were (a
  fingerprint of the consent state ``decide`` reads): a new grant, a change, a revocation,
  ends the collapse at once. The repeats go to the security log with the patient's id
  (api/auth.py ``record_refusal``), so her audit trail shows them as door refusals, capped
  per address with a count (node/people.py); they are not put on the ledger: a count would
  be another permanent record an attacker controls, and the decision it repeats is already
  there.

Both live in this process's memory (bounded: at most ``limit`` pairs of each); a restart
starts them over, which costs at most one more ledger record per pair.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..errors import RateLimitedError
from ..state.accounts_model import account_kind
from ..state.consent import Request, grants_of
from .access import AccessDeniedError
from .service import Node

__all__ = ["COLLAPSE_S", "READ_BURST", "READ_RATE", "STABLE", "ReadGuard",
           "RepeatedDenialError"]

READ_BURST: Final = 120
READ_RATE: Final = 1.0  # reads a second, sustained, per (reader, patient)
COLLAPSE_S: Final = 900.0
STABLE: Final = frozenset({"unknown_patient", "no_grant", "revoked", "expired",
                           "stream_not_granted", "raw_under_summary"})


class RepeatedDenialError(AccessDeniedError):
    """An identical request denied within ``COLLAPSE_S``: answered from the first denial's
    record (``tx_hash``), nothing ordered. ``patient``: whose data was asked for."""

    def __init__(self, message: str, *, code: str, tx_hash: bytes, patient: bytes,
                 repeats: int) -> None:
        super().__init__(message, code=code, tx_hash=tx_hash)
        self.patient = patient
        self.repeats = repeats


@dataclass
class _Denial:
    fingerprint: Any
    until: float
    reason: str
    message: str
    tx_hash: bytes
    first: float
    repeats: int = 0


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


class ReadGuard:
    """The read budget and the memory of recent denials (module docstring). ``rate`` None:
    no budget (the benchmarks, which measure the read path itself)."""

    def __init__(self, node: Node, *, rate: float | None = READ_RATE,
                 burst: int = READ_BURST, collapse: float = COLLAPSE_S,
                 limit: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.rate, self.burst, self.collapse, self.limit = rate, burst, collapse, limit
        self._clock = clock
        self._mu = threading.Lock()
        self._buckets: OrderedDict[tuple[bytes, bytes], tuple[float, float]] = OrderedDict()
        self._denials: OrderedDict[tuple[Any, ...], _Denial] = OrderedDict()

    # --- the budget ----------------------------------------------------------------------
    def spend(self, requester: bytes, patient: bytes) -> None:
        """Take one read from the pair's budget; RateLimitedError (nothing done) if empty."""
        if self.rate is None:
            return
        now = self._clock()
        key = (requester, patient)
        with self._mu:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise RateLimitedError(
                    f"too many reads of this patient's data with this credential: at most "
                    f"{self.burst} at once, then {self.rate * 60:g} a minute; wait {wait} s "
                    "and try again (nothing was read, and nothing recorded)", wait)
            self._buckets[key] = (tokens - 1.0, now)
            while len(self._buckets) > self.limit:
                self._buckets.popitem(last=False)

    # --- repeated denials ----------------------------------------------------------------
    @staticmethod
    def _key(requester: bytes, request: Request) -> tuple[Any, ...]:
        return (requester, request.patient, tuple(sorted(request.streams)), request.view)

    def _fingerprint(self, requester: bytes, patient: bytes) -> Any:
        """What ``decide`` reads for this pair: the patient's account kind and every field
        of every grant from her to the requester."""
        state = self.node.state
        kind = account_kind(state, patient)
        grants = grants_of(state, patient, requester) if kind == "patient" else []
        return kind, tuple((g.id, g.status, g.valid_from, g.valid_until, g.streams, g.view,
                            tuple(sorted(g.window.items())), g.purpose, g.emergency)
                           for g in grants)

    def repeated(self, requester: bytes, request: Request) -> None:
        """RepeatedDenialError if an identical request was denied within ``collapse`` s and
        nothing it was decided on has changed; else nothing (the read goes to the ledger)."""
        if requester == request.patient:
            return  # her own reads are always permitted
        key = self._key(requester, request)
        now = self._clock()
        with self._mu:
            d = self._denials.get(key)
            if d is None:
                return
            if now >= d.until:
                del self._denials[key]
                return
        if self._fingerprint(requester, request.patient) != d.fingerprint:
            with self._mu:
                self._denials.pop(key, None)
            return
        with self._mu:
            d.repeats += 1
            repeats = d.repeats
        raise RepeatedDenialError(
            f"{d.message} (repeat {repeats} of a request denied at {_hms(d.first)} UTC and "
            f"audited as {d.tx_hash.hex()[:16]}: not recorded again until "
            f"{_hms(d.until)} UTC)",
            code=d.reason, tx_hash=d.tx_hash, patient=request.patient, repeats=repeats)

    def denied(self, requester: bytes, request: Request, exc: AccessDeniedError) -> None:
        """Remember an ordered denial, if only a new transaction could change it."""
        if exc.code not in STABLE or isinstance(exc, RepeatedDenialError):
            return
        now = self._clock()
        fingerprint = self._fingerprint(requester, request.patient)
        now_ms = int(now * 1000)
        if any(g[1] == "active" and g[2] > now_ms for g in fingerprint[1]):
            return  # a grant yet to start may permit this later without any transaction
        message = exc.message.split(" (audited as ", 1)[0]
        with self._mu:
            self._denials[self._key(requester, request)] = _Denial(
                fingerprint, now + self.collapse, exc.code, message, exc.tx_hash, now)
            while len(self._denials) > self.limit:
                self._denials.popitem(last=False)

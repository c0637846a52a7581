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
  It is bounded (``SecurityLog``: rotated by size, a per-address cap with summary lines)
  and the refusals that name a patient are also kept in her own bounded file, so her audit
  trail never loses them to unrelated noise.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import AuthenticationError, InputError, RejectedError
from ..files import atomic_write_json, locked
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
        # A hash to verify against when the name is unknown, so timing does not tell.
        self._decoy = self._hasher.hash("glucoledger-decoy-password")

    def _locked(self) -> AbstractContextManager[None]:
        """One read-modify-write of the file at a time: threads, and the other processes on
        the folder (a command next to ``serve``, a second server): ``files.locked``."""
        return locked(self.path.with_name(".passwords.lock"), "changing the passwords")

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
        with self._locked():
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
    count: int = 1  # a summary line stands for ``count`` refusals not written one by one
    since_ms: int | None = None  # ... counted from this time to ``time_ms``


_FIELDS = frozenset(SecurityEvent.__dataclass_fields__)
_BLOCK = 64 * 1024


def _lines_backwards(path: Path, budget: int) -> Iterator[str]:
    """The lines of ``path``, last first, reading at most ``budget`` bytes from its end in
    blocks (a partial first line at the budget's edge is dropped)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, generator-held
    except FileNotFoundError:
        return
    with f:
        end = f.seek(0, 2)
        pos, rest = end, b""
        while pos > 0 and end - pos < budget:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0]
            for line in reversed(parts[1:]):
                if line:
                    yield line.decode("utf-8", "replace")
        if pos == 0 and rest:
            yield rest.decode("utf-8", "replace")


@dataclass
class _Window:
    start: float
    written: int = 0
    suppressed: int = 0
    first_ms: int = 0
    last: dict[str, Any] | None = None


class SecurityLog:
    """The node's log of refusals at the door: bounded in size, in rate and in read cost.

    - ``security.log``: every refusal, JSON lines; at ``max_bytes`` it is renamed
      ``security.log.1`` (the older ones shift up to ``.keep``, the oldest dropped), so the
      files never hold more than ``(keep + 1) * max_bytes``.
    - ``security.patients/<patient id>.log``: the refusals that named a patient (her audit
      trail's door refusals, ``node/audit.py`` ``door_refusals``), one bounded file per
      patient (``patient_bytes``, one older generation): noise about others never rotates
      her refusals away, and reading her trail reads her file only.
    - At most ``cap`` lines per ``every`` seconds for one kind of refusal (status and code)
      from one address in the main log, and for one address about one patient in her file;
      the rest are counted and one summary line (``code`` ``refusals_suppressed``, with the
      ``count`` and ``since_ms``) is written when the interval is over (at the next refusal,
      the next read or ``flush``), so an operator still sees a flood, in a few lines.
    - ``recent`` reads the files backwards from their end, at most ``scan_bytes`` of the
      main log: its cost does not grow with the log.
    """

    def __init__(self, data_dir: Path, *, max_bytes: int = 4 << 20, keep: int = 4,
                 patient_bytes: int = 256 << 10, cap: int = 30, every: float = 60.0,
                 scan_bytes: int = 2 << 20, limit: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(data_dir) / "security.log"
        self.patients = Path(data_dir) / "security.patients"
        self.max_bytes, self.keep, self.patient_bytes = max_bytes, keep, patient_bytes
        self.cap, self.every, self.scan_bytes, self.limit = cap, every, scan_bytes, limit
        self._clock = clock
        self._mu = threading.Lock()
        # (file, address, kind) -> the current interval's counts, oldest interval first
        self._windows: OrderedDict[tuple[str, str, str], _Window] = OrderedDict()
        self._sizes: dict[Path, int] = {}
        self._ready = False

    # --- writing -----------------------------------------------------------------------------
    def record(self, *, status: int, code: str, who: str | None, route: str,
               remote: str | None, reason: str, patient: str | None = None) -> None:
        now = self._clock()
        event: dict[str, Any] = {"time_ms": int(now * 1000), "status": status,
                                 "code": code, "who": who, "route": route[:200],
                                 "remote": remote, "reason": reason[:600]}
        if patient is not None:
            event["patient"] = patient
        addr = remote or "unknown"
        with self._mu:
            self._setup()
            self._flush_before(now)
            if self._admit(("", addr, f"{status}:{code}"), event, now):
                self._append(self.path, event, self.max_bytes, self.keep)
            if patient is not None and _is_id(patient) and self._admit((patient, addr, ""),
                                                                       event, now):
                self._append(self._patient_file(patient), event, self.patient_bytes, 1)

    def flush(self) -> None:
        """Write the summary line of every interval that suppressed something, now."""
        with self._mu:
            self._flush_before(float("inf"))

    def _admit(self, key: tuple[str, str, str], event: dict[str, Any], now: float) -> bool:
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window(now)
            while len(self._windows) > self.limit:
                self._summarize(*self._windows.popitem(last=False))
        if w.written < self.cap:
            w.written += 1
            return True
        if not w.suppressed:
            w.first_ms = event["time_ms"]
        w.suppressed += 1
        w.last = event
        return False

    def _flush_before(self, now: float) -> None:
        while self._windows:
            key, w = next(iter(self._windows.items()))
            if w.start + self.every > now:
                break
            del self._windows[key]
            self._summarize(key, w)

    def _summarize(self, key: tuple[str, str, str], w: _Window) -> None:
        if not w.suppressed or w.last is None:
            return
        patient, addr, _ = key
        last = w.last
        line = dict(last, code="refusals_suppressed", count=w.suppressed,
                    since_ms=w.first_ms,
                    reason=f"{w.suppressed} more refusals like this one ({last['status']} "
                    f"{last['code']}: {last['reason'][:120]}) from {addr} between "
                    f"{_hms(w.first_ms)} and {_hms(last['time_ms'])} UTC were counted, not "
                    f"written one by one (at most {self.cap} in {int(self.every)} s are)")
        if patient:
            self._append(self._patient_file(patient), line, self.patient_bytes, 1)
        else:
            self._append(self.path, line, self.max_bytes, self.keep)

    def _patient_file(self, patient: str) -> Path:
        if not _is_id(patient):
            raise ValueError("a patient id is lowercase hex")
        return self.patients / f"{patient}.log"

    def _append(self, path: Path, event: dict[str, Any], max_bytes: int, keep: int) -> None:
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        size = self._sizes.get(path)
        if size is None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
        if size and size + len(line) > max_bytes:
            for n in range(keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{n}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{n + 1}"))
            path.replace(path.with_name(f"{path.name}.1"))
            size = 0
        with open(path, "ab") as f:
            f.write(line)
        self._sizes[path] = size + len(line)

    def _setup(self) -> None:
        """Once: the folder of per-patient files, filled from a log written before it
        existed (one pass over the old file), so an upgrade keeps every trail."""
        if self._ready:
            return
        self._ready = True
        if self.patients.is_dir():
            return
        tmp = self.patients.with_name(self.patients.name + ".tmp")
        if tmp.exists():
            for old in tmp.iterdir():
                old.unlink()
        tmp.mkdir(exist_ok=True)
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for raw in f:
                    try:
                        e = json.loads(raw)
                        patient = e.get("patient")
                        if isinstance(patient, str) and patient:
                            dest = tmp / self._patient_file(patient).name
                            self._append(dest, e, self.patient_bytes, 1)
                    except (ValueError, TypeError, AttributeError):
                        continue
        except FileNotFoundError:
            pass
        self._sizes.clear()
        tmp.replace(self.patients)

    # --- reading -----------------------------------------------------------------------------
    def recent(self, limit: int = 100, who: str | None = None,
               patient: str | None = None) -> list[SecurityEvent]:
        """The newest ``limit`` events (of ``who``; naming ``patient``), newest first: from
        her file for a patient, else from the end of the main log (at most ``scan_bytes``)."""
        with self._mu:
            self._setup()
            self._flush_before(self._clock())
        if patient is not None:
            try:
                base = self._patient_file(patient)
            except ValueError:
                return []
            files, budget = [base, base.with_name(base.name + ".1")], 2 * self.patient_bytes
        else:
            files = [self.path, *(self.path.with_name(f"{self.path.name}.{n}")
                                  for n in range(1, self.keep + 1))]
            budget = self.scan_bytes
        out: list[SecurityEvent] = []
        for path in files:
            for line in _lines_backwards(path, budget):
                budget -= len(line) + 1
                try:
                    raw = json.loads(line)
                    e = SecurityEvent(**{k: v for k, v in raw.items() if k in _FIELDS})
                except (ValueError, TypeError, AttributeError):
                    continue
                if (who is None or e.who == who) and (patient is None or e.patient == patient):
                    out.append(e)
                if len(out) >= limit or budget <= 0:
                    return out
            if budget <= 0:
                break
        return out


def _is_id(patient: str) -> bool:
    return 0 < len(patient) <= 128 and all(c in "0123456789abcdef" for c in patient)


def _hms(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))

"""Consent: grants, requests, and the one pure decision function.

``decide(state, requester, request, time_ms) -> Permit | Deny`` is the only place that says
whether a read may happen. The ``access`` contract (state/access.py) calls it at the block's
time, so every node reaches the same decision, and the node (node/access.py) releases data
only for an ordered ``access`` whose recorded decision is a permit.

A grant (DESIGN.md, The state machine: Consent) is stored at ``grant/<id>`` and listed per
patient at ``grants/<patient>``::

    {id, patient, grantee, streams, view, window, valid_from, valid_until, purpose, alerts,
     status, created, changed, revoked_by, revoked_height, emergency}

- ``view``: ``raw`` (readings; implies summaries) or ``summary`` (computed metrics only).
- ``window``: ``{"from": ms, "to": ms}`` (absolute, ``[from, to)``) or ``{"last_days": N}``
  (``[t - N days, t)`` counted at the time ``t`` of each read). A ``last_days`` grant also
  allows N whole local days (``granted_span``): a request for an absolute window ending at
  or before ``t``, at most N days and one hour long (a day with a daylight-saving fall-back
  lasts 25 hours) and starting at most N + 1 days and one hour before ``t``, is permitted
  as asked, so a report covers N days from one local midnight to another in the patient's
  zone (node/localdays.py chooses them; the state never reads a time zone, so every node
  decides alike). The reader never gets more than N days and an hour of data, none older
  than N + 1 days and an hour.
- validity ``[valid_from, valid_until)`` in block time; ``purpose`` treatment, research or
  emergency; ``alerts``: whether the grantee is notified of alerts.

Decision order for one grant (the first failing check is its reason): ``revoked``,
``not_yet_valid``, ``expired``, ``stream_not_granted``, ``raw_under_summary``,
``outside_window``, ``not_whole_days``.

Summary grants release whole days only (``_check_days``; docs/threat-model.md): under a
grant of view ``summary`` the permitted window is a run of whole, finished UTC days (the
state knows no zone, and one fixed grid is what makes differencing two summaries useless),
an absolute request window must start and end at UTC midnights (else ``not_whole_days``),
and a relative one (none, or ``last_days`` k) means the k whole UTC days before the last
UTC midnight (``summary_days``). The patient's own reads and raw grants are not affected.

With several grants the first that permits wins (emergency grants last, so
an ordinary grant is used when one suffices); if none permits, the reason is the one of the
grant that passed the most checks, so the message names the step closest to success.
A permit's scope is the intersection of the request with the grant: never wider than the
grant's streams, view, window or validity (tests/consent/test_decide_properties.py).

Pure: no I/O, clock or randomness; ``time_ms`` is the block's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ..errors import MalformedError
from ..glucose.readings import STREAMS
from .accounts import rules
from .accounts_model import account_kind
from .store import State

__all__ = [
    "DAY_MS",
    "DENY_REASONS",
    "PURPOSES",
    "VIEWS",
    "Deny",
    "Grant",
    "Permit",
    "Request",
    "day_ceil",
    "day_floor",
    "decide",
    "grant_key",
    "granted_span",
    "grants_of",
    "load_grant",
    "parse_scope",
    "summary_days",
    "summary_only",
    "to_fhir_consent",
]

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
VIEWS: Final = ("raw", "summary")
PURPOSES: Final = ("treatment", "research", "emergency")
MAX_WINDOW_DAYS: Final = 3660
_OWNER: Final = b"owner"

#: Reason code -> what the requester can do about it.
DENY_REASONS: Final[dict[str, str]] = {
    "unknown_patient": "check the patient id; no patient account has it",
    "no_grant": "ask the patient for a grant (or propose one for her to cosign)",
    "revoked": "the patient revoked this grant; ask her for a new one",
    "not_yet_valid": "wait until the grant's validity starts, or ask the patient to move it",
    "expired": "the grant's validity ended; ask the patient to extend it",
    "stream_not_granted": "ask only for the granted streams, or ask the patient to add them",
    "raw_under_summary": "ask for view 'summary', or ask the patient for a raw grant",
    "outside_window": "ask for data inside the granted window, or ask the patient to widen it",
    "not_whole_days": "ask for whole days: start at midnight UTC (00:00Z) and end at a later "
                      "midnight UTC, no later than the last one; a summary-only grant "
                      "releases summaries of whole, finished UTC days only",
}
#: The checks of one grant, in order; a grant failing check i "reached" step i.
_STEPS: Final = ("revoked", "not_yet_valid", "expired", "stream_not_granted",
                 "raw_under_summary", "outside_window", "not_whole_days")


def grant_key(grant_id: bytes) -> str:
    return "grant/" + grant_id.hex()


def grants_index_key(patient: bytes) -> str:
    return "grants/" + patient.hex()


# --- values ---------------------------------------------------------------------------------
def _int(value: Any, what: str, lo: int = 0, hi: int = (1 << 62)) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise MalformedError(f"{what} must be an integer from {lo} to {hi}")
    return value


def _streams(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > len(STREAMS):
        raise MalformedError(f"streams is a non-empty list of {', '.join(STREAMS)}")
    bad = [s for s in value if s not in STREAMS]
    if bad:
        raise MalformedError(f"unknown stream {bad[0]!r}; use {', '.join(STREAMS)}")
    if len(set(value)) != len(value):
        raise MalformedError("a stream is listed twice")
    return tuple(sorted(value))


def parse_window(value: Any) -> dict[str, int]:
    """``{"from", "to"}`` (absolute, from < to) or ``{"last_days": 1..3660}``."""
    if isinstance(value, dict) and set(value) == {"last_days"}:
        return {"last_days": _int(value["last_days"], "window.last_days", 1, MAX_WINDOW_DAYS)}
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        lo, hi = _int(value["from"], "window.from"), _int(value["to"], "window.to")
        if hi <= lo:
            raise MalformedError("window.to must follow window.from")
        return {"from": lo, "to": hi}
    raise MalformedError("a window is {from, to} (epoch ms) or {last_days: N}")


def window_at(window: Mapping[str, int], time_ms: int) -> tuple[int, int]:
    """The window as ``[from, to)`` at time ``time_ms``."""
    if "last_days" in window:
        return max(0, time_ms - window["last_days"] * DAY_MS), time_ms
    return window["from"], window["to"]


def granted_span(grant_window: Mapping[str, int], request_window: Mapping[str, int] | None,
                 time_ms: int) -> tuple[int, int]:
    """The span ``[from, to)`` a grant's window allows for a request's window at ``time_ms``:
    the grant's ``window_at``, or for a ``last_days`` grant asked for N whole days (see the
    module docstring) the asked window itself."""
    lo, hi = window_at(grant_window, time_ms)
    if "last_days" in grant_window and request_window is not None and "from" in request_window:
        days = grant_window["last_days"]
        r_from, r_to = request_window["from"], request_window["to"]
        if (r_to <= time_ms and r_to - r_from <= days * DAY_MS + HOUR_MS
                and r_from >= time_ms - (days + 1) * DAY_MS - HOUR_MS):
            return min(lo, r_from), hi
    return lo, hi


def parse_scope(body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a grant's scope fields (as a grant or amend body holds them).

    Raises MalformedError naming the field.
    """
    names = {"streams", "view", "window", "valid_from", "valid_until", "purpose", "alerts"}
    missing = names - set(body)
    if missing:
        raise MalformedError(f"a grant's scope lacks {', '.join(sorted(missing))}")
    if body["view"] not in VIEWS:
        raise MalformedError("view is 'raw' or 'summary'")
    if body["purpose"] not in PURPOSES:
        raise MalformedError(f"purpose is one of {', '.join(PURPOSES)}")
    if type(body["alerts"]) is not bool:
        raise MalformedError("alerts is true or false")
    vf, vu = _int(body["valid_from"], "valid_from"), _int(body["valid_until"], "valid_until")
    if vu <= vf:
        raise MalformedError("valid_until must follow valid_from")
    return {"streams": list(_streams(body["streams"])), "view": body["view"],
            "window": parse_window(body["window"]), "valid_from": vf, "valid_until": vu,
            "purpose": body["purpose"], "alerts": body["alerts"]}


@dataclass(frozen=True, slots=True)
class Grant:
    id: bytes
    patient: bytes
    grantee: bytes
    streams: tuple[str, ...]
    view: str
    window: Mapping[str, int]
    valid_from: int
    valid_until: int
    purpose: str
    alerts: bool
    status: str
    emergency: bool = False
    revoked_by: bytes | None = None

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Grant:
        return cls(r["id"], r["patient"], r["grantee"], tuple(r["streams"]), r["view"],
                   r["window"], r["valid_from"], r["valid_until"], r["purpose"], r["alerts"],
                   r["status"], r.get("emergency", False), r.get("revoked_by"))

    def active_at(self, time_ms: int) -> bool:
        return self.status == "active" and self.valid_from <= time_ms < self.valid_until


def load_grant(state: State, grant_id: bytes) -> Grant | None:
    record = state.get(grant_key(grant_id))
    return None if record is None else Grant.from_record(record)


def grants_of(state: State, patient: bytes, grantee: bytes | None = None) -> list[Grant]:
    """The patient's grants (to ``grantee`` only, if given), in the order they were made."""
    ids = state.get(grants_index_key(patient)) or []
    out = []
    for entry in ids:
        if grantee is None or entry[0] == grantee:
            g = load_grant(state, entry[1])
            if g is not None:
                out.append(g)
    return out


def summary_only(state: State, patient: bytes, requester: bytes, time_ms: int,
                 streams: tuple[str, ...] = ("cgm",)) -> bool:
    """Whether ``requester`` reads ``patient``'s ``streams`` under summary grants only at
    ``time_ms``: someone else than the patient, with an active grant covering them and none
    of them raw. Her reads then take whole UTC days (``summary_days``; ``_check_days``)."""
    if requester == patient:
        return False
    mine = [g for g in grants_of(state, patient, requester) if g.active_at(time_ms)
            and all(s in g.streams for s in streams)]
    return bool(mine) and all(g.view == "summary" for g in mine)


# --- requests and decisions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    """What a requester asks for: whose data, which streams, raw or summary, which window.

    ``window`` None means "everything the grant allows". ``wrap_to``: an X25519 public key
    the released data is sealed to (HPKE) instead of being handed over decrypted.
    """

    patient: bytes
    streams: tuple[str, ...]
    view: str
    window: Mapping[str, int] | None = None
    wrap_to: bytes | None = None

    def to_value(self) -> dict[str, Any]:
        v: dict[str, Any] = {"patient": self.patient, "streams": list(self.streams),
                             "view": self.view}
        if self.window is not None:
            v["window"] = dict(self.window)
        if self.wrap_to is not None:
            v["wrap_to"] = self.wrap_to
        return v

    @classmethod
    def from_value(cls, value: Any) -> Request:
        """Parse a request. Raises MalformedError."""
        if not isinstance(value, dict) or not {"patient", "streams", "view"} <= set(value) or \
                not set(value) <= {"patient", "streams", "view", "window", "wrap_to"}:
            raise MalformedError("a request is {patient, streams, view[, window][, wrap_to]}")
        patient = value["patient"]
        if not isinstance(patient, bytes) or len(patient) != 32:
            raise MalformedError("request.patient is a 32-byte account id")
        if value["view"] not in VIEWS:
            raise MalformedError("request.view is 'raw' or 'summary'")
        window = parse_window(value["window"]) if "window" in value else None
        wrap = value.get("wrap_to")
        if wrap is not None and (not isinstance(wrap, bytes) or len(wrap) != 32):
            raise MalformedError("request.wrap_to is a 32-byte X25519 public key")
        return cls(patient, _streams(value["streams"]), value["view"], window, wrap)


@dataclass(frozen=True, slots=True)
class Permit:
    """Access allowed, to exactly this effective scope."""

    grant: bytes  # the grant used (b"owner" when the patient reads her own data)
    streams: tuple[str, ...]
    view: str
    start_ms: int
    end_ms: int
    purpose: str
    emergency: bool = False
    ok: bool = field(default=True, init=False)

    def to_value(self) -> dict[str, Any]:
        return {"decision": "permit", "grant": self.grant, "streams": list(self.streams),
                "view": self.view, "from": self.start_ms, "to": self.end_ms,
                "purpose": self.purpose, "emergency": self.emergency}


@dataclass(frozen=True, slots=True)
class Deny:
    """Access refused: a reason code from DENY_REASONS and a message a person can act on."""

    reason: str
    message: str
    grant: bytes | None = None
    ok: bool = field(default=False, init=False)

    def to_value(self) -> dict[str, Any]:
        return {"decision": "deny", "reason": self.reason, "message": self.message,
                "grant": self.grant}


Decision = Permit | Deny


def _deny(reason: str, detail: str, grant: bytes | None = None) -> Deny:
    return Deny(reason, f"{detail}: {DENY_REASONS[reason]}", grant)


def _check(g: Grant, req: Request, t: int, whole_days: bool = True) -> Decision:
    """One grant against the request at block time ``t``; ``whole_days``: the summary
    window rule (``_check_days``), on chains of state rule set 2 (``accounts.rules``)."""
    gid = g.id.hex()[:16]
    if g.status != "active":
        return _deny("revoked", f"grant {gid} was revoked", g.id)
    if t < g.valid_from:
        return _deny("not_yet_valid", f"grant {gid} is valid only from {_iso(g.valid_from)}",
                     g.id)
    if t >= g.valid_until:
        return _deny("expired", f"grant {gid} expired at {_iso(g.valid_until)}", g.id)
    missing = [s for s in req.streams if s not in g.streams]
    if missing:
        return _deny("stream_not_granted", f"grant {gid} does not cover stream "
                     f"{', '.join(missing)} (it covers {', '.join(g.streams)})", g.id)
    if req.view == "raw" and g.view != "raw":
        return _deny("raw_under_summary", f"grant {gid} allows summaries only", g.id)
    if g.view == "summary" and whole_days:
        return _check_days(g, req, t)
    g_from, g_to = granted_span(g.window, req.window, t)
    r_from, r_to = (g_from, g_to) if req.window is None else window_at(req.window, t)
    lo, hi = max(g_from, r_from), min(g_to, r_to)
    if hi <= lo:
        return _deny("outside_window", f"the request [{_iso(r_from)}, {_iso(r_to)}) lies "
                     f"outside grant {gid}'s window [{_iso(g_from)}, {_iso(g_to)})", g.id)
    return Permit(g.id, req.streams, req.view, lo, hi, g.purpose, g.emergency)


def day_floor(ms: int) -> int:
    """The UTC midnight at or before ``ms``."""
    return ms - ms % DAY_MS


def day_ceil(ms: int) -> int:
    """The UTC midnight at or after ``ms``."""
    return -day_floor(-ms)


def summary_days(days: int, time_ms: int) -> dict[str, int]:
    """The ``days`` whole UTC days that ended at the last UTC midnight at or before
    ``time_ms``: the window "the last N days" means under a summary-only grant."""
    end = day_floor(time_ms)
    return {"from": max(0, end - days * DAY_MS), "to": end}


def _check_days(g: Grant, req: Request, t: int) -> Decision:
    """The window rule of a summary grant (its other checks passed): whole, finished days.

    A summary is a handful of sums over its window, so two summaries over windows that
    differ by a few minutes give the readings of those minutes by subtraction, and one over
    a second gives the reading itself. Under a summary grant every window is therefore a
    run of whole days of one fixed grid, which the reader cannot move: UTC days, because the
    state never reads a time zone (the patient's zone is a preference of her node's, not
    ledger state, and every node must decide alike). Any two such windows differ by whole
    days, whose summaries the grant releases anyway. The run ends no later than the last
    midnight before ``t``: a day still filling up would give each new reading by the
    difference of two reads minutes apart.

    - no window, or ``last_days`` k (k = the grant's N when none is asked): the k whole days
      before the last midnight (``summary_days``), intersected with the grant;
    - an absolute window: refused (``not_whole_days``) unless both ends are UTC midnights;
      then intersected with the grant.

    The grant's span in whole days: for ``last_days`` N the N whole days before the last
    midnight (inside what ``granted_span`` allows: N days long, ending before ``t``, starting
    less than N + 1 days ago); for an absolute window, its whole days.
    """
    gid = g.id.hex()[:16]
    if req.window is None or "last_days" in req.window:
        days = (req.window or g.window).get("last_days")
        if days is None:  # an absolute grant and no window: all of it
            r_from, r_to = g.window["from"], g.window["to"]
        else:
            w = summary_days(days, t)
            r_from, r_to = w["from"], w["to"]
    else:
        r_from, r_to = req.window["from"], req.window["to"]
        if r_from % DAY_MS or r_to % DAY_MS:
            return _deny("not_whole_days", f"grant {gid} allows summaries of whole days only, "
                         f"and the request [{_iso(r_from)}, {_iso(r_to)}) does not start and "
                         "end at midnight UTC", g.id)
    if "last_days" in g.window:
        span = summary_days(g.window["last_days"], t)
        g_from, g_to = span["from"], span["to"]
    else:
        g_from, g_to = g.window["from"], g.window["to"]
    lo, hi = max(g_from, r_from), min(g_to, r_to)
    if hi <= lo:
        return _deny("outside_window", f"the request [{_iso(r_from)}, {_iso(r_to)}) lies "
                     f"outside grant {gid}'s window [{_iso(g_from)}, {_iso(g_to)})", g.id)
    lo, hi = day_ceil(lo), min(day_floor(hi), day_floor(t))
    if hi <= lo:
        return _deny("not_whole_days", f"no whole finished day of the request "
                     f"[{_iso(r_from)}, {_iso(r_to)}) lies inside grant {gid}'s window "
                     f"[{_iso(g_from)}, {_iso(g_to)})", g.id)
    return Permit(g.id, req.streams, req.view, lo, hi, g.purpose, g.emergency)


def decide(state: State, requester: bytes, request: Request, time_ms: int) -> Decision:
    """Decide whether ``requester`` may read ``request`` at block time ``time_ms``.

    Never raises for a well-formed request: every refusal is a Deny with its reason.
    """
    if account_kind(state, request.patient) != "patient":
        return _deny("unknown_patient", f"{request.patient.hex()[:16]} is not a patient")
    if requester == request.patient:
        lo, hi = (0, time_ms + 1) if request.window is None else window_at(request.window,
                                                                            time_ms)
        return Permit(_OWNER, request.streams, request.view, lo, hi, "treatment")
    grants = grants_of(state, request.patient, requester)
    if not grants:
        return _deny("no_grant", f"patient {request.patient.hex()[:16]} has granted you "
                     "nothing")
    grants.sort(key=lambda g: g.emergency)  # ordinary grants first (stable: in grant order)
    # Chains founded before the summary day rule (state rule set 1) replay their reads as
    # they were decided: a summary over any window inside the grant.
    whole_days = rules(state) >= 2
    best: Deny | None = None
    for g in grants:
        d = _check(g, request, time_ms, whole_days)
        if isinstance(d, Permit):
            return d
        if best is None or _STEPS.index(d.reason) > _STEPS.index(best.reason):
            best = d
    assert best is not None
    return best


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


# --- FHIR ------------------------------------------------------------------------------------
_PURPOSE_CODES: Final = {"treatment": "TREAT", "research": "HRESCH", "emergency": "ETREAT"}
_EXT: Final = "https://glucoledger.example/fhir/StructureDefinition/"


def _fhir_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def to_fhir_consent(grant: Grant, *, recorded_ms: int | None = None) -> dict[str, Any]:
    """The grant as a FHIR R4 Consent resource (a plain dict; the API validates it).

    Mapping: status active/inactive (revoked); scope patient-privacy; category LOINC 59284-0
    (consent document); provision permit with period = validity, actor = the grantee as
    recipient (IRCP), purpose from v3-ActReason (TREAT, HRESCH, ETREAT), dataPeriod for an
    absolute window, one ``code`` per stream. View, a relative window and alerts travel as
    extensions.
    """
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": _fhir_time(grant.valid_from), "end": _fhir_time(grant.valid_until)},
        "actor": [{
            "role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]},
            "reference": {"reference": f"Practitioner/{grant.grantee.hex()}"},
        }],
        "action": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                     "code": _PURPOSE_CODES[grant.purpose]}],
        "code": [{"coding": [{"system": "https://glucoledger.example/fhir/CodeSystem/stream",
                              "code": s}]} for s in grant.streams],
    }
    if "from" in grant.window:
        provision["dataPeriod"] = {"start": _fhir_time(grant.window["from"]),
                                   "end": _fhir_time(grant.window["to"])}
    extensions: list[dict[str, Any]] = [
        {"url": _EXT + "view", "valueCode": grant.view},
        {"url": _EXT + "alerts", "valueBoolean": grant.alerts},
    ]
    if "last_days" in grant.window:
        extensions.append({"url": _EXT + "window-last-days",
                           "valueInteger": grant.window["last_days"]})
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": grant.id.hex()[:64],
        "extension": extensions,
        "status": "active" if grant.status == "active" else "inactive",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{grant.patient.hex()}"},
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    }
    if recorded_ms is not None:
        resource["dateTime"] = _fhir_time(recorded_ms)
    return resource

"""The patient's audit trail: every read of her data, granted or denied, every emergency
request and its outcome, every erasure, and every refused attempt (forged, replayed, by the
wrong person) that named her. The one implementation the portal, the REST ``/api/audit``
route, the CLI ``audit`` command and the demo show.

Accepted events come from the state (``audit/<patient>/<n>``, written by the contracts:
state/access.py, state/emergency.py); refused transactions changed no state, so they are
found in the chain store's log with their reason codes (``access`` and every ``emergency.*``
type whose body names her). Refusals at the node's door that named her (a wrong password
for her name, a clinician asking for her batches: they never reach the ledger) come from
the security log (``door_refusals``). Emergencies come first, as DESIGN.md asks, then the
newest.
Entries carry account ids, never names (names are local to a node's address book: the edges
resolve them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import MalformedError
from ..ledger.block import BlockHeader
from ..ledger.tx import SignedTx
from ..state.access import access_key, erasure_key, released_count
from ..state.consent import grant_key
from ..state.emergency import request_key
from ..state.store import State
from ..state.zkdays import zk_disclosure_key, zk_withdrawal_key
from ..vault.store import Vault
from .accounts import AddressBook
from .people import SecurityLog
from .research_view import research_entry
from .service import Node
from .zkrecipient import open_recipient

__all__ = ["AuditEntry", "audit_trail", "audit_with_refusals", "door_refusals"]

_OWNER = b"owner"  # the grant named in the patient's own reads (state/consent.py)
#: Refused transaction types shown to the patient (the others never name her data).
_REFUSED_TYPES = ("access", "emergency.open", "emergency.request", "emergency.approve",
                  "emergency.decline", "emergency.end")


def _batches(n: int) -> str:
    return "1 batch" if n == 1 else f"{n} batches"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    #: access, emergency_request, emergency (access opened), emergency_declined,
    #: emergency_ended, erase, refused, research (a study's consent, withdrawal, release or
    #: query: node/research_view), zk_disclosure (her signed disclosure of a zero-knowledge
    #: claim: state/zkdays.py), zk_withdrawal (her withdrawal of one)
    kind: str
    tx_hash: bytes
    height: int
    time_ms: int
    #: who acted: the reader, the clinician who asked (and was let in), the person who
    #: declined, the patient (erase), the sender of a refused transaction
    who: bytes
    emergency: bool
    #: permit, deny, requested, opened, declined, ended, erased, refused, disclosed,
    #: withdrawn
    outcome: str
    #: the deny reason (access) or the refusal code (refused); None otherwise
    reason: str | None
    view: str | None  # access: raw or summary
    streams: tuple[str, ...]
    grant: bytes | None  # the grant that permitted a read, or the emergency grant
    detail: str  # in words, for people
    #: who approved an emergency (the trusted party's account), or declined its request
    decided_by: bytes | None = None

    @property
    def decision(self) -> str | None:
        """``permit`` or ``deny`` for a read; None for other events."""
        return self.outcome if self.kind == "access" else None


def _access(state: State, tx: bytes) -> AuditEntry:
    r = state.get(access_key(tx))
    d, req = r["decision"], r["request"]
    streams = tuple(req.get("streams", ()))
    what = f"{req['view']} {','.join(streams)}"
    grant = None if r.get("grant") in (None, _OWNER) else r["grant"]
    if d["decision"] == "permit":
        return AuditEntry("access", tx, r["height"], r["time"], r["requester"], r["emergency"],
                          "permit", None, req["view"], streams, grant,
                          f"{what}; {_batches(released_count(r))}")
    return AuditEntry("access", tx, r["height"], r["time"], r["requester"], False, "deny",
                      d["reason"], req["view"], streams, grant, f"{what}; {d['message']}")


def _request_status(rec: dict[str, Any], now_ms: int) -> str:
    if rec["status"] == "pending":
        return (f"waiting for approval until {_iso(rec['expires'])}"
                if rec["expires"] > now_ms else "expired unapproved")
    return str(rec["status"])


def _emergency(state: State, kind: str, tx: bytes, now_ms: int) -> AuditEntry:
    rec = state.get(request_key(tx))  # None for an emergency.open (cosigned in one envelope)
    if kind == "emergency":
        g = state.get(grant_key(tx))
        return AuditEntry("emergency", tx, g["created"], g["valid_from"], g["grantee"], True,
                          "opened", None, g["view"], tuple(g["streams"]), tx,
                          f"every reading of the last {g['window']['last_days']} days, until "
                          f"{_iso(g['valid_until'])}: {g.get('reason', '')}",
                          rec["decided_by"] if rec else None)
    if kind == "emergency_ended":
        g = state.get(grant_key(tx))
        return AuditEntry(kind, tx, g["revoked_height"], g["ended_time"], g["ended_by"], True,
                          "ended", None, None, tuple(g["streams"]), tx,
                          f"emergency access ended early: {g.get('reason', '')}",
                          g["ended_by"])
    scope = f"{rec['hours']} h, last {rec['days']} days of data: {rec['reason']}"
    if kind == "emergency_request":
        return AuditEntry(kind, tx, rec["height"], rec["time"], rec["clinician"], True,
                          "requested", None, "raw", (), None,
                          f"{scope} ({_request_status(rec, now_ms)})")
    return AuditEntry(kind, tx, rec["decided_height"], rec["decided_time"], rec["decided_by"],
                      True, "declined", None, None, (), None, f"declined: {scope}",
                      rec["decided_by"])


def _erase(state: State, tx: bytes, patient: bytes) -> AuditEntry:
    r = state.get(erasure_key(tx))
    return AuditEntry("erase", tx, r["height"], r["time"], patient, False, "erased", None,
                      None, tuple(r["streams"]), None,
                      f"{','.join(r['streams'])}; {_batches(len(r['batches']))}")


def _disclosed(r: dict[str, Any], to: str | None) -> str:
    """``to``: the recipient as her node reads it (``zkrecipient``), None if it cannot."""
    days = "1 day" if r["days"] == 1 else f"{r['days']} days"
    named = (" (to whom is sealed for her node)" if to is None else
             f" to {to}" if to else "")
    return (f"a zero-knowledge proof of {r['claim']} over {days}, {_iso(r['start'])} to "
            f"{_iso(r['end'])}{named}")


def _disclosure(state: State, tx: bytes, patient: bytes, vault: Vault | None) -> AuditEntry:
    r = state.get(zk_disclosure_key(tx))
    to = None if vault is None else open_recipient(vault, patient, r)
    gone = r.get("withdrawn")
    later = "" if gone is None else f"; withdrawn at height {gone['height']}"
    return AuditEntry("zk_disclosure", tx, r["height"], r["time"], patient, False, "disclosed",
                      None, None, ("cgm",), None,
                      f"{_disclosed(r, to)} (no reading leaves the node{later})")


def _withdrawal(state: State, tx: bytes, patient: bytes, vault: Vault | None) -> AuditEntry:
    disclosure = state.get(zk_withdrawal_key(tx))["disclosure"]
    r = state.get(zk_disclosure_key(disclosure))
    to = None if vault is None else open_recipient(vault, patient, r)
    w = r["withdrawn"]
    return AuditEntry("zk_withdrawal", tx, w["height"], w["time"], patient, False, "withdrawn",
                      None, None, ("cgm",), None,
                      f"withdrew disclosure {disclosure.hex()[:16]}: {_disclosed(r, to)}; no "
                      "more proofs are made under it (files already handed over stay proofs "
                      "about those days)")


def _names(stx: SignedTx, state: State) -> bytes | None:
    """The patient a refused transaction's body names, if any."""
    body = stx.tx.body
    if stx.tx.type == "access":
        req = body.get("request")
        return req.get("patient") if isinstance(req, dict) else None
    named = body.get("patient")
    if named is None and isinstance(body.get("request"), bytes):
        rec = state.get(request_key(body["request"]))
        named = rec["patient"] if rec else None
    return named if isinstance(named, bytes) else None


def _refused(node: Node, patient: bytes) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    times: dict[int, int] = {}
    for t in node.store.refused_txs():
        if not any(name.encode() in t.envelope for name in _REFUSED_TYPES):
            continue
        try:
            stx = SignedTx.decode(t.envelope)
        except MalformedError:  # refused as malformed: it names no patient
            continue
        if stx.tx.type not in _REFUSED_TYPES or _names(stx, node.state) != patient:
            continue
        if t.height not in times:
            times[t.height] = BlockHeader.decode(node.store.block_row(t.height)[1]).time
        result = t.decoded_result()
        out.append(AuditEntry("refused", stx.tx_hash, t.height, times[t.height],
                              stx.tx.account, stx.tx.type.startswith("emergency"), "refused",
                              result.code, None, (), None, f"{stx.tx.type}: {result.message}"))
    return out


def audit_trail(node: Node, patient: bytes, limit: int | None = None, *,
                vault: Vault | None = None) -> list[AuditEntry]:
    """The patient's audit trail: emergencies first, then newest first (at most ``limit``).
    ``vault``: the node's vault, to read to whom she disclosed a claim (``zkrecipient``);
    without it the entry says the recipient is sealed for her node."""
    state = node.state
    now = node.now_ms()
    out: list[AuditEntry] = []
    count = state.get("auditn/" + patient.hex()) or 0
    for n in range(count - 1, -1, -1):  # newest first
        e = state.get(f"audit/{patient.hex()}/{n:012d}")
        if e is None:
            continue
        if e["kind"] == "access":
            out.append(_access(state, e["tx"]))
        elif e["kind"] == "erase":
            out.append(_erase(state, e["tx"], patient))
        elif e["kind"] == "zk_disclosure":
            out.append(_disclosure(state, e["tx"], patient, vault))
        elif e["kind"] == "zk_withdrawal":
            out.append(_withdrawal(state, e["tx"], patient, vault))
        elif e["kind"].startswith("emergency"):
            out.append(_emergency(state, e["kind"], e["tx"], now))
        elif e["kind"].startswith("research"):
            r = research_entry(state, e["kind"], e["tx"], patient)
            out.append(AuditEntry(r["kind"], e["tx"], r["height"], r["time"], r["who"], False,
                                  r["outcome"], None, r["view"], (), r["grant"], r["detail"]))
    out += _refused(node, patient)
    out.sort(key=lambda a: (not a.emergency, -a.height))  # stable: newest first within
    return out if limit is None else out[:limit]


def door_refusals(node: Node, log: SecurityLog, patient: bytes,
                  limit: int = 200) -> list[AuditEntry]:
    """Refusals at the node's door that named ``patient`` (from the security log): a wrong
    password for her name, a clinician asking for her batches, someone changing her grant.
    They never reached the ledger (nothing was ordered), so they are the node's word, shown
    as ``refused`` entries with no transaction."""
    book = {i.name: i.id for i in AddressBook(node).all()}
    out = []
    for e in log.recent(limit, patient=patient.hex()):
        where = f"someone at {e.remote or 'an unknown address'}"
        if e.status == 401:  # no credential held: the name is only what was claimed
            who, by = b"", f"{where}, as {e.who}" if e.who else where
        else:
            who, by = book.get(e.who or "", b""), e.who or where
        out.append(AuditEntry("refused", b"", -1, e.time_ms, who, False, "refused", e.code,
                              None, (), None, f"{e.route} by {by} ({e.status}): {e.reason}"))
    return out


def audit_with_refusals(node: Node, log: SecurityLog, patient: bytes,
                        limit: int | None = None, *, vault: Vault | None = None
                        ) -> list[AuditEntry]:
    """``audit_trail`` plus ``door_refusals``: emergencies first, then newest first."""
    out = audit_trail(node, patient, vault=vault) + door_refusals(node, log, patient)
    out.sort(key=lambda a: (not a.emergency, -a.time_ms))
    return out if limit is None else out[:limit]

"""Consent actions for custodial callers (the HTTP API and portal): sign and submit.

Each function builds one transaction of the consent contracts (state/grants.py,
state/access.py, state/alerts.py), signs it with the keys the caller unlocked for the
session, submits it and raises ``RejectedError`` (the machine's reason code) if refused.
Reads of the ledger (grants, the audit trail) come from the applied state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto import PrivateKey
from ..errors import RejectedError
from ..ledger.tx import add_signatures
from ..state.consent import Grant, grants_of
from .service import Node, Receipt

_OWNER = b"owner"  # the grant named in the patient's own reads (state/consent.py)

__all__ = ["AuditEvent", "amend", "audit_trail", "emergency", "erase", "grant", "grants",
           "revoke", "set_alert_rules"]


def _submit(node: Node, type_: str, body: dict[str, Any], account: bytes,
            keys: Sequence[PrivateKey]) -> Receipt:
    return node.send(type_, body, account, keys)[1]


def grant(node: Node, patient: bytes, keys: Sequence[PrivateKey], grantee: bytes, *,
          streams: Sequence[str], view: str, window: dict[str, int], valid_from: int,
          valid_until: int, purpose: str = "treatment", alerts: bool = False) -> bytes:
    """Grant access; return the grant id (the transaction hash)."""
    r = _submit(node, "consent.grant", {
        "grantee": grantee, "streams": list(streams), "view": view, "window": window,
        "valid_from": valid_from, "valid_until": valid_until, "purpose": purpose,
        "alerts": alerts}, patient, keys)
    assert r.tx_hash is not None
    return r.tx_hash


def amend(node: Node, patient: bytes, keys: Sequence[PrivateKey], grant_id: bytes,
          **changes: Any) -> None:
    _submit(node, "consent.amend", {"grant": grant_id, **changes}, patient, keys)


def revoke(node: Node, patient: bytes, keys: Sequence[PrivateKey], grant_id: bytes) -> None:
    _submit(node, "consent.revoke", {"grant": grant_id}, patient, keys)


def grants(node: Node, patient: bytes, grantee: bytes | None = None) -> list[Grant]:
    return grants_of(node.state, patient, grantee)


def grants_to(node: Node, grantee: bytes) -> list[Grant]:
    """Every grant held by ``grantee``, over all patients (a scan; fine for one node)."""
    out = []
    for key in list(node.state.keys("grant/")):
        rec = node.state.get(key)
        if rec is not None and rec["grantee"] == grantee:
            out.append(Grant.from_record(rec))
    return out


def set_alert_rules(node: Node, patient: bytes, keys: Sequence[PrivateKey],
                    rules: list[dict[str, Any]] | None) -> None:
    _submit(node, "alert.rules", {"rules": rules}, patient, keys)


def erase(node: Node, patient: bytes, keys: Sequence[PrivateKey], streams: Sequence[str],
          start: int | None = None, end: int | None = None) -> bytes:
    r = _submit(node, "erase", {"streams": sorted(streams), "from": start, "to": end},
                patient, keys)
    assert r.tx_hash is not None
    return r.tx_hash


def emergency(node: Node, clinician: bytes, clinician_keys: Sequence[PrivateKey],
              cosigner_keys: Sequence[PrivateKey], patient: bytes, *, hours: int, days: int,
              reason: str) -> bytes:
    """Break-glass: the clinician signs, the patient's trusted party cosigns."""
    stx = node.build("emergency.open", {"patient": patient, "hours": hours, "days": days,
                                        "reason": reason}, clinician, clinician_keys)
    stx = add_signatures(stx, cosigner_keys)
    receipt = node.submit([stx.raw])[0]
    if not receipt.ok:
        raise RejectedError(receipt.result.message, code=receipt.result.code)
    return stx.tx_hash


@dataclass(frozen=True)
class AuditEvent:
    index: int
    kind: str  # access | emergency | erase
    tx: bytes
    emergency: bool
    requester: bytes | None
    decision: str | None
    reason: str | None
    view: str | None
    streams: tuple[str, ...]
    grant: bytes | None
    time_ms: int | None


def audit_trail(node: Node, patient: bytes, limit: int = 200) -> list[AuditEvent]:
    """The patient's audit trail, newest first, emergencies first."""
    n = node.state.get("auditn/" + patient.hex()) or 0
    out = []
    for i in range(n - 1, max(-1, n - 1 - limit), -1):
        e = node.state.get(f"audit/{patient.hex()}/{i:012d}")
        if e is None:
            continue
        rec = node.state.get("access/" + e["tx"].hex()) if e["kind"] == "access" else None
        if rec is not None:
            d = rec["decision"]
            out.append(AuditEvent(i, e["kind"], e["tx"], e["emergency"], rec["requester"],
                                  d.get("decision"), d.get("reason"),
                                  rec["request"].get("view"),
                                  tuple(rec["request"].get("streams", ())),
                                  None if rec.get("grant") == _OWNER else rec.get("grant"),
                                  rec.get("time")))
        else:
            grant_rec = node.state.get("grant/" + e["tx"].hex())
            out.append(AuditEvent(i, e["kind"], e["tx"], e["emergency"],
                                  grant_rec["grantee"] if grant_rec else None, None, None,
                                  None, (), e["tx"] if grant_rec else None,
                                  grant_rec["valid_from"] if grant_rec else None))
    out.sort(key=lambda ev: (not ev.emergency, -ev.index))
    return out

"""Consent actions for custodial callers (the HTTP API and portal): sign and submit.

Each function builds one transaction of the consent contracts (state/grants.py), signs it
with the keys the caller unlocked for the session and submits it through ``Node.send`` (one
account's transactions one at a time, so concurrent requests never collide on a nonce); a
refusal raises ``RejectedError`` with the machine's reason code. Reads of grants come from
the applied state. The audit trail is node/audit.py, alert rules node/alerts.py, erasure
node/erasure.py, emergencies node/emergency.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..crypto import PrivateKey
from ..errors import InputError
from ..state.consent import Grant, grants_of
from .service import Node

__all__ = ["amend", "find_grant", "grant", "grants", "grants_to", "revoke"]


def grant(node: Node, patient: bytes, keys: Sequence[PrivateKey], grantee: bytes, *,
          streams: Sequence[str], view: str, window: dict[str, int], valid_from: int,
          valid_until: int, purpose: str = "treatment", alerts: bool = False) -> bytes:
    """Grant access; return the grant id (the transaction hash). Raises RejectedError."""
    stx, _ = node.send("consent.grant", {
        "grantee": grantee, "streams": list(streams), "view": view, "window": window,
        "valid_from": valid_from, "valid_until": valid_until, "purpose": purpose,
        "alerts": alerts}, patient, keys)
    return stx.tx_hash


def amend(node: Node, patient: bytes, keys: Sequence[PrivateKey], grant_id: bytes,
          **changes: Any) -> None:
    """Narrow or extend a grant. Raises RejectedError."""
    node.send("consent.amend", {"grant": grant_id, **changes}, patient, keys)


def revoke(node: Node, patient: bytes, keys: Sequence[PrivateKey], grant_id: bytes) -> None:
    """Revoke a grant from the next block on. Raises RejectedError."""
    node.send("consent.revoke", {"grant": grant_id}, patient, keys)


def grants(node: Node, patient: bytes, grantee: bytes | None = None) -> list[Grant]:
    return grants_of(node.state, patient, grantee)


def find_grant(node: Node, patient: bytes, prefix: str) -> Grant:
    """The patient's grant whose id starts with ``prefix`` (hex, at least 4 digits), as git
    resolves abbreviated commits. Raises InputError (not hex, too short, or ambiguous: the
    message lists the candidates; code ``unknown_grant`` when none matches)."""
    text = prefix.strip().lower()
    if len(text) < 4 or any(c not in "0123456789abcdef" for c in text):
        raise InputError(f"{prefix!r} is not a grant id: give at least 4 of its hex digits, "
                         "as `glucoledger grants` shows them")
    found = [g for g in grants_of(node.state, patient) if g.id.hex().startswith(text)]
    if not found:  # the caller typed an id that is not hers: bad input, not a lookup miss
        raise InputError(f"no grant of this patient starts with {text}; list them with "
                         "`glucoledger grants --patient NAME`", code="unknown_grant")
    if len(found) > 1:
        ids = ", ".join(g.id.hex()[:len(text) + 4] for g in found)
        raise InputError(f"{text} starts {len(found)} grants ({ids}); give more digits")
    return found[0]


def grants_to(node: Node, grantee: bytes) -> list[Grant]:
    """Every grant held by ``grantee``, over all patients (a scan; fine for one node)."""
    out = []
    for key in list(node.state.keys("grant/")):
        rec = node.state.get(key)
        if rec is not None and rec["grantee"] == grantee:
            out.append(Grant.from_record(rec))
    return out

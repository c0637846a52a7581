"""The patient's audit trail: every read of her data, granted or denied, every emergency,
every erasure, and every refused attempt (forged, replayed) that named her.

Accepted events come from the state (``audit/<patient>/<n>``, written by the contracts);
refused ``access`` and ``emergency.open`` transactions changed no state, so they are found
in the chain store's log with their reason codes. Emergencies come first, as DESIGN.md asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..ledger.block import BlockHeader
from ..ledger.tx import SignedTx
from ..state.access import access_key, erasure_key
from ..state.consent import grant_key
from .service import Node

__all__ = ["AuditEntry", "audit_trail"]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    kind: str  # access, emergency, erase, refused
    tx_hash: bytes
    height: int
    time_ms: int
    who: bytes
    emergency: bool
    outcome: str  # permit, deny:<reason>, opened, erased, refused:<code>
    detail: str


def audit_trail(node: Node, patient: bytes) -> list[AuditEntry]:
    state = node.state
    out: list[AuditEntry] = []
    for key in state.keys(f"audit/{patient.hex()}/"):
        e = state.get(key)
        tx = e["tx"]
        if e["kind"] == "access":
            r = state.get(access_key(tx))
            d = r["decision"]
            req = r["request"]
            what = f"{req['view']} {','.join(req['streams'])}"
            if d["decision"] == "permit":
                outcome = "permit"
                detail = f"{what}; {len(r['batches'])} batches"
            else:
                outcome, detail = f"deny:{d['reason']}", what
            out.append(AuditEntry("access", tx, r["height"], r["time"], r["requester"],
                                  r["emergency"], outcome, detail))
        elif e["kind"] == "emergency":
            g = state.get(grant_key(tx))
            out.append(AuditEntry("emergency", tx, g["created"], g["valid_from"], g["grantee"],
                                  True, "opened", f"until {_iso(g['valid_until'])}: {g['reason']}"))
        elif e["kind"] == "erase":
            r = state.get(erasure_key(tx))
            out.append(AuditEntry("erase", tx, r["height"], r["time"], patient, False, "erased",
                                  f"{','.join(r['streams'])}; {len(r['batches'])} batches"))
    for height in range(node.store.height()):
        for t in node.store.txs_of_block(height):
            if t.decoded_result().ok or (b"access" not in t.envelope
                                         and b"emergency" not in t.envelope):
                continue
            try:
                stx = SignedTx.decode(t.envelope)
            except Exception:  # noqa: BLE001 - a malformed envelope names no patient
                continue
            body = stx.tx.body
            named = (body.get("request", {}) or {}).get("patient") if stx.tx.type == "access" \
                else body.get("patient")
            if stx.tx.type not in ("access", "emergency.open") or named != patient:
                continue
            code = t.decoded_result().code
            header = BlockHeader.decode(node.store.block_row(height)[1])
            out.append(AuditEntry("refused", stx.tx_hash, height, header.time, stx.tx.account,
                                  stx.tx.type == "emergency.open", f"refused:{code}",
                                  stx.tx.type))
    out.sort(key=lambda a: (not a.emergency, -a.height))
    return out


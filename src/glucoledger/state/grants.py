"""Contracts for consent: grants, amendments, revocations and care entries.

- ``consent.grant`` (action class ``grant``, sent on the patient's account): a grant to a
  grantee with a scope (state/consent.py). Its id is the transaction hash (the proposal id
  when a provider proposed it and the patient cosigned, or her standing rule approved it).
- ``consent.amend`` (``grant``): narrow or extend a grant's scope; the fields not named keep
  their value. The grantee never changes (grant anew for another person).
- ``consent.revoke`` (``grant``): revoke a grant; from the block that holds the revocation
  on, ``decide`` denies with ``revoked``.
- ``care.entry`` (``default``): a note or a dose change about the patient, usually proposed by
  a provider (``multisig.propose``) and taking effect when the patient cosigns or by her
  standing rule. The ledger keeps only the entry's kind and a hash of its content.

Emergency grants (``emergency.request`` / ``approve`` / ``decline`` / ``open``) are in
state/emergency.py; they use ``add_grant`` and ``audit_append`` from here.

Refusals: ``not_patient``, ``unknown_grantee``, ``bad_grantee``, ``unknown_grant``,
``not_your_grant``, ``already_revoked``, ``too_many_grants``, ``bad_nonce``, ``malformed``.
Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..ledger.tx import SignedTx
from .accounts_model import account_kind, load_account
from .consent import grant_key, grants_index_key, parse_scope
from .machine import Body, Context, body_field, register, require
from .store import State

__all__ = ["EMERGENCY_MAX_DAYS", "EMERGENCY_MAX_HOURS", "ENTRY_KINDS", "GRANTEE_KINDS", "HOUR_MS",
           "MAX_GRANTS", "add_grant", "audit_append"]

MAX_GRANTS: Final = 256
EMERGENCY_MAX_HOURS: Final = 24
EMERGENCY_MAX_DAYS: Final = 90
GRANTEE_KINDS: Final = ("clinician", "trusted", "patient", "organization")
ENTRY_KINDS: Final = ("note", "dose_change")
HOUR_MS: Final = 3_600_000


def audit_append(state: State, patient: bytes, kind: str, tx_hash: bytes,
                 emergency: bool = False) -> None:
    """Add an event to the patient's audit trail (``audit/<patient>/<n>``)."""
    count_key = "auditn/" + patient.hex()
    n = state.get(count_key) or 0
    state.put(f"audit/{patient.hex()}/{n:012d}", {"kind": kind, "tx": tx_hash,
                                                   "emergency": emergency})
    state.put(count_key, n + 1)


def _patient(state: State, stx: SignedTx) -> None:
    acct = load_account(state, stx.tx.account)
    require(acct.kind == "patient", "not_patient",
            f"only a patient grants access to her data; account {acct.id.hex()[:16]} is a "
            f"{acct.kind}")


def _own_grant(state: State, stx: SignedTx, gid: bytes) -> dict[str, Any]:
    record = state.get(grant_key(gid))
    require(record is not None, "unknown_grant", f"no grant {gid.hex()[:16]}; check its id")
    require(record["patient"] == stx.tx.account, "not_your_grant",
            f"grant {gid.hex()[:16]} belongs to another patient")
    return dict(record)


def add_grant(state: State, record: dict[str, Any]) -> None:
    index_key = grants_index_key(record["patient"])
    index = state.get(index_key) or []
    require(len(index) < MAX_GRANTS, "too_many_grants",
            f"a patient holds at most {MAX_GRANTS} grants; revoke old ones first")
    state.put(grant_key(record["id"]), record)
    state.put(index_key, [*index, [record["grantee"], record["id"]]])


_SCOPE: Final = ("streams", "view", "window", "valid_from", "valid_until", "purpose", "alerts")


@dataclass(frozen=True, slots=True)
class ConsentGrant(Body):
    """The body of ``consent.grant``: the grantee and the scope (``parse_scope``'s checked
    and normalized form: streams, view, window, valid_from, valid_until, purpose, alerts)."""

    grantee: bytes
    scope: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ConsentGrant:
        require(set(body) == {"grantee", *_SCOPE}, "malformed",
                "consent.grant takes grantee, streams, view, window, valid_from, valid_until, "
                "purpose, alerts")
        grantee = body_field(body, "grantee", bytes)
        return cls(grantee, parse_scope(body))

    def to_body(self) -> dict[str, Any]:
        return {"grantee": self.grantee, **self.scope}


@dataclass(frozen=True, slots=True)
class ConsentAmend(Body):
    """The body of ``consent.amend``: the grant and the scope fields to change (checked by
    the handler after the grant's own checks, as results always were)."""

    grant: bytes
    changes: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ConsentAmend:
        gid = body_field(body, "grant", bytes)
        return cls(gid, {k: v for k, v in body.items() if k != "grant"})

    def to_body(self) -> dict[str, Any]:
        return {"grant": self.grant, **self.changes}


@dataclass(frozen=True, slots=True)
class ConsentRevoke(Body):
    """The body of ``consent.revoke``: ``{grant}``."""

    grant: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ConsentRevoke:
        require(set(body) == {"grant"}, "malformed", "consent.revoke takes grant")
        return cls(body_field(body, "grant", bytes))


@dataclass(frozen=True, slots=True)
class CareEntry(Body):
    """The body of ``care.entry``: kind, digest (SHA-256 of the content), effective."""

    kind: str
    digest: bytes
    effective: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CareEntry:
        require(set(body) == {"kind", "digest", "effective"}, "malformed",
                "care.entry takes kind, digest (SHA-256 of the content), effective (epoch ms)")
        kind = body_field(body, "kind", str)
        require(kind in ENTRY_KINDS, "malformed", f"kind is one of {', '.join(ENTRY_KINDS)}")
        digest = body_field(body, "digest", bytes)
        require(len(digest) == 32, "malformed", "digest is 32 bytes")
        return cls(kind, digest, body_field(body, "effective", int))


@register("consent.grant", action="grant", body=ConsentGrant)
def _grant(state: State, stx: SignedTx, ctx: Context) -> None:
    """Grant a grantee access to streams, raw or summary, for a window and a validity."""
    _patient(state, stx)
    b = ConsentGrant.parse(stx.tx.body)
    grantee, scope = b.grantee, b.scope
    kind = account_kind(state, grantee)
    require(kind is not None, "unknown_grantee",
            f"no account {grantee.hex()[:16]}: the grantee registers first")
    require(grantee != stx.tx.account, "bad_grantee", "a patient needs no grant for herself")
    require(kind in GRANTEE_KINDS, "bad_grantee",
            f"a {kind} account cannot hold a grant; grant to a person or organization")
    add_grant(state, {"id": stx.tx_hash, "patient": stx.tx.account, "grantee": grantee,
                       **scope, "status": "active", "emergency": False, "created": ctx.height,
                       "changed": ctx.height, "revoked_by": None, "revoked_height": None})


@register("consent.amend", action="grant", body=ConsentAmend)
def _amend(state: State, stx: SignedTx, ctx: Context) -> None:
    """Narrow or extend a grant: new values for some of its scope fields."""
    _patient(state, stx)
    b = ConsentAmend.parse(stx.tx.body)
    record = _own_grant(state, stx, b.grant)
    require(record["status"] == "active", "already_revoked",
            "a revoked grant cannot be amended; grant anew")
    require(not record.get("emergency"), "bad_grant",
            "an emergency grant is changed by a new emergency request, not amended")
    changes = b.changes
    allowed = {"streams", "view", "window", "valid_from", "valid_until", "purpose", "alerts"}
    require(bool(changes) and set(changes) <= allowed, "malformed",
            f"consent.amend takes grant and some of {', '.join(sorted(allowed))}")
    scope = parse_scope({**{k: record[k] for k in allowed}, **changes})
    state.put(grant_key(record["id"]), {**record, **scope, "changed": ctx.height})


@register("consent.revoke", action="grant", body=ConsentRevoke)
def _revoke(state: State, stx: SignedTx, ctx: Context) -> None:
    """Revoke a grant, effective from this block."""
    _patient(state, stx)
    record = _own_grant(state, stx, ConsentRevoke.parse(stx.tx.body).grant)
    require(record["status"] == "active", "already_revoked",
            f"grant {record['id'].hex()[:16]} is already revoked")
    state.put(grant_key(record["id"]), {**record, "status": "revoked",
                                        "revoked_by": stx.tx_hash,
                                        "revoked_height": ctx.height, "changed": ctx.height})


@register("care.entry", body=CareEntry)
def _entry(state: State, stx: SignedTx, ctx: Context) -> None:
    """Record a note or a dose change (its content stays off the ledger; its hash is here)."""
    _patient(state, stx)
    b = CareEntry.parse(stx.tx.body)
    state.put("entry/" + stx.tx_hash.hex(), {"patient": stx.tx.account, "kind": b.kind,
                                             "digest": b.digest, "effective": b.effective,
                                             "height": ctx.height})

"""Proposals and cosigning: a provider proposes, the patient cosigns.

- ``multisig.propose`` (sent by the proposer's own account): an action on a target account
  (an inner transaction type and body) with an expiry. If the target set a standing rule for
  this proposer and type, it takes effect at once; otherwise it waits for cosignatures.
- ``multisig.cosign`` (sent on the target account, signed by some of its cosigners, with its
  nonce): adds those keys' approvals. When the approvals reach the target's threshold for the
  inner type's action class, the inner action runs as the target and the proposal is closed.
  If the inner action is refused, the whole cosign is refused and the proposal stays open.
- ``multisig.rule``: the target's standing rule that auto-approves a proposer's proposals of
  the listed types (never account or multisig changes).

Cosignatures can also be collected off-chain and submitted at once in one envelope: the
machine adds the weights of every signature on a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ledger.tx import SignedTx, Transaction
from .accounts_model import account_key, load_account
from .machine import MISSING, REGISTRY, Body, Context, body_field, register, require, wire_names
from .store import State

__all__ = ["proposal_key"]

MAX_RULES = 32
_NEVER_BY_RULE = ("account.", "multisig.", "chain.")


def proposal_key(proposal: bytes) -> str:
    return "prop/" + proposal.hex()


def _run_inner(state: State, stx: SignedTx, ctx: Context, prop: dict[str, Any], pid: bytes) -> None:
    inner_tx = Transaction(stx.tx.chain, prop["type"], prop["body"], prop["target"], 0)
    inner = SignedTx(inner_tx, stx.sigs, b"", pid)
    REGISTRY[prop["type"]].handler(state, inner, ctx)
    state.delete(proposal_key(pid))
    state.put("propdone/" + pid.hex(), {"height": ctx.height, "target": prop["target"]})


@dataclass(frozen=True, slots=True)
class MultisigPropose(Body):
    """The body of ``multisig.propose``: target account, inner type and body, expiry (other
    fields are ignored, as they always were)."""

    target: bytes
    itype: str
    ibody: dict[str, Any]
    expires: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> MultisigPropose:
        return cls(body_field(body, "target", bytes), body_field(body, "type", str),
                   body_field(body, "body", dict), body_field(body, "expires", int))


wire_names(MultisigPropose, itype="type", ibody="body")


@dataclass(frozen=True, slots=True)
class MultisigCosign(Body):
    """The body of ``multisig.cosign``: ``{proposal}`` (the proposal's tx hash)."""

    proposal: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> MultisigCosign:
        return cls(body_field(body, "proposal", bytes))


@dataclass(frozen=True, slots=True)
class MultisigRule(Body):
    """The body of ``multisig.rule``: proposer, types, and ``remove`` (any truthy value
    removes; absent: set)."""

    proposer: bytes
    types: list[Any]
    remove: Any = MISSING

    @classmethod
    def parse(cls, body: dict[str, Any]) -> MultisigRule:
        return cls(body_field(body, "proposer", bytes), body_field(body, "types", list),
                   body.get("remove", MISSING))


@register("multisig.propose", body=MultisigPropose)
def _propose(state: State, stx: SignedTx, ctx: Context) -> None:
    """Propose an action on another account; it runs once the target's cosigners approve."""
    b = MultisigPropose.parse(stx.tx.body)
    target, itype, ibody, expires = b.target, b.itype, b.ibody, b.expires
    tgt = load_account(state, target)
    spec = REGISTRY.get(itype)
    require(spec is not None and spec.auth == "account" and not itype.startswith("multisig."),
            "bad_proposal", f"{itype!r} cannot be proposed")
    require(expires > ctx.time_ms, "expired", "the proposal's expiry is already past")
    pid = stx.tx_hash
    prop = {"target": target, "type": itype, "body": ibody, "proposer": stx.tx.account,
            "expires": expires, "approvals": [], "height": ctx.height}
    rules = tgt.record.get("rules", [])
    if any(r["proposer"] == stx.tx.account and itype in r["types"] for r in rules):
        _run_inner(state, stx, ctx, prop, pid)
        return
    state.put(proposal_key(pid), prop)


@register("multisig.cosign", auth="self", body=MultisigCosign)
def _cosign(state: State, stx: SignedTx, ctx: Context) -> None:
    """Approve a pending proposal with some of the target account's keys."""
    tgt = load_account(state, stx.tx.account)
    require(stx.tx.nonce == tgt.nonce, "bad_nonce",
            f"nonce {stx.tx.nonce} is not the account's next ({tgt.nonce}); re-sign")
    pid = MultisigCosign.parse(stx.tx.body).proposal
    prop = state.get(proposal_key(pid))
    require(prop is not None, "unknown_proposal",
            f"no open proposal {pid.hex()[:16]} (it ran, expired or never existed)")
    require(prop["target"] == tgt.id, "wrong_account", "the proposal is for another account")
    require(prop["expires"] > ctx.time_ms, "expired", "the proposal expired; propose again")
    for kid in sorted(stx.signer_ids):
        require(kid in tgt.keys, "not_cosigner",
                f"key {kid.hex()[:16]} is not a cosigner of the target account")
    approvals = sorted({*prop["approvals"], *stx.signer_ids})
    action = REGISTRY[prop["type"]].action
    weights = tgt.weights(action)
    total = sum(weights.get(k, 0) for k in approvals)
    record = dict(state.get(account_key(tgt.id)))
    record["nonce"] = tgt.nonce + 1
    state.put(account_key(tgt.id), record)
    if total >= tgt.threshold(action):
        _run_inner(state, stx, ctx, prop, pid)
    else:
        state.put(proposal_key(pid), {**prop, "approvals": approvals})


@register("multisig.rule", action="grant", body=MultisigRule)
def _rule(state: State, stx: SignedTx, ctx: Context) -> None:
    """Set or remove a standing rule: auto-approve a proposer's proposals of listed types."""
    b = MultisigRule.parse(stx.tx.body)
    proposer, types = b.proposer, b.types
    remove = False if b.remove is MISSING else b.remove
    require(all(isinstance(t, str) and t in REGISTRY for t in types), "bad_rule",
            "a rule lists known transaction types")
    require(not any(t.startswith(_NEVER_BY_RULE) for t in types), "bad_rule",
            "account, multisig and chain changes always need cosignatures, never a rule")
    load_account(state, proposer)
    record = dict(state.get(account_key(stx.tx.account)))
    rules = [r for r in record.get("rules", []) if r["proposer"] != proposer]
    if not remove:
        rules.append({"proposer": proposer, "types": sorted(set(types))})
    require(len(rules) <= MAX_RULES, "too_many_rules", f"at most {MAX_RULES} standing rules")
    record["rules"] = rules
    state.put(account_key(stx.tx.account), record)

"""Governance proposals: build, cosign and describe ``gov.*`` envelopes off-chain.

A proposal is an ordinary transaction envelope (deterministic CBOR, ``ledger.tx``) of type
``gov.member_add``, ``gov.member_remove``, ``gov.rotate_key``, ``gov.rotate_tls``,
``gov.threshold`` or ``gov.upgrade`` (``state.governance``), sent from the proposing
organization's account with the consortium's next governance nonce. Each member
organization that agrees adds its signature (``cosign``); once the signatures reach the
threshold of member organizations any member submits it (``consortium submit``). The state
machine decides: it checks the nonce, the signatures and the threshold again, so a proposal
file carries no authority by itself.

``cosign`` refuses an envelope whose existing signatures do not verify (a tampered file)
and never signs twice; it shows what is being signed (``describe``) so that an operator
signs what they read.

``upgrade_body`` says which versions a ``gov.upgrade`` moves a chain to; ``upgrade`` does it
at once on a chain of one organization (``glucoledger upgrade``), whose key alone meets the
threshold.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..crypto import PrivateKey
from ..errors import GlucoledgerError, InputError, RejectedError
from ..ledger.tx import Signature, SignedTx, Transaction, sign
from ..state.accounts import GENESIS_KEY
from ..state.accounts_model import account_id, single_key_policy, validate_policy
from ..state.governance import UPGRADE_KNOWN
from .service import Node, Receipt

__all__ = ["KINDS", "cosign", "describe", "propose", "upgrade", "upgrade_body",
           "versions"]

#: CLI name -> transaction type.
KINDS = {"member-add": "gov.member_add", "member-remove": "gov.member_remove",
         "rotate-key": "gov.rotate_key", "threshold": "gov.threshold",
         "rotate-cert": "gov.rotate_tls", "upgrade": "gov.upgrade"}

#: How the versions of ``gov.upgrade`` are called, for people (options and messages).
_VERSION_WORDS = {"rules": ("--rules", "state rule set"),
                  "access_records": ("--access-records", "access record format")}


def propose(node: Node, kind: str, body: dict[str, Any], org_key: PrivateKey) -> SignedTx:
    """A new proposal signed by ``org_key`` (this member's organization key), with the
    consortium's next governance nonce as ``node`` knows it. Raises InputError."""
    if kind not in KINDS:
        raise InputError(f"unknown proposal {kind!r}: one of {', '.join(KINDS)}")
    info = node.state.get("chain/genesis")
    if info is None:
        raise InputError("this node has no chain yet: start it and let it catch up first")
    sender = account_id("organization", single_key_policy(org_key.public))
    if sender not in info["orgs"]:
        raise InputError("this folder's organization key is not a member's")
    tx = Transaction(node.chain, KINDS[kind], body, sender, int(info.get("gov_nonce", 0)))
    return sign(tx, [org_key])


def upgrade_body(node: Node, *, rules: int | None = None,
                 access_records: int | None = None) -> dict[str, int]:
    """The body of a ``gov.upgrade`` for ``node``'s chain: the versions asked, or (none
    asked) the newest of each this glucoledger knows that the chain is not on yet: empty
    when it is on the newest of both. Raises InputError for an unknown version or one the
    chain is on or past."""
    info = node.state.get(GENESIS_KEY)
    if info is None:
        raise InputError("this node has no chain yet: start it and let it catch up first")
    asked = {"rules": rules, "access_records": access_records}
    body: dict[str, int] = {}
    for field, known in UPGRADE_KNOWN.items():
        option, words = _VERSION_WORDS[field]
        now, want = int(info.get(field, 1)), asked[field]
        if want is None:
            if any(v is not None for v in asked.values()) or known[-1] <= now:
                continue  # only what was asked; or the chain is on the newest already
            want = known[-1]
        elif want not in known:
            raise InputError(f"{option} is one of {', '.join(map(str, known))} (the "
                             f"{words}s this glucoledger knows), not {want}")
        elif want <= now:
            raise InputError(f"this chain is on {words} {now} already: versions only go up")
        body[field] = want
    return body


def versions(node: Node) -> str:
    """The chain's versions, in words ("state rule set 2, access record format 2")."""
    info = node.state.get(GENESIS_KEY) or {}
    return ", ".join(f"{words} {int(info.get(field, 1))}"
                     for field, (_, words) in _VERSION_WORDS.items())


def upgrade(node: Node, org_key: PrivateKey, body: dict[str, int]) -> tuple[SignedTx, Receipt]:
    """Sign ``gov.upgrade`` with ``org_key`` alone and submit it: for a chain whose one
    organization meets the governance threshold by itself (``Node.init``'s). Raises
    RejectedError with the ledger's reason when it is refused (a consortium needs its
    members' cosignatures: ``propose`` instead)."""
    stx = propose(node, "upgrade", body, org_key)
    receipt = node.submit([stx.raw])[0]
    if not receipt.ok:
        raise RejectedError(receipt.result.message, code=receipt.result.code)
    return stx, receipt


def cosign(envelope: bytes, org_key: PrivateKey) -> SignedTx:
    """Add ``org_key``'s signature to a proposal. Raises MalformedError, SignatureError
    (an existing signature does not verify) or InputError (not a proposal; signed already)."""
    stx = SignedTx.decode(envelope)
    if stx.tx.type not in KINDS.values():
        raise InputError(f"this is a {stx.tx.type} transaction, not a governance proposal")
    stx.check_signatures()
    if any(s.key == org_key.public for s in stx.sigs):
        raise InputError("this organization key signed this proposal already")
    sig = Signature(org_key.public, org_key.sign("tx", stx.tx.hash()))
    return SignedTx.create(stx.tx, [*stx.sigs, sig])


def describe(stx: SignedTx) -> str:
    """One line a person can check before signing."""
    body = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in stx.tx.body.items()}
    if "node" in body and isinstance(body["node"], dict):
        raw = stx.tx.body["node"].get("pub", b"")
        body["node"] = f"ed25519 {raw.hex() if isinstance(raw, bytes) else raw}"
    if isinstance(stx.tx.body.get("tls_ca"), bytes):
        body["tls_ca"] = "CA sha256:" + hashlib.sha256(stx.tx.body["tls_ca"]).hexdigest()
    if "policy" in body:
        body["policy"] = _policy_words(stx.tx.body["policy"])
    return (f"{stx.tx.type} {body} (governance nonce {stx.tx.nonce}, "
            f"{len(stx.sigs)} signature(s))")


def _policy_words(policy: Any) -> str:
    """What a cosigner admits with a member_add: the organization account the policy makes
    (compare it with the members' ids in ``consortium status``), each cosigner key with its
    weights, and the thresholds (audit F7: the policy was hidden, so admitting a member's
    own organization a second time went unseen)."""
    try:
        cosigners, thresholds = validate_policy(policy)
    except GlucoledgerError as exc:
        return f"(an invalid policy: {exc.message}; the ledger refuses it)"
    keys = ", ".join(f"{c.key.alg} {c.key.raw.hex()} weights {dict(c.weights)}"
                     for c in cosigners)
    oid = account_id("organization", policy)
    return f"organization {oid.hex()} with keys [{keys}], thresholds {thresholds}"

"""Contracts for the chain's genesis and for accounts.

- ``chain.genesis``: the first transaction of a chain names the founding organizations, their
  node keys and the checkpoint threshold. Valid once; signed by every founding node key.
- ``account.create``: a new account proves control of its keys (signatures reaching its own
  ``cosigners`` threshold). Organizations, nodes, makers and clinicians are vouched for by an
  existing organization (the sponsor signs too); devices by a maker; gateways by a patient or
  an organization. Patients and trusted parties register themselves.
- ``account.update``: replace the cosigners and thresholds (action class ``cosigners``: two of
  a patient's three keys). This is also key recovery: the remaining key plus the trusted party
  rotate out a lost key, which stops working from the next transaction on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..crypto import PublicKey
from ..errors import RejectedError
from ..ledger.tx import SignedTx
from .accounts_model import (
    KINDS,
    Account,
    account_id,
    account_id_encoded,
    account_key,
    load_account,
    single_key_policy,
    validate_policy,
)
from .machine import Body, Context, body_field, register, require
from .store import State

__all__ = ["ACCESS_RECORDS", "COMPRESSED_LOG", "GENESIS_KEY", "NEW_ACCESS_RECORDS", "NEW_RULES",
           "RULES", "SPONSORS", "AccountCreate", "ChainGenesis", "access_records",
           "genesis_info", "rules"]

GENESIS_KEY = "chain/genesis"
#: Access record formats a genesis may name (state/access.py); new chains are founded on the
#: newest (``NEW_ACCESS_RECORDS``).
ACCESS_RECORDS = (1, 2)
#: State rule sets a genesis may name (``ChainGenesis.rules``); new chains are founded on the
#: newest (``NEW_RULES``),
#: and a running chain moves up by governance (``gov.upgrade``, state/governance.py).
#: Rule set 2 adds refusals that rule set 1 (every chain founded before it) did not make, so
#: an old chain replays to exactly the results it had:
#:
#: - ``research.manifest`` only from the node of the study sponsor's organization
#:   (``not_releasing_node``; state/research.py);
#: - ``data.commit`` spans at most ``data.MAX_SPAN_HOURS`` hours (``span_too_long``);
#: - ``gov.member_add`` refuses an organization (or policy) already a member
#:   (``member_exists``), and member organizations are counted once however many nodes they
#:   have (``member_orgs_signing``; state/governance.py);
#: - ``anchor.record`` is kept per height and recording member organization, sent and signed
#:   by that member with its own anchor nonce (``not_recorder``; state/governance.py);
#: - under a summary-only grant the permitted window is whole, finished UTC days
#:   (``not_whole_days``; state/consent.py ``_check_days``).
#:
#: Rule set 3 (on top of 2): a ``study.amend`` that changes the study's purpose, protocol,
#: ethics approval or credit terms, or lowers its credit rate, bumps the study's
#: ``scope_version`` like a widening, so every participant consents again before her data is
#: used for it (``StudyTerms.repurposes``; state/research.py). Under 1 and 2 such an amendment
#: kept every research grant counting.
#:
#: Rule set 4 (on top of 3): an ``erase`` of part of a batch's range takes the batch out of
#: every hour of the index it was filed under (state/access.py ``_erase``). Under 1 to 3 it
#: stayed filed under its hours outside the erased range, so later reads of those hours
#: listed a batch the node had destroyed, and a later erasure listed it again; under 4 such
#: a batch left by an upgraded chain is taken out by the next erasure that meets it, which
#: does not list it again.
#:
#: Rule set 5 (on top of 4): the state machine is rule set 4's; the members write the etcd
#: log's batches compressed (``ordering.etcd``, pack version 2), which only a glucoledger
#: that knows rule set 5 reads. Moving a chain to it (``gov.upgrade``) stops every member
#: that does not know it: at the upgrade, or at the first compressed batch its read meets
#: (an error saying another version wrote it), whichever it reaches first.
RULES = (1, 2, 3, 4, 5)
#: The versions a new chain is founded on (``Node.init``, a consortium's genesis): the newest.
NEW_RULES = RULES[-1]
NEW_ACCESS_RECORDS = ACCESS_RECORDS[-1]
#: The first rule set whose members write compressed log batches.
COMPRESSED_LOG = 5
#: Which kinds of account must be vouched for, and by which kinds of sponsor.
SPONSORS: dict[str, tuple[str, ...]] = {
    "organization": ("organization",),
    "node": ("organization",),
    "maker": ("organization",),
    "clinician": ("organization",),
    "device": ("maker",),
    "gateway": ("patient", "organization"),
}


def genesis_info(state: State) -> dict[str, Any]:
    info = state.get(GENESIS_KEY)
    if info is None:
        raise RejectedError("the chain has no genesis yet", code="no_genesis")
    return dict(info)


@dataclass(frozen=True, slots=True)
class ChainGenesis(Body):
    """The body of ``chain.genesis``: the founders (each ``{name, policy, node}``, checked
    one by one by the handler, interleaved with the state checks as results always were)
    and the checkpoint threshold."""

    orgs: tuple[Any, ...]
    threshold: int
    #: The access record format of the chain (state/access.py): 1 lists every released
    #: batch, 2 commits to them (count and digest). Chains founded before 2 have none: 1.
    access_records: int = 1
    #: The state rule set of the chain (``RULES``). Chains founded before 2 have none: 1.
    rules: int = 1

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChainGenesis:
        """Raises MalformedError or RejectedError (``bad_genesis``)."""
        orgs = body_field(body, "orgs", list)
        threshold = body_field(body, "threshold", int)
        require(1 <= len(orgs) <= 64, "bad_genesis", "a genesis names 1 to 64 organizations")
        require(1 <= threshold <= len(orgs), "bad_genesis",
                "checkpoint threshold must be 1..orgs")
        records = body.get("access_records", 1)
        require(records in ACCESS_RECORDS and type(records) is int, "bad_genesis",
                "access_records is 1 (lists) or 2 (commitments)")
        rule_set = body.get("rules", 1)
        require(rule_set in RULES and type(rule_set) is int, "bad_genesis",
                f"rules is one of {', '.join(map(str, RULES))} (the state rule set)")
        return cls(tuple(orgs), threshold, records, rule_set)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"orgs": list(self.orgs), "threshold": self.threshold}
        if self.access_records != 1:
            body["access_records"] = self.access_records
        if self.rules != 1:
            body["rules"] = self.rules
        return body


@register("chain.genesis", auth="self", body=ChainGenesis)
def _genesis(state: State, stx: SignedTx, ctx: Context) -> None:
    """Found the chain: organizations, their node keys, the checkpoint threshold."""
    require(GENESIS_KEY not in state, "genesis_exists", "this chain already has a genesis")
    b = ChainGenesis.parse(stx.tx.body)
    orgs, threshold = b.orgs, b.threshold
    require(stx.tx.nonce == 0, "bad_nonce", "genesis nonce must be 0")
    nodes: list[dict[str, Any]] = []
    org_ids: list[bytes] = []
    for org in orgs:
        require(
            isinstance(org, dict) and set(org) == {"name", "policy", "node"},
            "bad_genesis",
            "a genesis organization is exactly {name, policy, node}",
        )
        name = org["name"]
        require(isinstance(name, str) and 0 < len(name) <= 64 and " " not in name
                and "+" not in name,
                "bad_genesis", "organization names are 1..64 characters without spaces or '+'")
        validate_policy(org["policy"])
        node_key = PublicKey.from_value(org["node"])
        require(node_key.alg == "ed25519", "bad_genesis", "node keys are Ed25519 (they sign notes)")
        require(node_key.key_id in stx.signer_ids, "insufficient_signatures",
                f"genesis must be signed by node key of {name}")
        oid = account_id("organization", org["policy"])
        nid = account_id("node", single_key_policy(node_key))
        require(account_key(oid) not in state, "exists", f"organization {name} listed twice")
        state.put(account_key(oid), {"kind": "organization", "policy": org["policy"], "nonce": 0,
                                     "name": name, "sponsor": b"", "created": ctx.height})
        state.put(account_key(nid), {"kind": "node", "policy": single_key_policy(node_key),
                                     "nonce": 0, "name": name, "sponsor": oid,
                                     "created": ctx.height})
        org_ids.append(oid)
        nodes.append({"name": name, "org": oid, "node": nid, "key": node_key.to_value()})
    require(stx.tx.account == org_ids[0], "bad_account_id",
            "genesis is sent from the first organization's account id")
    info: dict[str, Any] = {"orgs": org_ids, "nodes": nodes, "threshold": threshold,
                            "time": ctx.time_ms}
    if b.access_records != 1:  # (a format-1 chain's record stays byte for byte as it was)
        info["access_records"] = b.access_records
    if b.rules != 1:  # (likewise a rule set 1 chain's record)
        info["rules"] = b.rules
    state.put(GENESIS_KEY, info)


def access_records(state: State) -> int:
    """The chain's access record format (``ChainGenesis.access_records``; 1 before genesis)."""
    return _genesis_version(state.get_raw(GENESIS_KEY), "access_records")


def rules(state: State) -> int:
    """The chain's state rule set (``ChainGenesis.rules``; 1 before genesis)."""
    return _genesis_version(state.get_raw(GENESIS_KEY), "rules")


@functools.lru_cache(maxsize=16)
def _genesis_version(raw: bytes | None, name: str) -> int:
    """A version the genesis names (1 when it names none, or before genesis)."""
    if raw is None:
        return 1
    return int(codec.decode_trusted(raw).get(name, 1))  # state: our bytes


_CREATE_FIELDS = frozenset({"kind", "policy", "salt", "sponsor", "meta"})


@dataclass(frozen=True, slots=True, init=False)
class AccountCreate(Body):
    """The body of ``account.create``: kind, policy, optional salt, sponsor and meta.

    ``parse`` makes the shape checks in the order (codes and words) results always had;
    the policy itself is validated by the handler (``validate_policy``), then ``meta``."""

    kind: str
    policy: dict[str, Any]
    salt: bytes = b""
    sponsor: Any = b""
    meta: Any = None

    def __init__(self, kind: str, policy: dict[str, Any], salt: bytes = b"",
                 sponsor: Any = b"", meta: Any = None) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``).
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "salt", salt)
        object.__setattr__(self, "sponsor", sponsor)
        object.__setattr__(self, "meta", meta)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> AccountCreate:
        """Raises MalformedError or RejectedError (``malformed``, ``bad_kind``)."""
        kind = body_field(body, "kind", str)
        policy = body_field(body, "policy", dict)
        salt = body.get("salt", b"")
        sponsor = body.get("sponsor", b"")
        require(body.keys() <= _CREATE_FIELDS, "malformed",
                "account.create takes kind, policy, salt, sponsor, meta")
        require(kind in KINDS, "bad_kind", f"kind must be one of {', '.join(KINDS)}")
        require(isinstance(salt, bytes) and len(salt) <= 32, "malformed",
                "salt is at most 32 bytes")
        return cls(kind, policy, salt, sponsor, body.get("meta", {}))

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "policy": self.policy}
        if self.salt:
            body["salt"] = self.salt
        if self.sponsor:
            body["sponsor"] = self.sponsor
        if self.meta:
            body["meta"] = self.meta
        return body


@register("account.create", auth="self", body=AccountCreate)
def _create(state: State, stx: SignedTx, ctx: Context) -> None:
    """Register an account: kind, policy (cosigners and thresholds), salt, optional sponsor."""
    if GENESIS_KEY not in state:  # genesis_info's refusal, without decoding the record
        genesis_info(state)
    tx = stx.tx
    b = AccountCreate.parse(tx.body)
    kind, policy, salt, sponsor = b.kind, b.policy, b.salt, b.sponsor
    cosigners, thresholds = validate_policy(policy, [s.key for s in stx.sigs])
    # The policy's bytes as they came (canonical, so what encoding it again gives), for
    # the id and the record.
    encoded_policy = stx.body_encoding("policy")
    expected = account_id_encoded(kind, encoded_policy, salt)
    # The refusals' words are formatted only when they refuse (every account.create of a
    # chain's replay passes these checks; the words are the same as ever).
    if tx.account != expected:
        raise RejectedError(
            f"account id must be {expected.hex()}, the hash of kind, policy and salt",
            code="bad_account_id")
    require(tx.nonce == 0, "bad_nonce", "a new account's first nonce is 0")
    key = account_key(tx.account)
    if key in state:
        raise RejectedError(f"account {tx.account.hex()[:16]} already exists", code="exists")
    new = Account(tx.account, kind, cosigners, thresholds, 0, b"")
    keys = new.keys
    signers = stx.signer_ids
    own = frozenset(k for k in signers if k in keys)
    weight = sum(keys[k].weight("cosigners") for k in own)
    if weight < new.threshold("cosigners"):
        raise RejectedError(
            "a new account must be signed by enough of its own keys to reach its 'cosigners' "
            f"threshold ({new.threshold('cosigners')}); it has {weight}",
            code="insufficient_signatures")
    others = signers - own
    if kind in SPONSORS:
        require(isinstance(sponsor, bytes) and len(sponsor) == 32, "sponsor_required",
                f"a {kind} account must be vouched for by a {' or '.join(SPONSORS[kind])}: "
                "name it as sponsor and have it sign")
        sp = load_account(state, sponsor)
        require(sp.kind in SPONSORS[kind], "bad_sponsor",
                f"a {kind} is vouched for by a {' or '.join(SPONSORS[kind])}, not a {sp.kind}")
        require(all(k in sp.keys for k in others), "not_cosigner",
                "a signature is from neither the new account nor its sponsor")
        _signed_by(sp, stx)
    else:
        if sponsor != b"":
            raise RejectedError(f"a {kind} account registers itself; no sponsor",
                                code="bad_sponsor")
        require(not others, "not_cosigner", "a signature is from a key not in the new policy")
    meta = b.meta
    require(isinstance(meta, dict) and len(meta) <= 16, "malformed", "meta is a small map")
    state.put_encoded(key, codec.encode_with(
        {"kind": kind, "nonce": 1, "sponsor": sponsor, "created": ctx.height, "meta": meta},
        {"policy": encoded_policy}))


def _signed_by(sponsor: Account, stx: SignedTx) -> None:
    total = sum(sponsor.weights("default").get(k, 0) for k in stx.signer_ids)
    require(total >= sponsor.threshold("default"), "insufficient_signatures",
            f"sponsor {sponsor.id.hex()[:16]} has not signed with enough weight")


@dataclass(frozen=True, slots=True)
class AccountUpdate(Body):
    """The body of ``account.update``: ``{policy}``, the new cosigners and thresholds
    (validated by the handler; other fields are ignored, as they always were)."""

    policy: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> AccountUpdate:
        return cls(body_field(body, "policy", dict))


@register("account.update", action="cosigners", body=AccountUpdate)
def _update(state: State, stx: SignedTx, ctx: Context) -> None:
    """Replace the account's cosigners and thresholds (also: recover from a lost key)."""
    policy = AccountUpdate.parse(stx.tx.body).policy
    validate_policy(policy)
    record = dict(state.get(account_key(stx.tx.account)))
    record["policy"] = policy
    record["rotated"] = ctx.height
    state.put(account_key(stx.tx.account), record)


"""Consortium governance: member organizations, node keys, threshold; recording anchors.

The member set lives in ``chain/genesis`` (written by ``chain.genesis``): ``orgs`` (account
ids), ``nodes`` (name, org, node account, node key) and the checkpoint ``threshold``. It is
the newest *scheduled* set: it decides who may authorize governance from the next
transaction on.

Checkpoint signers take effect at a stated height. Every change writes the complete signer
set and threshold under ``chain/members/<first height, 20 digits>``; ``member_schedule``
turns those records into a ``ledger.finality.MemberSchedule``, so finality of height h is
judged by the set in force at h, whatever happened later. Each change body takes an
optional ``at``: the first height the new set signs (default: the next block); it must be
after the block that carries the change and not before an already scheduled change.

- ``gov.member_add`` body ``{name, policy, node, threshold?, at?}``: a new organization (its
  cosigner policy) and its node key (Ed25519: it signs checkpoints). Optional ``threshold``
  sets the new checkpoint threshold (default: unchanged). On a chain of rule set 2
  (state/accounts.py ``RULES``) the organization must be new: a policy that is a member's
  (same organization account) or holds a key of a member's policy is refused as
  ``member_exists`` (audit F7: one organization admitted twice counted twice).
- ``gov.member_remove`` body ``{name, threshold?, at?}``: drop an organization's node from the
  checkpoint signers; the threshold is clamped to the remaining number of nodes unless given.
- ``gov.rotate_key`` body ``{name, node, at?}``: a member's new node key.
- ``gov.threshold`` body ``{threshold, at?}``: a new checkpoint threshold.
- ``gov.upgrade`` body ``{rules?, access_records?}`` (at least one): move a running chain to a
  newer state rule set (``accounts.RULES``) or access record format (``ACCESS_RECORDS``),
  from the next transaction on; versions only go up (``bad_upgrade``). An authorized move
  to a version this code does not know is not refused (code that knows it would replay the
  refusal as applied): the node stops there (``StopNode``) until it runs code that knows
  it. How a chain founded before rule set 2 gets its refusals: every rule reads
  ``rules(state)`` when it applies, so transactions before the upgrade replay as they were
  decided and those after it meet the new rules. Moving to rule set 2 starts every member
  organization's own anchor counter at the consortium's shared one, so no anchor envelope
  signed before it can be replayed after it.
- ``gov.rotate_tls`` body ``{name, tls_ca, at?}``: a member's new TLS certificate authority
  (one PEM certificate). Recorded under ``chain/tls/<at, 20 digits>/<name>``; from ``at`` on
  the consortium's trust bundle holds it in place of that member's previous CA
  (``tls_changes``; the bundle is built and applied by ``node.tlsrotation``).
- ``anchor.record`` body ``{height, size, root, chain_id, tx_hash, block_number}``: the
  receipt of a final checkpoint written to a public chain (see ``node.anchor``). Rule set 1:
  one record per height, ``anchor/<height>``, any member, the consortium's ``anchor_nonce``.
  Rule set 2: one per height and member, ``anchor/<height>/<organization>``, signed by the
  sending member itself, with its own ``anchor_nonce/<organization>`` (``_anchor_record``).

Authorization (CCF-style member governance): a ``gov.*`` transaction must carry signatures
whose keys reach the ``default`` threshold of at least ``threshold`` distinct current member
organizations (rule set 2: distinct organization accounts; rule set 1 counted member nodes;
cosignatures collected off-chain into one envelope). Its nonce is the
consortium's governance counter (``gov_nonce`` in ``chain/genesis``), so a governance
envelope can never be replayed. ``anchor.record`` needs one member organization (it states a
fact anyone can check against the public chain) and has its own counter (``anchor_nonce``),
so an automatic anchor never invalidates a governance proposal being cosigned.

Invariants: the member set never becomes empty; 1 <= threshold <= number of nodes; names
and node keys are unique; schedule heights only grow. Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

from ..crypto import PublicKey
from ..ledger.checkpoint import NoteVerifier
from ..ledger.finality import MemberSchedule
from ..ledger.tx import SignedTx
from .accounts import ACCESS_RECORDS, GENESIS_KEY, RULES, genesis_info, rules
from .accounts_model import (
    account_id,
    account_key,
    load_account,
    single_key_policy,
    validate_policy,
)
from .machine import (
    MISSING,
    Body,
    Context,
    StopNode,
    body_field,
    need,
    register,
    require,
    type_of,
)
from .store import State

__all__ = ["ANCHOR_PREFIX", "MEMBERS_PREFIX", "TLS_PREFIX", "UPGRADE_KNOWN", "anchor_counter",
           "anchor_key", "member_orgs_signing", "member_schedule", "tls_changes",
           "writers_in_force"]

ANCHOR_PREFIX = "anchor/"
MEMBERS_PREFIX = "chain/members/"
TLS_PREFIX = "chain/tls/"
_MAX_CA_PEM = 8192
#: What ``gov.upgrade`` may name, each with the versions a chain may move to (the fields of
#: ``GovUpgrade``).
UPGRADE_KNOWN: Final[dict[str, tuple[int, ...]]] = {"rules": RULES,
                                                    "access_records": ACCESS_RECORDS}


def _signers(info: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": [{"name": n["name"], "key": n["key"]} for n in info["nodes"]],
            "threshold": info["threshold"]}


def member_schedule(state: State) -> MemberSchedule:
    """The checkpoint signer sets by first height (a chain without recorded changes: the
    genesis set from height 0). Raises RejectedError when the chain has no genesis."""
    recorded = sorted(state.keys(MEMBERS_PREFIX))
    docs = [(int(k[len(MEMBERS_PREFIX):]), state.get(k)) for k in recorded]
    if not docs or docs[0][0] != 0:
        docs.insert(0, (0, _signers(genesis_info(state))))
    return MemberSchedule(tuple(
        (at, tuple(NoteVerifier(n["name"], PublicKey.from_value(n["key"]))
                   for n in doc["nodes"]), int(doc["threshold"]))
        for at, doc in docs))


def writers_in_force(state: State, height: int) -> frozenset[str] | None:
    """Whose entries of the ordered log count toward block ``height``: the names of the
    member nodes in force at that height, as the state after block ``height - 1`` records
    them (a member appends under its node's name: ``ordering.etcd``). None for a chain with
    no genesis yet, whose log every writer may fill."""
    if GENESIS_KEY not in state:
        return None
    return frozenset(v.name for v in member_schedule(state).at(height)[0])


def _schedule(state: State, before: dict[str, Any], after: dict[str, Any],
              at: Any, ctx: Context) -> None:
    """Record ``after``'s signer set from the height the body states (default: next)."""
    at = ctx.height + 1 if at is MISSING else at
    require(isinstance(at, int) and not isinstance(at, bool) and at > ctx.height, "bad_height",
            f"a change takes effect at a later height than this block ({ctx.height}): "
            f"give at >= {ctx.height + 1}")
    recorded = sorted(state.keys(MEMBERS_PREFIX))
    if not recorded:  # the first change: the set in force until now starts at 0
        state.put(f"{MEMBERS_PREFIX}{0:020d}", _signers(before))
    else:
        last = int(recorded[-1][len(MEMBERS_PREFIX):])
        require(at >= last, "bad_height", f"a change is already scheduled at height {last}: "
                "a new one takes effect at that height or later")
    state.put(f"{MEMBERS_PREFIX}{at:020d}", _signers(after))


def member_orgs_signing(state: State, info: dict[str, Any], stx: SignedTx) -> list[str]:
    """Names of current member organizations whose keys on ``stx`` reach their threshold.

    Rule set 2 (state/accounts.py ``RULES``) counts each organization once, by its account
    id, however many member nodes name it (the first node's name stands for it); rule set 1
    counted member nodes, so an organization admitted twice counted twice (audit F7)."""
    distinct = rules(state) >= 2
    names = []
    seen: set[bytes] = set()
    for n in info["nodes"]:
        if distinct:
            if n["org"] in seen:
                continue
            seen.add(n["org"])
        org = load_account(state, n["org"])
        weight = sum(org.weights("default").get(k, 0) for k in stx.signer_ids)
        if weight >= org.threshold("default"):
            names.append(n["name"])
    return names


def _new_organization(state: State, info: dict[str, Any], oid: bytes,
                      keys: set[bytes]) -> None:
    """Rule set 2: refuse (``member_exists``) an organization that is already a member, or
    a policy holding a key of a member organization's policy (that key would count for two
    members)."""
    names = {n["org"]: n["name"] for n in info["nodes"]}
    require(oid not in info["orgs"], "member_exists",
            f"this policy is organization {oid.hex()[:16]}, already the member "
            f"{names.get(oid, '?')}: one organization is one member (to give it a new node "
            "key, propose gov.rotate_key)")
    for org in info["orgs"]:
        if keys & set(load_account(state, org).keys):
            require(False, "member_exists",
                    f"a key of this policy already signs for the member "
                    f"{names.get(org, org.hex()[:16])}: it would count for two members; a new "
                    "member brings keys of its own")


def _authorize(state: State, stx: SignedTx, need: int,
               counter: str = "gov_nonce") -> dict[str, Any]:
    info = genesis_info(state)
    require(stx.tx.nonce == info.get(counter, 0), "bad_nonce",
            f"{'anchor' if counter.startswith('anchor_nonce') else 'governance'} nonce must be "
            f"{info.get(counter, 0)} (the consortium's next); this envelope was used already "
            "or is out of order")
    signing = member_orgs_signing(state, info, stx)
    require(len(signing) >= need, "insufficient_signatures",
            f"{len(signing)} member organization(s) signed ({', '.join(signing) or 'none'}); "
            f"{need} needed: collect more cosignatures into the envelope")
    require(stx.tx.account in info["orgs"], "not_member",
            "a governance transaction is sent from a member organization's account")
    info[counter] = info.get(counter, 0) + 1
    return info


_G = TypeVar("_G", bound="_GovChange")


@dataclass(frozen=True, slots=True)
class _GovChange(Body):
    """Base of the ``gov.*`` change bodies: ``parse`` checks the field names only; values
    are checked by the handler after the members' authorization, as results always were.
    A field the body leaves out is ``MISSING`` (``at``: the next height)."""

    @classmethod
    def parse(cls: type[_G], body: dict[str, Any]) -> _G:
        names = tuple(f.name for f in fields(cls))
        require(set(body) <= set(names), "malformed",
                f"{type_of(cls)} takes {', '.join(names)}")
        return cls.of(body)


@dataclass(frozen=True, slots=True)
class GovMemberAdd(_GovChange):
    """The body of ``gov.member_add``: name, policy, node key, threshold?, at?"""

    name: Any = MISSING
    policy: Any = MISSING
    node: Any = MISSING
    threshold: Any = MISSING
    at: Any = MISSING


@dataclass(frozen=True, slots=True)
class GovMemberRemove(_GovChange):
    """The body of ``gov.member_remove``: name, threshold?, at?"""

    name: Any = MISSING
    threshold: Any = MISSING
    at: Any = MISSING


@dataclass(frozen=True, slots=True)
class GovRotateKey(_GovChange):
    """The body of ``gov.rotate_key``: name, node key, at?"""

    name: Any = MISSING
    node: Any = MISSING
    at: Any = MISSING


@dataclass(frozen=True, slots=True)
class GovThreshold(_GovChange):
    """The body of ``gov.threshold``: threshold, at?"""

    threshold: Any = MISSING
    at: Any = MISSING


@dataclass(frozen=True, slots=True)
class GovRotateTls(_GovChange):
    """The body of ``gov.rotate_tls``: name, tls_ca (PEM), at?"""

    name: Any = MISSING
    tls_ca: Any = MISSING
    at: Any = MISSING


@dataclass(frozen=True, slots=True)
class GovUpgrade(_GovChange):
    """The body of ``gov.upgrade``: rules?, access_records? (at least one)."""

    rules: Any = MISSING
    access_records: Any = MISSING

    def changes(self) -> dict[str, int]:
        """The versions named (``malformed`` when none, ``bad_upgrade`` when one is not a
        version number). Whether this code knows them is the handler's question, and never
        a refusal: see ``_upgrade``."""
        named = {f: getattr(self, f) for f in UPGRADE_KNOWN if getattr(self, f) is not MISSING}
        require(bool(named), "malformed",
                "gov.upgrade names rules, access_records or both (the versions to move to)")
        for field, value in named.items():
            require(type(value) is int and 1 <= value <= 1000, "bad_upgrade",
                    f"{field} is a version number (a whole number from 1 to 1000)")
        return named


@dataclass(frozen=True, slots=True)
class AnchorRecord(Body):
    """The body of ``anchor.record``: where a final checkpoint was anchored."""

    height: int
    size: int
    root: bytes
    chain_id: int
    tx_hash: bytes
    block_number: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> AnchorRecord:
        require(set(body) == {"height", "size", "root", "chain_id", "tx_hash", "block_number"},
                "malformed",
                "anchor.record is {height, size, root, chain_id, tx_hash, block_number}")
        for f in ("height", "size", "chain_id", "block_number"):
            body_field(body, f, int)
        require(isinstance(body["root"], bytes) and len(body["root"]) == 32, "malformed",
                "root is a 32-byte hash")
        require(isinstance(body["tx_hash"], bytes) and len(body["tx_hash"]) == 32, "malformed",
                "tx_hash is the 32-byte public-chain transaction hash")
        return cls.of(body)


def _begin(state: State, stx: SignedTx) -> tuple[dict[str, Any], dict[str, Any]]:
    """Authorize a change whose names ``parse`` checked: (set before, set after so far)."""
    before = genesis_info(state)
    return before, _authorize(state, stx, before["threshold"])


def _node_account(state: State, node_key: PublicKey, name: str, sponsor: bytes,
                  height: int) -> bytes:
    """The node account of ``node_key`` (created if new); returns its id."""
    nid = account_id("node", single_key_policy(node_key))
    if account_key(nid) not in state:
        state.put(account_key(nid), {"kind": "node", "policy": single_key_policy(node_key),
                                     "nonce": 0, "name": name, "sponsor": sponsor,
                                     "created": height})
    return nid


def _threshold(value: Any, default: int, nodes: int) -> int:
    value = default if value is MISSING else value
    require(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= nodes,
            "bad_threshold", f"the checkpoint threshold must be 1..{nodes}")
    return int(value)


@register("gov.member_add", auth="self", body=GovMemberAdd)
def _member_add(state: State, stx: SignedTx, ctx: Context) -> None:
    """Admit an organization and its node (threshold of current members)."""
    b = GovMemberAdd.parse(stx.tx.body)
    before, info = _begin(state, stx)
    name = need(b.name, "name", str)
    require(0 < len(name) <= 64 and " " not in name and "+" not in name, "bad_name",
            "organization names are 1..64 characters without spaces or '+'")
    require(all(n["name"] != name for n in info["nodes"]), "exists",
            f"organization {name} is already a member")
    policy = need(b.policy, "policy", dict)
    cosigners, _ = validate_policy(policy)
    node_key = _node_key(b.node, info)
    oid = account_id("organization", policy)
    if rules(state) >= 2:
        _new_organization(state, info, oid, {c.key.key_id for c in cosigners})
    if account_key(oid) not in state:
        state.put(account_key(oid), {"kind": "organization", "policy": policy, "nonce": 0,
                                     "name": name, "sponsor": b"", "created": ctx.height})
    nid = _node_account(state, node_key, name, oid, ctx.height)
    info["orgs"] = [*info["orgs"], oid]
    info["nodes"] = [*info["nodes"], {"name": name, "org": oid, "node": nid,
                                      "key": node_key.to_value()}]
    info["threshold"] = _threshold(b.threshold, info["threshold"], len(info["nodes"]))
    _schedule(state, before, info, b.at, ctx)
    state.put(GENESIS_KEY, info)


def _node_key(value: Any, info: dict[str, Any]) -> PublicKey:
    node_key = PublicKey.from_value(need(value, "node", dict))
    require(node_key.alg == "ed25519", "bad_key", "node keys are Ed25519 (they sign notes)")
    require(all(n["key"] != node_key.to_value() for n in info["nodes"]), "exists",
            "that node key already belongs to a member")
    return node_key


@register("gov.member_remove", auth="self", body=GovMemberRemove)
def _member_remove(state: State, stx: SignedTx, ctx: Context) -> None:
    """Remove an organization's node from the checkpoint signers (threshold of members)."""
    b = GovMemberRemove.parse(stx.tx.body)
    before, info = _begin(state, stx)
    name = need(b.name, "name", str)
    gone = [n for n in info["nodes"] if n["name"] == name]
    require(bool(gone), "not_member", f"{name} is not a member")
    rest = [n for n in info["nodes"] if n["name"] != name]
    require(bool(rest), "last_member", "the last member cannot be removed")
    info["nodes"] = rest
    info["orgs"] = [o for o in info["orgs"] if o != gone[0]["org"]]
    info["threshold"] = _threshold(b.threshold, min(info["threshold"], len(rest)), len(rest))
    _schedule(state, before, info, b.at, ctx)
    state.put(GENESIS_KEY, info)


@register("gov.rotate_key", auth="self", body=GovRotateKey)
def _rotate_key(state: State, stx: SignedTx, ctx: Context) -> None:
    """Replace a member's node key (threshold of members), from a stated height."""
    b = GovRotateKey.parse(stx.tx.body)
    before, info = _begin(state, stx)
    name = need(b.name, "name", str)
    require(any(n["name"] == name for n in info["nodes"]), "not_member",
            f"{name} is not a member")
    node_key = _node_key(b.node, info)
    org = next(n["org"] for n in info["nodes"] if n["name"] == name)
    nid = _node_account(state, node_key, name, org, ctx.height)
    info["nodes"] = [{**n, "node": nid, "key": node_key.to_value()} if n["name"] == name
                     else n for n in info["nodes"]]
    _schedule(state, before, info, b.at, ctx)
    state.put(GENESIS_KEY, info)


@register("gov.rotate_tls", auth="self", body=GovRotateTls)
def _rotate_tls(state: State, stx: SignedTx, ctx: Context) -> None:
    """Replace a member's TLS certificate authority (threshold of members), from a stated
    height. The CA's X.509 contents are checked by the proposer's tools (``crypto.tls``);
    here only its form: one PEM certificate of at most 8 KiB."""
    b = GovRotateTls.parse(stx.tx.body)
    _, info = _begin(state, stx)
    name = need(b.name, "name", str)
    require(any(n["name"] == name for n in info["nodes"]), "not_member",
            f"{name} is not a member")
    ca = need(b.tls_ca, "tls_ca", bytes)
    require(ca.startswith(b"-----BEGIN CERTIFICATE-----") and ca.count(b"-----BEGIN") == 1
            and len(ca) <= _MAX_CA_PEM, "malformed",
            "tls_ca is one PEM certificate (the member's new CA) of at most 8 KiB")
    at = ctx.height + 1 if b.at is MISSING else b.at
    require(isinstance(at, int) and not isinstance(at, bool) and at > ctx.height, "bad_height",
            f"a change takes effect at a later height than this block ({ctx.height}): "
            f"give at >= {ctx.height + 1}")
    recorded = sorted(state.keys(TLS_PREFIX))
    last = int(recorded[-1][len(TLS_PREFIX):].split("/")[0]) if recorded else 0
    require(at >= last, "bad_height", f"a TLS change is already scheduled at height {last}: "
            "a new one takes effect at that height or later")
    key = f"{TLS_PREFIX}{at:020d}/{name}"
    require(key not in state, "exists", f"{name}'s CA already changes at height {at}")
    state.put(key, ca)
    state.put(GENESIS_KEY, info)


@register("gov.upgrade", auth="self", body=GovUpgrade)
def _upgrade(state: State, stx: SignedTx, ctx: Context) -> None:
    """Move the chain to newer rules from the next transaction on (see the module text)."""
    named = GovUpgrade.parse(stx.tx.body).changes()
    before, info = _begin(state, stx)
    for field, value in named.items():
        now = int(before.get(field, 1))
        require(value > now, "bad_upgrade",
                f"this chain is on {field} {now} already: a chain's versions only go up")
    for field, value in named.items():
        if value not in UPGRADE_KNOWN[field]:
            # Every refusal above is the same under any code; this one would not be (code
            # that knows the version applies it), so it is no refusal: the node stops.
            raise StopNode(
                f"the members moved this chain to {field} {value} (gov.upgrade, nonce "
                f"{stx.tx.nonce}), which this glucoledger does not know: install a "
                "glucoledger that knows it, then start the node again; nothing from this "
                "transaction on was applied")
        info[field] = value
    if int(before.get("rules", 1)) < 2 <= int(info.get("rules", 1)):
        shared = int(before.get("anchor_nonce", 0))
        for org in info["orgs"]:
            info["anchor_nonce/" + org.hex()] = shared
    state.put(GENESIS_KEY, info)


def tls_changes(state: State) -> list[tuple[int, str, bytes]]:
    """Every recorded TLS CA change as (first height, member, CA PEM), in height order."""
    out = []
    for k in sorted(state.keys(TLS_PREFIX)):
        at, _, name = k[len(TLS_PREFIX):].partition("/")
        out.append((int(at), name, bytes(state.get(k))))
    return out


@register("gov.threshold", auth="self", body=GovThreshold)
def _set_threshold(state: State, stx: SignedTx, ctx: Context) -> None:
    """Change the checkpoint threshold (threshold of members), from a stated height."""
    b = GovThreshold.parse(stx.tx.body)
    before, info = _begin(state, stx)
    require(b.threshold is not MISSING, "malformed", "gov.threshold needs threshold")
    info["threshold"] = _threshold(b.threshold, info["threshold"], len(info["nodes"]))
    _schedule(state, before, info, b.at, ctx)
    state.put(GENESIS_KEY, info)


def anchor_counter(state: State, org: bytes) -> str:
    """The ``chain/genesis`` field holding the anchor nonce ``org`` signs with next: the
    consortium's ``anchor_nonce`` (rule set 1), or ``org``'s own (rule set 2)."""
    return "anchor_nonce" if rules(state) < 2 else "anchor_nonce/" + org.hex()


def anchor_key(height: int, recorder: bytes | None = None) -> str:
    """Where the anchor record of block ``height`` lives: one per height (rule set 1), one
    per height and recording member organization (rule set 2)."""
    return f"{ANCHOR_PREFIX}{height:020d}" + ("" if recorder is None else "/" + recorder.hex())


@register("anchor.record", auth="self", body=AnchorRecord)
def _anchor_record(state: State, stx: SignedTx, ctx: Context) -> None:
    """Record where a final checkpoint was anchored on a public chain.

    Rule set 2 (audit F11: one member recorded a bogus receipt for a height first, and the
    anchoring member's genuine one was refused as ``exists``, its pre-signed nonce burnt).
    The state machine cannot check the receipt against the block it names: the state holds
    no block headers or checkpoint roots (the replica and the store do), and the public
    chain is outside it; ``node.anchor.verify_anchor`` checks a record against both. So
    each member records under its own name, ``anchor/<height>/<its organization>``, signed by
    its own keys (``not_recorder`` otherwise), with its own nonce (``anchor_nonce/<org>`` in
    ``chain/genesis``): a member can record nothing in another's name, pre-empt no one's
    record and burn no one's nonce, and a bogus record is attributed to its member.
    """
    b = AnchorRecord.parse(stx.tx.body)
    per_member = rules(state) >= 2
    info = _authorize(state, stx, 1, anchor_counter(state, stx.tx.account))
    require(b.height < ctx.height, "bad_anchor", "an anchor names an earlier block")
    if per_member:
        sender = load_account(state, stx.tx.account)
        weight = sum(sender.weights("default").get(k, 0) for k in stx.signer_ids)
        require(weight >= sender.threshold("default"), "not_recorder",
                "an anchor is recorded by the member organization that sends it: sign with "
                "its own keys")
    key = anchor_key(b.height, stx.tx.account if per_member else None)
    require(key not in state, "exists", f"block {b.height} is anchored already"
            + (" by this member" if per_member else ""))
    state.put(key, b.to_body())
    state.put(GENESIS_KEY, info)

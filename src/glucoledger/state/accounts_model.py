"""Accounts and their multi-signature policies (after NEM multisig, Cichosz et al. 2018).

An account is identified by ``tagged_hash("account", encode({kind, policy, salt}))``: a hash of
its initial keys, never a name. Its policy lists cosigners (public keys) with a weight per
action class, and a threshold per action class. For action ``a`` a key weighs
``w[a]`` if given, else ``w["default"]``, else 0; the threshold is ``thresholds[a]`` if given,
else ``thresholds["default"]``.

The patient default (DESIGN.md): two patient keys and one trusted-party key. Everyday actions
need one patient key; changing cosigners (which is also how a lost key is recovered) needs two
of the three; the trusted party alone can do nothing everyday, but counts for ``cosigners`` and
``emergency``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .. import codec
from ..crypto import PublicKey, tagged_hash
from ..errors import MalformedError, NotFoundError, RejectedError
from .store import State

__all__ = [
    "ACTIONS",
    "KINDS",
    "Account",
    "Cosigner",
    "account_id",
    "account_key",
    "account_kind",
    "load_account",
    "make_policy",
    "patient_policy",
    "single_key_policy",
    "validate_policy",
]

KINDS = ("patient", "clinician", "organization", "device", "maker", "trusted", "node", "gateway")
#: Action classes known to the core. Contracts may use others; unknown classes fall back to
#: "default" for weights and thresholds.
ACTIONS = ("default", "grant", "cosigners", "emergency", "erase", "data")
MAX_COSIGNERS = 8
MAX_WEIGHT = 100
_POLICY_FIELDS = frozenset({"cosigners", "thresholds"})
_COSIGNER_FIELDS = frozenset({"key", "w"})
_BAD_THRESHOLDS = "thresholds map action classes (with 'default') to 1..1000"


@dataclass(frozen=True, slots=True, init=False)
class Cosigner:
    key: PublicKey
    weights: Mapping[str, int]

    def __init__(self, key: PublicKey, weights: Mapping[str, int]) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``).
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "weights", weights)

    def weight(self, action: str) -> int:
        return self.weights.get(action, self.weights.get("default", 0))


@dataclass(frozen=True, init=False)
class Account:
    id: bytes
    kind: str
    cosigners: tuple[Cosigner, ...]
    thresholds: Mapping[str, int]
    nonce: int
    #: The account record's bytes as stored (b"" for an account not stored yet); ``record``
    #: decodes them when asked, which few handlers do.
    raw: bytes = field(repr=False)
    #: The cosigners by key id. Built with the account: nearly every account loaded is
    #: loaded to authorize a transaction, which reads it. (A field, not a cache in
    #: ``__dict__``: a compiled class has none; README "How it is built".)
    keys: dict[bytes, Cosigner] = field(init=False, repr=False, compare=False)

    def __init__(self, id: bytes, kind: str, cosigners: tuple[Cosigner, ...],
                 thresholds: Mapping[str, int], nonce: int, raw: bytes) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "cosigners", cosigners)
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "nonce", nonce)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "keys", {c.key.key_id: c for c in cosigners})

    @property
    def record(self) -> dict[str, Any]:
        """The account record (a new dict at each read: changing it changes nothing stored)."""
        return codec.decode_trusted(self.raw) if self.raw else {}

    def weights(self, action: str) -> dict[bytes, int]:
        return {kid: c.weight(action) for kid, c in self.keys.items()}

    def threshold(self, action: str) -> int:
        return self.thresholds.get(action, self.thresholds["default"])


def account_key(account: bytes) -> str:
    return "acct/" + account.hex()


def validate_policy(policy: Any, known: Sequence[PublicKey] = (),
                    ) -> tuple[tuple[Cosigner, ...], dict[str, int]]:
    """Parse a policy value; raise MalformedError if ill-formed, RejectedError if unusable.

    ``known``: keys already built (a transaction's signers). A cosigner's key equal to one of
    them is that object, so its key id, a hash, is computed once: a new account is signed by
    the key its policy lists. Which keys are known changes nothing but the work done."""
    if not isinstance(policy, dict) or policy.keys() != _POLICY_FIELDS:
        raise MalformedError("a policy is exactly {cosigners, thresholds}")
    raw_cos, thresholds = policy["cosigners"], policy["thresholds"]
    if not isinstance(raw_cos, list) or not 1 <= len(raw_cos) <= MAX_COSIGNERS:
        raise MalformedError(f"a policy has 1 to {MAX_COSIGNERS} cosigners")
    cosigners: list[Cosigner] = []
    for c in raw_cos:
        if not isinstance(c, dict) or c.keys() != _COSIGNER_FIELDS or not isinstance(c["w"], dict):
            raise MalformedError("a cosigner is exactly {key: {alg, pub}, w: {action: weight}}")
        w = c["w"]
        for k, v in w.items():  # a loop, not all() over a generator: same checks, same order
            if not (isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                    and 0 <= v <= MAX_WEIGHT):
                raise MalformedError(f"cosigner weights are integers from 0 to {MAX_WEIGHT}")
        cosigners.append(Cosigner(_key(c["key"], known), dict(w)))
    if len({c.key.key_id for c in cosigners}) != len(cosigners):
        raise MalformedError("a key is listed twice among the cosigners")
    if not isinstance(thresholds, dict) or "default" not in thresholds:
        raise MalformedError(_BAD_THRESHOLDS)
    for k, v in thresholds.items():
        if not (isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                and 1 <= v <= 1000):
            raise MalformedError(_BAD_THRESHOLDS)
    # Sorted: the message (part of the results hash) must not depend on set order.
    for action in sorted({*thresholds, *(a for c in cosigners for a in c.weights)}):
        need = int(thresholds[action] if action in thresholds else thresholds["default"])
        if sum(c.weight(action) for c in cosigners) < need:
            raise RejectedError(
                f"policy can never reach its '{action}' threshold ({need}): the account would "
                "be locked; lower the threshold or add weight",
                code="bad_policy",
            )
    return tuple(cosigners), dict(thresholds)


def _key(value: Any, known: Sequence[PublicKey]) -> PublicKey:
    """``PublicKey.from_value(value)``, or the object of ``known`` equal to it."""
    if type(value) is dict and len(value) == 2:
        alg, raw = value.get("alg"), value.get("pub")
        for k in known if type(raw) is bytes else ():  # one or two signers
            if k.raw == raw and k.alg == alg:  # a built key passed the checks from_value does
                return k
    return PublicKey.from_value(value)


def account_id(kind: str, policy: Any, salt: bytes = b"") -> bytes:
    return account_id_encoded(kind, codec.encode(policy), salt)


def account_id_encoded(kind: str, policy: bytes, salt: bytes) -> bytes:
    """``account_id`` of the policy ``codec.encode`` gave ``policy``: the id is the hash of
    ``{kind, policy, salt}`` encoded, and the policy's bytes go in as they are
    (``codec.encode_with``), so ``account.create`` encodes its policy once for the id and
    the record."""
    return tagged_hash("account", codec.encode_with({"kind": kind, "salt": salt},
                                                    {"policy": policy}))


def load_account(state: State, account: bytes) -> Account:
    raw = state.get_raw(account_key(account))
    if raw is None:
        raise RejectedError(
            f"account {account.hex()[:16]} does not exist; create it first",
            code="unknown_account",
        )
    # Only the parts an authorization reads are decoded: the record's kind and nonce, and
    # its policy's bytes, whose parse is kept.
    (k0, k1), (n0, n1), (p0, p1) = codec.value_spans(raw, _PARTS)
    cosigners, thresholds = _parsed_policy(raw[p0:p1])
    return Account(account, codec.decode_trusted(raw[k0:k1]), cosigners, dict(thresholds),
                   codec.decode_trusted(raw[n0:n1]), raw)


_PARTS: Final = ("kind", "nonce", "policy")


def account_kind(state: State, account: bytes) -> str | None:
    """The kind of the stored account ``account``, or None when there is none: its record's
    kind alone is decoded (``codec.value_span``), for the checks that read nothing else."""
    raw = state.get_raw(account_key(account))
    if raw is None:
        return None
    start, end = codec.value_span(raw, "kind")
    kind: str = codec.decode_trusted(raw[start:end])
    return kind


@functools.lru_cache(maxsize=4096)
def _parsed_policy(policy: bytes) -> tuple[tuple[Cosigner, ...], Mapping[str, int]]:
    """``validate_policy`` of a stored account's policy, by its exact bytes (a span of the
    record: the nonce, which every transaction of the account changes, is not in it). So an
    account's policy is parsed once, not at each of its transactions: a node's data.commit, a
    follower's audited read. Failures raise and are not kept."""
    cosigners, thresholds = validate_policy(codec.decode_trusted(policy))
    return cosigners, MappingProxyType(thresholds)


def find_account(state: State, account: bytes) -> Account:
    """Like load_account, for the service layer: raises NotFoundError."""
    try:
        return load_account(state, account)
    except RejectedError:
        raise NotFoundError(f"no account {account.hex()}") from None


def make_policy(
    cosigners: Sequence[tuple[PublicKey, Mapping[str, int]]], thresholds: Mapping[str, int]
) -> dict[str, Any]:
    return {
        "cosigners": [{"key": k.to_value(), "w": dict(w)} for k, w in cosigners],
        "thresholds": dict(thresholds),
    }


def single_key_policy(key: PublicKey) -> dict[str, Any]:
    return make_policy([(key, {"default": 1})], {"default": 1})


def patient_policy(
    key1: PublicKey, key2: PublicKey, trusted: PublicKey | None = None
) -> dict[str, Any]:
    """Two patient keys and (optionally) one trusted-party key, as DESIGN.md describes."""
    owner = {"default": 1, "emergency": 0}
    cos: list[tuple[PublicKey, Mapping[str, int]]] = [(key1, owner), (key2, owner)]
    if trusted is not None:
        cos.append((trusted, {"default": 0, "cosigners": 1, "emergency": 1}))
    return make_policy(cos, {"default": 1, "cosigners": 2, "emergency": 1})

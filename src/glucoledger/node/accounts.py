"""Account services: create custodial accounts, look them up by local name, act as them.

Names are local to a node (the one registry of names, ``node/registry.py``); the ledger only
knows account ids. A custodial account's keys live in the node's wallet, sealed under the
master key, as ``<name>.1``, ``<name>.2`` (and the trusted party's key under its own name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto import PrivateKey, generate
from ..errors import InputError, NotFoundError
from ..names import RESERVED, check_name
from ..state.accounts import SPONSORS
from ..state.accounts_model import KINDS, account_id, patient_policy, single_key_policy
from .pending import Entry, Setups, pending_names
from .registry import Registry
from .service import Node, Receipt

__all__ = ["NO_TRUSTED_PARTY", "AddressBook", "Identity", "create_account", "identity", "names",
           "recover_key", "submit_as"]

@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    id: bytes
    kind: str
    key_names: tuple[str, ...]


class AddressBook:
    """The node's local names for accounts: the ``accounts`` part of the one registry of
    names (``node/registry.py``, ``<data>/names.json``; no names on the ledger). Lookups
    cost a ``stat``; adds replace the file atomically under one lock, so concurrent adds (an
    account created over HTTP while a patient makes a Nightscout uploader) both land."""

    def __init__(self, node: Node) -> None:
        self.registry = Registry(node.data_dir)
        self.path = self.registry.path

    def _load(self) -> dict[str, Any]:
        return self.registry.accounts()

    def add(self, ident: Identity) -> None:
        """Name a new account. Raises InputError if the name is taken (by any kind)."""
        def change(doc: dict[str, Any]) -> None:
            held = doc["accounts"].get(ident.name)
            if held is not None and held["id"] != ident.id.hex():
                raise InputError(f"the name {ident.name!r} is taken on this node (a "
                                 f"{held['kind']}); choose another")
            if held is None and ident.name in pending_names(doc, "account"):
                raise InputError(f"the name {ident.name!r} is being set up by another "
                                 "command on this folder; choose another")
            doc["accounts"][ident.name] = {"id": ident.id.hex(), "kind": ident.kind,
                                           "keys": list(ident.key_names)}
        self.registry.update(change)

    def get(self, name_or_id: str) -> Identity:
        book = self._load()
        if name_or_id in book:
            return _ident(name_or_id, book[name_or_id])
        for name, e in book.items():
            if e["id"] == name_or_id.lower():
                return _ident(name, e)
        raise NotFoundError(
            f"no account named {name_or_id!r} on this node; `glucoledger account list` shows them"
        )

    def accounts(self) -> dict[str, Identity]:
        """Every named account, by name (a name only: an id is not looked up)."""
        book = self._load()
        return {n: _ident(n, e) for n, e in book.items()}

    def all(self) -> list[Identity]:
        book = self._load()
        return [_ident(n, book[n]) for n in sorted(book)]


def _ident(name: str, e: dict[str, Any]) -> Identity:
    return Identity(name, bytes.fromhex(e["id"]), e["kind"], tuple(e["keys"]))


def identity(node: Node, name: str) -> Identity:
    if name == "org":
        info = node.state.get("chain/genesis")
        if info is None:
            raise NotFoundError("the chain has no genesis")
        return Identity("org", info["orgs"][0], "organization", ("org",))
    return AddressBook(node).get(name)


def names(node: Node) -> dict[bytes, str]:
    """Every account id this node has a name for, mapped to that name (for display)."""
    return {i.id: i.name for i in AddressBook(node).all()}


def keys_of(node: Node, ident: Identity, which: Sequence[int] | None = None) -> list[PrivateKey]:
    names = ident.key_names if which is None else [ident.key_names[i] for i in which]
    return [node.wallet.load(n) for n in names]


#: A patient's policy needs her trusted party's weight for emergencies (``patient_policy``):
#: without one the ledger refuses it as locked (``bad_policy``).
NO_TRUSTED_PARTY = ("a patient names her trusted party (an account of kind trusted; on the "
                    "command line: --trusted NAME): it cosigns emergencies and key recovery")


def create_account(node: Node, name: str, kind: str, *, sponsor: str | None = None,
                   trusted: str | None = None, alg: str = "ed25519") -> tuple[Identity, Receipt]:
    """Create a custodial account. Patients get two keys (and a trusted party's as cosigner)."""
    check_name(name)
    if name in RESERVED:
        raise InputError(f"account name {name!r} is the node's own; choose another")
    if kind not in KINDS:
        raise InputError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "patient" and trusted is None:  # her policy could never reach "emergency"
        raise InputError(NO_TRUSTED_PARTY)
    setups = Setups(node)
    finished = setups.settle()  # a creation a kill interrupted: named now, or dropped
    held = AddressBook(node).accounts().get(name)
    if held is not None:
        if f"account:{name}" in finished and held.kind == kind:
            return held, finished[f"account:{name}"]  # the rerun of that command: done
        raise InputError(f"an account named {name!r} already exists on this node (a "
                         f"{held.kind}: `glucoledger account show {name}`); choose another "
                         "name")
    signers: list[PrivateKey] = []
    if kind == "patient":
        k1, k2 = generate(alg), generate(alg)  # type: ignore[arg-type]
        trusted_key = None
        if trusted is not None:
            tid = identity(node, trusted)
            trusted_key = keys_of(node, tid, [0])[0]
        policy = patient_policy(k1.public, k2.public, trusted_key.public if trusted_key else None)
        keys = {f"{name}.1": k1, f"{name}.2": k2}
        signers = [k1, k2]
    else:
        k = generate(alg)  # type: ignore[arg-type]
        policy = single_key_policy(k.public)
        keys = {f"{name}.1": k}
        signers = [k]
    body: dict[str, Any] = {"kind": kind, "policy": policy}
    if kind in SPONSORS:
        sp = identity(node, sponsor or "org")
        body["sponsor"] = sp.id
        signers += keys_of(node, sp)
    aid = account_id(kind, policy)
    stx = node.build("account.create", body, aid, signers, nonce=0)
    ident = Identity(name, aid, kind, tuple(keys))
    # The keys are saved before the ledger sees the account (node/pending.py): a kill at
    # any moment leaves no account whose key is lost.
    receipt = setups.make(Entry("account", name, aid, kind, ident.key_names), keys,
                          lambda: stx)
    return ident, receipt


def recover_key(node: Node, patient: str, trusted: str, lost: int) -> Receipt:
    """Replace a custodial patient's lost key ``lost`` (1 or 2) with a new one.

    The kept key and the trusted party's key cosign the ``account.update`` (the patient
    policy's recovery rule, state/accounts_model.py); the new key is saved in the wallet
    under the lost key's name only after the ledger accepted the update, so a refusal
    changes nothing. The old key stops signing from that block. Raises InputError,
    NotFoundError or RejectedError.
    """
    if lost not in (1, 2):
        raise InputError("the lost key is 1 or 2")
    p = identity(node, patient)
    if p.kind != "patient" or len(p.key_names) < 2:
        raise InputError(f"{patient!r} is a {p.kind} with one key; only a patient's two keys "
                         "are recovered this way")
    kept = keys_of(node, p, [2 - lost])[0]
    tkey = keys_of(node, identity(node, trusted), [0])[0]
    new = generate(kept.alg)
    keys = (new, kept) if lost == 1 else (kept, new)
    body = {"policy": patient_policy(keys[0].public, keys[1].public, tkey.public)}
    _, receipt = node.send("account.update", body, p.id, [kept, tkey])
    node.wallet.save(p.key_names[lost - 1], new)
    return receipt


def submit_as(node: Node, name: str, type_: str, body: dict[str, Any],
              key_indexes: Sequence[int] | None = (0,)) -> Receipt:
    """Sign ``type_`` with a custodial account's keys, submit it and raise if refused."""
    ident = identity(node, name)
    return node.send(type_, body, ident.id, keys_of(node, ident, key_indexes))[1]

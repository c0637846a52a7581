"""Account services: create custodial accounts, look them up by local name, act as them.

Names are local to a node (an address book in ``<data>/addressbook.json``); the ledger only
knows account ids. A custodial account's keys live in the node's wallet, sealed under the
master key, as ``<name>.1``, ``<name>.2`` (and the trusted party's key under its own name).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..crypto import PrivateKey, generate
from ..errors import InputError, NotFoundError, RejectedError
from ..names import RESERVED, check_name
from ..state.accounts import SPONSORS
from ..state.accounts_model import KINDS, account_id, patient_policy, single_key_policy
from .service import Node, Receipt

__all__ = ["AddressBook", "Identity", "create_account", "identity", "submit_as"]

@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    id: bytes
    kind: str
    key_names: tuple[str, ...]


class AddressBook:
    """The node's local names for accounts (``<data>/addressbook.json``; no names on the
    ledger). Reads are cached by the file's identity (inode, mtime, size), so a lookup per
    request costs a ``stat``; writes are serialized in this process and replace the file
    atomically, so concurrent adds (an account created over HTTP while a patient makes a
    Nightscout uploader) both land."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _cache: ClassVar[dict[Path, tuple[tuple[int, int, int], dict[str, Any]]]] = {}

    def __init__(self, node: Node) -> None:
        self.path = node.data_dir / "addressbook.json"

    def _load(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._cache.get(self.path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        book = dict(json.loads(self.path.read_text()))
        self._cache[self.path] = (sig, book)
        return book

    def add(self, ident: Identity) -> None:
        with self._lock:
            book = dict(self._load())
            book[ident.name] = {"id": ident.id.hex(), "kind": ident.kind,
                                "keys": list(ident.key_names)}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(book, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
            self._cache.pop(self.path, None)

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


def keys_of(node: Node, ident: Identity, which: Sequence[int] | None = None) -> list[PrivateKey]:
    names = ident.key_names if which is None else [ident.key_names[i] for i in which]
    return [node.wallet.load(n) for n in names]


def create_account(node: Node, name: str, kind: str, *, sponsor: str | None = None,
                   trusted: str | None = None, alg: str = "ed25519") -> tuple[Identity, Receipt]:
    """Create a custodial account. Patients get two keys (and a trusted party's as cosigner)."""
    check_name(name)
    if name in RESERVED:
        raise InputError(f"account name {name!r} is the node's own; choose another")
    if kind not in KINDS:
        raise InputError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    book = AddressBook(node)
    try:
        book.get(name)
        raise InputError(f"an account named {name!r} already exists on this node")
    except NotFoundError:
        pass
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
    receipt = node.submit([stx.raw])[0]
    if not receipt.ok:
        raise RejectedError(receipt.result.message, code=receipt.result.code)
    for key_name, key in keys.items():
        node.wallet.save(key_name, key)
    ident = Identity(name, aid, kind, tuple(keys))
    book.add(ident)
    return ident, receipt


def submit_as(node: Node, name: str, type_: str, body: dict[str, Any],
              key_indexes: Sequence[int] | None = (0,)) -> Receipt:
    """Sign ``type_`` with a custodial account's keys, submit it and raise if refused."""
    ident = identity(node, name)
    return node.send(type_, body, ident.id, keys_of(node, ident, key_indexes))[1]

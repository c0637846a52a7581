"""Service helpers for devices, gateways and custody keys on a node (CLI, demo, tests).

Each helper builds the transaction, signs it with the keys given, submits it and returns the
account or device id; a refusal raises ``RejectedError`` with the state machine's reason code
and message. Keys come from the caller (the node's wallet for custodial accounts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto import PrivateKey, PublicKey
from ..errors import NotFoundError, RejectedError
from ..ledger.tx import SignedTx, Transaction, add_signatures, sign
from ..state.accounts_model import account_id, single_key_policy
from ..state.devices import device_id, device_key, get_uploader
from .service import Node, Receipt

__all__ = ["Uploader", "bind_device", "create_keyed_account", "keyed_account_tx", "org_account",
           "register_device", "register_tx", "revoke_device", "set_custody", "submit_one",
           "unbind_device", "uploader", "uploaders"]


def submit_one(node: Node, stx: SignedTx) -> Receipt:
    """Submit one transaction; raise RejectedError (reason code kept) unless accepted."""
    receipt = node.submit([stx.raw])[0]
    if not receipt.ok:
        raise RejectedError(receipt.result.message, code=receipt.result.code)
    return receipt


def org_account(node: Node) -> tuple[bytes, PrivateKey]:
    """The node's organization account and key (wallet name "org")."""
    key = node.wallet.load("org")
    return account_id("organization", single_key_policy(key.public)), key


def keyed_account_tx(node: Node, kind: str, keys: Sequence[PrivateKey], *,
                     policy: dict[str, Any] | None = None,
                     sponsor: tuple[bytes, Sequence[PrivateKey]] | None = None,
                     salt: bytes = b"") -> tuple[bytes, SignedTx]:
    """The id and signed ``account.create`` of an account with ``keys`` (not submitted: a
    caller keeping the keys in the wallet saves them first, ``node/pending.py``)."""
    pol = policy if policy is not None else single_key_policy(keys[0].public)
    acct = account_id(kind, pol, salt)
    body: dict[str, Any] = {"kind": kind, "policy": pol, "salt": salt}
    if sponsor is not None:
        body["sponsor"] = sponsor[0]
    stx = sign(Transaction(node.chain, "account.create", body, acct, 0), keys)
    if sponsor is not None:
        stx = add_signatures(stx, sponsor[1])
    return acct, stx


def create_keyed_account(node: Node, kind: str, keys: Sequence[PrivateKey], *,
                   policy: dict[str, Any] | None = None,
                   sponsor: tuple[bytes, Sequence[PrivateKey]] | None = None,
                   salt: bytes = b"") -> bytes:
    """Create an account whose keys the caller keeps (not this node's wallet)."""
    acct, stx = keyed_account_tx(node, kind, keys, policy=policy, sponsor=sponsor, salt=salt)
    submit_one(node, stx)
    return acct


def register_tx(node: Node, maker: bytes, maker_keys: Sequence[PrivateKey], serial: str,
                model: str, key: PublicKey) -> tuple[bytes, SignedTx]:
    """The device id and the maker's signed ``device.register`` with its next nonce (not
    submitted; build it under the maker's ``Node.account_lock``)."""
    stx = node.build("device.register",
                     {"serial": serial, "model": model, "key": key.to_value()},
                     maker, maker_keys)
    return device_id(maker, serial), stx


def _send(node: Node, type_: str, body: dict[str, Any], account: bytes,
          keys: Sequence[PrivateKey]) -> Receipt:
    return node.send(type_, body, account, keys)[1]


def register_device(node: Node, maker: bytes, maker_keys: Sequence[PrivateKey], serial: str,
                    model: str, key: PublicKey) -> bytes:
    _send(node, "device.register", {"serial": serial, "model": model, "key": key.to_value()},
          maker, maker_keys)
    return device_id(maker, serial)


def bind_device(node: Node, patient: bytes, keys: Sequence[PrivateKey], device: bytes) -> None:
    _send(node, "device.bind", {"device": device}, patient, keys)


def unbind_device(node: Node, patient: bytes, keys: Sequence[PrivateKey], device: bytes) -> None:
    _send(node, "device.unbind", {"device": device}, patient, keys)


def revoke_device(node: Node, account: bytes, keys: Sequence[PrivateKey], device: bytes) -> None:
    _send(node, "device.revoke", {"device": device}, account, keys)


def set_custody(node: Node, patient: bytes, keys: Sequence[PrivateKey],
                x25519_public: bytes | None) -> None:
    _send(node, "vault.custody", {"x25519": x25519_public}, patient, keys)


@dataclass(frozen=True, slots=True)
class Uploader:
    """A device or gateway as the state holds it (``state/devices.py``)."""

    id: bytes
    kind: str  # device | gateway
    status: str  # active | revoked
    patient: bytes | None
    maker: bytes | None
    serial: str | None
    model: str | None
    key: PublicKey | None
    last_seq: int

    @classmethod
    def from_record(cls, uid: bytes, rec: dict[str, Any]) -> Uploader:
        key = rec.get("key")
        return cls(uid, rec["kind"], rec["status"], rec.get("patient"), rec.get("maker"),
                   rec.get("serial"), rec.get("model"),
                   None if key is None else PublicKey.from_value(key), int(rec["seq"]))


def uploader(node: Node, uid: bytes) -> Uploader:
    """One device or gateway. Raises NotFoundError."""
    rec = get_uploader(node.state, uid)
    if rec is None:
        raise NotFoundError(f"no device or gateway {uid.hex()[:16]} on this chain; its maker "
                            "registers it first")
    return Uploader.from_record(uid, rec)


def uploaders(node: Node, *, patient: bytes | None = None,
              maker: bytes | None = None) -> list[Uploader]:
    """Devices and gateways bound to ``patient`` and/or registered by ``maker`` (a scan of
    the state's ``dev/`` records; fine for one node)."""
    out = []
    for key in list(node.state.keys("dev/")):
        rec = node.state.get(key)
        if rec is None:
            continue
        if patient is not None and rec.get("patient") != patient:
            continue
        if maker is not None and rec.get("maker") != maker:
            continue
        out.append(Uploader.from_record(bytes.fromhex(key[len(device_key(b"")):]), rec))
    return out

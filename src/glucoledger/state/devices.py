"""Contracts for devices and gateways: who may upload a patient's data.

An *uploader* is a record ``dev/<id hex>`` of one of two kinds:

- ``device``: registered by a maker account (``device.register``: serial, model, public key,
  Ed25519 or P-256). Its id is ``tagged_hash("device-id", encode({maker, serial}))``. It signs
  each upload itself, so its data is recorded as ``device-signed``.
- ``gateway``: an account of kind ``gateway`` (a phone app or an uploader that cannot sign per
  device; created with ``account.create``, sponsored by the patient or an organization). Its
  record is made when a patient binds it; it signs uploads with one of its account's keys, and
  its data is recorded as ``gateway-attested``, never as device-signed.

Transitions (each refusal has its own reason code and changes nothing):

- ``device.register`` (maker): ``not_maker``, ``exists`` (serial already registered by this
  maker), ``key_in_use`` (the public key belongs to another device).
- ``device.bind`` (patient): ``not_patient``, ``unknown_device``, ``revoked_device``,
  ``already_bound``, ``bound_elsewhere`` (unbind it from the other patient first).
- ``device.unbind`` (the bound patient): ``not_bound``.
- ``device.revoke`` (the maker, the bound patient, or a gateway's sponsor): ``unknown_device``,
  ``revoked_device``, ``not_allowed``. Revocation is final.
- ``vault.custody`` (patient): set (or clear, with ``x25519: None``) the X25519 public key to
  which the node wraps the patient's data keys with HPKE (self-custody).

An uploader's ``seq`` (the last accepted upload sequence number) lives in its record and only
grows; ``data.commit`` (state/data.py) checks and advances it. It survives unbinding, so a
device re-bound later cannot replay old uploads. Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import codec
from ..crypto import PublicKey, tagged_hash
from ..ledger.tx import SignedTx
from .accounts_model import load_account
from .machine import Body, Context, body_field, register, require
from .store import State

__all__ = ["custody_key", "device_id", "device_key", "get_uploader"]

MAX_NAME = 64


def device_id(maker: bytes, serial: str) -> bytes:
    return tagged_hash("device-id", codec.encode({"maker": maker, "serial": serial}))


def device_key(uploader: bytes) -> str:
    return "dev/" + uploader.hex()


def custody_key(patient: bytes) -> str:
    return "custody/" + patient.hex()


def get_uploader(state: State, uploader: bytes) -> dict[str, Any] | None:
    value = state.get(device_key(uploader))
    return None if value is None else dict(value)


def _name(body: dict[str, Any], field: str) -> str:
    value = body_field(body, field, str)
    require(0 < len(value) <= MAX_NAME and value.isprintable(), "malformed",
            f"{field} must be 1 to {MAX_NAME} printable characters")
    return str(value)


@dataclass(frozen=True, slots=True)
class DeviceRegister(Body):
    """The body of ``device.register``: serial, model (printable names) and public key."""

    serial: str
    model: str
    key: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DeviceRegister:
        require(set(body) == {"serial", "model", "key"}, "malformed",
                "device.register takes exactly serial, model, key")
        serial, model = _name(body, "serial"), _name(body, "model")
        return cls(serial, model, body_field(body, "key", dict))


@dataclass(frozen=True, slots=True)
class DeviceRef(Body):
    """The body of ``device.bind``, ``device.unbind`` and ``device.revoke``: ``{device}``
    (a device or gateway id; other fields are ignored, as they always were)."""

    device: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DeviceRef:
        return cls(body_field(body, "device", bytes))


@dataclass(frozen=True, slots=True)
class VaultCustody(Body):
    """The body of ``vault.custody``: ``{x25519}``, a 32-byte public key or None."""

    x25519: bytes | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> VaultCustody:
        require(set(body) == {"x25519"}, "malformed", "vault.custody takes exactly x25519")
        pub = body["x25519"]
        require(pub is None or (isinstance(pub, bytes) and len(pub) == 32), "malformed",
                "x25519 is a 32-byte X25519 public key (or null to hand custody back)")
        return cls(pub)


@register("device.register", body=DeviceRegister)
def _register(state: State, stx: SignedTx, ctx: Context) -> None:
    """A maker registers a device: serial, model, public key (Ed25519 or P-256)."""
    maker = load_account(state, stx.tx.account)
    require(maker.kind == "maker", "not_maker",
            f"only a maker account registers devices; this is a {maker.kind} account")
    b = DeviceRegister.parse(stx.tx.body)
    serial, model = b.serial, b.model
    key = PublicKey.from_value(b.key)
    did = device_id(maker.id, serial)
    require(device_key(did) not in state, "exists",
            f"this maker already registered serial {serial!r} (device {did.hex()[:16]})")
    index = "devkey/" + key.key_id.hex()
    require(index not in state, "key_in_use",
            "this public key already belongs to another device; each device has its own key")
    state.put(index, did)
    state.put(device_key(did), {
        "kind": "device", "maker": maker.id, "serial": serial, "model": model,
        "key": key.to_value(), "patient": None, "status": "active", "seq": 0,
        "registered": ctx.height,
    })


@register("device.bind", body=DeviceRef)
def _bind(state: State, stx: SignedTx, ctx: Context) -> None:
    """A patient binds a registered device, or a gateway account, to her account."""
    patient = load_account(state, stx.tx.account)
    require(patient.kind == "patient", "not_patient",
            f"only a patient binds devices; this is a {patient.kind} account")
    uid = DeviceRef.parse(stx.tx.body).device
    record = get_uploader(state, uid)
    if record is None:
        gw = state.get("acct/" + uid.hex())
        require(gw is not None and gw["kind"] == "gateway", "unknown_device",
                f"no device or gateway {uid.hex()[:16]}: ask the maker to register it, or "
                "create the gateway account first")
        require(gw["sponsor"] in (patient.id,) or state.get("acct/" + gw["sponsor"].hex())[
            "kind"] == "organization", "not_allowed",
            "a gateway sponsored by another patient cannot be bound to this one")
        record = {"kind": "gateway", "patient": None, "status": "active", "seq": 0,
                  "registered": ctx.height}
    require(record["status"] == "active", "revoked_device",
            f"{record['kind']} {uid.hex()[:16]} was revoked; it can never upload again")
    require(record["patient"] != patient.id, "already_bound",
            f"{record['kind']} {uid.hex()[:16]} is already bound to this patient")
    require(record["patient"] is None, "bound_elsewhere",
            f"{record['kind']} {uid.hex()[:16]} is bound to another patient, who must unbind "
            "it first")
    record["patient"] = patient.id
    record["bound"] = ctx.height
    state.put(device_key(uid), record)


@register("device.unbind", body=DeviceRef)
def _unbind(state: State, stx: SignedTx, ctx: Context) -> None:
    """The patient a device is bound to releases it (its sequence number is kept)."""
    uid = DeviceRef.parse(stx.tx.body).device
    record = get_uploader(state, uid)
    require(record is not None and record["patient"] == stx.tx.account, "not_bound",
            f"device {uid.hex()[:16]} is not bound to this account")
    assert record is not None
    record["patient"] = None
    state.put(device_key(uid), record)


@register("device.revoke", body=DeviceRef)
def _revoke(state: State, stx: SignedTx, ctx: Context) -> None:
    """Revoke a device or gateway for good (its maker, its patient, or a gateway's sponsor)."""
    uid = DeviceRef.parse(stx.tx.body).device
    record = get_uploader(state, uid)
    require(record is not None, "unknown_device", f"no device or gateway {uid.hex()[:16]}")
    assert record is not None
    require(record["status"] == "active", "revoked_device",
            f"{record['kind']} {uid.hex()[:16]} is already revoked")
    who = stx.tx.account
    allowed = {record["patient"], record.get("maker")}
    if record["kind"] == "gateway":
        allowed.add(state.get("acct/" + uid.hex())["sponsor"])
    require(who in allowed, "not_allowed",
            "only the maker, the bound patient or the gateway's sponsor may revoke it")
    record["status"] = "revoked"
    record["revoked"] = ctx.height
    state.put(device_key(uid), record)


@register("vault.custody", body=VaultCustody)
def _custody(state: State, stx: SignedTx, ctx: Context) -> None:
    """A patient takes custody of her data keys (an X25519 public key), or hands it back."""
    patient = load_account(state, stx.tx.account)
    require(patient.kind == "patient", "not_patient", "only a patient sets a custody key")
    pub = VaultCustody.parse(stx.tx.body).x25519
    if pub is None:
        state.delete(custody_key(patient.id))
        return
    state.put(custody_key(patient.id), {"x25519": pub, "since": ctx.height})

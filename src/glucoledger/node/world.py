"""A small care network on one node, for the demo, the benchmark and tests.

``World.create`` adds to a node: a maker account (sponsored by the node's organization) with
three release keys and a firmware threshold of two, and ``World.add_patient`` /
``World.add_device`` make patients (self-registered, one key) and devices (registered by the
maker, bound by the patient). Private keys of these simulated parties are kept in the node's
wallet (``maker-1..3``, ``patient-<name>``, ``device-<serial>``) and their public ids in
``<data>/directory.json``, so later commands can act for them by name. Real devices keep
their own keys: only the demo simulates them here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..crypto import PrivateKey, generate
from ..crypto.keys import Algorithm
from ..errors import InputError, NotFoundError
from ..state.accounts_model import make_policy
from .devices import bind_device, create_keyed_account, org_account, register_device
from .service import Node

__all__ = ["Directory", "World"]


class Directory:
    """Names -> ids of the simulated parties, in ``<data>/directory.json`` (public data)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "directory.json"
        try:
            self.doc: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.doc = {"maker": {}, "patients": {}, "devices": {}, "bindings": {}}

    def save(self) -> None:
        self.path.write_text(json.dumps(self.doc, indent=2, sort_keys=True) + "\n")

    def resolve(self, section: str, name: str) -> bytes:
        """A name from the directory, or a 64-hex-digit id."""
        if name in self.doc[section]:
            return bytes.fromhex(self.doc[section][name])
        try:
            raw = bytes.fromhex(name)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            known = ", ".join(sorted(self.doc[section])) or "none yet"
            raise InputError(f"{name!r} is neither a known {section[:-1]} name ({known}) nor "
                             "a 64-hex-digit id")
        return raw

    def name_of(self, section: str, ident: bytes) -> str:
        for name, h in self.doc[section].items():
            if h == ident.hex():
                return name
        return ident.hex()[:16]


@dataclass(frozen=True)
class Device:
    id: bytes
    serial: str
    model: str
    key: PrivateKey


@dataclass(frozen=True)
class Patient:
    id: bytes
    name: str
    key: PrivateKey


class World:
    def __init__(self, node: Node, maker: bytes, maker_keys: list[PrivateKey]) -> None:
        self.node = node
        self.maker = maker
        self.maker_keys = maker_keys
        self.directory = Directory(node.data_dir)

    @classmethod
    def create(cls, node: Node) -> World:
        keys = [generate("ed25519") for _ in range(3)]
        policy = make_policy([(k.public, {"default": 1, "firmware": 1}) for k in keys],
                             {"default": 1, "firmware": 2, "cosigners": 2})
        org, org_key = org_account(node)
        maker = create_keyed_account(node, "maker", keys, policy=policy, sponsor=(org, [org_key]))
        for i, k in enumerate(keys, 1):
            node.wallet.save(f"maker-{i}", k)
        world = cls(node, maker, keys)
        world.directory.doc["maker"] = {"maker": maker.hex()}
        world.directory.save()
        return world

    @classmethod
    def load(cls, node: Node) -> World:
        d = Directory(node.data_dir)
        if "maker" not in d.doc["maker"]:
            raise NotFoundError("this node has no simulated maker yet: run `glucoledger demo` "
                                "or `glucoledger simulate` first")
        keys = [node.wallet.load(f"maker-{i}") for i in (1, 2, 3)]
        return cls(node, bytes.fromhex(d.doc["maker"]["maker"]), keys)

    def add_patient(self, name: str) -> Patient:
        key = generate("ed25519")
        pid = create_keyed_account(self.node, "patient", [key])
        self.node.wallet.save(f"patient-{name}", key)
        self.directory.doc["patients"][name] = pid.hex()
        self.directory.save()
        return Patient(pid, name, key)

    def patient(self, name: str) -> Patient:
        pid = self.directory.resolve("patients", name)
        pname = self.directory.name_of("patients", pid)
        return Patient(pid, pname, self.node.wallet.load(f"patient-{pname}"))

    def add_device(self, serial: str, model: str = "CGM-G7", *, alg: Algorithm = "ed25519",
                   patient: Patient | None = None) -> Device:
        key = generate(alg)
        did = register_device(self.node, self.maker, self.maker_keys[:1], serial, model,
                              key.public)
        self.node.wallet.save(f"device-{serial}", key)
        self.directory.doc["devices"][serial] = did.hex()
        if patient is not None:
            bind_device(self.node, patient.id, [patient.key], did)
            self.directory.doc["bindings"][serial] = patient.name
        self.directory.save()
        return Device(did, serial, model, key)

    def device(self, serial: str) -> Device:
        did = self.directory.resolve("devices", serial)
        name = self.directory.name_of("devices", did)
        return Device(did, name, "", self.node.wallet.load(f"device-{name}"))

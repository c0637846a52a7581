"""A small care network on one node, for the demo, the benchmark and tests.

``World.create`` adds to a node: a maker account (sponsored by the node's organization) with
three release keys and a firmware threshold of two, and ``World.add_patient`` /
``World.add_device`` make patients (self-registered, one key) and devices (registered by the
maker, bound by the patient). Private keys of these simulated parties are kept in the node's
wallet (``maker-1..3``, ``patient-<name>``, ``device-<serial>``) and their names in the
node's one registry of names (``node/registry.py``), so later commands act for them by
name; a simulated patient is an account like any other (she grants, is read, gets
devices). Real devices keep their own keys: only the demo simulates them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..crypto import PrivateKey, generate
from ..crypto.keys import Algorithm
from ..errors import InputError, NotFoundError
from ..state.accounts_model import make_policy
from ..state.devices import device_id
from .accounts import AddressBook
from .devices import bind_device, keyed_account_tx, org_account, register_tx
from .keystore import Wallet
from .pending import Entry, Setups
from .registry import Registry
from .service import Node, Receipt

__all__ = ["Directory", "World", "check_serial"]


class Directory:
    """Names -> ids of patients and devices, read from the node's one registry of names
    (``node/registry.py``): a patient is any patient account (custodial or simulated), a
    device a serial this node registered."""

    def __init__(self, data_dir: Path) -> None:
        self.registry = Registry(data_dir)

    def resolve(self, section: str, name: str) -> bytes:
        """A patient or device by name, or a 64-hex-digit id."""
        if section == "patients":
            known = {n: e["id"] for n, e in self.registry.accounts().items()
                     if e["kind"] == "patient"}
        else:
            known = {n: e["id"] for n, e in self.registry.devices().items()}
        if name in known:
            return bytes.fromhex(known[name])
        try:
            raw = bytes.fromhex(name)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            what = "patient" if section == "patients" else "device"
            listed = ", ".join(sorted(known)) or "none yet"
            raise InputError(f"{name!r} is neither a known {what} name ({listed}) nor "
                             "a 64-hex-digit id")
        return raw

    def name_of(self, section: str, ident: bytes) -> str:
        entries = (self.registry.accounts() if section == "patients"
                   else self.registry.devices())
        for name, e in entries.items():
            if e["id"] == ident.hex():
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


def check_serial(serial: str) -> None:
    """A device this node simulates keeps its key in the wallet as ``device-SERIAL``: raise
    InputError unless the serial can name it."""
    if not Wallet.valid_name(f"device-{serial}"):
        raise InputError(f"serial {serial!r} cannot name the device's key in this node's "
                         "wallet: use 1-57 letters, digits, or _.@- (a device that keeps its "
                         "own key registers over the API: POST /api/devices)")


class World:
    def __init__(self, node: Node, maker: bytes, maker_keys: list[PrivateKey]) -> None:
        self.node = node
        self.maker = maker
        self.maker_keys = maker_keys
        self.directory = Directory(node.data_dir)
        #: Setups a kill had interrupted that ``open`` finished, by slot (node/pending.py).
        self.finished: dict[str, Receipt] = {}

    @classmethod
    def create(cls, node: Node) -> World:
        keys = [generate("ed25519") for _ in range(3)]
        policy = make_policy([(k.public, {"default": 1, "firmware": 1}) for k in keys],
                             {"default": 1, "firmware": 2, "cosigners": 2})
        org, org_key = org_account(node)
        maker, stx = keyed_account_tx(node, "maker", keys, policy=policy,
                                      sponsor=(org, [org_key]))
        named = {f"maker-{i}": k for i, k in enumerate(keys, 1)}
        # keys saved before the ledger sees the maker (node/pending.py)
        Setups(node).make(Entry("maker", "maker", maker, "maker", tuple(named)), named,
                          lambda: stx)
        return cls(node, maker, keys)

    @classmethod
    def load(cls, node: Node) -> World:
        maker = Registry(node.data_dir).maker()
        keys = [node.wallet.load(f"maker-{i}") for i in (1, 2, 3)]
        return cls(node, maker, keys)

    @classmethod
    def open(cls, node: Node) -> World:
        """The node's maker, created on first use (or finished, if a kill interrupted its
        creation: ``Setups.settle``)."""
        finished = Setups(node).settle()
        try:
            world = cls.load(node)
        except NotFoundError:
            world = cls.create(node)
        world.finished = finished
        return world

    def add_patient(self, name: str) -> Patient:
        """A self-registered simulated patient (one key, in the wallet as patient-NAME), named
        in the registry like every account. Raises InputError if the name is taken."""
        if name in self.directory.registry.accounts():
            raise InputError(f"the name {name!r} is taken on this node; choose another")
        key = generate("ed25519")
        pid, stx = keyed_account_tx(self.node, "patient", [key])
        Setups(self.node).make(Entry("account", name, pid, "patient", (f"patient-{name}",)),
                               {f"patient-{name}": key}, lambda: stx)
        return Patient(pid, name, key)

    def next_simulated(self) -> int:
        """The first k with no account named sim-k (simulated patients are sim-1, sim-2...)."""
        taken = self.directory.registry.accounts()
        k = 1
        while f"sim-{k}" in taken:
            k += 1
        return k

    def patient(self, name: str) -> Patient:
        """A patient account (custodial or simulated) with the key it signs with."""
        ident = AddressBook(self.node).get(name)
        if ident.kind != "patient":
            raise InputError(f"{name!r} is a {ident.kind}, not a patient")
        return Patient(ident.id, ident.name, self.node.wallet.load(ident.key_names[0]))

    def add_device(self, serial: str, model: str = "CGM-G7", *, alg: Algorithm = "ed25519",
                   patient: Patient | None = None) -> Device:
        check_serial(serial)  # before the ledger records a device whose key cannot be kept
        key = generate(alg)
        setups = Setups(self.node)
        self.finished.update(setups.settle())
        if f"device:{serial}" in self.finished:  # the rerun of an interrupted register: done
            return self.device(serial)
        if serial in self.directory.registry.devices():
            raise InputError(f"a device with serial {serial!r} is already registered on this "
                             "node (`glucoledger device list` shows it); a new device needs "
                             "its own serial")
        did = device_id(self.maker, serial)
        # the key is saved before the ledger sees the device (node/pending.py)
        setups.make(Entry("device", serial, did, "device", (f"device-{serial}",), model),
                    {f"device-{serial}": key},
                    lambda: register_tx(self.node, self.maker, self.maker_keys[:1], serial,
                                        model, key.public)[1],
                    account=self.maker)
        if patient is not None:
            bind_device(self.node, patient.id, [patient.key], did)
        return Device(did, serial, model, key)

    def device(self, serial: str) -> Device:
        did = self.directory.resolve("devices", serial)
        name = self.directory.name_of("devices", did)
        model = self.directory.registry.devices().get(name, {}).get("model") or ""
        return Device(did, name, model, self.node.wallet.load(f"device-{name}"))

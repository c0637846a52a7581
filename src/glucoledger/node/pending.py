"""Setups that give the ledger a key this node keeps: the private key is saved first.

An account (``account create``), a Nightscout gateway (``nightscout-uploader``), a simulated
patient, the simulated maker and a device it registers (``device register``) each put a
public key on the ledger whose private key lives in the node's wallet. The key used to be
saved after the ledger accepted the transaction, so a kill -9 in between left an account or
device on the ledger whose key was lost for good. Now every such setup (``Setups.make``)
runs, one at a time per folder (``files.locked`` on ``.setup.lock``):

1. a *pending* entry is written to the registry of names (``names.json``, ``"pending"``,
   ``node/registry.py``), after checking that the name and the wallet key names are free
   (a pending name counts as taken): what is made, its name, id, wallet key names and the
   signed transaction (public: a body, public keys and signatures; no secret);
2. the private keys are saved in the wallet (sealed under the master key, written
   atomically and fsynced: ``Wallet.save``), never over an existing key;
3. the transaction is submitted with ``retry`` (a copy already accepted counts as this one);
4. accepted: the entry becomes the name (an account, a device or the maker) in one atomic
   write. Refused: the entry and its keys are removed (the entry held the transaction's
   only copy, so it can never land) and the refusal is raised.

Invariant: a transaction on the ledger has its keys on disk, whatever the moment of a kill
(they were fsynced before it was submitted). ``Setups.settle`` finishes what a kill left,
at the start of every setup (so rerunning the interrupted command finishes it): an entry
whose keys are all there is submitted again (``retry``: one that landed is not ordered
twice) and named, or dropped with its keys if refused; an entry with a key missing was never
submitted (keys come first) and is dropped with the keys it has, unless the ledger holds it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto import PrivateKey
from ..errors import GlucoledgerError, InputError, MalformedError, RejectedError
from ..files import locked, read_json
from ..ledger.tx import SignedTx
from ..state.devices import device_id
from .registry import FILE, Registry
from .service import Node, Receipt

__all__ = ["KINDS_OF_SETUP", "Entry", "Setups", "interrupted", "pending_names"]

#: What a pending entry makes: an account (custodial, gateway, simulated patient), a
#: device registered by this node's maker, or the simulated maker itself.
KINDS_OF_SETUP = ("account", "device", "maker")


@dataclass(frozen=True, slots=True)
class Entry:
    """One setup: ``what`` (KINDS_OF_SETUP), the local ``name`` (an account name, a device
    serial, "maker"), the ledger ``id``, the account ``kind`` (or "device"), the wallet
    ``keys`` names and, for a device, its ``model``."""

    what: str
    name: str
    id: bytes
    kind: str
    keys: tuple[str, ...]
    model: str | None = None

    @property
    def slot(self) -> str:
        return f"{self.what}:{self.name}"

    def to_doc(self, stx: SignedTx) -> dict[str, Any]:
        return {"what": self.what, "name": self.name, "id": self.id.hex(), "kind": self.kind,
                "keys": list(self.keys), "model": self.model, "tx": stx.raw.hex()}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Entry:
        return cls(doc["what"], doc["name"], bytes.fromhex(doc["id"]), doc["kind"],
                   tuple(doc["keys"]), doc.get("model"))


def interrupted(data_dir: Path) -> list[str]:
    """For ``verify`` (reads only): a sentence for each setup a stopped command left, saying
    that nothing is lost and what finishes it. A missing or damaged names file: none (the
    commands that read it say what to do)."""
    path = Path(data_dir) / FILE
    if not path.exists():
        return []
    try:
        doc = read_json(path, what="the node's names")
        pending = dict(doc.get("pending", {}))
    except (GlucoledgerError, AttributeError, TypeError, ValueError):
        return []
    left, damaged = [], []
    for slot, e in sorted(pending.items()):
        try:
            left.append(_parsed(slot, e)[0])
        except MalformedError as exc:
            damaged.append(exc.message)
    what = {"account": "account", "device": "device", "maker": "simulated maker"}
    return [f"the {what.get(e.what, e.what)} {e.name!r} was being set up when a command "
            "stopped (its key is saved): the next `account create`, `device register` or "
            "`nightscout-uploader` on this folder finishes it (or drops it if the ledger "
            "refuses it)" for e in sorted(left, key=lambda e: e.slot)] + damaged


def pending_names(doc: Mapping[str, Any], what: str) -> set[str]:
    """The names of ``what`` (KINDS_OF_SETUP) that a pending setup holds in a registry
    document: taken, as much as a finished one."""
    return {e["name"] for e in doc.get("pending", {}).values() if e.get("what") == what}


def _damaged(slot: str, why: str) -> MalformedError:
    return MalformedError(
        f"the node's names ({FILE}) hold a damaged pending setup {slot!r} ({why}): nothing "
        f"was submitted, named or removed; restore {FILE} from a backup, or remove "
        f"\"{slot}\" from its \"pending\" (the wallet keys it names stay)")


def _parsed(slot: str, doc: object) -> tuple[Entry, SignedTx]:
    """A pending entry of ``names.json`` and its transaction, checked for shape. Raises
    MalformedError (``_damaged``)."""
    try:
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        entry = Entry.from_doc(doc)
        if (entry.what not in KINDS_OF_SETUP or not isinstance(entry.name, str)
                or not isinstance(entry.kind, str) or len(entry.id) != 32 or not entry.keys
                or not all(isinstance(k, str) for k in entry.keys)
                or not (entry.model is None or isinstance(entry.model, str))
                or slot != entry.slot or not isinstance(doc["tx"], str)):
            raise ValueError("fields")
        stx = SignedTx.decode(bytes.fromhex(doc["tx"]))
    except (GlucoledgerError, AttributeError, KeyError, TypeError, ValueError):
        raise _damaged(slot, "its fields do not read as a setup") from None
    if _public_keys(entry, stx) is None:
        raise _damaged(slot, f"its transaction does not make the {entry.what} it names")
    return entry, stx


def _public_keys(entry: Entry, stx: SignedTx) -> list[dict[str, Any]] | None:
    """The public keys ``stx`` gives the ledger for what ``entry`` says it makes, or None
    when ``stx`` makes something else (another id, type, kind or serial)."""
    tx = stx.tx
    body = tx.body
    try:
        if entry.what in ("account", "maker"):
            if tx.type != "account.create" or tx.account != entry.id \
                    or body.get("kind") != entry.kind:
                return None
            return [c["key"] for c in body["policy"]["cosigners"]]
        if tx.type != "device.register" or body.get("serial") != entry.name \
                or device_id(tx.account, entry.name) != entry.id:
            return None
        return [body["key"]]
    except (AttributeError, KeyError, TypeError):
        return None


def _held(doc: Mapping[str, Any], entry: Entry) -> str | None:
    """Why ``entry``'s name cannot be used in ``doc`` (None: it can)."""
    if entry.what == "account":
        held = doc["accounts"].get(entry.name)
        if held is not None:
            return f"the name {entry.name!r} is taken on this node (a {held['kind']})"
    elif entry.what == "device":
        if entry.name in doc["devices"]:
            return f"a device with serial {entry.name!r} is already registered on this node"
    elif doc.get("maker"):
        return "this node has a simulated maker already"
    if entry.slot in doc.get("pending", {}):
        return f"{entry.name!r} is being set up by another command on this folder"
    return None


def _promote(doc: dict[str, Any], entry: Entry) -> None:
    """Name what ``entry`` made, and drop the entry (one registry write)."""
    if entry.what == "account":
        doc["accounts"][entry.name] = {"id": entry.id.hex(), "kind": entry.kind,
                                       "keys": list(entry.keys)}
    elif entry.what == "device":
        doc["devices"][entry.name] = {"id": entry.id.hex(), "model": entry.model}
    else:
        doc["maker"] = entry.id.hex()
    doc.get("pending", {}).pop(entry.slot, None)


class Setups:
    """The node's setups that save a key before its transaction (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = Registry(node.data_dir)

    @contextlib.contextmanager
    def _one_at_a_time(self) -> Iterator[None]:
        with locked(self.node.data_dir / ".setup.lock", "setting up a key"):
            yield

    def settle(self) -> dict[str, Receipt]:
        """Finish or drop every setup a crash left (module docstring). Returns the
        finished ones by slot ("account:alice", "device:SN-1", "maker:maker") with the
        receipt of their transaction."""
        with self._one_at_a_time():
            return self._settle()

    def make(self, entry: Entry, keys: Mapping[str, PrivateKey],
             build: Callable[[], SignedTx], *, account: bytes | None = None) -> Receipt:
        """Set ``entry`` up: claim its name, save ``keys`` (wallet name -> key), submit what
        ``build`` signs (under ``account``'s lock when it takes that account's next nonce),
        name it. Raises InputError (name or key name taken: nothing written), RejectedError
        (refused: nothing kept), and what ``Node.submit`` raises (then the entry stays and
        the next setup finishes it)."""
        if sorted(keys) != sorted(entry.keys):
            raise ValueError("the keys saved must be the entry's")
        with self._one_at_a_time():
            self._settle()
            lock = self.node.account_lock(account) if account is not None else None
            with lock if lock is not None else contextlib.nullcontext():
                stx = build()
                self._claim(entry, stx)
                try:
                    for name, key in keys.items():
                        self.node.wallet.save(name, key)
                except BaseException:
                    self._drop(entry)
                    raise
                receipt = self.node.submit([stx.raw], retry=True)[0]
            if not receipt.ok:
                self._drop(entry)
                raise RejectedError(receipt.result.message, code=receipt.result.code)
            self.registry.update(lambda doc: _promote(doc, entry))
            return receipt

    # --- under the setup lock ----------------------------------------------------------------
    def _claim(self, entry: Entry, stx: SignedTx) -> None:
        taken = [n for n in entry.keys if self.node.wallet.exists(n)]
        if taken:  # never replaced: it may be the only copy of a key the ledger knows
            what = {"account": "choose another account name",
                    "device": "use another serial",
                    "maker": "this node's names (names.json) lost its maker: restore "
                             "names.json from a backup"}[entry.what]
            raise InputError(f"the wallet already holds a key named {taken[0]}, which this "
                             f"setup would replace: {what}")

        def change(doc: dict[str, Any]) -> None:
            why = _held(doc, entry)
            if why is not None:
                raise InputError(f"{why}; choose another")
            doc.setdefault("pending", {})[entry.slot] = entry.to_doc(stx)
        self.registry.update(change)

    def _drop(self, entry: Entry) -> None:
        """Remove a setup that never landed: its keys first, then its entry."""
        for name in entry.keys:
            self.node.wallet.delete(name)
        self.registry.update(lambda doc: doc.get("pending", {}).pop(entry.slot, None))

    def _landed(self, stx: SignedTx) -> Receipt | None:
        rows = self.node.store.find_results([stx.tx_hash]).get(stx.tx_hash, [])
        ok = [r for r in rows if r.decoded_result().ok]
        return None if not ok else Receipt(ok[0].hash, ok[0].idx, ok[0].height,
                                           ok[0].decoded_result())

    def _settle(self) -> dict[str, Receipt]:
        left = dict(self.registry.load().get("pending", {}))
        if not left:
            return {}
        # Every entry checked before any is acted on: one whose transaction makes something
        # else than it names (another id, kind or serial), or whose saved keys are not that
        # transaction's, is damaged: submitting it would name the wrong thing, and dropping
        # it would delete keys another account needs.
        parsed = []
        for slot, doc in sorted(left.items()):
            entry, stx = _parsed(slot, doc)
            public = _public_keys(entry, stx) or []
            for name in entry.keys:
                if self.node.wallet.exists(name) and \
                        self.node.wallet.load(name).public.to_value() not in public:
                    raise _damaged(slot, f"the wallet key {name} is not one its transaction "
                                         "gives the ledger")
            parsed.append((slot, entry, stx))
        self.node.refresh()
        done: dict[str, Receipt] = {}
        for slot, entry, stx in parsed:
            if all(self.node.wallet.exists(n) for n in entry.keys):
                receipt: Receipt | None = self.node.submit([stx.raw], retry=True)[0]
            else:  # never submitted (keys come first), unless the ledger says otherwise
                receipt = self._landed(stx)
            if receipt is not None and receipt.ok:
                self.registry.update(functools.partial(_promote, entry=entry))
                done[slot] = receipt
            else:
                self._drop(entry)
        return done

"""One registry of local names on a node: accounts (people, organizations, gateways and
simulated patients), devices and the simulated maker, in ``<data>/names.json``.

The ledger knows only ids; names are this node's. Before this file there were two registries
with different key naming, the address book (``addressbook.json``: custodial accounts and
Nightscout gateways) and the simulator's directory (``directory.json``: the maker, simulated
patients, devices), so a patient made with ``account create`` could not get a device and a
simulated patient could not be granted. Invariants:

- one name names one thing: an account name is unique across all kinds; a device serial is
  unique among devices (serials and account names are separate namespaces, as on a label);
- every write replaces the file atomically and durably (``files.atomic_write_json``), from
  a fresh read, under one lock per process and ``files.locked`` (``.names.lock``) across
  processes, so concurrent writers (threads, or a command next to ``serve``) all land;
- reads are cached by the file's identity (inode, mtime, size): a lookup costs a ``stat``;
- an older folder is migrated on first use: both old files are merged into ``names.json``
  (written first), then renamed ``*.migrated`` (kept, not deleted). A name that is both an
  address-book account and a simulated patient with another id cannot be merged: the folder
  is refused with a message naming the clash, and nothing is written;
- a damaged or newer-format file is refused (MalformedError), never overwritten.

Format (version 1)::

    {"format": 1,
     "accounts": {NAME: {"id": HEX, "kind": KIND, "keys": [WALLET NAME, ...]}},
     "devices": {SERIAL: {"id": HEX, "model": MODEL}},
     "maker": HEX or null,
     "pending": {SLOT: {...}}}   (optional: setups whose keys are saved and whose
                                  transaction may not have landed, node/pending.py)

A pending setup's name is taken as much as a finished one's.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..errors import GlucoledgerError, MalformedError, NotFoundError
from ..files import atomic_write_json, locked, read_json, storage_error

__all__ = ["FILE", "FORMAT", "Registry"]

FILE = "names.json"
FORMAT = 1
_OLD_BOOK = "addressbook.json"
_OLD_DIRECTORY = "directory.json"


def _empty() -> dict[str, Any]:
    return {"format": FORMAT, "accounts": {}, "devices": {}, "maker": None}


class Registry:
    """The node's names (``<data>/names.json``). See the module docstring for invariants."""

    _lock: ClassVar[threading.RLock] = threading.RLock()
    _cache: ClassVar[dict[Path, tuple[tuple[int, int, int], dict[str, Any]]]] = {}

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / FILE

    # --- reading ---------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """The registry as a document (do not mutate it: use :meth:`update`)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                if not self.path.exists():
                    return self._migrate()
            return self.load()
        except OSError as exc:
            raise storage_error(exc, self.path, "reading the node's names") from None
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._cache.get(self.path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        doc = _checked(read_json(self.path, what="the node's names"), self.path)
        self._cache[self.path] = (sig, doc)
        return doc

    def accounts(self) -> dict[str, dict[str, Any]]:
        return dict(self.load()["accounts"])

    def devices(self) -> dict[str, dict[str, Any]]:
        return dict(self.load()["devices"])

    def label(self, ident: bytes) -> str:
        """What a person reads for ``ident``: its account name or device serial
        ("alice", "SN-1"), or "id" and the first 12 hex digits when this node has no
        name for it. Never raises: a missing or damaged names file gives the hex form."""
        hexid = ident.hex()
        try:
            doc = self.load()
        except (MalformedError, NotFoundError, OSError, GlucoledgerError):
            return f"id {hexid[:12]}"
        for name, e in doc["accounts"].items():
            if e.get("id") == hexid:
                return str(name)
        for serial, e in doc["devices"].items():
            if e.get("id") == hexid:
                return str(serial)
        return f"id {hexid[:12]}"

    def maker(self) -> bytes:
        hexid = self.load()["maker"]
        if not hexid:
            raise NotFoundError("this node has no simulated maker yet: run `glucoledger demo`, "
                                "`glucoledger simulate` or `glucoledger device register` first")
        return bytes.fromhex(hexid)

    # --- writing ---------------------------------------------------------------------------
    def update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to a fresh copy and replace the file atomically. If ``change``
        raises, nothing is written."""
        with self._lock, locked(self.data_dir / ".names.lock", "changing the node's names"):
            doc = copy.deepcopy(self.load())
            change(doc)
            atomic_write_json(self.path, _checked(doc, self.path))
            self._cache.pop(self.path, None)

    # --- migration -------------------------------------------------------------------------
    def _migrate(self) -> dict[str, Any]:
        """Merge ``addressbook.json`` and ``directory.json`` (if any) into ``names.json``."""
        book_path = self.data_dir / _OLD_BOOK
        dir_path = self.data_dir / _OLD_DIRECTORY
        if not book_path.exists() and not dir_path.exists():
            return _empty()
        doc = _empty()
        if book_path.exists():
            book = read_json(book_path, what="the node's old address book")
            if not isinstance(book, dict):
                raise MalformedError(f"{book_path} is not an address book; restore it from a "
                                     "backup")
            for name, e in book.items():
                doc["accounts"][name] = {"id": e["id"], "kind": e["kind"],
                                         "keys": list(e["keys"])}
        if dir_path.exists():
            old = read_json(dir_path, what="the node's old simulator directory")
            if not isinstance(old, dict):
                raise MalformedError(f"{dir_path} is not a directory; restore it from a backup")
            doc["maker"] = old.get("maker", {}).get("maker")
            for name, hexid in old.get("patients", {}).items():
                mine = doc["accounts"].get(name)
                if mine is not None and mine["id"] != hexid:
                    raise MalformedError(
                        f"cannot merge this folder's names: {name!r} is an account in "
                        f"{_OLD_BOOK} and a different simulated patient in {_OLD_DIRECTORY}; "
                        f"rename one of them in its file, then run the command again")
                doc["accounts"][name] = {"id": hexid, "kind": "patient",
                                         "keys": [f"patient-{name}"]}
            for serial, hexid in old.get("devices", {}).items():
                doc["devices"][serial] = {"id": hexid, "model": None}
        atomic_write_json(self.path, _checked(doc, self.path))
        for old_path in (book_path, dir_path):
            if old_path.exists():
                try:
                    os.replace(old_path, old_path.with_name(old_path.name + ".migrated"))
                except OSError as exc:
                    raise storage_error(exc, old_path, "retiring the old names file") from None
        self._cache.pop(self.path, None)
        return doc


def _checked(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("format"), int):
        raise MalformedError(f"{path} is not a names file; restore it from a backup")
    if doc["format"] > FORMAT:
        raise MalformedError(f"{path} was written by a newer glucoledger (format "
                             f"{doc['format']}); upgrade glucoledger to open this folder")
    if not (isinstance(doc.get("accounts"), dict) and isinstance(doc.get("devices"), dict)):
        raise MalformedError(f"{path} is damaged (no accounts or devices); restore it from a "
                             "backup")
    return doc


class Label:
    """An id that formats as its name (``Registry.label``), looked up only when formatted:
    messages built on a hot path (``f"device {Label(d, uid)}"`` in a refusal) cost nothing
    until one is raised."""

    __slots__ = ("data_dir", "ident")

    def __init__(self, data_dir: Path, ident: bytes) -> None:
        self.data_dir, self.ident = data_dir, ident

    def __format__(self, spec: str) -> str:
        return format(Registry(self.data_dir).label(self.ident), spec)

    def __str__(self) -> str:
        return Registry(self.data_dir).label(self.ident)


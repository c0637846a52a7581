"""The node's secrets: its master key, its signing key and its custodial wallet.

- The master key (32 bytes) comes from ``GLUCOLEDGER_MASTER_KEY`` (base64) or from the file
  ``<data>/master.key`` (created with mode 0600 at ``init``). A copy of the data folder made
  without it reveals no key and no reading.
- The node key and every custodial key in ``<data>/wallet/`` are sealed under the master key
  (AES-256-GCM, the key's name bound as associated data, so files cannot be swapped).
- Self-custody keys live elsewhere, in Argon2id password files (``crypto.keyfile``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from .. import codec
from ..crypto import PrivateKey
from ..crypto.seal import KEY_BYTES, new_key, open_sealed, seal
from ..errors import (
    GlucoledgerError,
    InputError,
    NotFoundError,
    StorageError,
    VerificationError,
)
from ..files import atomic_write, storage_error

__all__ = ["MASTER_ENV", "Wallet", "create_master_key", "load_master_key"]

MASTER_ENV = "GLUCOLEDGER_MASTER_KEY"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _write_private(path: Path, data: bytes) -> None:
    """A key file, readable by the owner only, written atomically (files.atomic_write)."""
    atomic_write(path, data, mode=0o600)


def create_master_key(data_dir: Path) -> None:
    if os.environ.get(MASTER_ENV):
        return
    path = data_dir / "master.key"
    if not path.exists():
        _write_private(path, base64.b64encode(new_key()) + b"\n")


def load_master_key(data_dir: Path) -> bytes:
    text = os.environ.get(MASTER_ENV)
    source = f"${MASTER_ENV}"
    if not text:
        path = data_dir / "master.key"
        source = str(path)
        try:
            text = path.read_bytes().decode("ascii", "replace").strip()
        except FileNotFoundError:
            raise StorageError(
                f"no master key: set {MASTER_ENV} or restore {path} (without it the node's "
                "keys and data cannot be opened)"
            ) from None
        except OSError as exc:
            raise storage_error(exc, path, "reading the master key") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise InputError(f"the master key in {source} is not 32 bytes of base64 (damaged?): "
                         "restore it from your backup of the key")
    return key


class Wallet:
    """Named private keys sealed under the master key."""

    def __init__(self, data_dir: Path, master: bytes) -> None:
        self.dir = data_dir / "wallet"
        self._master = master

    @staticmethod
    def valid_name(name: str) -> bool:
        """Whether ``name`` can name a key here (1-64 letters, digits, or _.@-)."""
        return bool(_NAME.match(name))

    def _path(self, name: str) -> Path:
        if not self.valid_name(name):
            raise InputError(f"key name {name!r} must be 1-64 letters, digits, or _.@-")
        return self.dir / f"{name}.key"

    def save(self, name: str, key: PrivateKey) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = codec.encode({"alg": key.alg, "sk": key.private_bytes()})
        _write_private(self._path(name), seal(self._master, payload, "wallet-key", name.encode()))

    def load(self, name: str) -> PrivateKey:
        path = self._path(name)
        try:
            box = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no key named {name!r} in {self.dir}") from None
        try:
            opened = open_sealed(self._master, box, "wallet-key", name.encode())
        except VerificationError:
            raise VerificationError(self.unopenable(name)) from None
        value = codec.decode(opened)
        return PrivateKey.from_private_bytes(value["alg"], value["sk"])

    def unopenable(self, name: str) -> str:
        """What to do when key ``name`` does not open under the master key."""
        return (f"the wallet key {name} in {self.dir} does not open under the master key "
                f"(altered, or sealed under another master key: is master.key, or "
                f"${MASTER_ENV}, this node's?): restore the right master key, or the key "
                "file, from a backup")

    def damaged(self) -> list[str]:
        """Names of the wallet's keys that do not open under the master key (AES-GCM with
        the key's name as associated data): altered, or sealed under another master key."""
        out = []
        for path in sorted(self.dir.glob("*.key")) if self.dir.is_dir() else []:
            try:
                self.load(path.stem)
            except (GlucoledgerError, ValueError, KeyError, TypeError):
                out.append(path.stem)
        return out

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def names(self) -> list[str]:
        if not self.dir.exists():
            return []
        return sorted(p.stem for p in self.dir.glob("*.key"))

    def node_keys(self) -> list[PrivateKey]:
        """This member's node keys: ``node`` and the ones made for rotations (``node-*``,
        `consortium node-key`). Governance says which signs at which height."""
        return [self.load(n) for n in self.names() if n == "node" or n.startswith("node-")]

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

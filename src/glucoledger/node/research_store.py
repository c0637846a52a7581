"""The node's research side files, sealed at rest under its master key.

Two files, both only on this node and never released as they are:

- ``<data>/research.key``: the node's research secret (32 random bytes, created on first
  use). It keys every pseudonym and date shift (node/deid.py); whoever holds it and the
  participants' account ids could link a release back to them, so it is a secret like the
  wallet's keys.
- ``<data>/research-profiles.bin``: what each participant told the node at opt-in (name,
  birth date, sex, state, ZIP, diabetes type), keyed by her account id.
- ``<data>/research-released.bin``: per study, the first row of quasi-identifiers each
  pseudonym was released with (node/deid.py ``generalise``'s ``fixed``): later releases
  never refine it, and are checked k-anonymous joined with it. Kept after she withdraws
  (the rows are out; only the pseudonym names her).

Invariants:
- both are sealed (``crypto.seal``: AES-256-GCM, version byte, random nonce) under a key
  derived from the node's master key (``HMAC-SHA-256(master, label)``, one label per file),
  with the file's role as the seal context, so a copy of the folder without the master key
  reveals neither the secret nor any attribute of any participant, and one file cannot be
  passed off as the other;
- written only by ``files.atomic_write`` (mode 0600): after a crash a file holds the old
  sealed bytes or the new ones; read-modify-write of the profiles runs under a lock file
  (``fcntl.flock``), so two server processes never lose each other's opt-ins;
- files written before this module sealed them (``research.key`` as 32 raw bytes,
  ``research-profiles.json`` as plain JSON) are migrated on first use: sealed, written, and
  only then the plain copy is overwritten with zeros and removed. Overwriting is best
  effort: a copy-on-write file system or an SSD may keep the old blocks, and backups taken
  before the migration still hold the plain text (docs/threat-model.md says so).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from ..crypto.hashing import hmac_sha256
from ..crypto.seal import KEY_BYTES, new_key, open_sealed, seal
from ..errors import (
    InputError,
    MalformedError,
    NotFoundError,
    StorageError,
    VerificationError,
)
from ..files import atomic_write, fsync_dir, locked, storage_error
from . import deid

__all__ = ["KEY_FILE", "LEGACY_PROFILES", "PROFILES_FILE", "RELEASED_FILE",
           "ResearchStore"]

KEY_FILE: Final = "research.key"
PROFILES_FILE: Final = "research-profiles.bin"
RELEASED_FILE: Final = "research-released.bin"
LEGACY_PROFILES: Final = "research-profiles.json"
_KEY_LABEL: Final = b"glucoledger research side files v1"
_SECRET_CONTEXT: Final = "research-secret"
_PROFILES_CONTEXT: Final = "research-profiles"
_RELEASED_CONTEXT: Final = "research-released"
_SEALED_SECRET_BYTES: Final = 1 + 12 + KEY_BYTES + 16


def _scrub(path: Path) -> None:
    """Overwrite ``path`` with zeros, then remove it (best effort; see the module docs)."""
    try:
        size = path.stat().st_size
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"\x00" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise storage_error(exc, path, "removing the unsealed research file after sealing "
                            "it") from None
    fsync_dir(path.parent)


class ResearchStore:
    """The sealed research secret and participants' profiles of one node folder."""

    def __init__(self, data_dir: Path, master: bytes) -> None:
        self.dir = Path(data_dir)
        self._key = hmac_sha256(master, _KEY_LABEL)

    @property
    def profiles_path(self) -> Path:
        return self.dir / PROFILES_FILE

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """This folder's research files, for one reader-modifier-writer at a time (threads
        of this process, and other processes on the folder)."""
        return locked(self.dir / ".research.lock", "locking the research files")

    # --- the secret ------------------------------------------------------------------------
    def secret(self) -> bytes:
        """The node's research secret (created sealed on first use; a plain legacy file is
        sealed in place). Raises StorageError when the file is damaged or sealed under
        another master key: pseudonyms depend on it, so it is never replaced silently."""
        path = self.dir / KEY_FILE
        with self._locked():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                secret = new_key()
                atomic_write(path, self._seal_secret(secret), mode=0o600)
                return secret
            except OSError as exc:
                raise storage_error(exc, path, "reading the research secret") from None
            if len(data) == KEY_BYTES:  # written before sealing: seal it, same secret
                atomic_write(path, self._seal_secret(data), mode=0o600)
                return data
            return self._open_secret(path, data)

    def _open_secret(self, path: Path, data: bytes) -> bytes:
        if len(data) != _SEALED_SECRET_BYTES:
            raise StorageError(f"{path} is not a sealed research secret (damaged?); "
                               "restore it from a backup: every pseudonym depends on it")
        try:
            return open_sealed(self._key, data, _SECRET_CONTEXT)
        except (VerificationError, MalformedError):
            raise StorageError(f"{path} does not open under this node's master key "
                               "(altered, or from another folder); restore it from a "
                               "backup: every pseudonym depends on it") from None

    def _seal_secret(self, secret: bytes) -> bytes:
        return seal(self._key, secret, _SECRET_CONTEXT)

    # --- profiles --------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        path = self.profiles_path
        try:
            box = path.read_bytes()
        except FileNotFoundError:
            return self._migrate()
        except OSError as exc:
            raise storage_error(exc, path, "reading the research profiles") from None
        return self._open_profiles(path, box)

    def _open_profiles(self, path: Path, box: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(open_sealed(self._key, box, _PROFILES_CONTEXT))
        except (VerificationError, MalformedError):
            raise StorageError(f"{path} does not open under this node's master key (altered, "
                               "or from another folder); restore it from a backup") from None
        except ValueError:
            raise StorageError(f"{path} opened but holds no profiles (damaged); restore it "
                               "from a backup") from None
        if not isinstance(doc, dict):
            raise StorageError(f"{path} holds no profiles (damaged); restore it from a backup")
        return doc

    def damaged(self) -> list[str]:
        """One sentence (what to do included) per research side file of the folder that a
        read would refuse: sealed bytes altered or sealed under another master key, or a
        profile that no longer parses. Absent files and not yet sealed legacy files are not
        damage. Reads only: nothing is created, migrated or locked (verify writes nothing,
        and runs on a read-only copy)."""
        out: list[str] = []
        for name, check in ((KEY_FILE, self._open_secret), (PROFILES_FILE, self._check),
                            (RELEASED_FILE, self._open_released)):
            path = self.dir / name
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                out.append(storage_error(exc, path, "reading a research side file").message)
                continue
            if name == KEY_FILE and len(data) == KEY_BYTES:
                continue  # a legacy plain secret: sealed on first use
            try:
                check(path, data)
            except StorageError as exc:
                out.append(exc.message)
        return out

    def _check(self, path: Path, box: bytes) -> None:
        for key, value in self._open_profiles(path, box).items():
            try:
                deid.Profile.from_value(value)
            except (InputError, ValueError, TypeError, KeyError):
                raise StorageError(f"{path}: the profile of participant {key[:16]} does not "
                                   "parse (damaged); restore the file from a backup") from None

    def _write(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        atomic_write(self.profiles_path, seal(self._key, data, _PROFILES_CONTEXT), mode=0o600)

    def _migrate(self) -> dict[str, Any]:
        """Profiles of a folder written before sealing: seal them, then scrub the plain file.
        Called with the lock held and no sealed file yet; an absent legacy file is {}."""
        legacy = self.dir / LEGACY_PROFILES
        try:
            raw = legacy.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise storage_error(exc, legacy, "reading the unsealed research profiles"
                                ) from None
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise StorageError(f"{legacy} (unsealed research profiles, to be sealed) is not "
                               "valid JSON; restore it from a backup") from None
        if not isinstance(doc, dict):
            raise StorageError(f"{legacy} is not a JSON object of profiles; restore it from a "
                               "backup")
        self._write(doc)
        _scrub(legacy)
        return doc

    def set_profile(self, patient: bytes, profile: deid.Profile) -> None:
        """Keep what the participant told the node at opt-in (raises StorageError)."""
        with self._locked():
            doc = self._read()
            doc[patient.hex()] = profile.to_value()
            self._write(doc)

    def profile(self, patient: bytes) -> deid.Profile:
        """Her profile. Raises NotFoundError (she gave none to this node), StorageError."""
        with self._locked():
            v = self._read().get(patient.hex())
        if v is None:
            raise NotFoundError(f"participant {patient.hex()[:16]} gave no research profile; "
                                "she sets it when she opts in")
        return deid.Profile.from_value(v)

    def has_profile(self, patient: bytes) -> bool:
        with self._locked():
            return patient.hex() in self._read()

    def forget(self, patient: bytes) -> bool:
        """Drop her profile (she withdrew from every study). True if there was one."""
        with self._locked():
            doc = self._read()
            if doc.pop(patient.hex(), None) is None:
                return False
            self._write(doc)
            return True

    # --- rows released per study -------------------------------------------------------------
    def _open_released(self, path: Path, box: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(open_sealed(self._key, box, _RELEASED_CONTEXT))
        except (VerificationError, MalformedError, ValueError):
            raise StorageError(f"{path} does not open under this node's master key (altered, "
                               "damaged, or from another folder); restore it from a backup: "
                               "later releases are checked against it") from None
        if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
            raise StorageError(f"{path} holds no released rows (damaged); restore it from a "
                               "backup")
        return doc

    @contextlib.contextmanager
    def released(self, study: bytes) -> Iterator[dict[str, dict[str, str]]]:
        """The first row each pseudonym of ``study`` was released with, held for one
        release at a time (the lock): what the caller adds is written when the block ends
        without an exception (raises StorageError)."""
        path = self.dir / RELEASED_FILE
        with self._locked():
            try:
                doc = self._open_released(path, path.read_bytes())
            except FileNotFoundError:
                doc = {}
            except OSError as exc:
                raise storage_error(exc, path, "reading the released rows") from None
            rows: dict[str, dict[str, str]] = dict(doc.get(study.hex(), {}))
            before = dict(rows)
            yield rows
            if rows != before:
                doc[study.hex()] = rows
                data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
                atomic_write(path, seal(self._key, data, _RELEASED_CONTEXT), mode=0o600)

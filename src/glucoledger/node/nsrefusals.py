"""The patient's log of Nightscout documents that could not be stored, sealed at rest.

A POST is never refused whole for one document (interop/nsaccept.py); a document that cannot
be stored is answered in place and logged here, with its reason, so the patient (and whoever
looks after her uploader) can see what was dropped and fix the device or the app.

Invariants:
- one file, ``<data>/nightscout-refusals.bin``, written only by ``files.atomic_write``;
- its content is sealed (AES-256-GCM, ``crypto.seal``) under a key derived from the node's
  master key: reasons quote values (a glucose, a dose, a time), and a copy of the folder
  without the master key must reveal no reading;
- at most ``KEEP`` entries per patient, newest last; ``forget`` drops a patient's entries
  (erasure).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ..crypto.hashing import hmac_sha256
from ..crypto.seal import open_sealed, seal
from ..files import atomic_write, storage_error

__all__ = ["KEEP", "Refusal", "RefusalLog"]

KEEP: Final = 500
_CONTEXT: Final = "nightscout-refusals"


@dataclass(frozen=True)
class Refusal:
    """One document not stored: when (server ms), by which uploader, where in which POST."""

    time_ms: int
    uploader: str
    collection: str
    index: int
    reason: str


class RefusalLog:
    def __init__(self, path: Path, master: bytes) -> None:
        self.path = path
        self._key = hmac_sha256(master, b"glucoledger nightscout refusals v1")
        self._mu = threading.Lock()
        self._log: dict[str, list[dict[str, Any]]] | None = None

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        if self._log is None:
            try:
                box = self.path.read_bytes()
            except FileNotFoundError:
                box = b""
            except OSError as exc:
                raise storage_error(exc, self.path, "reading the Nightscout refusal log"
                                    ) from None
            self._log = json.loads(open_sealed(self._key, box, _CONTEXT)) if box else {}
        return self._log

    def _save(self, log: dict[str, list[dict[str, Any]]]) -> None:
        data = seal(self._key, json.dumps(log, sort_keys=True).encode(), _CONTEXT)
        atomic_write(self.path, data, mode=0o600)

    def add(self, patient: bytes, refusals: list[Refusal]) -> None:
        """Append ``refusals`` to the patient's log (raises StorageError)."""
        if not refusals:
            return
        with self._mu:
            log = dict(self._load())
            entries = [*log.get(patient.hex(), []), *(asdict(r) for r in refusals)]
            log[patient.hex()] = entries[-KEEP:]
            self._save(log)
            self._log = log

    def of(self, patient: bytes) -> list[Refusal]:
        """The patient's refusals, oldest first (raises StorageError, VerificationError)."""
        with self._mu:
            return [Refusal(**e) for e in self._load().get(patient.hex(), [])]

    def forget(self, patient: bytes) -> None:
        """Drop the patient's entries (erasure)."""
        with self._mu:
            log = dict(self._load())
            if log.pop(patient.hex(), None) is not None:
                self._save(log)
                self._log = log

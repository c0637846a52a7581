"""Both commitments of a day open to the same readings (issue 19, Deliver 1: "``verify``
checks that both commitments open to the same readings").

A ``zk.day`` (state/zkdays.py) records a salted Poseidon commitment over a window of a
patient's CGM slots, filled from the readings of the ``data.commit`` batches of hers ordered
before it (node/zkclaims.py). ``verify_vault`` (node/vaultcheck.py) opens every custodial
batch and checks its readings against the batch's SHA-256 Merkle root; ``ZkDayCheck`` takes
the readings of the ``cgm`` batches it opened and, for every accepted ``zk.day`` in log order,
recomputes the window's slots (zk/windows.py ``day_slots``) and the commitment under the
day's salt (``day_salt``: from the patient's key-encryption key in the vault) and compares it
with the recorded one. So a day whose Poseidon commitment was computed from other readings
than the device-signed ones the ledger's batches hold is found and named (patient and day).

Not checkable, and reported as such, never as damage:
- the patient's ``cgm`` key was destroyed (erasure, GDPR art. 17): no salt, no readings;
- a batch the window covers was erased, is in the patient's own custody (its data key is
  wrapped to her, not the node), is damaged (already a finding of its own), or was not
  decrypted (``verify-vault`` without decryption).

Readings that arrived after a day's commitment (a later ``data.commit`` for the same hours)
are not in it: the window is filled only from batches ordered before the ``zk.day``, as the
prover fills it. Pure apart from the vault's key lookup; raises nothing for damaged input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ..crypto.hashing import hmac_sha256
from ..errors import GlucoledgerError
from ..zk.poseidon import FIELD
from ..zk.windows import commit_slots, day_slots

__all__ = ["SALT_CONTEXT", "ZkDayCheck", "day_salt"]

SALT_CONTEXT: Final = b"glucoledger zk day salt"
_DAMAGE = (GlucoledgerError, KeyError, TypeError, ValueError, AttributeError, IndexError)


def day_salt(kek: bytes, start: int) -> int:
    """The salt of the window starting ``start`` (epoch ms): HMAC-SHA-256 under the patient's
    ``cgm`` key-encryption key, reduced into the BN254 scalar field."""
    mac = hmac_sha256(kek, SALT_CONTEXT + start.to_bytes(8, "big"))
    return int.from_bytes(mac, "big") % FIELD


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class _Batch:
    index: int
    start: int
    end: int
    #: (time ms, mg/dL) once opened; None: not checkable, with the reason in ``why``
    readings: list[tuple[int, float]] | None = None
    why: str = "it was not decrypted"


@dataclass
class ZkDayCheck:
    """Fed in log order by ``verify_vault``: ``batch`` for every accepted cgm ``data.commit``,
    ``opened``/``unreadable`` for what became of it, ``day`` for every accepted ``zk.day``.
    ``kek(patient)``: her cgm key-encryption key, None once destroyed."""

    kek: Callable[[bytes], bytes | None]
    label: Callable[[bytes], str]
    checked: int = 0
    #: (description of the day, where: height/tx_index/tx_hash, what was found) for each
    #: mismatch
    mismatches: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    #: one sentence per day that could not be checked
    unchecked: list[str] = field(default_factory=list)
    _batches: dict[bytes, list[_Batch]] = field(default_factory=dict)
    _by_ct: dict[bytes, _Batch] = field(default_factory=dict)

    def batch(self, index: int, body: dict[str, Any]) -> None:
        if body.get("stream") != "cgm":
            return
        b = _Batch(index, int(body["start"]), int(body["end"]))
        self._batches.setdefault(bytes(body["patient"]), []).append(b)
        self._by_ct[bytes(body["ct"])] = b

    def opened(self, ct: bytes, items: Any) -> None:
        b = self._by_ct.get(ct)
        if b is not None:
            b.readings = [(int(r.time_ms), float(r.mgdl)) for r in items
                          if hasattr(r, "mgdl") and hasattr(r, "time_ms")]

    def unreadable(self, ct: bytes, why: str) -> None:
        b = self._by_ct.get(ct)
        if b is not None:
            b.why = why

    def day(self, index: int, body: dict[str, Any], where: dict[str, Any]) -> None:
        try:
            patient, start, end = bytes(body["patient"]), int(body["start"]), int(body["end"])
            slots, per = int(body["slots"]), int(body["per"])
            commit = int.from_bytes(bytes(body["commit"]), "big")
        except _DAMAGE:
            return  # an accepted zk.day was parsed by the state: damage is the replay's
        what = (f"zk.day of patient {self.label(patient)} for the day starting "
                f"{_iso(start)}")
        kek = self.kek(patient)
        if kek is None:
            self.unchecked.append(f"{what}: not checkable, her CGM key was destroyed "
                                  "(erased), as intended")
            return
        readings: list[tuple[int, float]] = []
        for b in self._batches.get(patient, ()):
            if b.index >= index or b.end <= start or b.start >= end:
                continue
            if b.readings is None:
                self.unchecked.append(f"{what}: not checkable, a batch it covers {b.why}")
                return
            readings += b.readings
        try:
            found = commit_slots(day_slots(readings, start, end, slots),
                                 day_salt(kek, start), per)
        except _DAMAGE as exc:
            found = -1
            detail = getattr(exc, "message", None) or type(exc).__name__
        else:
            detail = "the commitment of other readings"
        self.checked += 1
        if found != commit:
            self.mismatches.append((what, where, detail))

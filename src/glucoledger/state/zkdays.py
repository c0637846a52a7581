"""The ``zk.day`` contract: a salted Poseidon commitment to one window of a patient's CGM data.

Body::

    {patient, start, end, slots, per, commit}

- ``start``/``end``: the window, epoch ms: a local day of the patient's (the edge computes it
  in her zone; node/zkclaims.py), at most 25 hours and ``slots`` five-minute slots.
- ``slots``/``per``: the circuit profile (slots per window, slots per field element).
- ``commit``: the Poseidon commitment (zk/windows.py ``commit_slots``), 32 bytes big-endian,
  a BN254 scalar-field element, over the readings of the ``data.commit`` batches ordered
  before this transaction (the same device-signed readings their Merkle roots cover).

One commitment per patient and window start, ever (``window_committed``): a verifier that
finds an accepted ``zk.day`` for a day knows it is the only one, so a prover cannot choose
among several. Sent by a ``node`` account meeting its ``data`` threshold.

Refusals: ``not_node``, ``window_committed``, ``malformed``. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import RejectedError
from ..ledger.tx import SignedTx
from .accounts_model import load_account
from .machine import Body, Context, authorize, body_field, register, require
from .store import State

__all__ = ["FIELDS", "FIELD_MODULUS", "ZkDay", "zk_day_key"]

FIELDS: Final = frozenset({"patient", "start", "end", "slots", "per", "commit"})
FIELD_MODULUS: Final = (
    21888242871839275222246405745257275088548364400416034343698204186575808495617)
SLOT_MS: Final = 300_000
MAX_WINDOW_MS: Final = 25 * 3_600_000


def zk_day_key(patient: bytes, start: int) -> str:
    return f"zkday/{patient.hex()}/{start}"


@dataclass(frozen=True, slots=True)
class ZkDay(Body):
    """The body of ``zk.day``: one window's Poseidon commitment (all fields required)."""

    patient: bytes
    start: int
    end: int
    slots: int
    per: int
    commit: bytes

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ZkDay:
        """Raises RejectedError (``malformed``) or MalformedError."""
        if set(body) != FIELDS:
            raise RejectedError(f"zk.day takes exactly {', '.join(sorted(FIELDS))}",
                                code="malformed")
        patient = body_field(body, "patient", bytes)
        commit = body_field(body, "commit", bytes)
        start, end = body_field(body, "start", int), body_field(body, "end", int)
        slots, per = body_field(body, "slots", int), body_field(body, "per", int)
        require(len(patient) == 32 and len(commit) == 32, "malformed",
                "patient and commit are 32 bytes")
        require(int.from_bytes(commit, "big") < FIELD_MODULUS, "malformed",
                "commit is a BN254 scalar-field element")
        require(0 <= start < end and end - start <= MAX_WINDOW_MS, "malformed",
                "a window is at most 25 hours, start before end")
        require(1 <= per <= 25 and 1 <= slots <= 300 and slots % per == 0
                and end - start <= slots * SLOT_MS, "malformed",
                "slots (at most 300, a multiple of per <= 25) cover the window")
        return cls(bytes(patient), start, end, slots, per, bytes(commit))

    def to_body(self) -> dict[str, Any]:
        return {"patient": self.patient, "start": self.start, "end": self.end,
                "slots": self.slots, "per": self.per, "commit": self.commit}


@register("zk.day", action="data", body=ZkDay)
def _zk_day(state: State, stx: SignedTx, ctx: Context) -> None:
    """Record one window's Poseidon commitment, once."""
    node = load_account(state, stx.tx.account)
    if node.kind != "node":
        raise RejectedError(f"window commitments are sent by a node account, not a "
                            f"{node.kind} account", code="not_node")
    authorize(node, stx, "data")
    b = ZkDay.parse(stx.tx.body)
    key = zk_day_key(b.patient, b.start)
    if state.get(key) is not None:
        raise RejectedError(f"the window starting {b.start} of patient {b.patient.hex()[:16]} "
                            "already has its commitment; a window is committed once",
                            code="window_committed")
    state.put(key, {"end": b.end, "slots": b.slots, "per": b.per, "commit": b.commit,
                    "index": ctx.index})

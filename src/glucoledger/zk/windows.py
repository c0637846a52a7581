"""Day windows, their Poseidon commitments and the hidden running totals of a claim.

A window is one local day cut into five-minute slots from its first instant: slot i covers
[start + 5 min * i, start + 5 min * (i + 1)). A day has 288 slots, 276 or 300 on a day of a
daylight-saving change, so every window has ``SLOTS = 300`` slots and the ones past the day's
end stay empty. A slot holds the first reading that falls in it (by time), rounded to a whole
mg/dL; an empty slot holds ``MISSING = 0``, which no sensor reports (their range starts near
40 mg/dL).

Commitment (circuits/glucose.circom ``Day``): the slots are packed ``PACK = 25`` per field
element, 10 bits each (slot j*25+k at bit 10k of e_j); h_0 = Poseidon(salt, e_0),
h_j = Poseidon(h_{j-1}, e_j); the commitment is the last h. The salt (a field element drawn
per patient and day, kept sealed in the vault) hides the readings from anyone who holds the
commitment but not the salt.

Running totals: acc = (valid, in range 70-180, below 54, sum of mg/dL) packed as
valid + inRange 2^40 + below 2^80 + sum 2^120, committed as Poseidon(pack, r). The first day
starts from ``ZERO_ACC`` = Poseidon(0, 0).

Pure: no I/O, clock or randomness (salts and blinding factors are arguments).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import OutOfRangeError
from .poseidon import FIELD, poseidon2

__all__ = ["MISSING", "PACK", "SLOTS", "SLOT_MS", "ZERO_ACC", "Totals", "acc_commit",
           "commit_slots", "day_slots", "pack"]

SLOT_MS: Final = 300_000
SLOTS: Final = 300
PACK: Final = 25
BITS: Final = 10
MISSING: Final = 0
LOW: Final = 54
RANGE: Final = (70, 180)


def day_slots(readings: Iterable[tuple[int, float]], start_ms: int, end_ms: int,
              slots: int = SLOTS) -> list[int]:
    """The slot vector of the day [start_ms, end_ms) from (time ms, mg/dL) readings; readings
    outside the day are ignored. Raises OutOfRangeError for a day longer than ``slots`` slots
    or a reading that does not round into 1..1023 mg/dL."""
    if end_ms <= start_ms or (end_ms - start_ms + SLOT_MS - 1) // SLOT_MS > slots:
        raise OutOfRangeError(f"a window holds at most {slots} five-minute slots")
    out = [MISSING] * slots
    for t, value in sorted(readings):
        if not start_ms <= t < end_ms:
            continue
        mg = round(value)
        if not 1 <= mg < 1 << BITS:
            raise OutOfRangeError(f"a glucose value of {value} mg/dL cannot be committed: "
                                  "values are 1 to 1023 mg/dL")
        i = (t - start_ms) // SLOT_MS
        if out[i] == MISSING:
            out[i] = mg
    return out


def pack(slots: Sequence[int], per: int = PACK) -> list[int]:
    """The field elements the circuit hashes (``per`` slots of 10 bits each)."""
    if not slots or len(slots) % per or per * BITS > 250:
        raise ValueError(f"the slot count must be a positive multiple of {per} (<= 25)")
    return [sum(v << (BITS * k) for k, v in enumerate(slots[j:j + per]))
            for j in range(0, len(slots), per)]


def commit_slots(slots: Sequence[int], salt: int, per: int = PACK) -> int:
    """The day commitment (a field element) of ``slots`` under ``salt``."""
    if not 0 <= salt < FIELD:
        raise ValueError("the salt is a field element")
    h = salt
    for e in pack(slots, per):
        h = poseidon2(h, e)
    return h


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts over committed slots: readings, in 70-180 mg/dL, below 54, sum of mg/dL."""

    valid: int = 0
    in_range: int = 0
    below: int = 0
    total: int = 0

    @classmethod
    def of(cls, slots: Sequence[int]) -> Totals:
        present = [v for v in slots if v != MISSING]
        return cls(len(present), sum(RANGE[0] <= v <= RANGE[1] for v in present),
                   sum(v < LOW for v in present), sum(present))

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.valid + other.valid, self.in_range + other.in_range,
                      self.below + other.below, self.total + other.total)

    def as_list(self) -> list[int]:
        return [self.valid, self.in_range, self.below, self.total]

    def packed(self) -> int:
        return self.valid + (self.in_range << 40) + (self.below << 80) + (self.total << 120)


def acc_commit(totals: Totals, r: int) -> int:
    """Poseidon(pack(totals), r): the hidden running total between two day proofs."""
    return poseidon2(totals.packed(), r)


ZERO_ACC: Final = poseidon2(0, 0)

"""One glucose timeline: which value counts at each instant, and how much time each reading
stands for.

Conflicts (same record type, same instant, another value). A patient's timeline holds one
value per record type and instant. When uploads disagree (an uploader re-sends the same
timestamps with other values), ``resolve`` keeps the record of the LATER upload and counts
the earlier one as superseded: the later upload supersedes, as in Nightscout, where a
re-sent entry with the same ``date`` replaces the stored one. Callers pass records in upload
order (node/access.py passes the batches in ledger order), and both the raw release and the
summary are computed from ``resolve``'s output, so they agree on which value counts. Nothing
is deleted: the superseded record stays in its committed batch (the ledger proves it was
uploaded); it only stops counting. The key is (record type, epoch milliseconds), not the
device: two sensors cannot both be right about the same instant of one patient.

Time weights (the consensus defines time in ranges as a share of TIME, Battelino et al.,
Diabetes Care 2019;42:1593). Each CGM reading stands for the time until the next reading,
capped at its sensor's nominal interval (``nominal_interval_ms``): a longer gap is missing
data, not a long reading; a near-duplicate (a re-upload one second off) stands for one
second, so it counts once in effect. The last reading stands for one interval, clipped at
the end of the window. On a regular grid every weight equals the interval, so weighted
metrics equal the per-reading ones (and iglu's) exactly.

Nominal intervals by device model (``DEVICE_INTERVALS_MIN``): Dexcom G6/G7 5 min, FreeStyle
Libre 2/3 1 min (their 15-minute history: "libre-history"), Medtronic Guardian 5 min,
Eversense 5 min. An unknown model gets the median spacing of its own readings
(``median_spacing_ms``), rounded to a whole minute, at least 1 minute, at most 15.

Invariants: pure and deterministic (integers only; ties resolved by input order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final, NamedTuple, TypeVar

from .readings import CgmReading, Record

__all__ = [
    "DEFAULT_INTERVAL_MS",
    "DEVICE_INTERVALS_MIN",
    "Resolved",
    "Weighted",
    "interval_for_model",
    "median_spacing_ms",
    "resolve",
    "weigh",
]

MINUTE_MS: Final = 60_000
DEFAULT_INTERVAL_MS: Final = 5 * MINUTE_MS
MAX_INTERVAL_MS: Final = 15 * MINUTE_MS

#: Nominal sampling interval (minutes) by device model, matched case-insensitively on the
#: normalized model text (spaces, dashes and underscores removed) by prefix.
DEVICE_INTERVALS_MIN: Final[dict[str, int]] = {
    "dexcomg6": 5,
    "dexcomg7": 5,
    "dexcomone": 5,
    "dexcomg5": 5,
    "dexcomg4": 5,
    "librehistory": 15,
    "freestylelibrehistory": 15,
    "freestylelibre2": 1,
    "freestylelibre3": 1,
    "libre2": 1,
    "libre3": 1,
    "medtronicguardian": 5,
    "guardian": 5,
    "eversense": 5,
}

R = TypeVar("R", bound=Record)


def _normal(model: str) -> str:
    return "".join(c for c in model.lower() if c.isalnum())


def interval_for_model(model: str | None) -> int | None:
    """The nominal interval (ms) of a device ``model``, or None when the model is unknown."""
    if not model:
        return None
    key = _normal(model)
    for prefix in sorted(DEVICE_INTERVALS_MIN, key=len, reverse=True):
        if key.startswith(prefix):
            return DEVICE_INTERVALS_MIN[prefix] * MINUTE_MS
    return None


def median_spacing_ms(times: Sequence[int]) -> int:
    """The median spacing of sorted distinct ``times`` (lower median), rounded to a whole
    minute and kept within 1..15 minutes; 5 minutes for fewer than two times."""
    gaps = sorted(b - a for a, b in pairwise(times) if b > a)
    if not gaps:
        return DEFAULT_INTERVAL_MS
    median = gaps[(len(gaps) - 1) // 2]
    minutes = (median + MINUTE_MS // 2) // MINUTE_MS
    return max(1, min(minutes, MAX_INTERVAL_MS // MINUTE_MS)) * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Resolved:
    """``records``: one per (type, time), sorted by time; ``superseded``: how many earlier
    records a later upload replaced with ANOTHER value (identical re-uploads are not
    conflicts and are not counted)."""

    records: tuple[Record, ...]
    superseded: int


def resolve(records: Iterable[Record]) -> Resolved:
    """Keep the last record (in input = upload order) for each (type, time); see above."""
    by_key: dict[tuple[str, int], Record] = {}
    superseded = 0
    for record in records:
        key = (record.TYPE, record.time_ms)
        old = by_key.get(key)
        if old is not None and old != record:
            superseded += 1
        by_key[key] = record
    ordered = sorted(by_key.values(), key=lambda r: (r.time_ms, r.TYPE))
    return Resolved(tuple(ordered), superseded)


class Weighted(NamedTuple):
    """A reading and the milliseconds of the window it stands for (> 0)."""

    reading: CgmReading
    weight_ms: int


def weigh(
    readings: Sequence[CgmReading],
    intervals_ms: Sequence[int],
    end_ms: int,
) -> list[Weighted]:
    """Weights of time-sorted ``readings`` with distinct times, each with its nominal
    interval, in a window ending at ``end_ms`` (exclusive; every reading lies before it).

    weight_i = min(interval_i, t_(i+1) - t_i); the last one min(interval, end - t).
    """
    times = [r.time_ms for r in readings]
    following = [*times[1:], end_ms]
    new = tuple.__new__  # Weighted(...) adds a generated __new__ call per reading
    return [new(Weighted, (r, i if i < f - t else f - t)) for r, i, f, t
            in zip(readings, intervals_ms, following, times, strict=True)]

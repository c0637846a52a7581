"""Settled days: what a summary grant counts of each UTC day, fixed once it was released.

A summary grant releases whole UTC days (state/consent.py ``_check_days``), each counting
only when its readings cover 70 % of it (node/access.py ``sufficient_days``). That stops a
reader from differencing two windows, but not from differencing one day read twice: a
batch uploaded late for a day already released (a phone that was offline, a backfill), an
edit of one of its readings, or an erasure after the release changes that day's summary,
and the two summaries give the late batch's readings (one reading, if it held one).

So under a summary grant each UTC day is released once and then stays as it was:

- **Settled first.** A day is released only ``SETTLE_MS`` after it ends, when the
  backfill of common sensors has arrived (Dexcom G6 3 hours, FreeStyle Libre 2's 8-hour
  memory); before that it gives no number, like a day of too few readings.
- **Fixed by its first release.** The first access the ledger recorded that released a day
  under a summary grant (any reader's: two readers comparing notes learn no more than one)
  fixes what the day holds: the batches whose ``data.commit`` was ordered before that
  access, as the document versions recorded before it left them. A batch, an edit or a
  deletion ordered later does not change the day for any summary grantee (the patient and
  raw grantees see it as always).
- **Gone when erased later.** A day touched by an erasure ordered after its first release
  gives no number from then on: counting it without the erased batches would give them by
  difference, and counting them is what the erasure forbids.

A day never released before counts everything ordered before the access reading it, so a
history imported at once (an export from another service, ``glucoledger ingest``) counts in
full. Everything here is read from the ledger (the patient's audit trail, the access and
erasure records, the log), so every node releases the same numbers for the same read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..ledger.tx import SignedTx
from ..state.access import access_key, erased_key, erasure_key
from ..state.consent import DAY_MS, HOUR_MS, load_grant
from .service import Node

__all__ = ["SETTLE_MS", "Fixed", "SettledDays"]

#: How long after its end a UTC day is first released under a summary grant.
SETTLE_MS: Final = 8 * HOUR_MS


@dataclass(frozen=True, slots=True, order=True)
class Fixed:
    """Where a day was fixed: the first access releasing it (its log index and height)."""

    index: int
    height: int


@dataclass(slots=True)
class _Patient:
    """What the audit trail of one patient said, up to entry ``scanned``."""

    scanned: int = 0
    first: dict[int, Fixed] = field(default_factory=dict)  # UTC day -> first release
    #: (where an erasure was ordered, a stream, the UTC days its erased batches of that
    #: stream held readings of)
    erasures: list[tuple[Fixed, str, frozenset[int]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Days:
    """The rule for one summary read: which days count and what each holds."""

    #: days starting at or after this one (UTC day number) are not settled yet
    unsettled_from: int
    #: day -> the access that first released it (the day holds what was ordered before it)
    first: dict[int, Fixed]
    #: days an erasure ordered after their first release touched: they count for nothing
    erased: frozenset[int]

    def counts(self, day: int) -> bool:
        return day < self.unsettled_from and day not in self.erased

    def key(self, lo: int, hi: int) -> tuple[Any, ...]:
        """What a summary over days ``[lo, hi)`` depends on beyond its batches (a cache key):
        the fixed points and the days left out."""
        return (min(max(self.unsettled_from, lo), hi),
                tuple((d, f.index) for d, f in sorted(self.first.items()) if lo <= d < hi),
                tuple(sorted(d for d in self.erased if lo <= d < hi)))


def released_days(record: dict[str, Any]) -> range:
    """The UTC days an access record released under a summary grant: the whole days of its
    window that were settled at its time (an older chain's window may have ragged ends:
    the days it touched)."""
    decision = record["decision"]
    lo, hi = decision["from"] // DAY_MS, -(-decision["to"] // DAY_MS)
    settled = (record["time"] - SETTLE_MS) // DAY_MS  # days before this one had settled
    return range(lo, min(hi, settled))


#: Patients whose days are kept in memory (least recently read dropped first; a dropped
#: one's trail is read again at her next summary read, about 5 us an entry).
PATIENTS_KEPT: Final = 4096


class SettledDays:
    """The first summary release and the later erasures of each patient's days, read from
    her audit trail as it grows (kept in memory, per process; the trail only appends)."""

    def __init__(self, node: Node, *, patients: int = PATIENTS_KEPT) -> None:
        self.node = node
        self._patients: OrderedDict[bytes, _Patient] = OrderedDict()
        self._kept = patients
        self._lock = threading.Lock()

    def days(self, patient: bytes, access_time_ms: int, streams: Iterable[str]) -> Days:
        """The rule for a summary read at ``access_time_ms`` of ``patient``'s ``streams``
        (whose access is already ordered: it is in her trail, and fixes what it first
        releases)."""
        read = set(streams)
        with self._lock:
            p = self._patients.pop(patient, None) or _Patient()
            self._patients[patient] = p
            while len(self._patients) > self._kept:
                self._patients.popitem(last=False)
            self._scan(patient, p)
            erased = frozenset(d for at, stream, touched in p.erasures if stream in read
                               for d in touched if d in p.first and at > p.first[d])
            return Days((access_time_ms - SETTLE_MS) // DAY_MS, dict(p.first), erased)

    def before(self, fixed: Fixed | None) -> Callable[[Mapping[str, Any]], bool] | None:
        """Whether a document version (state/versions.py: its ``height`` and ``tx``) was
        ordered before ``fixed``; None (no filter) without a fixed point."""
        if fixed is None:
            return None

        def earlier(version: Mapping[str, Any]) -> bool:
            if version["height"] != fixed.height:
                return bool(version["height"] < fixed.height)
            return self._where([version["tx"]])[version["tx"]] < fixed

        return earlier

    def _scan(self, patient: bytes, p: _Patient) -> None:
        state = self.node.state
        count = state.get("auditn/" + patient.hex()) or 0
        reads: list[tuple[bytes, dict[str, Any]]] = []
        erasures: list[tuple[bytes, dict[str, Any]]] = []
        for n in range(p.scanned, count):
            e = state.get(f"audit/{patient.hex()}/{n:012d}")
            if e is None:  # pragma: no cover - the trail has no gaps
                continue
            if e["kind"] == "access":
                record = state.get(access_key(e["tx"]))
                if record is not None and self._summary_release(record):
                    reads.append((e["tx"], record))
            elif e["kind"] == "erase":
                record = state.get(erasure_key(e["tx"]))
                if record is not None:
                    erasures.append((e["tx"], record))
        p.scanned = count
        where = self._where([tx for tx, _ in reads + erasures])
        for tx, record in reads:  # the trail is in ledger order: the first one wins
            for day in released_days(record):
                p.first.setdefault(day, where[tx])
        for tx, record in erasures:
            for stream, touched in self._touched(record).items():
                p.erasures.append((where[tx], stream, frozenset(touched)))

    def _summary_release(self, record: dict[str, Any]) -> bool:
        """A permitted summary read under a summary grant (not the patient's own, not a
        raw grantee's: they read the readings anyway)."""
        decision = record["decision"]
        if decision.get("decision") != "permit" or decision.get("view") != "summary":
            return False
        if decision.get("grant") == b"owner":
            return False
        grant = load_grant(self.node.state, decision["grant"])
        return grant is not None and grant.view == "summary"

    def _where(self, txs: list[bytes]) -> dict[bytes, Fixed]:
        found = self.node.store.find_results(txs)
        out = {}
        for tx in txs:
            rows = [t for t in found.get(tx, []) if t.decoded_result().ok]
            out[tx] = Fixed(rows[0].idx, rows[0].height)
        return out

    def _touched(self, record: dict[str, Any]) -> dict[str, set[int]]:
        """Per stream, the UTC days the erased batches held readings of (whole batches are
        erased, so more than the range asked), from their ``data.commit`` in the log."""
        state = self.node.state
        commits = [m["commit"] for ct in record["batches"]
                   if (m := state.get(erased_key(ct))) is not None]
        found = self.node.store.find_txs(commits)
        out: dict[str, set[int]] = {}
        for commit in commits:
            for t in found.get(commit, [])[:1]:
                body = SignedTx.decode(t.envelope).tx.body
                out.setdefault(body["stream"], set()).update(
                    range(body["start"] // DAY_MS, (body["end"] - 1) // DAY_MS + 1))
        return out

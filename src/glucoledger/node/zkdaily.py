"""Day commitments at ingestion (issue 19, Deliver 1: "At ingestion, for each fixed window
..., the node records on the ledger a salted Poseidon commitment"): the ``zk.day`` of each
complete local day is recorded as data arrives, off the upload path.

When a local day is complete: a local day of the patient's (her zone, node/localdays.py) is
complete once the node has acknowledged a CGM batch of hers that reaches at least
``GRACE_MS`` (3 hours) past the day's end, and the node's clock is past that point too. The
uploader has then moved on from that day by more than the backfill of common transmitters
(a receiver or phone that was out of range re-sends the missed hours when it reconnects).
Its ``zk.day`` is then recorded from the readings of the batches ordered so far (node/
zkclaims.py ``record_windows``): a day without a reading gets none, a day already committed
(by an earlier pass, ``zk-commit``, or a proof) is left as it is (one commitment per day,
ever: state/zkdays.py). Days whose data arrived while they were incomplete are found by the
next arrival that completes them: each pass starts at the patient's last complete day (and,
for her first arrival since the node started, two days before the new data).

Readings that arrive after their day's commitment (a late backfill, an old export) are
stored and committed as always, by their own ``data.commit`` (the SHA-256 Merkle root of
their salted leaves), but they are not in the day's Poseidon commitment: a claim over that
day cannot count them, and ``verify`` checks the day against the batches ordered before it
(node/zkcheck.py). The claim's days are what was committed; docs/threat-model.md says so.

Off the upload path, batched: ``IngestService`` calls ``arrived`` after it acknowledged a
group (a dictionary update under a lock, and an event); a worker thread waits ``delay``
seconds for more to arrive, then commits the complete days of every patient noted, one
``zk.day`` transaction each from the node's account, all in one submission (one block). A
failure is logged (ids only, never a reading) and the others go on; the next arrival of hers
tries again. ``close`` stops the worker after one last pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from ..errors import GlucoledgerError
from ..vault.store import Vault
from ..zk.toolchain import Profile, Toolchain, default_profile
from .localdays import patient_zone
from .service import Node
from .zkclaims import ZkClaims, window_bounds

__all__ = ["GRACE_MS", "MAX_BACK_DAYS", "ZkDayCommitter"]

log = logging.getLogger("glucoledger.zk")

GRACE_MS: Final = 3 * 3_600_000
DAY_MS: Final = 86_400_000
#: How far back one arrival looks for uncommitted days (an uploader back after a long gap).
MAX_BACK_DAYS: Final = 90


class ZkDayCommitter:
    """Commits complete local days of patients whose CGM data arrived (see the module)."""

    def __init__(self, node: Node, vault: Vault, profile: Profile | None = None, *,
                 delay: float = 1.0, grace_ms: int = GRACE_MS,
                 clock: Callable[[], int] | None = None, thread: bool = True) -> None:
        self.zk = ZkClaims(node, vault, Toolchain(profile or default_profile()))
        self.node = node
        self.delay = delay
        self.grace_ms = grace_ms
        self._clock = clock or node.now_ms
        self._mu = threading.Lock()
        #: patient -> (earliest start, latest end) of the cgm data that arrived, epoch ms
        self._pending: dict[bytes, tuple[int, int]] = {}
        #: patient -> where the next pass starts looking: her last complete day (committed
        #: or empty), so a day whose data came before it was complete is found later
        self._carry: dict[bytes, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.committed = 0
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._run, name="zk-day-commitments",
                                            daemon=True)
            self._thread.start()

    def arrived(self, batches: list[tuple[bytes, str, int, int]]) -> None:
        """Note acknowledged batches (patient, stream, start ms, end ms). Cheap: no I/O."""
        with self._mu:
            for patient, stream, start, end in batches:
                if stream != "cgm":
                    continue
                old = self._pending.get(patient)
                self._pending[patient] = ((start, end) if old is None
                                          else (min(old[0], start), max(old[1], end)))
        self._wake.set()

    def complete_days(self, patient: bytes, start: int, end: int) -> list[tuple[int, int]]:
        """The windows of her local days from the one holding ``start`` that are complete
        given data reaching ``end`` (and the clock), at most ``MAX_BACK_DAYS`` of them."""
        zone = patient_zone(self.node.data_dir, patient)[1]
        horizon = min(end, self._clock()) - self.grace_ms
        last = datetime.fromtimestamp(horizon / 1000, UTC).astimezone(zone).date()
        day = datetime.fromtimestamp(start / 1000, UTC).astimezone(zone).date()
        day = max(day, last - timedelta(days=MAX_BACK_DAYS))
        out = []
        while day <= last:
            s, e = window_bounds(day, zone, self.zk.profile)
            full_end = window_bounds(day + timedelta(days=1), zone, self.zk.profile)[0]
            if full_end > horizon:
                break
            out.append((s, e))
            day += timedelta(days=1)
        return out

    def run_pending(self) -> int:
        """Commit the complete days of every patient noted so far, in one submission (one
        block); the number recorded."""
        with self._mu:
            pending, self._pending = self._pending, {}
        windows: list[tuple[bytes, int, int]] = []
        for patient, (start, end) in pending.items():
            # first arrival since the node started: look back two days (a day that was
            # incomplete when the node stopped)
            start = min(start, self._carry.get(patient, start - 2 * DAY_MS))
            try:
                days = self.complete_days(patient, start, end)
                self._carry[patient] = days[-1][0] if days else start
                windows += [(patient, s, e) for s, e in days
                            if self.zk.record(patient, s) is None]
            except GlucoledgerError as exc:  # the next arrival of hers tries again
                self._carry.pop(patient, None)
                log.warning("zk.day commitments of patient %s not made: %s (%s)",
                            patient.hex()[:12], exc.code, type(exc).__name__)
        def failed(patient: bytes, exc: GlucoledgerError) -> None:
            self._carry.pop(patient, None)  # the next arrival of hers tries again
            log.warning("a zk.day commitment of patient %s not made: %s (%s)",
                        patient.hex()[:12], exc.code, type(exc).__name__)

        done = 0
        if windows:
            try:
                receipts = self.zk.record_windows(windows, failed=failed)
            except GlucoledgerError as exc:
                receipts = None
                log.warning("zk.day commitments of %d days not recorded: %s (%s)",
                            len(windows), exc.code, type(exc).__name__)
            done = sum(r.ok for r in receipts or ())
            if receipts is None or done < len(receipts):
                # refused or not ordered: look again from scratch next time
                for patient, _s, _e in windows:
                    self._carry.pop(patient, None)
        self.committed += done
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._stop.wait(self.delay)  # batch: let a burst of uploads arrive first
            self._wake.clear()
            try:
                self.run_pending()
            except Exception:  # a bug: say so once, keep the node serving uploads
                log.exception("the zk.day commitment worker failed and stopped")
                return

    def close(self) -> None:
        """Stop the worker after one last pass over what arrived."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.run_pending()

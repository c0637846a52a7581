"""Group commit: one writer thread per node turns concurrent submits into few, full appends.

A consortium node's control endpoint serves many clients at once. Each ``Node.submit`` hands
its transaction entries to this writer and waits; the writer packs whatever is queued (from
any number of submits) into appends of at most ``MAX_BATCH_ENTRIES`` entries, the last of
which is always a cut, so every append closes a block by itself. While one append is in
etcd, the next submits queue up and go together in the next one. Nobody holds the node's
lock meanwhile: the member loop (the only follower) keeps deriving blocks, signing and
collecting cosignatures.

Invariants:
- an entry's position is known (and the submit may be acknowledged) only after the append
  that holds it returned, i.e. after etcd committed it by quorum (write-ahead);
- appends are issued one after another by one thread, so this node's cuts reach the log in
  the order they were made; a cut's height is ``max(follower's next height, previous cut's
  height + 1)`` (previous cut: the last one that followed transactions of its own append,
  so the block it named was not empty), which never exceeds the open height when the cut is
  read (a cut only ever closes its own height or is stale), so no guess runs ahead of the log.
  A stale cut (another node closed that height first) is harmless: the next cut closes the
  block, and when the log ends with transactions of a waiting submit still open, the
  follower asks for a fresh cut at the exact open height (``request_cut``);
- a failed append fails every submit with an entry in it (OrderingError, nothing is
  acknowledged); a submit split over several appends fails as a whole, and a client retrying
  with ``retry=True`` gets the copies that did land deduplicated by the node.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..errors import GlucoledgerError, OrderingError
from ..ledger.log import encode_cut
from ..ordering.base import Orderer
from ..ordering.etcd import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES

__all__ = ["GroupCommit"]


class _Request:
    __slots__ = ("done", "entries", "error", "next", "positions")

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries
        self.positions: list[int] = [-1] * len(entries)
        self.next = 0  # first entry not yet appended
        self.error: GlucoledgerError | None = None
        self.done = threading.Event()


class GroupCommit:
    """The writer thread of one node. ``next_height`` reads the follower's open height."""

    def __init__(self, orderer: Orderer, next_height: Callable[[], int],
                 clock: Callable[[], float] = time.time, *,
                 max_entries: int = MAX_BATCH_ENTRIES) -> None:
        self._orderer = orderer
        self._next_height = next_height
        self._clock = clock
        self._max_tx = max(1, max_entries - 1)  # one slot is the cut
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._cut_wanted = False
        self._last_cut = -1
        self._appended_to = 0  # the log position after this writer's last append
        self._in_flight = False
        self._closed = False
        #: Appends made and entries they carried (for the benchmark's report).
        self.appends = 0
        self.entries = 0
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def append(self, entries: Sequence[bytes], timeout: float) -> list[int]:
        """Queue ``entries`` for the log; return their positions once etcd committed them.

        Raises OrderingError when an append failed or ``timeout`` passed (the entries may
        still land: a client retries with ``retry=True``).
        """
        req = _Request(list(entries))
        with self._cond:
            if self._closed:
                raise OrderingError("the node is shutting down; submit again to another node")
            self._queue.append(req)
            self._cond.notify_all()
        if not req.done.wait(timeout):
            with self._cond:
                req.error = req.error or OrderingError(
                    f"the transactions were not appended within {timeout:.0f} s; the orderer is "
                    "slow or unreachable: submit them again (duplicates are recognized)")
        if req.error is not None:
            raise req.error
        return req.positions

    def request_cut(self, seen: int) -> None:
        """Append a bare cut at the open height unless an append (which carries one) is due
        or landed at or past ``seen`` (the end of the log as the follower last read it): a
        second cut would only trail, ignored, behind the block the first one closes."""
        with self._cond:
            if self._in_flight or self._appended_to > seen:
                return
            self._cut_wanted = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for req in self._queue:
                req.error = OrderingError("the node is shutting down; submit again")
                req.done.set()
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join(10)

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._queue and not self._cut_wanted:
                    self._cond.wait()
                if self._closed:
                    return
                batch = self._take()
                self._cut_wanted = False
                self._in_flight = True
            height = max(self._next_height(), self._last_cut + 1)
            chunk = [e for _, _, e in batch]
            chunk.append(encode_cut(height, int(self._clock() * 1000)))
            try:
                first = self._orderer.append(chunk)
            except Exception as exc:  # noqa: BLE001 - every submit in it must hear of it
                err = exc if isinstance(exc, GlucoledgerError) else OrderingError(
                    f"append failed unexpectedly ({type(exc).__name__}: {exc}); retry")
                self._fail({id(r): r for r, _, _ in batch}.values(), err)
                with self._cond:
                    self._in_flight = False
                continue
            if batch:  # a bare cut may close nothing (empty block): it proves no height
                self._last_cut = height
            with self._cond:
                self._appended_to = first + len(chunk)
                self._in_flight = False
            self.appends += 1
            self.entries += len(batch)
            with self._cond:
                for k, (req, i, _) in enumerate(batch):
                    req.positions[i] = first + k
                    if i == len(req.entries) - 1 and req.error is None:
                        req.done.set()

    def _take(self) -> list[tuple[_Request, int, bytes]]:
        """Up to a full append of queued entries (a request may span appends)."""
        out: list[tuple[_Request, int, bytes]] = []
        size = 64
        while self._queue and len(out) < self._max_tx:
            req = self._queue[0]
            if req.error is not None:
                self._queue.popleft()
                continue
            while req.next < len(req.entries) and len(out) < self._max_tx:
                e = req.entries[req.next]
                if out and size + len(e) > MAX_BATCH_BYTES:
                    return out
                size += len(e)
                out.append((req, req.next, e))
                req.next += 1
            if req.next == len(req.entries):
                self._queue.popleft()
        return out

    def _fail(self, reqs: object, err: GlucoledgerError) -> None:
        with self._cond:
            for req in reqs:  # type: ignore[attr-defined]
                req.error = err
                req.done.set()

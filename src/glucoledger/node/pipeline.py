"""A pipeline stage: one thread takes whatever requests are queued and handles them together.

Concurrent callers ``put`` requests and get a ``concurrent.futures.Future`` each; the stage's
thread takes everything queued (up to ``max_group``), calls ``step(group)`` once, and goes
back for what arrived meanwhile. Under load, groups grow by themselves: the longer a step
takes, the more requests wait for the next one, so per-group costs (a block, a few fsyncs)
are shared by more requests, without a timer and without idling a lone request.

``step`` must settle every request's future (result or exception); a request it leaves
unsettled, or an exception escaping ``step``, fails the requests still unsettled with
``GlucoledgerError`` (a bug, reported to the callers rather than hanging them).
An async caller awaits ``asyncio.wrap_future(future)``: no thread is held while it waits.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, Protocol, TypeVar

from ..errors import GlucoledgerError

__all__ = ["Pipeline", "Settles"]

log = logging.getLogger("glucoledger.pipeline")


class Settles(Protocol):
    future: Future  # type: ignore[type-arg]


R = TypeVar("R", bound=Settles)


class Pipeline(Generic[R]):
    def __init__(self, step: Callable[[list[R]], None], *, name: str,
                 max_group: int = 1024) -> None:
        self._step = step
        self._max = max_group
        self._queue: deque[R] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, request: R) -> Future:  # type: ignore[type-arg]
        with self._cond:
            if self._closed:
                raise GlucoledgerError("the server is shutting down; send the request again")
            self._queue.append(request)
            self._cond.notify()
        return request.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                n = min(self._max, len(self._queue))
                group = [self._queue.popleft() for _ in range(n)]
            try:
                self._step(group)
            except Exception as exc:  # the callers must hear of it
                log.exception("pipeline step failed")
                err = exc if isinstance(exc, GlucoledgerError) else GlucoledgerError(
                    "storing the request failed unexpectedly; nothing was acknowledged; retry")
                for r in group:
                    if not r.future.done():
                        r.future.set_exception(err)
            for r in group:
                if not r.future.done():
                    r.future.set_exception(GlucoledgerError(
                        "the request was not settled (a bug); retry"))

"""The worker processes a node checks signatures and uploads on (one way, for every pool).

- **forkserver**: each worker starts from a clean server process, never a fork of a node
  with threads and open databases.
- **Below the node's priority** (``nice`` +5): one process orders and applies everything,
  and each result a worker returns is only worth something once that process reaches it.
  When the cores are busy, the scheduler gives that process its core first and the workers
  what it leaves; when it waits for them, nothing else competes and they run at full
  speed. Measured on 2 cores (README, Performance): ``verify`` and commit gain; the
  consortium, whose members rarely read enough entries at once to use the workers, did not
  move. A nice value only lowers the workers' own share: nothing else is slowed. Where the
  system refuses it (a sandbox that forbids ``setpriority``), the workers run at the
  node's priority, as before: it is an optimisation, never a reason not to check.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

__all__ = ["WORKER_NICE", "checking_pool"]

#: How much lower than the node the workers run (a nice increment: 0 is the node's own).
WORKER_NICE = 5


def _lower_priority() -> None:
    """Each worker's first step (an exception here would break the whole pool)."""
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass


def checking_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` processes for signature and upload checks."""
    return ProcessPoolExecutor(workers, mp_context=get_context("forkserver"),
                               initializer=_lower_priority)

"""The ordering interface: who decides the order of the global log.

An orderer keeps an append-only sequence of opaque entries (transaction envelopes and block
cut entries; never readings). Every node reads the same sequence and derives the same blocks
from it. Two implementations: ``embedded`` (SQLite, one process) and ``etcd`` (a Raft cluster).

Contract, for every implementation (tests run one suite against each):
- ``append(entries)`` stores the entries contiguously and in order, and returns the position of
  the first; when it returns, the entries are durable (SQLite: committed in WAL mode; etcd:
  committed by a quorum). On any failure it raises OrderingError and nothing was appended,
  or (where the backend cannot tell, e.g. a timeout) the caller may retry: the node
  deduplicates by transaction hash, so a retried append is harmless.
- ``read(start, limit)`` returns entries at positions start, start+1, ... (at most ``limit``);
  fewer (or none) when the log is shorter. Positions below ``first()`` may have been compacted
  away and then raise OrderingError (etcd: each writer compacts its own entries, so some
  below it may still be readable); every position from ``first()`` on is readable.
- ``size()`` is the number of entries ever appended (positions are never reused).
- ``append_at(entries, size)`` appends only while the log holds exactly ``size`` entries
  (the genesis goes in with ``size`` 0: of two members placing it, one does).
- ``wait(size, timeout)`` blocks until the log holds more than ``size`` entries or the timeout
  passes; it returns the current size.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Self

__all__ = ["MAX_ENTRY", "Orderer"]

#: The largest entry an orderer accepts (etcd's default request limit is 1.5 MiB).
MAX_ENTRY = 1 << 20


class Orderer(abc.ABC):
    @abc.abstractmethod
    def append(self, entries: Sequence[bytes]) -> int: ...

    def append_at(self, entries: Sequence[bytes], size: int) -> int | None:
        """Append ``entries`` only if the log holds exactly ``size`` entries, in one
        compare-and-append (so two callers that both saw that size cannot both append);
        the position of the first entry, or None when the log's size differs."""
        raise NotImplementedError(f"{type(self).__name__} cannot append conditionally")

    @abc.abstractmethod
    def read(self, start: int, limit: int = 1000) -> list[bytes]: ...

    @abc.abstractmethod
    def size(self) -> int: ...

    def first(self) -> int:
        """Lowest position still readable (0 unless compacted)."""
        return 0

    def compact(self, below: int) -> None:
        """Allow the backend to drop entries at positions below ``below``."""

    def writer_of(self, position: int) -> str | None:
        """Who appended the entry at ``position``, if this orderer knows (etcd: the member
        whose batch holds it, for entries of the calling thread's latest read)."""
        return None

    @abc.abstractmethod
    def wait(self, size: int, timeout: float) -> int: ...

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Append throughput and latency of the etcd orderer.

``bench_etcd_append(endpoints, n, batch)`` appends ``n`` entries of ``entry_size`` bytes in
batches of ``batch`` from one client (one append at a time, so latency is per append and the
throughput is what one sequential node would see), on a fresh chain it leaves behind.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from glucoledger.ordering.etcd import EtcdOrderer

__all__ = ["AppendBench", "bench_etcd_append"]


@dataclass(frozen=True, slots=True)
class AppendBench:
    entries: int
    batch: int
    seconds: float
    entries_per_s: float
    p50_ms: float
    p99_ms: float


def bench_etcd_append(
    endpoints: Sequence[str],
    n: int,
    batch: int,
    *,
    entry_size: int = 256,
    chain: str | None = None,
) -> AppendBench:
    """Append ``n`` entries in appends of ``batch``; raises OrderingError if etcd fails."""
    if n < 1 or batch < 1:
        raise ValueError("n and batch must be positive")
    chain = chain or f"bench-{uuid.uuid4().hex[:12]}"
    latencies: list[float] = []
    with EtcdOrderer(endpoints, chain) as orderer:
        payload = bytes(entry_size)
        done = 0
        start = time.perf_counter()
        while done < n:
            k = min(batch, n - done)
            t0 = time.perf_counter()
            orderer.append([payload] * k)
            latencies.append(time.perf_counter() - t0)
            done += k
        seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return AppendBench(
        entries=n,
        batch=batch,
        seconds=seconds,
        entries_per_s=n / seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=p99 * 1000,
    )

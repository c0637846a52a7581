"""Ledger benchmarks, measured in one run on this machine (timings for people, never asserted).

- ``tx_per_s``: signed transactions (``account.create``, one Ed25519 signature each) appended
  to the embedded orderer and committed in blocks (signature checks spread over the cores,
  state machine, Merkle log, checkpoint signing, SQLite), in submissions of ``batch``.
- ``sqlite_rows_per_s``: the same envelopes inserted as plain SQLite rows (WAL, one
  transaction per batch, synchronous=FULL like the orderer): the floor any durable store pays.
- ``verify_tx_per_s``: ``verify`` over the chain just built (re-derives everything).
- ``ed25519_verify_per_s``: raw signature checks on one core, the physical limit of the rest
  (times the cores: no node can commit or verify more Ed25519-signed transactions per second).

Clients sign in this process before the clock starts; the benchmark then empties the
verified-signature memo, so the node checks every signature as it would for foreign ones.
The process's garbage collector is tuned as the node's own processes tune it
(``runtime.long_running_gc``).
- Merkle figures from ``bench.merkle`` (ours against pymerkle).

``python -m glucoledger.bench.ledger [n]`` prints them as JSON; ``glucoledger bench`` as a table.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..crypto import generate
from ..ledger.tx import Transaction, sign
from ..node.service import Node
from ..runtime import interruptible, long_running_gc
from ..state.accounts_model import account_id, single_key_policy
from .common import best_ceiling, count_arg, print_ceiling, print_load, signature_ceiling
from .merkle import bench_merkle

__all__ = ["account_envelopes", "bench_ledger", "run_all"]


def account_envelopes(chain: str, n: int) -> list[bytes]:
    """``n`` signed ``account.create`` transactions of new patients: the benchmark workload."""
    out = []
    for _ in range(n):
        k = generate()
        policy = single_key_policy(k.public)
        body = {"kind": "patient", "policy": policy}
        out.append(sign(Transaction(chain, "account.create", body,
                                    account_id("patient", policy), 0), [k]).raw)
    return out


def _sqlite_rows(envs: list[bytes], batch: int, folder: Path) -> float:
    db = sqlite3.connect(folder / "plain.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
    start = time.perf_counter()
    for i in range(0, len(envs), batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t (payload) VALUES (?)", [(e,) for e in envs[i:i + batch]])
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return len(envs) / seconds


def _raw_verify_rate(n: int = 2000) -> float:
    """Ed25519 verifications per second on one core (distinct messages, memo emptied)."""
    k = generate()
    msgs = [i.to_bytes(32, "big") for i in range(n)]
    sigs = [k.sign("tx", m) for m in msgs]
    start = time.perf_counter()
    for m, s in zip(msgs, sigs, strict=True):
        k.public.verify("tx", m, s)
    return n / (time.perf_counter() - start)


def _tenths(ends: list[tuple[int, float]]) -> tuple[float, float]:
    """Commit rates over the first and the last tenth of the submissions (at least one
    each), from (transactions committed, seconds since start) after each submission."""
    k = max(1, len(ends) // 10)
    points = [(0, 0.0), *ends]
    (n0, t0), (n1, t1) = points[0], points[k]
    (m0, u0), (m1, u1) = points[-1 - k], points[-1]
    return (n1 - n0) / (t1 - t0), (m1 - m0) / (u1 - u0)


def bench_ledger(n: int = 20_000, batch: int = 2_000, workers: int | None = None,
                 echo: Callable[[str], Any] = print) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="glucoledger-bench-") as tmp:
        folder = Path(tmp)
        node = Node.init(folder / "node", workers=workers)
        try:
            echo(f"signing {n:,} transactions ...")
            envs = account_envelopes(node.chain, n)
            # The clients signed in this process: forget it, so the node checks every
            # signature as it would for transactions that arrive from outside.
            node.trust.clear()
            node.precheck_envelopes(envs[:512])  # start the worker pool outside the timing
            echo("appending and committing ...")
            start = time.perf_counter()
            ends = []  # (transactions committed, seconds since start) after each submission
            for i in range(0, n, batch):
                receipts = node.submit(envs[i:i + batch])
                if not all(r.ok for r in receipts):
                    raise RuntimeError("a benchmark transaction was refused")
                ends.append((i + len(receipts), time.perf_counter() - start))
            tx_s = n / ends[-1][1]
            first, last = _tenths(ends)
            echo("verifying ...")
            report = node.verify()
            verify_s = report.tx_per_second
        finally:
            node.close()
        sqlite_s = _sqlite_rows(envs, batch, folder)
    return {
        "tx_per_s": tx_s,
        "sqlite_rows_per_s": sqlite_s,
        "tx_vs_sqlite_ratio": tx_s / sqlite_s,
        "tx_per_s_first_tenth": first,
        "tx_per_s_last_tenth": last,
        "last_vs_first_tenth": last / first,
        "verify_tx_per_s": verify_s,
        "ed25519_verify_per_s_one_core": _raw_verify_rate(),
        "cores": float(os.cpu_count() or 1),
    }


def run_all(quick: bool = False, echo: Callable[[str], Any] = print) -> dict[str, float]:
    n = 4_000 if quick else 20_000
    results = bench_ledger(n=n, echo=echo)
    echo("Merkle log against pymerkle ...")
    m = bench_merkle(20_000 if quick else 200_000)
    results.update({f"merkle_{k}": v for k, v in m.items()})
    return results


def main(argv: list[str] | None = None) -> None:
    n = count_arg(argv, __doc__, 20_000, "signed transactions to commit, then verify")
    print_load("start")
    ceiling = signature_ceiling()
    print_ceiling(ceiling)
    long_running_gc()  # the node's process as `serve` and `glucoledger node` run it
    figures = bench_ledger(n)
    best = best_ceiling(ceiling)
    print(json.dumps(figures, indent=2))
    print(f"commit: {figures['tx_per_s'] / best:.2f}x the all-core signature ceiling "
          f"(goal >= 0.5x); verify: {figures['verify_tx_per_s'] / best:.2f}x (goal >= 0.75x)")
    print(f"commit as the chain grew to {n:,} transactions: the last tenth "
          f"{figures['last_vs_first_tenth']:.2f}x the first")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

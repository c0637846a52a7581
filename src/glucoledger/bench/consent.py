"""Benchmark: decide() latency and the audited 14-day summary read (write-ahead access
transaction + decrypt ~4,000 readings + consensus metrics + node signature).

The read asks what the CLI ``report`` and the portal ask: the last 14 whole local days
(node/localdays.py). Three figures from the same run: repeated reads (the node reuses the
metrics computed for the same batches and window: node/access.py), reads that compute the
metrics every time (batches decrypted once and kept: the code before that reuse), and reads
that decrypt and compute every time.

Run: ``PYTHONPATH=src python -m glucoledger.bench.consent [--reads 200]``. Printed, not
asserted. Goals: decide p99 < 5 ms; audited summary read p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ..crypto import generate
from ..glucose.readings import Batch
from ..glucose.simulate import simulate_patient
from ..node import accounts
from ..node import consent_actions as ca
from ..node.access import AccessService
from ..node.devices import bind_device
from ..node.localdays import reader_days
from ..node.service import Node
from ..node.services import NodeServices
from ..node.world import World
from ..runtime import interruptible
from ..state.consent import DAY_MS, Request, decide
from .common import print_load

__all__ = ["main", "run"]


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(reads: int = 200, decides: int = 5000, grants: int = 50) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="glucoledger-bench-consent-"))
    node = Node.init(folder / "node", workers=1)
    services = NodeServices.of(node)
    vault = services.vault
    try:
        world = World.create(node)
        accounts.create_account(node, "rosa", "trusted")
        accounts.create_account(node, "alice", "patient", trusted="rosa")
        accounts.create_account(node, "dr", "clinician")
        alice, dr = accounts.identity(node, "alice"), accounts.identity(node, "dr")
        ak, dk = accounts.keys_of(node, alice, [0]), accounts.keys_of(node, dr, [0])
        dev = world.add_device("BENCH-CGM")
        bind_device(node, alice.id, ak, dev.id)
        now = int(time.time() * 1000)
        cgm = simulate_patient(3, 15, now - 15 * DAY_MS)["cgm"]
        services.ingest.ingest_batches(
            [Batch("cgm", tuple(cgm), cgm[0].time_ms, cgm[-1].time_ms, len(cgm))],
            patient=alice.id, uploader=dev.id, signer=dev.key)
        # other grantees' grants, so decide() searches a realistic index
        for _ in range(grants):
            k = generate()
            from ..node.devices import create_keyed_account

            other = create_keyed_account(node, "trusted", [k])
            ca.grant(node, alice.id, ak, other, streams=["cgm"], view="raw",
                     window={"last_days": 30}, valid_from=now - DAY_MS,
                     valid_until=now + DAY_MS * 90, alerts=True)
        ca.grant(node, alice.id, ak, dr.id, streams=["cgm"], view="summary",
                 window={"last_days": 14}, valid_from=now - DAY_MS,
                 valid_until=now + DAY_MS * 90)
        # a summary-only reader's 14 days: whole UTC days (node/localdays.py reader_days)
        span = reader_days(node.state, node.data_dir, dr.id, alice.id, 14, node.now_ms())
        req = Request(alice.id, ("cgm",), "summary", span.window())
        d_lat = []
        for _ in range(decides):
            t = time.perf_counter()
            decide(node.state, dr.id, req, now)
            d_lat.append((time.perf_counter() - t) * 1000)
        cold = AccessService(node, vault, cache=0, summaries=0)
        c_lat = []
        for _ in range(max(10, reads // 5)):
            t = time.perf_counter()
            cold.read(cold.request(dr.id, dk, req).raw)
            c_lat.append((time.perf_counter() - t) * 1000)
        computing = AccessService(node, vault, summaries=0)
        m_lat = []
        for _ in range(max(10, reads // 2)):
            t = time.perf_counter()
            computing.read(computing.request(dr.id, dk, req).raw)
            m_lat.append((time.perf_counter() - t) * 1000)
        svc = services.access
        r_lat = []
        count = 0
        t0 = time.perf_counter()
        for _ in range(reads):
            t = time.perf_counter()
            s = svc.read(svc.request(dr.id, dk, req).raw)
            r_lat.append((time.perf_counter() - t) * 1000)
            count = s.summary.count  # type: ignore[union-attr]
        total = time.perf_counter() - t0
        return {"decide_p50_ms": statistics.median(d_lat), "decide_p99_ms": _pct(d_lat, 0.99),
                "read_p50_ms": statistics.median(r_lat), "read_p99_ms": _pct(r_lat, 0.99),
                "reads_per_s": reads / total, "readings": count,
                "cold_p50_ms": statistics.median(c_lat), "cold_p99_ms": _pct(c_lat, 0.99),
                "computed_p50_ms": statistics.median(m_lat),
                "computed_p99_ms": _pct(m_lat, 0.99)}
    finally:
        services.close()
        node.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    print_load("start")
    r = run(args.reads)
    print(f"decide():              p50 {r['decide_p50_ms']:.3f} ms   p99 {r['decide_p99_ms']:.3f}"
          " ms   (goal p99 < 5 ms)")
    print(f"audited summary read:  p50 {r['read_p50_ms']:.1f} ms   p99 {r['read_p99_ms']:.1f} ms"
          f"   (goal p99 < 50 ms; {int(r['readings'])} readings, 14 days)")
    print(f"  computing the metrics every read (batches kept decrypted): p50 "
          f"{r['computed_p50_ms']:.1f} ms   p99 {r['computed_p99_ms']:.1f} ms")
    print(f"  decrypting and computing every read: p50 "
          f"{r['cold_p50_ms']:.1f} ms   p99 {r['cold_p99_ms']:.1f} ms")
    print(f"audited reads/s:       {r['reads_per_s']:.1f} (one reader, sequential)")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

"""Does recording day commitments at ingestion slow the upload path? (issue 19)

    python -m glucoledger.bench.zk_ingest --patients 4 --days 4 --rounds 2

Each run makes a fresh node, ``patients`` patients with one CGM each, and uploads
``days`` days of five-minute readings as uploaders do: one signed batch per patient per
hour (12 readings), hour after hour, timing each upload (``IngestService.ingest_batches``:
checked, sealed, ordered, stored). Runs alternate between a node without the day
commitments and one with them (``NodeServices.commit_zk_days``: the worker thread commits
each day once data reaches 3 hours past its end), so both see the same machine load. It
prints, per mode, the median over rounds of the uploads' total time, median and 95th
percentile latency, and (with commitments) how many ``zk.day`` were recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from ..glucose.readings import Batch, CgmReading
from ..node.service import Node
from ..node.services import NodeServices
from ..node.world import World
from ..runtime import interruptible

__all__ = ["bench_zk_ingest"]

DAY = 86_400_000
HOUR = 3_600_000
D0 = 1_764_547_200_000  # 2025-12-01T00:00Z


def _run(folder: Path, patients: int, days: int, commit: bool) -> dict[str, float]:
    node = Node.init(folder, workers=1)
    svc = NodeServices.of(node)
    try:
        world = World.create(node)
        people = []
        for k in range(patients):
            p = world.add_patient(f"p{k}")
            people.append((p, world.add_device(f"SN-{k}", patient=p)))
        committer = svc.commit_zk_days() if commit else None
        ingest = svc.ingest
        lat: list[float] = []
        start = time.perf_counter()
        for h in range(days * 24):
            for p, dev in people:
                t0 = D0 + h * HOUR
                recs = tuple(CgmReading(t0 + i * 300_000, 0, 90 + (h * 7 + i * 3) % 150,
                                        "Flat") for i in range(12))
                b = Batch("cgm", recs, recs[0].time_ms, recs[-1].time_ms, 12)
                t = time.perf_counter()
                ingest.ingest_batches([b], patient=p.id, uploader=dev.id, signer=dev.key)
                lat.append(time.perf_counter() - t)
        total = time.perf_counter() - start
        days_done = 0
        if committer is not None:
            committer.close()
            days_done = committer.committed
        lat.sort()
        return {"total_s": total, "p50_ms": 1000 * statistics.median(lat),
                "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))], "uploads": len(lat),
                "zk_days": days_done}
    finally:
        svc.close()
        node.close()


def bench_zk_ingest(patients: int, days: int, rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    os.environ.setdefault("GLUCOLEDGER_ZK_PROFILE", "day")
    for r in range(rounds):
        for mode in ("without", "with"):
            with tempfile.TemporaryDirectory(prefix="glucoledger-bench-zk-") as tmp:
                out[mode].append(_run(Path(tmp) / "node", patients, days, mode == "with"))
            print(json.dumps({"round": r, "mode": mode, **out[mode][-1]}), flush=True)
    return {mode: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
            for mode, runs in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print(json.dumps(bench_zk_ingest(a.patients, a.days, a.rounds), indent=1))


if __name__ == "__main__":
    interruptible(main)

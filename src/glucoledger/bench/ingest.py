"""Benchmark: readings ingested per second end to end, against plain SQLite inserts.

End to end = what a node does with uploads received as bytes (``IngestService.upload_wire``):
decode, validate every record (glucose package rules), recompute the salted leaves and root,
check the device's signature (these on worker processes for large groups), check the device's
state, seal under a fresh data key, wrap it, write the blob (fsync by default), record the
wrapped key, and commit one ``data.commit`` per batch through ``Node.submit`` (grouped: one
block per group of queued uploads). Devices prepare and sign their uploads before the clock
starts (that is their work, not the node's); the process then forgets those signatures, so
the node verifies every device signature as it would for a real device's upload. The
process's garbage collector is tuned as the node's own processes tune it
(``runtime.long_running_gc``).

Baseline, in the same run: the same readings inserted into a plain SQLite table
(``executemany``, one transaction per group, WAL, synchronous=NORMAL).

Run: ``python -m glucoledger.bench.ingest [--singles N] [--days N] [--no-fsync]``.
Goals (reported, not asserted): >= 10,000 single-reading uploads/s; >= 250,000 readings/s in
day batches (288 readings), or >= 0.4x plain SQLite. It also prints, in us a reading, the
node's check alone (``check_wires`` over the same day batches in one process, no workers) and
the CPU of the timed day-batch ingest (psutil: the node's process, its worker processes).

Measured 2026-12-04 (``--singles 100 --days 400``, three runs interleaved with the code before
the byte-level bulk check and the once-encoded hour index, load 2.9-3.6 on the 2 shared
cores): day batches 0.40x, 0.38x, 0.39x plain SQLite (before: 0.25x, 0.43x, 0.27x; the load
moves single runs more than the change, README has two earlier sets). CPU a reading, which
moves less: 5.4-6.4 us in total against 6.2-8.3 before; the workers (the check) 3.6-4.3 us
against 4.2-5.6, the node process 1.8-2.3 us against 2.1-2.6. The node's serial part (state
checks, sealing, signing each ``data.commit``, then ordering, applying and storing the one
block) runs after the workers' checks, so it bounds the rate; README, Performance.
On a quiet machine (load about 1, later that day) day batches ran at 312k-380k readings/s,
0.43x-0.50x plain SQLite in every run: the goal is met; single uploads 3.7k-4.4k/s.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import codec
from ..glucose.readings import Batch, CgmReading
from ..node.service import Node
from ..node.services import NodeServices
from ..node.world import World
from ..runtime import interruptible, long_running_gc
from ..vault.batch import check_wires, prepare_upload
from .common import best_ceiling, print_ceiling, print_load, require, signature_ceiling

__all__ = ["Result", "main", "run"]

T0 = 1_700_000_012_345


@dataclass(frozen=True)
class Result:
    label: str
    uploads: int
    readings: int
    seconds: float
    sqlite_seconds: float
    #: ``check_wires`` over the same uploads in this one process (no workers): the per-reading
    #: cost of the node's check (parse, validate, salts, leaves, root, device signature).
    check_seconds: float = 0.0
    #: CPU seconds over the timed ingest (psutil): the node's process (every thread) and its
    #: worker processes. Unlike the rates, these barely move with the machine's load.
    node_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds

    @property
    def uploads_per_s(self) -> float:
        return self.uploads / self.seconds

    @property
    def sqlite_per_s(self) -> float:
        return self.readings / self.sqlite_seconds


def _wire(world: World, devices: list[Any], per_upload: int, uploads: int) -> list[bytes]:
    out = []
    n = len(devices)
    for k in range(uploads):
        patient, dev = devices[k % n]
        seq = k // n + 1
        t0 = T0 + seq * per_upload * 300_000
        items = tuple(CgmReading(t0 + i * 300_000, 0, 40 + (k * 7 + i) % 360, "Flat")
                      for i in range(per_upload))
        batch = Batch("cgm", items, items[0].time_ms, items[-1].time_ms, per_upload)
        up = prepare_upload(world.node.chain, patient.id, dev.id, seq, batch, dev.key)
        out.append(codec.encode(up.to_value()))
    return out


def _cpu() -> tuple[float, float]:
    """CPU seconds so far (user + system) of this process and of all its descendants.

    This process's own time comes from the kernel's nanosecond clock (a short run takes
    less than psutil's 10 ms tick); the descendants' only from /proc, in ticks."""
    import psutil  # type: ignore[import-untyped]

    me = psutil.Process()
    kids = 0.0
    for p in me.children(recursive=True):  # the forkserver and the ingest workers
        try:
            t = p.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        kids += t.user + t.system
    return time.process_time(), kids


def _sqlite(path: Path, wire: list[bytes], group: int) -> float:
    rows_per_group = []
    for g in range(0, len(wire), group):
        rows = []
        for w in wire[g:g + group]:
            v = codec.decode(w, max_size=64 << 20)
            for item in v["batch"]["items"]:
                rows.append((v["patient"], item["time_ms"], item["tz_offset_min"],
                             item["mgdl"], item["trend"]))
        rows_per_group.append(rows)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE readings (patient BLOB, time_ms INTEGER, tz INTEGER, "
               "mgdl INTEGER, trend TEXT)")
    t = time.perf_counter()
    for rows in rows_per_group:
        db.execute("BEGIN")
        db.executemany("INSERT INTO readings VALUES (?,?,?,?,?)", rows)
        db.execute("COMMIT")
    took = time.perf_counter() - t
    db.close()
    return took


def run(label: str, per_upload: int, uploads: int, *, devices: int = 16, fsync: bool = True,
        group: int = 2048, folder: Path | None = None) -> Result:
    base = Path(folder or tempfile.mkdtemp(prefix="glucoledger-bench-"))
    node = Node.init(base / "node")
    try:
        world = World.create(node)
        pairs = []
        for d in range(devices):
            p = world.add_patient(f"p{d}")
            pairs.append((p, world.add_device(f"D{d}", patient=p)))
        wire = _wire(world, pairs, per_upload, uploads)
        node.trust.clear()  # the devices signed in this process: the node must not know that
        services = NodeServices.of(node, fsync=fsync, max_group=group)
        service = services.ingest
        list(service._check_wires(wire[:1] * 2 * 256))  # start the worker pool outside the timing
        own0, kids0 = _cpu()
        t = time.perf_counter()
        accepted = 0
        for g in range(0, len(wire), group):
            for r in service.upload_wire(wire[g:g + group]):
                if isinstance(r, Exception):
                    raise r
                accepted += 1
        took = time.perf_counter() - t
        own1, kids1 = _cpu()
        services.close()
        assert accepted == uploads
        base_s = _sqlite(base / "plain.db", wire, group)
        t = time.perf_counter()
        checked = check_wires(wire)
        check_s = time.perf_counter() - t
        assert not any(isinstance(c, Exception) for c in checked)
        return Result(label, uploads, uploads * per_upload, took, base_s, check_s,
                      own1 - own0, kids1 - kids0)
    finally:
        node.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--singles", type=int, default=20_000, help="single-reading uploads")
    ap.add_argument("--days", type=int, default=400, help="day batches of 288 readings")
    ap.add_argument("--no-fsync", action="store_true", help="do not fsync blobs and vault.db")
    args = ap.parse_args(argv)
    require("psutil", "psutil", "to measure the ingest workers' CPU")
    print_load("start")
    ceiling = signature_ceiling()
    print_ceiling(ceiling)
    long_running_gc()  # the node's process as `serve` and `glucoledger node` run it
    results = [run("1 reading/upload", 1, args.singles, fsync=not args.no_fsync),
               run("288 readings/upload", 288, args.days, fsync=not args.no_fsync)]
    print(f"fsync: {not args.no_fsync}")
    print(f"{'case':22} {'uploads':>8} {'readings':>9} {'uploads/s':>10} {'readings/s':>11} "
          f"{'sqlite r/s':>11} {'ratio':>7}")
    for r in results:
        print(f"{r.label:22} {r.uploads:8d} {r.readings:9d} {r.uploads_per_s:10.0f} "
              f"{r.readings_per_s:11.0f} {r.sqlite_per_s:11.0f} "
              f"{r.sqlite_per_s / r.readings_per_s:6.1f}x")
    s, d = results
    print(f"goal 10,000 single uploads/s: {s.uploads_per_s:,.0f} "
          f"({'met' if s.uploads_per_s >= 10_000 else 'not met'})")
    print(f"goal 250,000 readings/s in day batches: {d.readings_per_s:,.0f} "
          f"({'met' if d.readings_per_s >= 250_000 else 'not met'}); "
          f"{d.readings_per_s / d.sqlite_per_s:.2f}x plain SQLite (alternative goal >= 0.4x)")
    print(f"the node's check of a day batch (check_wire, one process, no workers): "
          f"{d.check_seconds / d.readings * 1e6:.2f} us a reading")
    print(f"CPU a reading in day batches: node process {d.node_cpu_s / d.readings * 1e6:.2f} us, "
          f"workers {d.worker_cpu_s / d.readings * 1e6:.2f} us, total "
          f"{(d.node_cpu_s + d.worker_cpu_s) / d.readings * 1e6:.2f} us")
    print(f"CPU a single upload: node process {s.node_cpu_s / s.uploads * 1e6:.1f} us, "
          f"workers {s.worker_cpu_s / s.uploads * 1e6:.1f} us (these move less with the "
          "load than the rates)")
    print(f"single uploads against the signature ceiling: "
          f"{s.uploads_per_s / best_ceiling(ceiling):.2f}x")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

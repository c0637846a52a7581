"""Benchmark: the arithmetic of a first summary read, in process CPU time.

What node/access.py computes the first time a window is read (glucose.metrics.summarize
with each reading's interval, and the aggregate AGP), on 14 days of simulated 5-minute
data, timed with ``time.process_time`` so that a loaded machine's waiting for a core is not
counted. With ``--compare SRC`` (the ``src`` folder of another checkout, e.g. main's) the
same work runs with that code too, imported side by side in this process as
``glucoledger_base`` and interleaved call by call with this checkout's, so both see the
same machine; the results must be equal (``Summary.to_value()`` and the profile).

Run: ``PYTHONPATH=src python -m glucoledger.bench.summary_cpu [--calls 150]
[--compare ../main/src]``. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..glucose import agp, metrics
from ..glucose.readings import CgmReading
from ..glucose.simulate import simulate_patient
from ..runtime import interruptible
from .common import print_load

__all__ = ["main", "run"]

DAY_MS = 86_400_000
T_END = 1_796_256_000_000  # a fixed UTC midnight: the same data every run


def _base(src: Path) -> tuple[ModuleType, ModuleType, ModuleType]:
    """(metrics, agp, readings) of the checkout at ``src``, as package ``glucoledger_base``."""
    root = Path(src) / "glucoledger"
    spec = importlib.util.spec_from_file_location(
        "glucoledger_base", root / "__init__.py", submodule_search_locations=[str(root)])
    if spec is None or spec.loader is None:
        raise SystemExit(f"no glucoledger package under {src}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["glucoledger_base"] = module
    spec.loader.exec_module(module)
    return (importlib.import_module("glucoledger_base.glucose.metrics"),
            importlib.import_module("glucoledger_base.glucose.agp"),
            importlib.import_module("glucoledger_base.glucose.readings"))


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(calls: int = 150, compare: Path | None = None) -> dict[str, Any]:
    """CPU ms per first-read computation: {"readings", "p50", "p99", and with ``compare``
    "base_p50", "base_p99"}."""
    start, end = T_END - 14 * DAY_MS, T_END
    cgm = [r for r in simulate_patient(3, 15, T_END - 15 * DAY_MS)["cgm"]
           if isinstance(r, CgmReading) and start <= r.time_ms < end]
    intervals = [300_000] * len(cgm)

    def work(m: Any, a: Any, rs: list[Any]) -> Callable[[], tuple[Any, Any]]:
        return lambda: (m.summarize(rs, start_ms=start, end_ms=end, intervals_ms=intervals),
                        a.compute_agp(rs).aggregate())

    jobs = {"new": work(metrics, agp, cgm)}
    if compare is not None:
        bm, ba, br = _base(compare)
        jobs["base"] = work(bm, ba, [br.CgmReading(r.time_ms, r.tz_offset_min, r.mgdl)
                                     for r in cgm])
    times: dict[str, list[float]] = {k: [] for k in jobs}
    results: dict[str, Any] = {}
    for _ in range(calls):
        for name, job in jobs.items():
            t = time.process_time()
            s, profile = job()
            times[name].append((time.process_time() - t) * 1000)
            results[name] = (s.to_value(), profile.to_value())
    if compare is not None and results["base"] != results["new"]:
        raise SystemExit("the two checkouts computed different summaries")
    out: dict[str, Any] = {"readings": len(cgm), "p50": statistics.median(times["new"]),
                           "p99": _pct(times["new"], 0.99)}
    if compare is not None:
        out.update(base_p50=statistics.median(times["base"]),
                   base_p99=_pct(times["base"], 0.99))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--compare", type=Path, default=None,
                    help="the src folder of another checkout, run interleaved with this one")
    args = ap.parse_args()
    print_load("start")
    r = run(args.calls, args.compare)
    print(f"first-read arithmetic, {r['readings']} readings, 14 days (process CPU time): "
          f"p50 {r['p50']:.1f} ms   p99 {r['p99']:.1f} ms")
    if "base_p50" in r:
        print(f"  {args.compare}, interleaved, same results: p50 {r['base_p50']:.1f} ms   "
              f"p99 {r['base_p99']:.1f} ms   (this checkout: "
              f"{r['base_p50'] / r['p50']:.2f}x faster at p50)")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

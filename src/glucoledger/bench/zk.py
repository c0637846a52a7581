"""Benchmark of zero-knowledge claims (issue 19): proving time and memory for N days, and
verification time in Python, with snarkjs's own verifier as the same-run baseline.

    python -m glucoledger.bench.zk --profile day --days 1,7,14

For each N: synthetic days (a 5-minute CGM trace, no reading missing), committed with
zk/windows.py, proved with zk/chain.py ``prove_chain`` (snarkjs as subprocesses, two at a
time on two cores), verified with ``verify_chain`` (Python, py_ecc, day proofs batched).
``peak_child_rss_mb`` is the largest resident set of any snarkjs process so far in the run
(``RUSAGE_CHILDREN``). ``snarkjs_verify_s`` is one ``snarkjs groth16 verify`` of a day proof
(Node.js start included), the baseline the Python verifier is compared with. The profile's
setup must exist (``glucoledger zk-setup --profile NAME``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

from ..zk.chain import DayWitness, Window, prove_chain, verify_chain
from ..zk.claims import parse
from ..zk.toolchain import PROFILES, Toolchain
from ..zk.windows import ZERO_ACC, commit_slots

__all__ = ["bench_zk"]

DAY = 86_400_000


def _days(n: int, slots: int, per: int, seed: int) -> list[DayWitness]:
    rng = random.Random(seed)
    out = []
    for d in range(n):
        values = [max(40, min(400, int(rng.gauss(140, 35)))) for _ in range(slots)]
        salt = rng.getrandbits(250)
        w = Window(d * DAY, d * DAY + min(DAY, slots * 300_000),
                   commit_slots(values, salt, per))
        out.append(DayWitness(w, tuple(values), salt))
    return out


def bench_zk(profile: str, counts: list[int]) -> list[dict[str, float]]:
    tc = Toolchain(PROFILES[profile])
    keys = tc.keys()
    claim = parse("tbr54<=100")
    rows = []
    for n in counts:
        days = _days(n, tc.profile.slots, tc.profile.per, n)
        t0 = time.perf_counter()
        for d in days:
            commit_slots(d.slots, d.salt, tc.profile.per)
        commit_s = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        doc = prove_chain(tc, claim, days)
        prove_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        verify_chain(doc, keys, claim, [d.window for d in days])
        verify_s = time.perf_counter() - t0
        step = doc["steps"][0]
        t0 = time.perf_counter()
        ok = tc.snarkjs_verify("day", step["proof"],
                               [days[0].window.commitment, ZERO_ACC, int(step["acc"])])
        snark_s = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append({"days": n, "prove_s": round(prove_s, 2),
                     "verify_python_s": round(verify_s, 3),
                     "snarkjs_verify_one_s": round(snark_s, 3), "snarkjs_agrees": float(ok),
                     "commit_python_ms_per_day": round(commit_s * 1000, 1),
                     "peak_child_rss_mb": round(rss, 1),
                     "claim_file_kb": round(len(json.dumps(doc)) / 1024, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="day", choices=sorted(PROFILES))
    ap.add_argument("--days", default="1,7,14")
    args = ap.parse_args()
    bench_zk(args.profile, [int(x) for x in args.days.split(",")])


if __name__ == "__main__":
    main()

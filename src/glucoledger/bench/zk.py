"""Benchmark of zero-knowledge claims (issue 19): proving time and memory for N days, and
verification time in Python, with snarkjs's own verifier as the same-run baseline.

    python -m glucoledger.bench.zk --profile day --days 1,7,14

For each N: synthetic days (a 5-minute CGM trace, no reading missing), committed with
zk/windows.py, proved with zk/chain.py ``prove_chain`` (snarkjs as subprocesses, two at a
time on two cores), verified with ``verify_chain`` in pure Python (zk/bn254.py, day proofs
batched; ``GLUCOLEDGER_ZK_VERIFIER=python`` so an installed groth16py does not stand in).
``peak_child_rss_mb`` is the largest resident set of any snarkjs process so far in the run
(``RUSAGE_CHILDREN``). ``snarkjs_verify_s`` is one ``snarkjs groth16 verify`` of a day proof
(Node.js start included). ``verify_py_ecc_s`` is the same claim's verification with py_ecc's
optimized_bn128, the verifier bn254.py replaced (the same batch equation, G2 points checked by
[r]Q = O as before), measured in the same run: ``py_ecc_over_python`` is the speed-up.
``verify_groth16py_s`` is the Rust backend's time when it is installed.

``--micro`` first prints one line per operation, bn254 against py_ecc in the same run: one
pairing, a 17-pair product (a 14-day batch's 14 + 3 pairs: one Miller loop and one final
exponentiation against py_ecc's 17 Miller loops and one final exponentiation), one final
exponentiation, one G2 subgroup check. The profile's setup must exist
(``glucoledger zk-setup --profile NAME``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..jsonin import recursion_limit_kept
from ..runtime import interruptible
from ..zk import bn254, groth16
from ..zk.chain import DayWitness, Window, prove_chain, verify_chain
from ..zk.claims import need_for, parse
from ..zk.toolchain import PROFILES, Toolchain
from ..zk.windows import ZERO_ACC, commit_slots
from .common import require

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


def _py_ecc() -> Any:
    with recursion_limit_kept():
        from py_ecc import optimized_bn128
    return optimized_bn128


def _py_ecc_verify(vk_json: dict[str, Any], items: Sequence[tuple[Any, Sequence[int]]],
                   weights: Callable[[], int]) -> bool:
    """The baseline: the Groth16 batch check groth16.py made with py_ecc before bn254.py (G2
    points checked by [r]Q = O, one pairing per pair, one final exponentiation)."""
    bn = _py_ecc()

    def g1(p: bn254.G1) -> Any:
        assert p is not None
        return bn.FQ(p[0]), bn.FQ(p[1]), bn.FQ(1)

    def g2(q: bn254.G2) -> Any:
        assert q is not None
        pt = bn.FQ2(list(q[0])), bn.FQ2(list(q[1])), bn.FQ2.one()
        assert bn.is_on_curve(pt, bn.b2) and bn.is_inf(bn.multiply(pt, bn.curve_order))
        return pt

    vk = groth16.VerifyingKey.from_json(vk_json)  # parsing: bn254's checks, not timed apart
    beta, gamma, delta = g2(vk.beta), g2(vk.gamma), g2(vk.delta)
    total_r, sum_x, sum_c, acc = 0, bn.Z1, bn.Z1, bn.FQ12.one()
    for proof_json, inputs in items:
        proof = groth16.Proof.from_json(proof_json)
        r = 1 if len(items) == 1 else weights() | 1
        total_r += r
        vk_x = g1(vk.ic[0])
        for x, point in zip(inputs, vk.ic[1:], strict=True):
            vk_x = bn.add(vk_x, bn.multiply(g1(point), x))
        sum_x = bn.add(sum_x, bn.multiply(vk_x, r))
        sum_c = bn.add(sum_c, bn.multiply(g1(proof.c), r))
        acc *= bn.pairing(g2(proof.b), bn.multiply(g1(proof.a), r), final_exponentiate=False)
    acc *= bn.pairing(beta, bn.neg(bn.multiply(g1(vk.alpha), total_r % bn.curve_order)),
                      final_exponentiate=False)
    acc *= bn.pairing(gamma, bn.neg(sum_x), final_exponentiate=False)
    acc *= bn.pairing(delta, bn.neg(sum_c), final_exponentiate=False)
    return bool(bn.final_exponentiate(acc) == bn.FQ12.one())


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_micro(seed: int = 1) -> list[dict[str, Any]]:
    """bn254 against py_ecc, one line per operation, same run."""
    bn = _py_ecc()
    rng = random.Random(seed)
    ref_ps = [bn.multiply(bn.G1, rng.randrange(1, bn254.R)) for _ in range(17)]
    ref_qs = [bn.multiply(bn.G2, rng.randrange(1, bn254.R)) for _ in range(17)]
    ps: list[bn254.G1] = []
    qs: list[bn254.G2] = []
    for p, q in zip(ref_ps, ref_qs, strict=True):
        (x, y), (qx, qy) = bn.normalize(p), bn.normalize(q)
        ps.append((int(x), int(y)))
        qs.append(((int(qx.coeffs[0]), int(qx.coeffs[1])), (int(qy.coeffs[0]), int(qy.coeffs[1]))))
    f = tuple(rng.randrange(bn254.P) for _ in range(12))
    ref_f = bn.FQ12([rng.randrange(bn254.P) for _ in range(12)])

    def product_ref() -> object:
        acc = bn.FQ12.one()
        for p, q in zip(ref_ps, ref_qs, strict=True):
            acc *= bn.pairing(q, p, final_exponentiate=False)
        return bn.final_exponentiate(acc)

    q0 = qs[0]
    assert q0 is not None
    ops: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("pairing", lambda: bn254.pairing(ps[0], qs[0]), lambda: bn.pairing(ref_qs[0], ref_ps[0])),
        ("multi_pairing_17", lambda: bn254.pairing_is_one(list(zip(ps, qs, strict=True))),
         product_ref),
        ("final_exponentiation", lambda: bn254.final_exponentiation(f),  # type: ignore[arg-type]
         lambda: bn.final_exponentiate(ref_f)),
        ("g2_subgroup_check", lambda: bn254.g2_check(*q0),
         lambda: bn.is_inf(bn.multiply(ref_qs[0], bn.curve_order)))]
    rows = []
    for name, ours, theirs in ops:
        ours_s, theirs_s = _timed(ours), _timed(theirs)
        rows.append({"op": name, "bn254_s": round(ours_s, 4), "py_ecc_s": round(theirs_s, 4),
                     "py_ecc_over_bn254": round(theirs_s / ours_s, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_zk(profile: str, counts: list[int]) -> list[dict[str, float | None]]:
    tc = Toolchain(PROFILES[profile])
    keys = tc.keys()
    claim = parse("tbr54<=100")
    rows: list[dict[str, float | None]] = []
    for n in counts:
        days = _days(n, tc.profile.slots, tc.profile.per, n)
        t0 = time.perf_counter()
        for d in days:
            commit_slots(d.slots, d.salt, tc.profile.per)
        commit_s = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        doc = prove_chain(tc, claim, days)
        prove_s = time.perf_counter() - t0
        windows = [d.window for d in days]
        before = os.environ.get("GLUCOLEDGER_ZK_VERIFIER")
        os.environ["GLUCOLEDGER_ZK_VERIFIER"] = "python"
        try:
            t0 = time.perf_counter()
            verify_chain(doc, keys, claim, windows)
            verify_s = time.perf_counter() - t0
        finally:
            if before is None:
                del os.environ["GLUCOLEDGER_ZK_VERIFIER"]
            else:
                os.environ["GLUCOLEDGER_ZK_VERIFIER"] = before
        fast_s = None
        if groth16.fast_backend() is not None:
            t0 = time.perf_counter()
            verify_chain(doc, keys, claim, windows)
            fast_s = time.perf_counter() - t0
        items: list[tuple[Any, Sequence[int]]] = []
        acc = ZERO_ACC
        for step, d in zip(doc["steps"], days, strict=True):
            items.append((step["proof"], [d.window.commitment, acc, int(step["acc"])]))
            acc = int(step["acc"])
        need = need_for([d.window.end - d.window.start for d in days], keys.profile.slots)
        t0 = time.perf_counter()
        agree = _py_ecc_verify(keys.day, items, lambda: random.getrandbits(128)) and \
            all(_py_ecc_verify(keys.claim, [(f, [acc, *c])], lambda: 1)
                for f, c in zip(doc["final"], claim.public_inputs(need), strict=True))
        py_ecc_s = time.perf_counter() - t0
        step = doc["steps"][0]
        t0 = time.perf_counter()
        ok = tc.snarkjs_verify("day", step["proof"],
                               [days[0].window.commitment, ZERO_ACC, int(step["acc"])])
        snark_s = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append({"days": n, "prove_s": round(prove_s, 2),
                     "verify_python_s": round(verify_s, 3),
                     "verify_py_ecc_s": round(py_ecc_s, 3), "py_ecc_agrees": float(agree),
                     "py_ecc_over_python": round(py_ecc_s / verify_s, 1),
                     "verify_groth16py_s": None if fast_s is None else round(fast_s, 4),
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
    ap.add_argument("--micro", action="store_true", help="bn254 against py_ecc per operation")
    args = ap.parse_args()
    require("py_ecc", "py-ecc", "the verifier measured against bn254.py")
    if args.micro:
        bench_micro()
    bench_zk(args.profile, [int(x) for x in args.days.split(",")])


if __name__ == "__main__":
    interruptible(main)

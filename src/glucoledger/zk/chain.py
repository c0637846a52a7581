"""A claim over several day windows: one proof per day, chained by hidden running totals,
and one proof that opens the last total against the claim.

Prover (``prove_chain``): day i proves "my readings open the ledger's commitment C_i, and
A_i = commit(totals_{i-1} + counts_i, r_i), where A_{i-1} opens to totals_{i-1}", with
A_0 = ``ZERO_ACC``; the claim proofs prove "A_n opens to totals that satisfy the claim"
(one proof for each of the claim's inequality sets: two for a mean's two bounds).
Days are independent given the totals, so they are proved in parallel.

Verifier (``verify_chain``) sets every public input itself: C_i from the ledger (the caller
passes the windows it read there, in order), A_0 = ``ZERO_ACC``, the claim's coefficients
from its words. The only values it takes from the file are the intermediate A_i, each of which
is bound by two proofs (as the output of day i and the input of day i + 1, or of the claim
proof): a changed A_i makes one of them fail. It never sees a count or a reading.

The step document (JSON): ``{"start", "end", "acc", "proof"}`` per day, ``acc`` a decimal
string, ``proof`` the snarkjs proof's ``pi_a``, ``pi_b``, ``pi_c`` only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedError, RejectedError, VerificationError
from . import groth16
from .claims import COVERAGE, Claim, need_for
from .poseidon import FIELD
from .toolchain import Keys, Toolchain
from .windows import ZERO_ACC, Totals, acc_commit, commit_slots

__all__ = ["DayWitness", "Window", "prove_chain", "verify_chain"]


@dataclass(frozen=True, slots=True)
class Window:
    """A committed window as the verifier reads it from the ledger."""

    start: int
    end: int
    commitment: int


@dataclass(frozen=True, slots=True)
class DayWitness:
    """What the prover knows of one window: its slots and salt (private)."""

    window: Window
    slots: tuple[int, ...]
    salt: int


def _proof_part(proof: dict[str, Any]) -> dict[str, Any]:
    return {k: proof[k] for k in ("pi_a", "pi_b", "pi_c")}


def prove_chain(tc: Toolchain, claim: Claim, days: Sequence[DayWitness], *,
                precheck: bool = True, rand: Callable[[], int] | None = None,
                workers: int | None = None) -> dict[str, Any]:
    """Prove ``claim`` over ``days`` (in order). Returns ``{"steps": [...], "final":
    [proof, ...]}`` (a claim proof per inequality set, ``Claim.inequalities``).

    Raises RejectedError ``claim_false`` when the claim does not hold (checked in Python first
    unless ``precheck`` is False; the circuit refuses it in any case: ``unprovable``),
    ``unprovable`` when a day's slots do not open its commitment, BackendError for a tool
    failure."""
    if not days:
        raise ValueError("a claim covers at least one day")
    draw = rand or (lambda: secrets.randbelow(FIELD))
    totals, acc_in, r_in = Totals(), ZERO_ACC, 0
    jobs: list[dict[str, Any]] = []
    outs: list[int] = []
    for d in days:
        if len(d.slots) != tc.profile.slots:
            raise ValueError(f"a window has {tc.profile.slots} slots")
        new = totals + Totals.of(d.slots)
        r_out = draw()
        acc_out = acc_commit(new, r_out)
        jobs.append({"dayCommit": d.window.commitment, "accInCommit": acc_in,
                     "accOutCommit": acc_out, "readings": list(d.slots), "salt": d.salt,
                     "accIn": totals.as_list(), "rIn": r_in, "rOut": r_out})
        outs.append(acc_out)
        totals, acc_in, r_in = new, acc_out, r_out
    need = need_for([d.window.end - d.window.start for d in days], tc.profile.slots)
    if precheck and not claim.covered(totals, need):
        raise RejectedError(f"the readings of these days fill {totals.valid} five-minute "
                            f"slots, under the {COVERAGE} % ({need}) a claim {claim.words!r} "
                            "needs: no proof can be made (choose days the sensor was worn)",
                            code="claim_false")
    if precheck and not claim.holds(totals, need):
        raise RejectedError(f"the claim {claim.words!r} is false for these days: no proof "
                            "can be made (choose a claim the data supports)", code="claim_false")
    finals = [{"accCommit": acc_in, "a": list(a), "b": list(b), "c": list(c), "d": list(dd),
               "acc": totals.as_list(), "r": r_in}
              for a, b, c, dd in claim.inequalities(need)]
    n = len(jobs) + len(finals)
    with ThreadPoolExecutor(max_workers=workers or min(n, os.cpu_count() or 2)) as ex:
        final_fs = [ex.submit(tc.prove, "claim", f) for f in finals]
        day_fs = [ex.submit(tc.prove, "day", j) for j in jobs]
        day_proofs = [f.result() for f in day_fs]
        final = [_proof_part(f.result()[0]) for f in final_fs]
    steps = [{"start": d.window.start, "end": d.window.end, "acc": str(acc),
              "proof": _proof_part(p)}
             for d, acc, (p, _) in zip(days, outs, day_proofs, strict=True)]
    return {"steps": steps, "final": final}


def _field(text: object, what: str) -> int:
    if not isinstance(text, str) or not text.isdecimal() or len(text) > 80 or int(text) >= FIELD:
        raise MalformedError(f"{what} is not a field element in decimal")
    return int(text)


def verify_chain(doc: object, keys: Keys, claim: Claim, windows: Sequence[Window], *,
                 weights: Callable[[], int] | None = None) -> None:
    """Check ``doc`` (``prove_chain``'s output) for ``claim`` over ``windows`` (read from the
    ledger by the verifier, in order). Raises MalformedError or VerificationError."""
    if not isinstance(doc, dict) or set(doc) != {"steps", "final"} \
            or not isinstance(doc["steps"], list):
        raise MalformedError("a claim's proofs are {steps, final}")
    steps = doc["steps"]
    if len(steps) != len(windows) or not windows:
        raise VerificationError(f"the proof covers {len(steps)} days, the period "
                                f"{len(windows)} committed days")
    items = []
    acc = ZERO_ACC
    for i, (step, w) in enumerate(zip(steps, windows, strict=True)):
        if not isinstance(step, dict) or set(step) != {"start", "end", "acc", "proof"}:
            raise MalformedError(f"day {i + 1}'s step is {{start, end, acc, proof}}")
        if step["start"] != w.start or step["end"] != w.end:
            raise VerificationError(f"day {i + 1} of the proof is not the period's day {i + 1} "
                                    "(a shifted window)")
        out = _field(step["acc"], f"day {i + 1}'s running total")
        items.append((step["proof"], [w.commitment, acc, out]))
        acc = out
    draw = weights or (lambda: secrets.randbits(128))
    try:
        groth16.verify_json(keys.day, items, draw)
    except VerificationError:
        raise VerificationError("a day's proof does not verify: its readings do not open the "
                                "ledger's commitment for that day, or the proof file was "
                                "edited") from None
    need = need_for([w.end - w.start for w in windows], keys.profile.slots)
    inputs = claim.public_inputs(need)
    final = doc["final"]
    if not isinstance(final, list) or len(final) != len(inputs):
        raise MalformedError(f"a claim {claim.words!r} has {len(inputs)} final proof(s), a "
                             "list")
    try:
        groth16.verify_json(keys.claim, [(p, [acc, *c]) for p, c in zip(final, inputs,
                                                                        strict=True)], draw)
    except VerificationError:
        raise VerificationError(f"the proof does not show {claim.words!r} over these days") \
            from None


def witness(window: Window, slots: Sequence[int], salt: int, per: int) -> DayWitness:
    """A DayWitness after checking that ``slots`` open the window's commitment. Raises
    RejectedError ``commitment_mismatch`` (the stored readings changed since the ledger
    recorded the commitment)."""
    if commit_slots(slots, salt, per) != window.commitment:
        raise RejectedError(f"the readings of the day starting {window.start} do not open its "
                            "ledger commitment: they changed after it was recorded; run "
                            "`glucoledger verify`", code="commitment_mismatch")
    return DayWitness(window, tuple(slots), salt)

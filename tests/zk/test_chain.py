"""Claims proved over committed windows with the real circom/snarkjs toolchain, verified in
Python (groth16.py) and by snarkjs: true claims verify, false ones cannot be proved, every
tampering is refused, and the two verifiers agree on every vector."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from glucoledger.errors import MalformedError, RejectedError, VerificationError
from glucoledger.zk import groth16
from glucoledger.zk.chain import DayWitness, Window, prove_chain, verify_chain, witness
from glucoledger.zk.claims import need_for, parse
from glucoledger.zk.toolchain import Toolchain
from glucoledger.zk.windows import ZERO_ACC, Totals, commit_slots

DAY = 86_400_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
# Patient A: 3 days, 28 of 30 slots read, 24 in 70-180 (85.7 %), none below 54.
A_DAYS = [[120, 130, 0, 150, 175, 181, 90, 70, 160, 140],
          [100, 110, 200, 250, 130, 0, 120, 125, 135, 145],
          [180, 70, 69, 100, 110, 120, 130, 140, 150, 160]]
B_DAYS = [[50, 60, 40, 300, 310, 320, 330, 340, 350, 360]] * 3


def _witnesses(days: list[list[int]], salt0: int) -> list[DayWitness]:
    out = []
    for i, slots in enumerate(days):
        salt = salt0 + i
        w = Window(T0 + i * DAY, T0 + (i + 1) * DAY, commit_slots(slots, salt, 10))
        out.append(witness(w, slots, salt, 10))
    return out


@pytest.fixture(scope="module")
def proved(tc: Toolchain) -> tuple[dict[str, Any], list[DayWitness]]:
    days = _witnesses(A_DAYS, 1000)
    counter = itertools.count(5)
    return prove_chain(tc, parse("tir>=70"), days, rand=lambda: next(counter)), days


def _windows(days: list[DayWitness]) -> list[Window]:
    return [d.window for d in days]


def test_totals_of_the_fixture() -> None:
    t = Totals()
    for d in A_DAYS:
        t = t + Totals.of(d)
    assert (t.valid, t.in_range, t.below) == (28, 24, 0)  # 85.7 % in range
    need = need_for([DAY] * 3, 10)
    assert parse("tir>=85").holds(t, need) and not parse("tir>=86").holds(t, need)


def test_a_true_claim_verifies(tc: Toolchain, proved: tuple[dict[str, Any], list[DayWitness]]
                               ) -> None:
    doc, days = proved
    verify_chain(doc, tc.keys(), parse("tir>=70"), _windows(days))
    # and, after a round trip through JSON text, as a verifier receives it
    verify_chain(json.loads(json.dumps(doc)), tc.keys(), parse("tir>=70"), _windows(days))


@pytest.mark.parametrize("words", ["tbr54=0", "mean in 120..160", "gmi<7.5"])
def test_every_claim_type_proves_and_verifies(tc: Toolchain, words: str) -> None:
    days = _witnesses(A_DAYS[:2], 77)
    doc = prove_chain(tc, parse(words), days)
    verify_chain(doc, tc.keys(), parse(words), _windows(days))


@pytest.mark.parametrize("words", ["tir>=86", "tbr54=0", "mean in 60..100", "gmi<6"])
def test_a_false_claim_cannot_be_proved(tc: Toolchain, words: str) -> None:
    days = _witnesses(A_DAYS if words == "tir>=86" else B_DAYS, 1)
    claim = parse(words)
    with pytest.raises(RejectedError) as first:
        prove_chain(tc, claim, days)
    assert first.value.code == "claim_false"
    # Past the Python check, the circuit itself has no witness: no proof exists.
    with pytest.raises(RejectedError) as exc:
        prove_chain(tc, claim, days, precheck=False)
    assert exc.value.code == "unprovable"


@pytest.mark.parametrize("words", ["tir>=100", "mean in 100..140"])
def test_a_claim_needs_readings_in_70_percent_of_the_slots(
        tc: Toolchain, monkeypatch: pytest.MonkeyPatch, words: str) -> None:
    """One reading a day, in range: before 2026-12-05 "tir>=100 over 3 days" proved and
    verified (valid >= 1 was all), and "mean in 100..140" until claim files v3 (its two
    bounds took both inequalities). Now the prover refuses it, the circuit has no witness,
    and a proof made without the coverage (c = d = 0) does not verify."""
    sparse = [[120] + [0] * 9] * 3  # 3 of 30 slots
    days = _witnesses(sparse, 300)
    claim = parse(words)
    with pytest.raises(RejectedError, match="under the 70 %") as first:
        prove_chain(tc, claim, days)
    assert first.value.code == "claim_false"
    with pytest.raises(RejectedError) as exc:
        prove_chain(tc, claim, days, precheck=False)
    assert exc.value.code == "unprovable"
    # a prover that drops the coverage (the coefficients of claim files v1)
    real = type(claim).inequalities

    def without(self: Any, need: int) -> Any:
        return [(a, b, (0, 0, 0, 0, 0), (0, 0, 0, 0, 0)) for a, b, _c, _d in real(self, need)]

    monkeypatch.setattr(type(claim), "inequalities", without)
    doc = prove_chain(tc, claim, days, precheck=False)
    monkeypatch.setattr(type(claim), "inequalities", real)
    with pytest.raises(VerificationError, match="does not show"):
        verify_chain(doc, tc.keys(), claim, _windows(days))
    # 21 of 30 slots (70 %) are enough
    enough = _witnesses([[120] * 7 + [0] * 3] * 3, 400)
    verify_chain(prove_chain(tc, claim, enough), tc.keys(), claim, _windows(enough))


def test_a_mean_claim_needs_both_bounds_proved(tc: Toolchain) -> None:
    """A mean claim carries a proof per bound, each over the same last running total: the
    two swapped, or one of them dropped, are refused."""
    days = _witnesses(A_DAYS, 500)
    claim = parse("mean in 100..200")
    doc = prove_chain(tc, claim, days)
    assert len(doc["final"]) == 2
    verify_chain(doc, tc.keys(), claim, _windows(days))
    swapped = {**doc, "final": doc["final"][::-1]}
    with pytest.raises(VerificationError, match="does not show"):
        verify_chain(swapped, tc.keys(), claim, _windows(days))
    with pytest.raises(MalformedError, match="2 final proof"):
        verify_chain({**doc, "final": doc["final"][:1]}, tc.keys(), claim, _windows(days))
    with pytest.raises(MalformedError):
        verify_chain({**doc, "final": doc["final"][0]}, tc.keys(), claim, _windows(days))


def test_a_changed_reading_cannot_be_proved(tc: Toolchain) -> None:
    days = _witnesses(A_DAYS, 1000)
    changed = list(days[1].slots)
    changed[3] = 150  # 250 -> 150: the claim would look better
    with pytest.raises(RejectedError) as early:
        witness(days[1].window, changed, days[1].salt, 10)
    assert early.value.code == "commitment_mismatch"
    forged = [days[0], DayWitness(days[1].window, tuple(changed), days[1].salt), days[2]]
    with pytest.raises(RejectedError) as exc:
        prove_chain(tc, parse("tir>=70"), forged)
    assert exc.value.code == "unprovable"


def test_a_shifted_window_is_refused(tc: Toolchain,
                                     proved: tuple[dict[str, Any], list[DayWitness]]) -> None:
    doc, days = proved
    windows = _windows(days)
    later = [Window(w.start + DAY, w.end + DAY, w.commitment) for w in windows]
    with pytest.raises(VerificationError, match="shifted"):
        verify_chain(doc, tc.keys(), parse("tir>=70"), later)
    # the file's steps moved along with the period: the commitments no longer match
    moved = copy.deepcopy(doc)
    for s in moved["steps"]:
        s["start"] += DAY
        s["end"] += DAY
    next_days = [Window(w.start + DAY, w.end + DAY, c) for w, c in
                 zip(windows, [windows[1].commitment, windows[2].commitment,
                               commit_slots([100] * 10, 5, 10)], strict=True)]
    with pytest.raises(VerificationError):
        verify_chain(moved, tc.keys(), parse("tir>=70"), next_days)
    # the same days, in another order
    with pytest.raises(VerificationError):
        verify_chain(doc, tc.keys(), parse("tir>=70"),
                     [Window(w.start, w.end, c) for w, c in
                      zip(windows, [windows[1].commitment, windows[0].commitment,
                                    windows[2].commitment], strict=True)])


def test_another_patients_commitments_are_refused(
        tc: Toolchain, proved: tuple[dict[str, Any], list[DayWitness]]) -> None:
    doc, days = proved
    theirs = _witnesses(B_DAYS, 4242)
    with pytest.raises(VerificationError):
        verify_chain(doc, tc.keys(), parse("tir>=70"), _windows(theirs))


@pytest.mark.parametrize("edit", ["claim", "acc", "final_acc", "proof", "drop_day", "steps"])
def test_public_inputs_edited_by_the_prover_are_refused(
        tc: Toolchain, proved: tuple[dict[str, Any], list[DayWitness]], edit: str) -> None:
    doc, days = proved
    bad = copy.deepcopy(doc)
    windows = _windows(days)
    claim = parse("tir>=70")
    if edit == "claim":
        claim = parse("tir>=72")
    elif edit == "acc":
        bad["steps"][0]["acc"] = str(int(bad["steps"][0]["acc"]) + 1)
    elif edit == "final_acc":
        bad["steps"][-1]["acc"] = str(ZERO_ACC)
    elif edit == "proof":
        bad["steps"][1]["proof"] = doc["steps"][0]["proof"]
    elif edit == "drop_day":
        bad["steps"] = bad["steps"][:2]
    else:
        bad["steps"][0]["extra"] = 1
    with pytest.raises((VerificationError, MalformedError)):
        verify_chain(bad, tc.keys(), claim, windows)


@pytest.mark.parametrize("backend", ["python", "groth16py"])
def test_python_and_snarkjs_verifiers_agree(
        tc: Toolchain, proved: tuple[dict[str, Any], list[DayWitness]], backend: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Python backend against snarkjs's own verifier, on valid and edited vectors."""
    if backend == "python":
        monkeypatch.setenv("GLUCOLEDGER_ZK_VERIFIER", "python")
    elif groth16.fast_backend() is None:
        pytest.skip("groth16py (the zk-fast extra) is not installed")
    doc, days = proved
    vectors = []
    acc = ZERO_ACC
    for step, d in zip(doc["steps"], days, strict=True):
        out = int(step["acc"])
        vectors.append((step["proof"], [d.window.commitment, acc, out]))
        vectors.append((step["proof"], [d.window.commitment, acc, out + 1]))
        vectors.append((step["proof"], [days[0].window.commitment if d is not days[0]
                                         else days[1].window.commitment, acc, out]))
        acc = out
    verdicts = []
    for proof, public in vectors[:6]:
        try:
            groth16.verify_json(tc.keys().day, [(proof, public)], lambda: 1)
            ours = True
        except VerificationError:
            ours = False
        theirs = tc.snarkjs_verify("day", proof, public)
        assert ours == theirs, (public, ours, theirs)
        verdicts.append(ours)
    assert verdicts.count(True) == 2 and verdicts.count(False) == 4
    # the whole chain through this backend (python: day proofs batched)
    verify_chain(doc, tc.keys(), parse("tir>=70"), _windows(days))
    bad = copy.deepcopy(doc)
    bad["steps"][2]["acc"] = bad["steps"][1]["acc"]
    with pytest.raises(VerificationError):
        verify_chain(bad, tc.keys(), parse("tir>=70"), _windows(days))


def test_the_proof_reveals_no_reading(proved: tuple[dict[str, Any], list[DayWitness]]
                                      ) -> None:
    doc, days = proved
    numbers: list[int] = []

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, bool):
            raise AssertionError("no flags expected")
        elif isinstance(v, int):
            numbers.append(v)
        elif isinstance(v, str):
            numbers.append(int(v) if v.isdigit() else -1)
    walk(doc)
    period = {d.window.start for d in days} | {d.window.end for d in days}
    small = [n for n in numbers if 1 < n < 1 << 64 and n not in period]
    assert small == [], "a value other than the period's bounds is in the proof file"
    secret = ({s for d in days for s in d.slots} | {d.salt for d in days}) - {0}
    assert not secret & set(numbers)
    text = json.dumps(doc)
    assert "readings" not in text and "salt" not in text

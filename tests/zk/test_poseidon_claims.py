"""Poseidon against circomlib's vectors; claim words; day slots and packing. No Node.js."""

from __future__ import annotations

import pytest

from glucoledger.errors import InputError, OutOfRangeError
from glucoledger.zk.claims import need_for, parse
from glucoledger.zk.poseidon import FIELD, poseidon2
from glucoledger.zk.windows import SLOT_MS, Totals, commit_slots, day_slots, pack

DAY = 86_400_000

# circomlib 2.0.5 test/poseidoncircuit.js, "hash([1, 2]) t=3" and "hash([3, 4]) t=3".
VECTORS = [
    ((1, 2), 7853200120776062878684798364095072458815029376092732009249414926327459813530),
    ((3, 4), 14763215145315200506921711489642608356394854266165572616578112107564877678998),
]


@pytest.mark.parametrize(("inputs", "expected"), VECTORS)
def test_poseidon_matches_circomlib(inputs: tuple[int, int], expected: int) -> None:
    assert poseidon2(*inputs) == expected


def test_poseidon_refuses_unreduced_inputs() -> None:
    with pytest.raises(ValueError):
        poseidon2(FIELD, 0)


#: valid >= 21: a claim over 3 days of 10 slots needs readings in 70 % of them
COVERED = [0, 1, 0, 0, 0, 21, 0, 0, 0, 0]


@pytest.mark.parametrize(("words", "canonical", "coeffs"), [
    ("tir>=70", "tir>=70", [[0, 0, 10000, 0, 0, 0, 7000, 0, 0, 0] + COVERED]),
    ("TIR >= 70.5%", "tir>=70.5", [[0, 0, 10000, 0, 0, 0, 7050, 0, 0, 0] + COVERED]),
    ("tbr54=0", "tbr54<=0", [[0, 0, 0, 0, 0, 0, 0, 0, 10000, 0] + COVERED]),
    ("tbr54<=1", "tbr54<=1", [[0, 100, 0, 0, 0, 0, 0, 0, 10000, 0] + COVERED]),
    ("mean in 100..154", "mean in 100..154",  # one proof per bound, each with the coverage
     [[0, 0, 0, 0, 100, 0, 10000, 0, 0, 0] + COVERED,
      [0, 15400, 0, 0, 0, 0, 0, 0, 0, 100] + COVERED]),
    ("gmi<7", "gmi<7", [[0, 700000, 0, 0, 0, 1, 331000, 0, 0, 2392] + COVERED]),
])
def test_claim_words(words: str, canonical: str, coeffs: list[list[int]]) -> None:
    claim = parse(words)
    assert claim.words == canonical
    assert claim.public_inputs(need_for([DAY] * 3, 10)) == coeffs
    assert parse(claim.words) == claim


@pytest.mark.parametrize("words", ["", "tir>70", "tir>=101", "mean in 150..100", "gmi<3",
                                   "tir>=70; drop table", None, "x" * 100])
def test_bad_claims_are_refused_with_the_forms(words: object) -> None:
    with pytest.raises(InputError) as exc:
        parse(words)
    assert "tir>=" in exc.value.message or "at most" in exc.value.message \
        or "A <= B" in exc.value.message or "GMI" in exc.value.message


def test_claim_truth_in_python() -> None:
    t = Totals(valid=100, in_range=70, below=0, total=15000)  # mean 150 mg/dL, GMI 6.898
    need = need_for([DAY], 140)  # 98 of 140 slots: 100 readings are enough
    assert need == 98
    assert parse("tir>=70").holds(t, need) and not parse("tir>=70.01").holds(t, need)
    assert parse("tbr54=0").holds(t, need)
    assert not parse("tbr54=0").holds(Totals(100, 70, 1, 15000), need)
    assert parse("mean in 150..150").holds(t, need)
    assert not parse("mean in 150.01..200").holds(t, need)
    assert parse("gmi<6.9").holds(t, need) and not parse("gmi<6.89").holds(t, need)
    assert not parse("tbr54<=100").holds(Totals(), need)  # no readings, nothing to claim
    # under 70 % of the slots, no claim holds, however good the readings
    for words in ("tir>=70", "tbr54=0", "gmi<6.9", "mean in 150..150"):
        assert not parse(words).holds(t, need_for([DAY], 143)), words  # 101 needed


def test_slots_take_the_first_reading_of_each_five_minutes() -> None:
    start = 1_700_000_000_000
    readings = [(start + 60_000, 120.4), (start + 120_000, 300.0), (start + SLOT_MS * 3, 54.6),
                (start - 1, 99.0), (start + SLOT_MS * 10, 80.0)]
    slots = day_slots(readings, start, start + SLOT_MS * 10, slots=10)
    assert slots == [120, 0, 0, 55, 0, 0, 0, 0, 0, 0]
    assert pack(slots, 10) == [120 + (55 << 30)]
    with pytest.raises(OutOfRangeError):
        day_slots([(start, 1024.0)], start, start + SLOT_MS, slots=10)
    with pytest.raises(OutOfRangeError):
        day_slots([], start, start + SLOT_MS * 11, slots=10)


def test_commitment_binds_every_slot_and_the_salt() -> None:
    slots = [100] * 25
    base = commit_slots(slots, 7)
    assert commit_slots(slots, 8) != base
    assert commit_slots([100] * 24 + [101], 7) != base
    assert commit_slots([100] * 24 + [0], 7) != base

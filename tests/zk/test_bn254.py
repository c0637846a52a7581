"""bn254.py against what nobody here wrote: py_ecc's BN254 pairing (the same GT value, mapped
to py_ecc's F_p12 basis w^12 - 18 w^6 + 82, w^6 = 9 + u), its curve arithmetic, and, on the
zero-knowledge test vectors, snarkjs's and groth16py's Groth16 verifiers on true and false
proofs. Also the pairing's algebra (bilinearity, non-degeneracy, the order of GT) and the
G2 subgroup check on twist points built outside G2."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger.errors import MalformedError, VerificationError
from glucoledger.jsonin import recursion_limit_kept
from glucoledger.zk import bn254, groth16
from glucoledger.zk.bn254 import P, R
from glucoledger.zk.chain import DayWitness, Window, prove_chain, witness
from glucoledger.zk.claims import parse
from glucoledger.zk.toolchain import Toolchain
from glucoledger.zk.windows import ZERO_ACC, commit_slots

with recursion_limit_kept():
    from py_ecc import optimized_bn128 as ref

ECC: Any = ref
H = 2 * P - R  # the twist's cofactor: #E'(F_p2) = r (2p - r)


def _gt(f: bn254.Fp12) -> Any:
    """A flat tower element as py_ecc's FQ12: slot s holds the F_p2 coefficient of w^k,
    k = (0, 2, 4, 1, 3, 5)[s], and u = w^6 - 9."""
    c = [0] * 12
    for s, k in enumerate((0, 2, 4, 1, 3, 5)):
        a0, a1 = f[2 * s], f[2 * s + 1]
        c[k] = (c[k] + a0 - 9 * a1) % P
        c[k + 6] = (c[k + 6] + a1) % P
    return ECC.FQ12(c)


def _g1(p: Any) -> bn254.G1:
    if ECC.is_inf(p):
        return None
    x, y = ECC.normalize(p)
    return int(x), int(y)


def _g2(q: Any) -> bn254.G2:
    if ECC.is_inf(q):
        return None
    x, y = ECC.normalize(q)
    return (int(x.coeffs[0]), int(x.coeffs[1])), (int(y.coeffs[0]), int(y.coeffs[1]))


def _ref_g2(q: tuple[bn254.Fp2, bn254.Fp2]) -> Any:
    return ECC.FQ2(list(q[0])), ECC.FQ2(list(q[1])), ECC.FQ2.one()


scalars = st.integers(min_value=1, max_value=R - 1)


@settings(max_examples=4, deadline=None)
@given(a=scalars, b=scalars)
def test_the_pairing_is_py_eccs(a: int, b: int) -> None:
    p, q = ECC.multiply(ECC.G1, a), ECC.multiply(ECC.G2, b)
    assert _gt(bn254.pairing(_g1(p), _g2(q))) == ECC.pairing(q, p)


@pytest.mark.parametrize("a,b", [(1, 1), (R - 1, 1), (1, R - 1), (2, 3), (R - 1, R - 2)])
def test_the_pairing_is_py_eccs_on_edge_points(a: int, b: int) -> None:
    p, q = ECC.multiply(ECC.G1, a), ECC.multiply(ECC.G2, b)
    assert _gt(bn254.pairing(_g1(p), _g2(q))) == ECC.pairing(q, p)


def test_the_final_exponentiation_is_py_eccs() -> None:
    rng = random.Random(19)
    f = tuple(rng.randrange(P) for _ in range(12))
    assert _gt(bn254.final_exponentiation(f)) == ECC.final_exponentiate(_gt(f))  # type: ignore[arg-type]


def test_bilinear_and_non_degenerate() -> None:
    rng = random.Random(7)
    a, b = rng.randrange(1, R), rng.randrange(1, R)
    g1, g2 = _g1(ECC.G1), _g2(ECC.G2)
    base = bn254.pairing(g1, g2)
    assert base != bn254.FP12_ONE  # non-degenerate
    assert _gt(base) ** R == ECC.FQ12.one()  # GT has order r
    lhs = bn254.pairing(bn254.g1_mul(g1, a), bn254.g2_mul(g2, b))
    assert _gt(lhs) == _gt(base) ** (a * b % R)
    assert lhs == bn254.pairing(bn254.g1_mul(g1, a * b), g2) \
        == bn254.pairing(g1, bn254.g2_mul(g2, a * b))


def test_multi_pairing_is_the_product_of_pairings() -> None:
    rng = random.Random(8)
    pairs = [(bn254.g1_mul(_g1(ECC.G1), rng.randrange(1, R)),
              bn254.g2_mul(_g2(ECC.G2), rng.randrange(1, R))) for _ in range(3)]
    prod = bn254.FP12_ONE
    for p, q in pairs:
        prod = bn254.fp12_mul(prod, bn254.pairing(p, q))
    assert bn254.final_exponentiation(bn254.miller_loop(pairs)) == prod
    p, q = pairs[0]
    assert bn254.pairing_is_one([(p, q), (bn254.g1_neg(p), q)])
    assert not bn254.pairing_is_one([(p, q), (p, q)])
    # e(aP, Q) e(-P, aQ) = 1, the shape of a Groth16 check
    a = rng.randrange(2, R)
    assert bn254.pairing_is_one([(bn254.g1_mul(p, a), q), (bn254.g1_neg(p), bn254.g2_mul(q, a))])
    assert not bn254.pairing_is_one([(bn254.g1_mul(p, a), q),
                                     (bn254.g1_neg(p), bn254.g2_mul(q, a + 1))])


def test_points_at_infinity() -> None:
    g1, g2 = _g1(ECC.G1), _g2(ECC.G2)
    assert bn254.pairing(None, g2) == bn254.pairing(g1, None) == bn254.FP12_ONE
    assert bn254.g1_mul(g1, R) is None and bn254.g2_mul(g2, R) is None
    assert bn254.g1_add(g1, bn254.g1_neg(g1)) is None
    # a pair with O contributes 1, the others still count
    assert not bn254.pairing_is_one([(None, g2), (g1, g2)])
    assert bn254.pairing_is_one([(None, g2), (g1, None)])


def test_curve_arithmetic_is_py_eccs() -> None:
    rng = random.Random(9)
    ks = [rng.randrange(R) for _ in range(4)] + [0, 1, R - 1]
    pts = [ECC.multiply(ECC.G1, rng.randrange(1, R)) for _ in ks]
    want = ECC.Z1
    for k, p in zip(ks, pts, strict=True):
        want = ECC.add(want, ECC.multiply(p, k))
    assert bn254.g1_msm([_g1(p) for p in pts], ks) == _g1(want)
    assert bn254.g1_msm([_g1(pts[0]), _g1(pts[0])], [3, R - 3]) is None
    q = ECC.multiply(ECC.G2, rng.randrange(1, R))
    for k in (1, 2, 3, rng.randrange(R), 6 * bn254.X ** 2):
        assert bn254.g2_mul(_g2(q), k) == _g2(ECC.multiply(q, k))


def test_g1_check_refuses_what_is_not_on_the_curve() -> None:
    x, y = _g1(ECC.G1) or (0, 0)
    assert bn254.g1_check(x, y) == (x, y)
    for bad in [(x, y + 1), (x + P, y), (x, P - y + P), (0, 0), (-1, 2)]:
        with pytest.raises(ValueError):
            bn254.g1_check(*bad)


def _fp_sqrt(a: int) -> int | None:
    s = pow(a, (P + 1) // 4, P)  # p = 3 mod 4
    return s if s * s % P == a % P else None


def _twist_point(rng: random.Random) -> tuple[bn254.Fp2, bn254.Fp2]:
    """A random point of E'(F_p2): x at random until x^3 + b' is a square in F_p2."""
    while True:
        x = (rng.randrange(P), rng.randrange(P))
        x3 = ECC.FQ2(list(x)) ** 3 + ECC.FQ2(list(bn254.B2))
        a0, a1 = (int(c) for c in x3.coeffs)
        n = _fp_sqrt(a0 * a0 + a1 * a1)
        if n is None:
            continue
        for s in (n, P - n):
            y0 = _fp_sqrt((a0 + s) * pow(2, -1, P))
            if y0:
                y = (y0, a1 * pow(2 * y0, -1, P) % P)
                if ECC.FQ2(list(y)) ** 2 == x3:
                    return x, y


def test_g2_subgroup_check() -> None:
    rng = random.Random(10)
    q0 = _twist_point(rng)
    ref_q0 = _ref_g2(q0)
    assert ECC.is_on_curve(ref_q0, ECC.b2)
    assert not ECC.is_inf(ECC.multiply(ref_q0, R))  # py_ecc: outside G2
    assert ECC.is_inf(ECC.multiply(ref_q0, R * H))
    assert bn254.g2_on_curve(q0)
    with pytest.raises(ValueError, match="subgroup"):
        bn254.g2_check(*q0)
    # r-torsion: accepted (and cleared by the cofactor from a random twist point)
    g2 = _g2(ECC.multiply(ECC.G2, rng.randrange(1, R)))
    assert g2 is not None and bn254.g2_check(*g2) == g2
    cleared = bn254.g2_mul(q0, H)
    assert cleared is not None and bn254.g2_check(*cleared) == cleared
    # a point of order dividing the cofactor (q0 times r, a non-multiple of h) and a G2 point
    # plus a small-order component: refused, and py_ecc agrees they are outside G2
    small = bn254.g2_mul(q0, R)
    assert small is not None
    mixed = _g2(ECC.add(_ref_g2(g2), _ref_g2(small)))
    for q in (small, mixed):
        assert q is not None and not ECC.is_inf(ECC.multiply(_ref_g2(q), R))
        with pytest.raises(ValueError, match="subgroup"):
            bn254.g2_check(*q)
    (x0, x1), y = g2
    with pytest.raises(ValueError, match="twist"):
        bn254.g2_check((x0, x1 + 1), y)
    with pytest.raises(ValueError, match="twist"):
        bn254.g2_check((x0 + P, x1), y)


def test_g2_subgroup_check_refuses_each_small_order_component() -> None:
    """The cofactor h = 10069 * 5864401 * 1875725156269 * (a 177-bit prime): for each prime
    factor l, a point S of order l, alone and added to a G2 point, is refused."""
    factors = [10069, 5864401, 1875725156269,
               197620364512881247228717050342013327560683201906968909]
    prod = 1
    for f in factors:
        prod *= f
    assert prod == H
    q0 = _twist_point(random.Random(13))
    g2 = _g2(ECC.multiply(ECC.G2, 1234567))
    assert g2 is not None
    for f in factors:
        s = bn254.g2_mul(q0, R * H // f)
        assert s is not None
        assert ECC.is_inf(ECC.multiply(_ref_g2(s), f))  # py_ecc: S has order l
        mixed = _g2(ECC.add(_ref_g2(g2), _ref_g2(s)))
        for q in (s, mixed):
            assert q is not None
            with pytest.raises(ValueError, match="subgroup"):
                bn254.g2_check(*q)


# -- Groth16 on the zero-knowledge test vectors --------------------------------------------

DAY = 86_400_000
T0 = 1_764_547_200_000
DAYS = [[120, 130, 0, 150, 175, 181, 90, 70, 160, 140],
        [100, 110, 200, 250, 130, 0, 120, 125, 135, 145]]


@pytest.fixture(scope="module")
def vectors(tc: Toolchain) -> tuple[dict[str, Any], list[tuple[dict[str, Any], list[int]]]]:
    """Two days' proofs with their true public inputs."""
    days: list[DayWitness] = []
    for i, slots in enumerate(DAYS):
        w = Window(T0 + i * DAY, T0 + (i + 1) * DAY, commit_slots(slots, 500 + i, 10))
        days.append(witness(w, slots, 500 + i, 10))
    doc = prove_chain(tc, parse("tir>=70"), days)
    out = []
    acc = ZERO_ACC
    for step, d in zip(doc["steps"], days, strict=True):
        out.append((step["proof"], [d.window.commitment, acc, int(step["acc"])]))
        acc = int(step["acc"])
    return tc.keys().day, out


def _ours(key: dict[str, Any], proof: dict[str, Any], public: list[int]) -> bool:
    vk = groth16.VerifyingKey.from_json(key)
    try:
        groth16.verify_batch(vk, [(groth16.Proof.from_json(proof), public)], lambda: 1)
    except VerificationError:
        return False
    return True


def _groth16py(key: dict[str, Any], proof: dict[str, Any], public: list[int]) -> bool | None:
    fast = groth16.fast_backend()
    if fast is None:
        return None

    v = fast.Verifier(fast.VerifyingKey.from_snarkjs(json.dumps(key)))
    return bool(v.verify_snarkjs(json.dumps({**proof, "protocol": "groth16", "curve": "bn128"}),
                                 json.dumps([str(x) for x in public])))


def test_groth16_agrees_with_snarkjs_and_groth16py(
        tc: Toolchain,
        vectors: tuple[dict[str, Any], list[tuple[dict[str, Any], list[int]]]]) -> None:
    key, ((p0, x0), (p1, x1)) = vectors
    mixed = {**p1, "pi_a": p0["pi_a"]}
    cases = [(p0, x0), (p1, x1),                    # true
             (p0, [x0[0], x0[1], x0[2] + 1]),        # an edited public input
             (p0, [x1[0], x0[1], x0[2]]),            # another day's commitment
             (p1, x0),                               # a swapped proof
             (mixed, x1)]                            # parts of two proofs
    verdicts = []
    for proof, public in cases:
        ours = _ours(key, proof, public)
        assert ours == tc.snarkjs_verify("day", proof, public), public
        theirs = _groth16py(key, proof, public)
        assert theirs is None or theirs == ours
        verdicts.append(ours)
    assert verdicts == [True, True, False, False, False, False]


def test_a_proof_under_another_key_is_refused(
        vectors: tuple[dict[str, Any], list[tuple[dict[str, Any], list[int]]]]) -> None:
    key, ((p0, x0), _) = vectors
    other = {**key, "vk_gamma_2": key["vk_delta_2"], "vk_delta_2": key["vk_gamma_2"]}
    assert _ours(key, p0, x0)
    assert not _ours(other, p0, x0)
    assert _groth16py(other, p0, x0) in (None, False)


def test_batches(vectors: tuple[dict[str, Any], list[tuple[dict[str, Any], list[int]]]]
                 ) -> None:
    key, ((p0, x0), (p1, x1)) = vectors
    vk = groth16.VerifyingKey.from_json(key)
    rng = random.Random(11)
    good = [(groth16.Proof.from_json(p0), x0), (groth16.Proof.from_json(p1), x1)]
    groth16.verify_batch(vk, good, lambda: rng.getrandbits(128))
    for bad in ([good[0], (good[1][0], x0)], [good[0], (good[1][0], [*x1[:2], x1[2] + 1])],
                [(good[1][0], x0), (good[0][0], x1)]):
        with pytest.raises(VerificationError):
            groth16.verify_batch(vk, bad, lambda: rng.getrandbits(128))


def test_malformed_points_are_refused(
        vectors: tuple[dict[str, Any], list[tuple[dict[str, Any], list[int]]]]) -> None:
    key, ((p0, _), _) = vectors
    q0 = _twist_point(random.Random(12))
    outside = [[str(c) for c in q0[0]], [str(c) for c in q0[1]], ["1", "0"]]
    edits: list[tuple[str, Any, str]] = [
        ("pi_b", outside, "subgroup"),
        ("pi_a", [p0["pi_a"][0], str(int(p0["pi_a"][1]) + 1), "1"], "curve"),
        ("pi_a", ["0", "1", "0"], "G1 point"),
        ("pi_a", [str(int(p0["pi_a"][0]) + P), p0["pi_a"][1], "1"], "reduced"),
        ("pi_b", [p0["pi_b"][0], [p0["pi_b"][1][1], p0["pi_b"][1][0]], ["1", "0"]],
         "twisted curve")]
    for field, value, why in edits:
        bad = copy.deepcopy(p0)
        bad[field] = value
        with pytest.raises(MalformedError, match=why):
            groth16.Proof.from_json(bad)
    bad_key = {**key, "vk_beta_2": outside}
    with pytest.raises(MalformedError, match="subgroup"):
        groth16.VerifyingKey.from_json(bad_key)

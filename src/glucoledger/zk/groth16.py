"""Groth16 verification over BN254 (alt_bn128) in Python, for proofs made by snarkjs.

Spec: Groth, "On the Size of Pairing-based Non-interactive Arguments", EUROCRYPT 2016,
section 3.2: a proof (A, C in G1, B in G2) for public inputs x_1..x_l verifies when
e(A, B) = e(alpha, beta) * e(vk_x, gamma) * e(C, delta), vk_x = IC_0 + sum x_i IC_i.
Formats: snarkjs 0.7 ``verification_key.json`` and ``proof.json`` (decimal strings,
projective coordinates with z = 1; an F_p2 element is [c0, c1], x = c0 + c1 u).

Several proofs under one key are checked together (``verify_batch``), as in Bellare, Garay and
Rabin's small-exponent batch test (EUROCRYPT 1998) applied to the Groth16 equation: with
verifier-drawn 128-bit r_i, prod e(r_i A_i, B_i) = e(alpha, beta)^(sum r_i) *
e(sum r_i vk_x_i, gamma) * e(sum r_i C_i, delta). One false proof makes the product differ
except with probability about 2^-128. Every point is checked to lie on its curve and, for G2,
in the order-r subgroup (BN254's G2 has a cofactor); every public input below r.

Raises MalformedError for a key or proof that does not parse, VerificationError for one that
does not verify. Pure (the batch weights come in through ``weights``); no Node.js.

py_ecc is pure Python: about 0.5 s per pairing on an idle core. ``Backend`` picks arkworks
through ``groth16py`` (Rust, snarkjs JSON in, about 10 ms per proof) when it is installed and
``GLUCOLEDGER_ZK_VERIFIER`` is not ``py_ecc``; the two and snarkjs agree on every test vector
(tests/zk/test_chain.py). groth16py is GPL-3.0 licensed: an optional extra (``zk-fast``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..errors import MalformedError, VerificationError
from ..jsonin import recursion_limit_kept


def _import_bn() -> Any:
    """py_ecc's optimized BN254, imported without its side effect: py_ecc raises the
    interpreter's recursion limit to 100,000 on import (see jsonin). Its optimized curve
    code recurses at most about 256 levels (double-and-add over 254-bit scalars)."""
    with recursion_limit_kept():
        from py_ecc import optimized_bn128
    return optimized_bn128

__all__ = ["Proof", "VerifyingKey", "fast_backend", "verify", "verify_batch", "verify_json"]

#: py_ecc's optimized BN254 (its names are not re-exported for type checkers).
bn: Any = _import_bn()
G1Point = Any
G2Point = Any
R = bn.curve_order
P = bn.field_modulus


def _int(value: object, bound: int, what: str) -> int:
    if not isinstance(value, str) or not value.isdecimal() or len(value) > 80:
        raise MalformedError(f"{what} is not a decimal string")
    n = int(value)
    if n >= bound:
        raise MalformedError(f"{what} is not reduced")
    return n


def _g1(value: object, what: str) -> G1Point:
    if not (isinstance(value, list) and len(value) == 3 and value[2] == "1"):
        raise MalformedError(f"{what} is not a G1 point [x, y, \"1\"]")
    x, y = _int(value[0], P, what), _int(value[1], P, what)
    point = (bn.FQ(x), bn.FQ(y), bn.FQ(1))
    if not bn.is_on_curve(point, bn.b):
        raise MalformedError(f"{what} is not on the curve")
    return point


def _g2(value: object, what: str) -> G2Point:
    if not (isinstance(value, list) and len(value) == 3 and value[2] == ["1", "0"]
            and all(isinstance(c, list) and len(c) == 2 for c in value[:2])):
        raise MalformedError(f"{what} is not a G2 point [[x0, x1], [y0, y1], [\"1\", \"0\"]]")
    x = bn.FQ2([_int(value[0][0], P, what), _int(value[0][1], P, what)])
    y = bn.FQ2([_int(value[1][0], P, what), _int(value[1][1], P, what)])
    point = (x, y, bn.FQ2.one())
    if not bn.is_on_curve(point, bn.b2):
        raise MalformedError(f"{what} is not on the twisted curve")
    if not bn.is_inf(bn.multiply(point, R)):
        raise MalformedError(f"{what} is not in the prime-order subgroup")
    return point


@dataclass(frozen=True)
class VerifyingKey:
    """A parsed snarkjs Groth16 BN254 verification key."""

    alpha: G1Point
    beta: G2Point
    gamma: G2Point
    delta: G2Point
    ic: tuple[G1Point, ...]

    @property
    def n_public(self) -> int:
        return len(self.ic) - 1

    @classmethod
    def from_json(cls, doc: object) -> VerifyingKey:
        """Raises MalformedError."""
        if not isinstance(doc, dict) or doc.get("protocol") != "groth16" \
                or doc.get("curve") != "bn128":
            raise MalformedError("not a snarkjs Groth16 bn128 verification key")
        ic = doc.get("IC")
        if not isinstance(ic, list) or len(ic) != doc.get("nPublic", -1) + 1:
            raise MalformedError("the key's IC does not match its nPublic")
        return cls(_g1(doc.get("vk_alpha_1"), "vk_alpha_1"), _g2(doc.get("vk_beta_2"), "vk_beta_2"),
                   _g2(doc.get("vk_gamma_2"), "vk_gamma_2"),
                   _g2(doc.get("vk_delta_2"), "vk_delta_2"),
                   tuple(_g1(p, f"IC[{i}]") for i, p in enumerate(ic)))


@dataclass(frozen=True)
class Proof:
    """A parsed snarkjs Groth16 BN254 proof."""

    a: G1Point
    b: G2Point
    c: G1Point

    @classmethod
    def from_json(cls, doc: object) -> Proof:
        """Raises MalformedError."""
        if not isinstance(doc, dict) or doc.get("protocol", "groth16") != "groth16":
            raise MalformedError("not a Groth16 proof")
        return cls(_g1(doc.get("pi_a"), "pi_a"), _g2(doc.get("pi_b"), "pi_b"),
                   _g1(doc.get("pi_c"), "pi_c"))


def _vk_x(vk: VerifyingKey, inputs: Sequence[int]) -> G1Point:
    if len(inputs) != vk.n_public:
        raise VerificationError(f"the key takes {vk.n_public} public inputs, not {len(inputs)}")
    acc = vk.ic[0]
    for x, point in zip(inputs, vk.ic[1:], strict=True):
        if not 0 <= x < R:
            raise VerificationError("a public input is not a field element")
        acc = bn.add(acc, bn.multiply(point, x))
    return acc


def verify_batch(vk: VerifyingKey, items: Sequence[tuple[Proof, Sequence[int]]],
                 weights: Callable[[], int]) -> None:
    """Check every (proof, public inputs) pair under ``vk`` at once. ``weights`` returns a
    fresh secret 128-bit integer per call (the verifier's randomness; ``secrets.randbits``).
    Raises VerificationError if any proof is false (or the inputs are not the proved ones)."""
    if not items:
        raise ValueError("nothing to verify")
    total_r = 0
    sum_x: G1Point = bn.Z1
    sum_c: G1Point = bn.Z1
    acc = bn.FQ12.one()
    for proof, inputs in items:
        r = 1 if len(items) == 1 else weights() | 1
        total_r += r
        sum_x = bn.add(sum_x, bn.multiply(_vk_x(vk, inputs), r))
        sum_c = bn.add(sum_c, bn.multiply(proof.c, r))
        acc = acc * bn.pairing(proof.b, bn.multiply(proof.a, r), final_exponentiate=False)
    acc = acc * bn.pairing(vk.beta, bn.neg(bn.multiply(vk.alpha, total_r % R)),
                           final_exponentiate=False)
    if not bn.is_inf(sum_x):
        acc = acc * bn.pairing(vk.gamma, bn.neg(sum_x), final_exponentiate=False)
    if not bn.is_inf(sum_c):
        acc = acc * bn.pairing(vk.delta, bn.neg(sum_c), final_exponentiate=False)
    if bn.final_exponentiate(acc) != bn.FQ12.one():
        raise VerificationError("the proof does not verify against these public inputs")


def verify(vk: VerifyingKey, proof: Proof, inputs: Sequence[int]) -> None:
    """Check one proof. Raises VerificationError."""
    verify_batch(vk, [(proof, inputs)], lambda: 1)


def fast_backend() -> Any | None:
    """The groth16py module when it is installed and not turned off, else None."""
    if os.environ.get("GLUCOLEDGER_ZK_VERIFIER", "") == "py_ecc":
        return None
    try:
        import groth16py  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return groth16py


def verify_json(vk_json: dict[str, Any], items: Sequence[tuple[object, Sequence[int]]],
                weights: Callable[[], int]) -> None:
    """Verify snarkjs-JSON proofs under one snarkjs key with the fastest backend here.
    Raises MalformedError or VerificationError."""
    for proof, _ in items:
        if not isinstance(proof, dict) or set(proof) != {"pi_a", "pi_b", "pi_c"}:
            raise MalformedError("a proof is {pi_a, pi_b, pi_c}")
    fast = fast_backend()
    if fast is None:
        vk = VerifyingKey.from_json(vk_json)
        verify_batch(vk, [(Proof.from_json(p), x) for p, x in items], weights)
        return
    try:
        verifier = fast.Verifier(fast.VerifyingKey.from_snarkjs(json.dumps(vk_json)))
    except Exception as exc:  # the extension's own error classes: a key it cannot read
        raise MalformedError(f"the verification key does not parse ({type(exc).__name__})"
                             ) from None
    for proof, inputs in items:
        if any(not 0 <= x < R for x in inputs):
            raise VerificationError("a public input is not a field element")
        try:
            ok = verifier.verify_snarkjs(json.dumps({**cast(dict[str, Any], proof),
                                                     "protocol": "groth16",
                                                     "curve": "bn128"}),
                                         json.dumps([str(x) for x in inputs]))
        except Exception:  # malformed points (off the curve, out of the subgroup, unreduced)
            raise MalformedError("a proof's points do not parse as BN254 points") from None
        if not ok:
            raise VerificationError("the proof does not verify against these public inputs")

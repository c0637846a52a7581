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
in the order-r subgroup (BN254's G2 has a cofactor; bn254.py says why each check is there);
every public input below r; the point at infinity is refused where a key or proof holds a point.

Raises MalformedError for a key or proof that does not parse (or whose points are off the curve
or outside the subgroup), VerificationError for one that does not verify. Pure (the batch
weights come in through ``weights``); no Node.js.

The arithmetic is bn254.py, pure Python (one Miller loop and one final exponentiation per
batch; a 14-day claim verifies in about 0.2 s on this project's machine, against about 5.5 s
with py_ecc in the same run, ``python -m glucoledger.bench.zk``; the tests keep py_ecc as an
independent cross-check). ``fast_backend`` picks arkworks through ``groth16py`` (Rust, snarkjs
JSON in, about 10 ms per proof) when it is installed and ``GLUCOLEDGER_ZK_VERIFIER`` is not
``python``; the two and snarkjs agree on every test vector
(tests/zk/test_chain.py, tests/zk/test_bn254.py). groth16py is GPL-3.0 licensed: an optional
extra (``zk-fast``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..errors import MalformedError, VerificationError
from . import bn254
from .bn254 import P, R

__all__ = ["Proof", "VerifyingKey", "fast_backend", "verify", "verify_batch", "verify_json"]

G1Point = tuple[int, int]
G2Point = tuple[bn254.Fp2, bn254.Fp2]


def _int(value: object, bound: int, what: str) -> int:
    if not isinstance(value, str) or not value.isdecimal() or len(value) > 80:
        raise MalformedError(f"{what} is not a decimal string")
    n = int(value)
    if n >= bound:
        raise MalformedError(f"{what} is not reduced")
    return n


def _g1(value: object, what: str) -> G1Point:
    """A finite G1 point [x, y, "1"] on the curve (bn254.g1_check; snarkjs writes the point at
    infinity as [0, 1, 0], which no honest key or proof holds)."""
    if not (isinstance(value, list) and len(value) == 3 and value[2] == "1"):
        raise MalformedError(f"{what} is not a G1 point [x, y, \"1\"]")
    try:
        return bn254.g1_check(_int(value[0], P, what), _int(value[1], P, what))
    except ValueError:
        raise MalformedError(f"{what} is not on the curve") from None


def _g2(value: object, what: str) -> G2Point:
    """A finite G2 point on the twist and in the order-r subgroup (bn254.g2_check)."""
    if not (isinstance(value, list) and len(value) == 3 and value[2] == ["1", "0"]
            and all(isinstance(c, list) and len(c) == 2 for c in value[:2])):
        raise MalformedError(f"{what} is not a G2 point [[x0, x1], [y0, y1], [\"1\", \"0\"]]")
    x = (_int(value[0][0], P, what), _int(value[0][1], P, what))
    y = (_int(value[1][0], P, what), _int(value[1][1], P, what))
    if not bn254.g2_on_curve((x, y)):
        raise MalformedError(f"{what} is not on the twisted curve")
    try:
        return bn254.g2_check(x, y)
    except ValueError:
        raise MalformedError(f"{what} is not in the prime-order subgroup") from None


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


def verify_batch(vk: VerifyingKey, items: Sequence[tuple[Proof, Sequence[int]]],
                 weights: Callable[[], int]) -> None:
    """Check every (proof, public inputs) pair under ``vk`` at once. ``weights`` returns a
    fresh secret 128-bit integer per call (the verifier's randomness; ``secrets.randbits``).
    Raises VerificationError if any proof is false (or the inputs are not the proved ones).

    One multi-pairing: the pairs (r_i A_i, B_i), (-(sum r_i) alpha, beta),
    (-sum r_i vk_x_i, gamma), (-sum r_i C_i, delta). The sums are multi-scalar
    multiplications: sum_i r_i vk_x_i = (sum_i r_i) IC_0 + sum_j (sum_i r_i x_ij) IC_j, so the
    key's points are multiplied once per batch, not once per proof."""
    if not items:
        raise ValueError("nothing to verify")
    ic_scalars = [0] * len(vk.ic)
    rs = []
    for _, inputs in items:
        if len(inputs) != vk.n_public:
            raise VerificationError(
                f"the key takes {vk.n_public} public inputs, not {len(inputs)}")
        if any(not 0 <= x < R for x in inputs):
            raise VerificationError("a public input is not a field element")
        r = 1 if len(items) == 1 else weights() | 1  # odd: never 0 mod r
        rs.append(r)
        ic_scalars[0] += r
        for j, x in enumerate(inputs, 1):
            ic_scalars[j] += r * x
    total_r = sum(rs) % R
    pairs: list[tuple[bn254.G1, bn254.G2]] = [
        (bn254.g1_mul(proof.a, r), proof.b) for (proof, _), r in zip(items, rs, strict=True)]
    pairs.append((bn254.g1_neg(bn254.g1_mul(vk.alpha, total_r)), vk.beta))
    pairs.append((bn254.g1_neg(bn254.g1_msm(vk.ic, ic_scalars)), vk.gamma))
    pairs.append((bn254.g1_neg(bn254.g1_msm([p.c for p, _ in items], rs)), vk.delta))
    if not bn254.pairing_is_one(pairs):
        raise VerificationError("the proof does not verify against these public inputs")


def verify(vk: VerifyingKey, proof: Proof, inputs: Sequence[int]) -> None:
    """Check one proof. Raises VerificationError."""
    verify_batch(vk, [(proof, inputs)], lambda: 1)


def fast_backend() -> Any | None:
    """The groth16py module when it is installed and not turned off, else None."""
    if os.environ.get("GLUCOLEDGER_ZK_VERIFIER", "") == "python":
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

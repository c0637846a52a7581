"""Poseidon over the BN254 scalar field, two inputs (t = 3), exactly as circomlib computes it.

Spec: Grassi et al., "Poseidon: A New Hash Function for Zero-Knowledge Proof Systems",
USENIX Security 2021 (eprint 2019/458), section 2: the HADES design with x^5 S-boxes,
R_F = 8 full rounds (4 before and 4 after) and R_P = 57 partial rounds for t = 3, round
constants and MDS matrix from the authors' Grain LFSR script. The constants are circomlib
2.0.5's (circuits/poseidon_constants_old.circom, POSEIDON_C(3) and POSEIDON_M(3)), copied
into ``poseidon_t3.json`` by scripts/zk-poseidon-constants.py; circomlib's optimized
``Poseidon(2)`` template computes the same function, so a value hashed here equals the one a
circuit computes. Test vectors: circomlib test/poseidoncircuit.js (tests/zk/test_poseidon.py).

Pure: no I/O beyond reading the packaged constants once, no clock, no randomness.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final

__all__ = ["FIELD", "poseidon2"]

FIELD: Final = 21888242871839275222246405745257275088548364400416034343698204186575808495617


@cache
def _constants() -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], int, int]:
    doc = json.loads(resources.files(__package__).joinpath("poseidon_t3.json").read_text())
    c = tuple(int(x) for x in doc["C"])
    m = tuple(tuple(int(x) for x in row) for row in doc["M"])
    return c, m, int(doc["full_rounds"]), int(doc["partial_rounds"])


def poseidon2(a: int, b: int) -> int:
    """Poseidon(a, b) as circomlib's ``Poseidon(2)``. Raises ValueError for an input outside
    [0, FIELD): the circuit would reduce it, and two values that reduce alike must not be
    mistaken for different commitments."""
    if not (0 <= a < FIELD and 0 <= b < FIELD):
        raise ValueError("Poseidon inputs are field elements in [0, p)")
    c, m, full, partial = _constants()
    p = FIELD
    s0, s1, s2 = 0, a, b
    half = full // 2
    m0, m1, m2 = m
    for r in range(full + partial):
        s0 = (s0 + c[3 * r]) % p
        s1 = (s1 + c[3 * r + 1]) % p
        s2 = (s2 + c[3 * r + 2]) % p
        s0 = pow(s0, 5, p)
        if r < half or r >= half + partial:
            s1 = pow(s1, 5, p)
            s2 = pow(s2, 5, p)
        s0, s1, s2 = ((m0[0] * s0 + m0[1] * s1 + m0[2] * s2) % p,
                      (m1[0] * s0 + m1[1] * s1 + m1[2] * s2) % p,
                      (m2[0] * s0 + m2[1] * s1 + m2[2] * s2) % p)
    return s0

"""The BN254 pairing (alt_bn128, the curve circom and snarkjs call ``bn128``) in pure Python.

Curve: E: y^2 = x^3 + 3 over F_p and its sextic D-type twist E': y^2 = x^3 + 3/(9+u) over F_p2,
p and r of 254 bits, BN parameter x = 4965661367192848881 (Barreto and Naehrig, "Pairing-friendly
elliptic curves of prime order", SAC 2005; the parameters of EIP-196/197). G1 = E(F_p) (prime
order r, cofactor 1); G2 = the order-r subgroup of E'(F_p2) (cofactor about 2^254).

Field tower, on plain Python ints in tuples (no per-element objects; an F_p12 element is a flat
12-tuple): F_p2 = F_p[u]/(u^2+1), F_p6 = F_p2[v]/(v^3-(9+u)), F_p12 = F_p6[w]/(w^2-v), so
w^6 = 9+u. Products are summed unreduced and reduced once per output coefficient (lazy
reduction); F_p12 products are Karatsuba over F_p6, squarings the complex method.

Pairing: the optimal ate pairing of Vercauteren ("Optimal pairings", IEEE Trans. IT 2010),
e(P, Q) = (f_{6x+2,Q}(P) * l_{T,pi(Q)}(P) * l_{T+pi(Q),-pi^2(Q)}(P))^((p^12-1)/r), the same
value as py_ecc's ``pairing`` (tests/zk/test_bn254.py). Several pairs share one Miller loop
(the accumulator squared once per step, each pair's line multiplied in), 6x+2 in NAF, as in
Beuchat et al., "High-speed software implementation of the optimal ate pairing over
Barreto-Naehrig curves" (Pairing 2010) and Aranha et al., "Implementing pairings at the
192-bit level" (Pairing 2012). T runs in affine coordinates: a line is
y_P - lambda x_P w + (lambda x_T - y_T) w^3 (the twist's chord or tangent untwisted by
(x, y) -> (x w^2, y w^3)), sparse with 5 of 12 coefficients non-zero; the F_p2 divisions of all
pairs in a step share one F_p inversion (Montgomery's trick: an inversion, ``pow(a, -1, p)``,
costs about 50 modular products here, so one per step rather than one per pair and step).
The final exponentiation is the easy part (p^6-1)(p^2+1) and the hard part (p^4-p^2+1)/r by
the x-addition chain of Scott, Benger, Charlemagne, Dominguez Perez and Kachisa, "On the final
exponentiation for calculating pairings on ordinary elliptic curves" (Pairing 2009), with
Granger and Scott's cyclotomic squarings ("Faster squaring in the cyclotomic subgroup of sixth
degree extensions", PKC 2010) in the three exponentiations by x. It is exact
(not a power of the pairing), so GT values compare with other implementations.

Validation, and why (the pairing's callers verify proofs third parties rely on):

- ``g1_check``: coordinates reduced and on E. G1 has cofactor 1, so on the curve means in the
  group; an off-curve point would put the arithmetic on another curve (invalid-curve attacks).
- ``g2_check``: coordinates reduced, on E', and in the order-r subgroup by psi(Q) = [6x^2]Q
  (psi the untwist-Frobenius-twist endomorphism, which acts on G2 as multiplication by
  p = 6x^2 mod r). El Housni, Guillevic and Piellard, "Co-factor clearing and subgroup
  membership testing on pairing-friendly curves" (AFRICACRYPT 2022), after Scott, "A note on
  group membership tests for G1, G2 and GT on BLS pairing-friendly curves" (ePrint 2021/1130),
  show that for BN curves this holds only for points of G2 (tests/zk/test_bn254.py: a
  point of each prime order dividing the cofactor, alone or added to a G2 point, is refused).
  A twist point outside G2 has a component of small order on which the pairing is not the
  bilinear map Groth16's soundness assumes: a prover could pick one that makes the product 1
  without knowing a witness. The Miller loop's affine steps also rely on it
  (T = [k]Q with 1 < k < r never meets +-Q or the point at infinity).
- The point at infinity is never read from input (the parsers refuse it). ``miller_loop``
  leaves out a pair with a point at infinity, which is exact: e(O, Q) = e(P, O) = 1 by
  bilinearity; the Groth16 batch only meets one when a weighted sum of public points is O.
- Secrets: none that timing could betray in time to matter. Proofs, keys and public inputs
  are public; the verifier's batch weights must only be unknown to the prover until her
  proofs are fixed, which they are before verification starts. So nothing here is constant
  time.

A division by zero (``pow(0, -1, p)`` raises ValueError) can only come from an unchecked point;
it is never caught here.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["B2", "FP12_ONE", "P", "R", "X", "Fp2", "Fp12", "G1", "G2", "final_exponentiation",
           "fp12_mul", "g1_add", "g1_check", "g1_msm", "g1_mul", "g1_neg", "g2_check",
           "g2_mul", "g2_on_curve", "miller_loop", "pairing", "pairing_is_one"]

P = 21888242871839275222246405745257275088696311157297823662689037894645226208583
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
X = 4965661367192848881  # the BN parameter: p = 36x^4+36x^3+24x^2+6x+1, r = p - 6x^2

Fp2 = tuple[int, int]
Fp12 = tuple[int, int, int, int, int, int, int, int, int, int, int, int]
G1 = tuple[int, int] | None  # affine; None is the point at infinity
G2 = tuple[Fp2, Fp2] | None
_Jac2 = tuple[Fp2, Fp2, Fp2]

FP12_ONE: Fp12 = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


# ---------------------------------------------------------------- F_p2 (pairs of ints)

def _f2_mul(a: Fp2, b: Fp2) -> Fp2:
    a0, a1 = a
    b0, b1 = b
    return (a0 * b0 - a1 * b1) % P, (a0 * b1 + a1 * b0) % P


def _f2_sqr(a: Fp2) -> Fp2:
    a0, a1 = a
    return (a0 + a1) * (a0 - a1) % P, 2 * a0 * a1 % P


def _f2_add(a: Fp2, b: Fp2) -> Fp2:
    return (a[0] + b[0]) % P, (a[1] + b[1]) % P


def _f2_sub(a: Fp2, b: Fp2) -> Fp2:
    return (a[0] - b[0]) % P, (a[1] - b[1]) % P


def _f2_inv(a: Fp2) -> Fp2:
    a0, a1 = a
    t = pow(a0 * a0 + a1 * a1, -1, P)
    return a0 * t % P, -a1 * t % P


def _f2_pow(a: Fp2, e: int) -> Fp2:
    out: Fp2 = (1, 0)
    for bit in bin(e)[2:]:
        out = _f2_sqr(out)
        if bit == "1":
            out = _f2_mul(out, a)
    return out


XI: Fp2 = (9, 1)
B2: Fp2 = _f2_mul((3, 0), _f2_inv(XI))  # the twist's b = 3/(9+u)


# ---------------------------------------------------------------- F_p6 and F_p12

def _f6_mul(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int, int, int]:
    """(a0 + a1 v + a2 v^2)(b0 + b1 v + b2 v^2) with v^3 = xi; each A_i = (a[2i], a[2i+1]).
    Inputs may be unreduced (small multiples of p); the output is reduced."""
    a0, a1, a2, a3, a4, a5 = a
    b0, b1, b2, b3, b4, b5 = b
    # A1 B2 + A2 B1 and A2 B2, multiplied by xi = 9 + u below
    tr = a2 * b4 - a3 * b5 + a4 * b2 - a5 * b3
    ti = a2 * b5 + a3 * b4 + a4 * b3 + a5 * b2
    sr = a4 * b4 - a5 * b5
    si = a4 * b5 + a5 * b4
    return ((a0 * b0 - a1 * b1 + 9 * tr - ti) % P,
            (a0 * b1 + a1 * b0 + tr + 9 * ti) % P,
            (a0 * b2 - a1 * b3 + a2 * b0 - a3 * b1 + 9 * sr - si) % P,
            (a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + sr + 9 * si) % P,
            (a0 * b4 - a1 * b5 + a2 * b2 - a3 * b3 + a4 * b0 - a5 * b1) % P,
            (a0 * b5 + a1 * b4 + a2 * b3 + a3 * b2 + a4 * b1 + a5 * b0) % P)


def fp12_mul(a: Fp12, b: Fp12) -> Fp12:
    """Karatsuba over F_p6: (A0 + A1 w)(B0 + B1 w) = A0B0 + v A1B1 + ((A0+A1)(B0+B1) - A0B0
    - A1B1) w."""
    a0, a1 = a[:6], a[6:]
    b0, b1 = b[:6], b[6:]
    t0 = _f6_mul(a0, b0)
    t1 = _f6_mul(a1, b1)
    t2 = _f6_mul((a[0] + a[6], a[1] + a[7], a[2] + a[8], a[3] + a[9], a[4] + a[10],
                  a[5] + a[11]),
                 (b[0] + b[6], b[1] + b[7], b[2] + b[8], b[3] + b[9], b[4] + b[10],
                  b[5] + b[11]))
    return ((t0[0] + 9 * t1[4] - t1[5]) % P, (t0[1] + t1[4] + 9 * t1[5]) % P,
            (t0[2] + t1[0]) % P, (t0[3] + t1[1]) % P, (t0[4] + t1[2]) % P,
            (t0[5] + t1[3]) % P,
            (t2[0] - t0[0] - t1[0]) % P, (t2[1] - t0[1] - t1[1]) % P,
            (t2[2] - t0[2] - t1[2]) % P, (t2[3] - t0[3] - t1[3]) % P,
            (t2[4] - t0[4] - t1[4]) % P, (t2[5] - t0[5] - t1[5]) % P)


def _fp12_sqr(a: Fp12) -> Fp12:
    """Complex squaring: with t = A0 A1, (A0 + A1 w)^2 = (A0 + A1)(A0 + v A1) - t - v t
    + 2 t w."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = a
    t = _f6_mul((a0, a1, a2, a3, a4, a5), (a6, a7, a8, a9, a10, a11))
    # v A1 = (xi A1_2, A1_0, A1_1)
    s = _f6_mul((a0 + a6, a1 + a7, a2 + a8, a3 + a9, a4 + a10, a5 + a11),
                (a0 + 9 * a10 - a11, a1 + a10 + 9 * a11, a2 + a6, a3 + a7, a4 + a8, a5 + a9))
    t0, t1, t2, t3, t4, t5 = t
    return ((s[0] - t0 - 9 * t4 + t5) % P, (s[1] - t1 - t4 - 9 * t5) % P,
            (s[2] - t2 - t0) % P, (s[3] - t3 - t1) % P, (s[4] - t4 - t2) % P,
            (s[5] - t5 - t3) % P,
            2 * t0 % P, 2 * t1 % P, 2 * t2 % P, 2 * t3 % P, 2 * t4 % P, 2 * t5 % P)


def _fp12_mul_line(f: Fp12, l0: int, l1r: int, l1i: int, l3r: int, l3i: int) -> Fp12:
    """f * (l0 + (l1r + l1i u) w + (l3r + l3i u) w^3), l0 in F_p: the sparse line product.
    With B0 = l0 and B1 = L1 + L3 v: f B = (l0 A0 + v A1 B1) + (A0 B1 + l0 A1) w, and
    (c0 + c1 v + c2 v^2)(L1 + L3 v) = (c0 L1 + xi c2 L3) + (c0 L3 + c1 L1) v + (c1 L3 + c2 L1) v^2.
    """
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = f
    # A1 B1
    x0r = a6 * l1r - a7 * l1i
    x0i = a6 * l1i + a7 * l1r
    wr = a10 * l3r - a11 * l3i
    wi = a10 * l3i + a11 * l3r
    x0r += 9 * wr - wi
    x0i += wr + 9 * wi
    x1r = a6 * l3r - a7 * l3i + a8 * l1r - a9 * l1i
    x1i = a6 * l3i + a7 * l3r + a8 * l1i + a9 * l1r
    x2r = a8 * l3r - a9 * l3i + a10 * l1r - a11 * l1i
    x2i = a8 * l3i + a9 * l3r + a10 * l1i + a11 * l1r
    # A0 B1
    y0r = a0 * l1r - a1 * l1i
    y0i = a0 * l1i + a1 * l1r
    wr = a4 * l3r - a5 * l3i
    wi = a4 * l3i + a5 * l3r
    y0r += 9 * wr - wi
    y0i += wr + 9 * wi
    y1r = a0 * l3r - a1 * l3i + a2 * l1r - a3 * l1i
    y1i = a0 * l3i + a1 * l3r + a2 * l1i + a3 * l1r
    y2r = a2 * l3r - a3 * l3i + a4 * l1r - a5 * l1i
    y2i = a2 * l3i + a3 * l3r + a4 * l1i + a5 * l1r
    # v (x0, x1, x2) = (xi x2, x0, x1)
    return ((l0 * a0 + 9 * x2r - x2i) % P, (l0 * a1 + x2r + 9 * x2i) % P,
            (l0 * a2 + x0r) % P, (l0 * a3 + x0i) % P, (l0 * a4 + x1r) % P,
            (l0 * a5 + x1i) % P,
            (y0r + l0 * a6) % P, (y0i + l0 * a7) % P, (y1r + l0 * a8) % P,
            (y1i + l0 * a9) % P, (y2r + l0 * a10) % P, (y2i + l0 * a11) % P)


def _fp12_conj(a: Fp12) -> Fp12:
    """a^(p^6): A0 - A1 w. The inverse in the cyclotomic subgroup."""
    return (a[0], a[1], a[2], a[3], a[4], a[5], -a[6] % P, -a[7] % P, -a[8] % P, -a[9] % P,
            -a[10] % P, -a[11] % P)


def _f6_inv(a: Sequence[int]) -> tuple[int, int, int, int, int, int]:
    x0: Fp2 = (a[0], a[1])
    x1: Fp2 = (a[2], a[3])
    x2: Fp2 = (a[4], a[5])
    c0 = _f2_sub(_f2_sqr(x0), _f2_mul(XI, _f2_mul(x1, x2)))
    c1 = _f2_sub(_f2_mul(XI, _f2_sqr(x2)), _f2_mul(x0, x1))
    c2 = _f2_sub(_f2_sqr(x1), _f2_mul(x0, x2))
    t = _f2_inv(_f2_add(_f2_mul(x0, c0),
                        _f2_mul(XI, _f2_add(_f2_mul(x2, c1), _f2_mul(x1, c2)))))
    return (*_f2_mul(c0, t), *_f2_mul(c1, t), *_f2_mul(c2, t))


def _fp12_inv(a: Fp12) -> Fp12:
    """(A0 + A1 w)^-1 = (A0 - A1 w) / (A0^2 - v A1^2)."""
    a0, a1 = a[:6], a[6:]
    s0 = _f6_mul(a0, a0)
    s1 = _f6_mul(a1, a1)
    d = _f6_inv(((s0[0] - 9 * s1[4] + s1[5]) % P, (s0[1] - s1[4] - 9 * s1[5]) % P,
                 (s0[2] - s1[0]) % P, (s0[3] - s1[1]) % P, (s0[4] - s1[2]) % P,
                 (s0[5] - s1[3]) % P))
    c0 = _f6_mul(a0, d)
    c1 = _f6_mul(a1, d)
    return (*c0, *(-c % P for c in c1))  # type: ignore[return-value]


# f = sum_k a_k w^k, a_k in F_p2, k = 2i + j for the coefficient of v^i w^j; then
# f^(p^n) = sum_k conj^n(a_k) xi^(k (p^n - 1) / 6) w^k.
_SLOT_K = (0, 2, 4, 1, 3, 5)  # the k of flat F_p2 slots 0..5 (A0's v^0, v^1, v^2, A1's ...)
_FROB = {n: tuple(_f2_pow(XI, k * (P ** n - 1) // 6) for k in _SLOT_K) for n in (1, 2, 3)}


def _fp12_frob(a: Fp12, n: int) -> Fp12:
    out: list[int] = []
    for slot, (cr, ci) in enumerate(_FROB[n]):
        x0, x1 = a[2 * slot], a[2 * slot + 1]
        if n % 2:
            x1 = -x1
        out += ((x0 * cr - x1 * ci) % P, (x0 * ci + x1 * cr) % P)
    return tuple(out)  # type: ignore[return-value]


def _cyclotomic_sqr(a: Fp12) -> Fp12:
    """Granger-Scott squaring in the cyclotomic subgroup (PKC 2010, section 3.2): F_p12 as
    F_p4[t]/(t^3 - s), F_p4 = F_p2[s]/(s^2 - xi), s = w^3, t = w, so a = A + B t + C t^2 with
    A = g0 + g3 s, B = g1 + g4 s, C = g2 + g5 s (g_k the F_p2 coefficient of w^k), and
    a^2 = (3A^2 - 2 conj(A)) + (3 s C^2 + 2 conj(B)) t + (3B^2 - 2 conj(C)) t^2 (conj: s -> -s,
    which is a -> a^(p^6) there): three F_p4 squarings instead of a full F_p12 squaring."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = a
    # coefficient of w^k, k = 0..5: g0 = slot 0, g1 = slot 3, g2 = slot 1, g3 = slot 4,
    # g4 = slot 2, g5 = slot 5.
    out = [0] * 12

    def sq4(xr: int, xi_: int, yr: int, yi: int) -> tuple[int, int, int, int]:
        # (x + y s)^2 = (x^2 + xi y^2) + 2xy s
        x2r, x2i = (xr + xi_) * (xr - xi_), 2 * xr * xi_
        y2r, y2i = (yr + yi) * (yr - yi), 2 * yr * yi
        return (x2r + 9 * y2r - y2i, x2i + y2r + 9 * y2i,
                2 * (xr * yr - xi_ * yi), 2 * (xr * yi + xi_ * yr))

    # F_p4 elements: (g0, g3) = (slot 0, slot 4), (g1, g4) = (slot 3, slot 2),
    # (g2, g5) = (slot 1, slot 5)
    t0r, t0i, t1r, t1i = sq4(a0, a1, a8, a9)        # (g0 + g3 s)^2
    t2r, t2i, t3r, t3i = sq4(a6, a7, a4, a5)        # (g1 + g4 s)^2
    t4r, t4i, t5r, t5i = sq4(a2, a3, a10, a11)      # (g2 + g5 s)^2
    # g0' = 3 t0 - 2 g0; g3' = 3 t1 + 2 g3
    out[0] = (3 * t0r - 2 * a0) % P
    out[1] = (3 * t0i - 2 * a1) % P
    out[8] = (3 * t1r + 2 * a8) % P
    out[9] = (3 * t1i + 2 * a9) % P
    # g1' = 3 xi t5 + 2 g1; g4' = 3 t4 - 2 g4
    out[6] = (3 * (9 * t5r - t5i) + 2 * a6) % P
    out[7] = (3 * (t5r + 9 * t5i) + 2 * a7) % P
    out[4] = (3 * t4r - 2 * a4) % P
    out[5] = (3 * t4i - 2 * a5) % P
    # g2' = 3 t2 - 2 g2; g5' = 3 t3 + 2 g5
    out[2] = (3 * t2r - 2 * a2) % P
    out[3] = (3 * t2i - 2 * a3) % P
    out[10] = (3 * t3r + 2 * a10) % P
    out[11] = (3 * t3i + 2 * a11) % P
    return tuple(out)  # type: ignore[return-value]


def _naf(k: int) -> list[int]:
    """Non-adjacent form of k > 0, most significant digit first."""
    out = []
    while k:
        if k & 1:
            d = 2 - (k & 3)
            k -= d
        else:
            d = 0
        out.append(d)
        k >>= 1
    return out[::-1]


_X_NAF = _naf(X)


def _cyclotomic_exp_x(a: Fp12) -> Fp12:
    """a^x for a in the cyclotomic subgroup (where the inverse is the conjugate)."""
    inv = _fp12_conj(a)
    out = a
    for d in _X_NAF[1:]:
        out = _cyclotomic_sqr(out)
        if d == 1:
            out = fp12_mul(out, a)
        elif d == -1:
            out = fp12_mul(out, inv)
    return out


def final_exponentiation(f: Fp12) -> Fp12:
    """f^((p^12 - 1)/r): the easy part f^((p^6-1)(p^2+1)) then the hard part (p^4-p^2+1)/r
    = l0 + l1 p + l2 p^2 + l3 p^3 with l3 = 1, l2 = 6x^2 + 1, l1 = -36x^3 - 18x^2 - 12x + 1,
    l0 = -36x^3 - 30x^2 - 18x - 2 by Scott et al.'s addition chain (Pairing 2009, section 5)."""
    t = fp12_mul(_fp12_conj(f), _fp12_inv(f))
    t = fp12_mul(_fp12_frob(t, 2), t)
    fp1 = _fp12_frob(t, 1)
    fp2 = _fp12_frob(t, 2)
    fp3 = _fp12_frob(fp2, 1)
    fu = _cyclotomic_exp_x(t)
    fu2 = _cyclotomic_exp_x(fu)
    fu3 = _cyclotomic_exp_x(fu2)
    y0 = fp12_mul(fp12_mul(fp1, fp2), fp3)
    y1 = _fp12_conj(t)
    y2 = _fp12_frob(fu2, 2)
    y3 = _fp12_conj(_fp12_frob(fu, 1))
    y4 = _fp12_conj(fp12_mul(fu, _fp12_frob(fu2, 1)))
    y5 = _fp12_conj(fu2)
    y6 = _fp12_conj(fp12_mul(fu3, _fp12_frob(fu3, 1)))
    t0 = fp12_mul(fp12_mul(_cyclotomic_sqr(y6), y4), y5)
    t1 = fp12_mul(fp12_mul(y3, y5), t0)
    t0 = fp12_mul(t0, y2)
    t1 = fp12_mul(_cyclotomic_sqr(t1), t0)
    t1 = _cyclotomic_sqr(t1)
    t0 = fp12_mul(t1, y1)
    t1 = fp12_mul(t1, y0)
    return fp12_mul(_cyclotomic_sqr(t0), t1)


# ---------------------------------------------------------------- G2 endomorphism psi

_PSI_X = _f2_pow(XI, (P - 1) // 3)
_PSI_Y = _f2_pow(XI, (P - 1) // 2)
_PSI2_X = _f2_pow(XI, (P * P - 1) // 3)
_PSI2_Y = _f2_pow(XI, (P * P - 1) // 2)


def _psi(q: tuple[Fp2, Fp2]) -> tuple[Fp2, Fp2]:
    """Untwist, p-power Frobenius, twist: (x, y) -> (conj(x) xi^((p-1)/3), conj(y)
    xi^((p-1)/2)). On G2 it is multiplication by p."""
    (x0, x1), (y0, y1) = q
    return _f2_mul((x0, -x1 % P), _PSI_X), _f2_mul((y0, -y1 % P), _PSI_Y)


def _psi2(q: tuple[Fp2, Fp2]) -> tuple[Fp2, Fp2]:
    return _f2_mul(q[0], _PSI2_X), _f2_mul(q[1], _PSI2_Y)


# ---------------------------------------------------------------- Miller loop

_ATE_NAF = _naf(6 * X + 2)


def _batch_inv(values: list[int]) -> list[int]:
    """Montgomery's trick: the inverses of non-zero values with one modular inversion."""
    prefix = [1] * (len(values) + 1)
    for i, v in enumerate(values):
        prefix[i + 1] = prefix[i] * v % P
    inv = pow(prefix[-1], -1, P)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = prefix[i] * inv % P
        inv = inv * values[i] % P
    return out


def _slopes(nums: list[Fp2], dens: list[Fp2]) -> list[Fp2]:
    """num_i / den_i in F_p2 for all i, one F_p inversion: 1/d = conj(d) / norm(d)."""
    norms = _batch_inv([(d0 * d0 + d1 * d1) % P for d0, d1 in dens])
    out = []
    for (n0, n1), (d0, d1), t in zip(nums, dens, norms, strict=True):
        i0, i1 = d0 * t, -d1 * t
        out.append(((n0 * i0 - n1 * i1) % P, (n0 * i1 + n1 * i0) % P))
    return out


def miller_loop(pairs: Sequence[tuple[G1, G2]]) -> Fp12:
    """The product over ``pairs`` of the optimal ate Miller values (before the final
    exponentiation). Every point must have passed ``g1_check`` / ``g2_check``; a pair with a
    point at infinity contributes 1 and is left out."""
    live = [(p, q) for p, q in pairs if p is not None and q is not None]
    ps = [(p[1], -p[0] % P) for p, _ in live]  # (y_P, -x_P)
    qs = [q for _, q in live]
    ts = list(qs)
    f = FP12_ONE

    def step(targets: list[tuple[Fp2, Fp2]] | None) -> None:
        """Double every T (targets None) or add targets to it; multiply the lines into f."""
        nonlocal f, ts
        if targets is None:
            nums = []
            for (x0, x1), _ in ts:
                s = (x0 + x1) * (x0 - x1), 2 * x0 * x1
                nums.append((3 * s[0] % P, 3 * s[1] % P))
            dens = [(2 * y0 % P, 2 * y1 % P) for _, (y0, y1) in ts]
        else:
            nums = [_f2_sub(qy, ty) for (_, ty), (_, qy) in zip(ts, targets, strict=True)]
            dens = [_f2_sub(qx, tx) for (tx, _), (qx, _) in zip(ts, targets, strict=True)]
        lams = _slopes(nums, dens)
        out = []
        for i, ((lr, li), ((tx0, tx1), (ty0, ty1)), (yp, nxp)) in enumerate(
                zip(lams, ts, ps, strict=True)):
            # line: y_P - lambda x_P w + (lambda x_T - y_T) w^3
            l3r = (lr * tx0 - li * tx1 - ty0) % P
            l3i = (lr * tx1 + li * tx0 - ty1) % P
            f = _fp12_mul_line(f, yp, lr * nxp % P, li * nxp % P, l3r, l3i)
            ox0, ox1 = (tx0, tx1) if targets is None else targets[i][0]
            x3r = ((lr + li) * (lr - li) - tx0 - ox0) % P
            x3i = (2 * lr * li - tx1 - ox1) % P
            dx0, dx1 = tx0 - x3r, tx1 - x3i
            out.append(((x3r, x3i), ((lr * dx0 - li * dx1 - ty0) % P,
                                     (lr * dx1 + li * dx0 - ty1) % P)))
        ts = out

    if not live:
        return f
    negs = [(x, ((-y[0]) % P, (-y[1]) % P)) for x, y in qs]
    for i, digit in enumerate(_ATE_NAF[1:]):
        if i:
            f = _fp12_sqr(f)
        step(None)
        if digit == 1:
            step(qs)
        elif digit == -1:
            step(negs)
    step([_psi(q) for q in qs])
    # T = [6x+2]Q + psi(Q); the last line, through T and -psi^2(Q), whose sum -psi^3(Q) is
    # not needed (Vercauteren: 6x+2 + p - p^2 + p^3 = 0 mod r)
    q2 = [(x, ((-y[0]) % P, (-y[1]) % P)) for x, y in (_psi2(q) for q in qs)]
    step(q2)
    return f


def pairing(p: G1, q: G2) -> Fp12:
    """e(P, Q) in GT (a flat F_p12 tuple), for checked points."""
    return final_exponentiation(miller_loop([(p, q)]))


def pairing_is_one(pairs: Sequence[tuple[G1, G2]]) -> bool:
    """prod e(P_i, Q_i) == 1, for checked points: one Miller loop, one final exponentiation."""
    return final_exponentiation(miller_loop(pairs)) == FP12_ONE


# ---------------------------------------------------------------- G1 (Jacobian, F_p)

_Jac1 = tuple[int, int, int]  # (X, Y, Z), x = X/Z^2, y = Y/Z^3; Z = 0 is infinity
_INF1: _Jac1 = (1, 1, 0)


def g1_check(x: int, y: int) -> tuple[int, int]:
    """(x, y) as a G1 point, or ValueError: coordinates reduced and on y^2 = x^3 + 3 (G1 has
    cofactor 1: on the curve is in the group)."""
    if not (0 <= x < P and 0 <= y < P) or (y * y - x * x * x - 3) % P:
        raise ValueError("not a point of the BN254 curve")
    return x, y


def _j1_dbl(p: _Jac1) -> _Jac1:
    x, y, z = p
    if not z or not y:
        return _INF1
    a = x * x % P
    b = y * y % P
    c = b * b % P
    d = 2 * ((x + b) * (x + b) - a - c) % P
    e = 3 * a
    f = e * e % P
    x3 = (f - 2 * d) % P
    return x3, (e * (d - x3) - 8 * c) % P, 2 * y * z % P


def _j1_add(p: _Jac1, q: _Jac1) -> _Jac1:
    """Complete: handles infinity, P = Q (doubling) and P = -Q."""
    x1, y1, z1 = p
    x2, y2, z2 = q
    if not z1:
        return q
    if not z2:
        return p
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return _j1_dbl(p) if s1 == s2 else _INF1
    h = u2 - u1
    i = 4 * h * h % P
    j = h * i % P
    rr = 2 * (s2 - s1)
    v = u1 * i % P
    x3 = (rr * rr - j - 2 * v) % P
    y3 = (rr * (v - x3) - 2 * s1 * j) % P
    z3 = ((z1 + z2) * (z1 + z2) - z1z1 - z2z2) * h % P
    return x3, y3, z3


def _j1_affine(p: _Jac1) -> G1:
    x, y, z = p
    if not z:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def g1_add(p: G1, q: G1) -> G1:
    return _j1_affine(_j1_add(_INF1 if p is None else (*p, 1),
                              _INF1 if q is None else (*q, 1)))


def g1_neg(p: G1) -> G1:
    return None if p is None else (p[0], -p[1] % P)


def g1_msm(points: Sequence[G1], scalars: Sequence[int]) -> G1:
    """sum k_i P_i (Straus: doublings shared, a 4-bit window table per point)."""
    tables = []
    digits = []
    for pt, k in zip(points, scalars, strict=True):
        k %= R
        if pt is None or not k:
            continue
        base: _Jac1 = (*pt, 1)
        table = [_INF1, base]
        for _ in range(14):
            table.append(_j1_add(table[-1], base))
        tables.append(table)
        digits.append([(k >> s) & 15 for s in range(0, k.bit_length(), 4)])
    acc = _INF1
    for pos in range(max((len(d) for d in digits), default=0) - 1, -1, -1):
        for _ in range(4):
            acc = _j1_dbl(acc)
        for table, ds in zip(tables, digits, strict=True):
            if pos < len(ds) and ds[pos]:
                acc = _j1_add(acc, table[ds[pos]])
    return _j1_affine(acc)


def g1_mul(p: G1, k: int) -> G1:
    return g1_msm([p], [k])


# ---------------------------------------------------------------- G2 (Jacobian, F_p2)

_INF2: _Jac2 = ((1, 0), (1, 0), (0, 0))


def g2_on_curve(q: tuple[Fp2, Fp2]) -> bool:
    """Coordinates reduced and on the twist y^2 = x^3 + 3/(9+u)."""
    x, y = q
    if not all(0 <= c < P for c in (*x, *y)):
        return False
    return _f2_sqr(y) == _f2_add(_f2_mul(_f2_sqr(x), x), B2)


def _j2_dbl(p: _Jac2) -> _Jac2:
    x, y, z = p
    if z == (0, 0) or y == (0, 0):
        return _INF2
    a = _f2_sqr(x)
    b = _f2_sqr(y)
    c = _f2_sqr(b)
    xb = _f2_add(x, b)
    d = _f2_sub(_f2_sqr(xb), _f2_add(a, c))
    d = _f2_add(d, d)
    e = _f2_add(_f2_add(a, a), a)
    f = _f2_sqr(e)
    x3 = _f2_sub(f, _f2_add(d, d))
    c8 = (8 * c[0] % P, 8 * c[1] % P)
    y3 = _f2_sub(_f2_mul(e, _f2_sub(d, x3)), c8)
    yz = _f2_mul(y, z)
    return x3, y3, _f2_add(yz, yz)


def _j2_add_affine(p: _Jac2, q: tuple[Fp2, Fp2]) -> _Jac2:
    """p + q with q affine (mixed addition); complete: infinity, p = q, p = -q."""
    x1, y1, z1 = p
    if z1 == (0, 0):
        return q[0], q[1], (1, 0)
    x2, y2 = q
    z1z1 = _f2_sqr(z1)
    u2 = _f2_mul(x2, z1z1)
    s2 = _f2_mul(y2, _f2_mul(z1, z1z1))
    if u2 == x1:
        return _j2_dbl(p) if s2 == y1 else _INF2
    h = _f2_sub(u2, x1)
    hh = _f2_sqr(h)
    i = (4 * hh[0] % P, 4 * hh[1] % P)
    j = _f2_mul(h, i)
    rr = _f2_sub(s2, y1)
    rr = _f2_add(rr, rr)
    v = _f2_mul(x1, i)
    x3 = _f2_sub(_f2_sub(_f2_sqr(rr), j), _f2_add(v, v))
    y1j = _f2_mul(y1, j)
    y3 = _f2_sub(_f2_mul(rr, _f2_sub(v, x3)), _f2_add(y1j, y1j))
    z3 = _f2_sub(_f2_sqr(_f2_add(z1, h)), _f2_add(z1z1, hh))
    return x3, y3, z3


def _j2_affine(p: _Jac2) -> G2:
    x, y, z = p
    if z == (0, 0):
        return None
    zi = _f2_inv(z)
    zi2 = _f2_sqr(zi)
    return _f2_mul(x, zi2), _f2_mul(y, _f2_mul(zi2, zi))


def g2_mul(q: G2, k: int) -> G2:
    """[k]Q for k >= 0 on any point of the twist (NAF double-and-add, complete formulas)."""
    if q is None or not k:
        return None
    neg = (q[0], ((-q[1][0]) % P, (-q[1][1]) % P))
    acc = _INF2
    for d in _naf(k):
        acc = _j2_dbl(acc)
        if d == 1:
            acc = _j2_add_affine(acc, q)
        elif d == -1:
            acc = _j2_add_affine(acc, neg)
    return _j2_affine(acc)


_SIX_X2 = 6 * X * X


def g2_check(x: Fp2, y: Fp2) -> tuple[Fp2, Fp2]:
    """(x, y) as a G2 point, or ValueError: reduced, on the twist, and psi(Q) = [6x^2]Q
    (membership in the order-r subgroup; El Housni, Guillevic, Piellard 2022)."""
    q = (x, y)
    if not g2_on_curve(q):
        raise ValueError("not a point of the BN254 twist")
    if g2_mul(q, _SIX_X2) != _psi(q):
        raise ValueError("not in the order-r subgroup of the BN254 twist")
    return q

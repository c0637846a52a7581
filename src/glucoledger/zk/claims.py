"""The words of a claim, and the public coefficients a verifier derives from them.

The claim circuit (circuits/glucose.circom ``Claim``) proves, for the hidden totals
s = (1, valid, inRange, below54, sum) of the period, that valid >= 1, a.s >= b.s and
c.s >= d.s. The verifier sets a, b, c, d itself from the claim's words and the period's
number of slots, never from the proof file. Every claim also needs readings in at least
``COVERAGE`` % of the period's five-minute slots (``need``; the consensus' minimum of
sensor wear, Battelino et al. 2019): c.s >= d.s is valid >= need. Before 2026-12-05 (claim
files v1) valid >= 1 was all, and one reading a day proved "tir>=100" over any number of
days. A mean claim has two bounds, each a.s >= b.s of its own: it is proved by two claim
proofs over the same last running total (``inequalities``: one set of coefficients each),
each with the coverage; before claim files v3 its two bounds took both inequalities and
one reading a day proved "mean in 100..120".

Percentages and mg/dL take up to two decimals (scaled by 100); metrics follow the
International Consensus on Time in Range (Battelino et al., Diabetes Care 2019;42:1593) and
GMI (Bergenstal et al., Diabetes Care 2018;41:2275): GMI % = 3.31 + 0.02392 x mean mg/dL.

=============================  ==========================================================
words                          inequalities (scaled)
=============================  ==========================================================
``tir>=P``                     10000 inRange >= 100P valid
``tbr54<=Q`` (``tbr54=0``)     100Q valid >= 10000 below54
``mean in A..B``               100 sum >= 100A valid (one proof),
                               100B valid >= 100 sum (a second proof)
``gmi<G``                      1000 (100G) valid >= 331000 valid + 2392 sum + 1
(every claim, every proof)     valid >= need
=============================  ==========================================================

Pure. ``parse`` raises InputError with the accepted forms.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from ..errors import InputError
from .windows import SLOT_MS, Totals

__all__ = ["COVERAGE", "Claim", "need_for", "parse"]

FORMS: Final = "tir>=P, tbr54<=Q (or tbr54=0), mean in A..B, gmi<G (P, Q in %, A, B in mg/dL)"
_NUM = r"(\d{1,4}(?:\.\d{1,2})?)"
_PATTERNS: Final = (
    ("tir", re.compile(rf"tir\s*>=\s*{_NUM}\s*%?")),
    ("tbr54", re.compile(rf"tbr54\s*<=\s*{_NUM}\s*%?")),
    ("tbr54", re.compile(r"tbr54\s*=\s*(0)")),
    ("mean", re.compile(rf"mean\s+in\s+{_NUM}\s*\.\.\s*{_NUM}")),
    ("gmi", re.compile(rf"gmi\s*<\s*{_NUM}\s*%?")),
)
Vector = tuple[int, int, int, int, int]
ZERO: Final[Vector] = (0, 0, 0, 0, 0)
#: The share of a period's slots (%) a percentage or GMI claim needs readings in.
COVERAGE: Final = 70


def need_for(spans_ms: Sequence[int], slots: int) -> int:
    """The readings a percentage or GMI claim needs over windows of these lengths (each up to
    ``slots`` five-minute slots): ``COVERAGE`` % of their slots, at least one."""
    total = sum(min(slots, -(-span // SLOT_MS)) for span in spans_ms)
    return max(1, -(-COVERAGE * total // 100))


def _cents(text: str) -> int:
    try:
        return int(Decimal(text) * 100)
    except InvalidOperation:  # pragma: no cover - the patterns admit only numbers
        raise InputError(f"{text!r} is not a number") from None


@dataclass(frozen=True, slots=True)
class Claim:
    """A parsed claim: ``kind`` and its parameters in hundredths."""

    kind: str
    params: tuple[int, ...]

    @property
    def words(self) -> str:
        """The canonical words (what a claim file and a result page show)."""
        f = [f"{p / 100:g}" for p in self.params]
        return {"tir": f"tir>={f[0]}", "tbr54": f"tbr54<={f[0]}",
                "mean": f"mean in {f[0]}..{f[-1]}", "gmi": f"gmi<{f[0]}"}[self.kind]

    def inequalities(self, need: int) -> list[tuple[Vector, Vector, Vector, Vector]]:
        """One (a, b, c, d) for the circuit per claim proof: a.s >= b.s and c.s >= d.s;
        ``need``: ``need_for`` the period (c.s >= d.s is valid >= need). Two for a mean
        claim (its lower and its upper bound), one for the others."""
        p = self.params
        covered = (0, 1, 0, 0, 0), (need, 0, 0, 0, 0)
        if self.kind == "tir":
            return [((0, 0, 10000, 0, 0), (0, p[0], 0, 0, 0), *covered)]
        if self.kind == "tbr54":
            return [((0, p[0], 0, 0, 0), (0, 0, 0, 10000, 0), *covered)]
        if self.kind == "mean":
            return [((0, 0, 0, 0, 100), (0, p[0], 0, 0, 0), *covered),
                    ((0, p[1], 0, 0, 0), (0, 0, 0, 0, 100), *covered)]
        return [((0, 1000 * p[0], 0, 0, 0), (1, 331000, 0, 0, 2392), *covered)]

    def covered(self, t: Totals, need: int) -> bool:
        """Whether ``t`` has the readings the claim needs (``need``)."""
        return t.valid >= need

    def holds(self, t: Totals, need: int) -> bool:
        """Whether the claim is true of ``t`` (the same inequalities, in Python)."""
        if t.valid < 1:
            return False
        s = (1, t.valid, t.in_range, t.below, t.total)

        def dot(v: Vector) -> int:
            return sum(x * y for x, y in zip(v, s, strict=True))
        return all(dot(a) >= dot(b) and dot(c) >= dot(d)
                   for a, b, c, d in self.inequalities(need))

    def public_inputs(self, need: int) -> list[list[int]]:
        """Per claim proof, the 20 coefficients in the circuit's order (a, b, c, d)."""
        return [[x for v in coeffs for x in v] for coeffs in self.inequalities(need)]


def parse(text: object) -> Claim:
    """Parse a claim's words. Raises InputError naming the accepted forms."""
    if not isinstance(text, str) or len(text) > 64:
        raise InputError(f"a claim is short text, one of: {FORMS}")
    words = text.strip().lower()
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(words)
        if m is None:
            continue
        params = tuple(_cents(g) for g in m.groups())
        if kind in ("tir", "tbr54") and params[0] > 10000:
            raise InputError("a percentage is at most 100")
        if kind == "mean" and params[0] > params[1]:
            raise InputError("mean in A..B needs A <= B")
        if kind == "gmi" and not 331 < params[0] <= 2000:
            raise InputError("a GMI bound is between 3.31 % and 20 %")
        if kind == "mean" and params[1] > 102300:
            raise InputError("mean bounds are at most 1023 mg/dL")
        return Claim(kind, params)
    raise InputError(f"cannot read the claim {text!r}: write one of {FORMS}")

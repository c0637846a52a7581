"""Glucose units: mg/dL and mmol/L.

Invariants:
- Every stored glucose value (CGM, SMBG, targets, sensitivities) is an ``int`` in mg/dL.
  Sensors and meters report whole mg/dL, and the canonical codec carries no floats, so an
  integer in mg/dL is exact for everything a device sends.
- mmol/L enters only at the edge: ``mmol_to_mgdl`` multiplies by 18.01559 (the factor
  Nightscout and Tidepool use: 1 mmol/L of glucose, C6H12O6, 180.1559 g/mol, is
  18.01559 mg/dL) in exact decimal arithmetic and rounds to the nearest mg/dL, halves away
  from zero. So a value parses to the same integer on every node.
- mmol/L leaves only for display: ``mgdl_to_mmol`` gives the float quotient, and
  ``format_glucose`` rounds it to one decimal as meters show it.

Round trips: for every integer mg/dL x, ``mmol_to_mgdl(mgdl_to_mmol(x)) == x``; and for every
one-decimal mmol/L value m in 1.0..33.3, ``round(mgdl_to_mmol(mmol_to_mgdl(m)), 1) == m``
(0.1 mmol/L is 1.8 mg/dL, so the rounding to mg/dL never crosses a tenth of a mmol/L).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final, Literal

from ..errors import MalformedError

__all__ = [
    "MGDL",
    "MGDL_PER_MMOLL",
    "MMOLL",
    "Units",
    "format_glucose",
    "mgdl_to_mmol",
    "mmol_to_mgdl",
    "normalize_units",
    "to_mgdl",
]

Units = Literal["mg/dL", "mmol/L"]
MGDL: Final = "mg/dL"
MMOLL: Final = "mmol/L"

#: mg/dL per mmol/L of glucose (Nightscout, Tidepool).
MGDL_PER_MMOLL: Final = Decimal("18.01559")

_ALIASES: Final[dict[str, Units]] = {
    "mg/dl": "mg/dL",
    "mgdl": "mg/dL",
    "mg": "mg/dL",
    "mmol/l": "mmol/L",
    "mmol": "mmol/L",
    "mmoll": "mmol/L",
}


def normalize_units(units: object) -> Units:
    """Return the canonical spelling ("mg/dL" or "mmol/L") of a units string.

    Accepts the common spellings case-insensitively (mg/dl, mgdl, mmol/l, mmol).
    Raises MalformedError for anything else.
    """
    if isinstance(units, str):
        found = _ALIASES.get(units.strip().lower())
        if found is not None:
            return found
    raise MalformedError(f"unknown glucose units {units!r}; use 'mg/dL' or 'mmol/L'")


def parse_decimal(value: object, what: str) -> Decimal:
    """An input number as an exact Decimal. Raises MalformedError for a non-number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise MalformedError(f"{what} must be a number, not {type(value).__name__}")
    try:
        # str() of a float is its shortest repr, so 5.5 becomes exactly Decimal("5.5").
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise MalformedError(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise MalformedError(f"{what} {value!r} is not a finite number")
    return number


def mmol_to_mgdl(mmol: float | str | Decimal) -> int:
    """Convert mmol/L to whole mg/dL (x 18.01559, nearest, halves away from zero).

    Raises MalformedError when ``mmol`` is not a finite number.
    """
    number = parse_decimal(mmol, "glucose value")
    return int((number * MGDL_PER_MMOLL).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def mgdl_to_mmol(mgdl: int) -> float:
    """Convert mg/dL to mmol/L for display (unrounded float; never stored)."""
    return float(Decimal(mgdl) / MGDL_PER_MMOLL)


def to_mgdl(value: object, units: str) -> int:
    """Convert an input glucose ``value`` in ``units`` to whole mg/dL.

    A mg/dL value must be a whole number (an int, or a float/str with no fraction): sensors
    report integers, and silently rounding 120.4 mg/dL would hide an upstream bug.
    Raises MalformedError for unknown units, non-numbers and fractional mg/dL.
    """
    canonical = normalize_units(units)
    if canonical == "mmol/L":
        return mmol_to_mgdl(value)  # type: ignore[arg-type]  # parse_decimal checks the type
    number = parse_decimal(value, "glucose value")
    if number != number.to_integral_value():
        raise MalformedError(f"glucose value {value!r} mg/dL is not a whole number")
    return int(number)


def format_glucose(mgdl: int, units: str = "mg/dL") -> str:
    """A glucose value for people: "123 mg/dL" or "6.8 mmol/L" (one decimal)."""
    if normalize_units(units) == "mmol/L":
        return f"{mgdl_to_mmol(mgdl):.1f} mmol/L"
    return f"{mgdl} mg/dL"

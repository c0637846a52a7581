from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoledger.errors import MalformedError
from glucoledger.glucose.units import (
    format_glucose,
    mgdl_to_mmol,
    mmol_to_mgdl,
    normalize_units,
    to_mgdl,
)


@pytest.mark.parametrize(
    ("mmol", "mgdl"),
    [(1, 18), (3.9, 70), (10.0, 180), ("5.5", 99), (Decimal("13.9"), 250), (3.0, 54), (0.5, 9)],
)
def test_mmol_to_mgdl_known(mmol: object, mgdl: int) -> None:
    assert mmol_to_mgdl(mmol) == mgdl  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=1000))
def test_mgdl_round_trip(mgdl: int) -> None:
    assert mmol_to_mgdl(mgdl_to_mmol(mgdl)) == mgdl


@given(st.integers(min_value=10, max_value=333))
def test_one_decimal_mmol_round_trip(tenths: int) -> None:
    mmol = tenths / 10
    assert round(mgdl_to_mmol(mmol_to_mgdl(mmol)), 1) == mmol


@pytest.mark.parametrize("spelling", ["mg/dL", "mg/dl", "MGDL", " mg/dL "])
def test_normalize_mgdl(spelling: str) -> None:
    assert normalize_units(spelling) == "mg/dL"


@pytest.mark.parametrize("bad", ["g/L", "", "mmol/dL", None, 5])
def test_unknown_units_refused(bad: object) -> None:
    with pytest.raises(MalformedError, match="unknown glucose units"):
        normalize_units(bad)


@pytest.mark.parametrize("bad", [120.4, "abc", float("nan"), float("inf"), True, [1]])
def test_to_mgdl_refuses(bad: object) -> None:
    with pytest.raises(MalformedError):
        to_mgdl(bad, "mg/dL")


def test_to_mgdl_accepts_whole_float_and_mmol() -> None:
    assert to_mgdl(120.0, "mg/dL") == 120
    assert to_mgdl(6.7, "mmol/L") == 121


def test_format() -> None:
    assert format_glucose(120) == "120 mg/dL"
    assert format_glucose(120, "mmol/L") == "6.7 mmol/L"

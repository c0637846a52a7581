"""jsonin: bounded nesting whatever the recursion limit, strings are not structure, and the
libraries that raise the recursion limit are imported without that effect."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoledger import jsonin


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=3),
    max_leaves=20)


@given(_json)
def test_nesting_is_the_depth_of_the_value_brackets_in_strings_do_not_count(v: Any) -> None:
    raw = json.dumps(v).encode()
    assert jsonin.nesting(raw) == _depth(v)
    if _depth(v) <= jsonin.MAX_DEPTH:
        assert jsonin.loads(raw) == v


def test_the_limit_is_exact_and_holds_with_a_raised_recursion_limit() -> None:
    ok = b"[" * 64 + b"]" * 64
    assert jsonin.nesting(ok) == 64 and jsonin.loads(ok) == json.loads(ok)
    with pytest.raises(ValueError, match="deeper than 64"):
        jsonin.loads(b"[" * 65 + b"]" * 65)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py_ecc sets on import
    try:  # without the check this overflows the C stack (a segfault, not an exception)
        for body in (b"[" * 200_000, b'{"a":' * 200_000, b'["\\"' + b"[" * 200_000):
            with pytest.raises(ValueError, match="deeper than"):
                jsonin.loads(body)
    finally:
        sys.setrecursionlimit(limit)


def _constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: refused by jsonin too


@given(st.binary(max_size=40) | _json.map(lambda v: json.dumps(v).encode())
       | st.text(max_size=20).map(lambda t: t.encode("utf-16")))
def test_loads_answers_as_json_loads_does(raw: bytes) -> None:
    """The shared decoder and the bracket count before the exact one change nothing: the
    same value, or a ValueError where json.loads raises one (UTF-16 and BOMs included)."""
    try:
        want: Any = json.loads(raw, parse_constant=_constant)
    except ValueError:
        with pytest.raises(ValueError):
            jsonin.loads(raw)
        return
    assert jsonin.loads(raw) == want


def test_nan_and_infinity_are_not_json_numbers() -> None:
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError, match="not a JSON number"):
            jsonin.loads(text)


def test_importing_the_verifier_keeps_the_recursion_limit() -> None:
    """The verifier (zk/bn254.py) no longer imports py_ecc; web3 (anchor.py) still does, under
    recursion_limit_kept."""
    import subprocess

    code = ("import sys; before = sys.getrecursionlimit(); "
            "import glucoledger.zk.groth16, glucoledger.api.routes_claims; "
            "loaded = 'py_ecc' in sys.modules; "
            "from glucoledger.jsonin import recursion_limit_kept\n"
            "with recursion_limit_kept(): import py_ecc.optimized_bn128\n"
            "print(before, sys.getrecursionlimit(), loaded, 'py_ecc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [out[0], out[0], "False", "True"], out  # limit unchanged


def test_no_digit_test_lets_int_fail() -> None:
    """``str.isdigit`` is true for '²' and other digits ``int`` refuses (a PUT with
    ``"created_at": "²"`` once answered 500): the code tests with ``isdecimal``."""
    from pathlib import Path

    assert "²".isdigit() and not "²".isdecimal()
    src = Path(__file__).resolve().parents[1] / "src" / "glucoledger"
    users = [str(p.relative_to(src)) for p in src.rglob("*.py") if ".isdigit()" in p.read_text()]
    assert users == [], users

"""Account names: one rule in one place (names.py), nothing trimmed (issue 10)."""

from __future__ import annotations

import re

import pytest

from glucoledger.errors import InputError
from glucoledger.names import MAX_NAME, NAME_PATTERN, check_name

GOOD = ["alice", "dr-lee", "dr.lee", "_svc", "a", "A9", "alice.ns-gw1", "x" * MAX_NAME]
BAD = [("", "empty"), (".", "starts with '.'"), ("..", "starts with '.'"),
       ("...", "starts with '.'"), (".hidden", "starts with '.'"), ("-rf", "starts with '-'"),
       (" dr-lee ", "character"), ("dr-lee\n", "character"), ("dr lee", "character"),
       ("dr/lee", "character"), ("a@b", "character"), ("é", "character"),
       ("x" * (MAX_NAME + 1), "longer"), ("dr-lee\x00", "character")]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass_unchanged(name: str) -> None:
    assert check_name(name) is name
    assert re.fullmatch(NAME_PATTERN.strip("^$"), name)


@pytest.mark.parametrize(("name", "why"), BAD)
def test_bad_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(InputError, match=re.escape(why)) as info:
        check_name(name)
    assert "letters, digits" in info.value.message
    assert re.fullmatch(NAME_PATTERN.strip("^$"), name) is None  # the schema agrees


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InputError, match="string"):
        check_name(7)

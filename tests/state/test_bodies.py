"""Typed bodies for every transaction type: the table, the round trip, the golden ledger.

- Every registered type names its frozen dataclass (declared beside its handler).
- ``parse`` on a well-shaped body, then ``to_body``, canonical bytes, decode and ``parse``
  again gives the same typed body (hypothesis varies the bodies); a body ``parse`` refuses
  raises MalformedError or RejectedError, nothing else.
- The golden ledger (tests/state/golden_ledger.py: 1,200 transactions of every type, most
  of them refused at some check) replays with today's code to exactly the results (codes
  and messages, which blocks hash) and the state the code before typed bodies produced.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger import codec
from glucoledger.errors import MalformedError, RejectedError
from glucoledger.state.machine import MISSING, REGISTRY, Body

from .golden_ledger import GOLDEN, SUBSTITUTES, World, added_replay, examples, golden_types, replay

ADDED = GOLDEN.with_name("golden_added.json")
EXAMPLES = examples(World())


def test_the_table_names_every_type_and_every_type_is_typed() -> None:
    assert set(EXAMPLES) == set(REGISTRY)
    for name, ttype in REGISTRY.items():
        body = ttype.body
        assert body is not None, f"{name} has no typed body"
        assert dataclasses.is_dataclass(body) and issubclass(body, Body), name
        params = body.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, f"{name}'s body is not frozen"
        assert body.__module__ == ttype.handler.__module__, (
            f"{name}'s body is not declared beside its handler")


def _round_trip(ttype: str, wire: dict[str, Any]) -> None:
    cls = REGISTRY[ttype].body
    assert cls is not None
    try:
        typed = cls.parse(wire)  # type: ignore[attr-defined]
    except (MalformedError, RejectedError):
        return
    again = codec.decode(codec.encode(typed.to_body()))
    assert cls.parse(again) == typed  # type: ignore[attr-defined]


@pytest.mark.parametrize("ttype", sorted(REGISTRY))
def test_examples_parse_and_round_trip(ttype: str) -> None:
    cls = REGISTRY[ttype].body
    typed = cls.parse(EXAMPLES[ttype])  # type: ignore[union-attr]
    wire = typed.to_body()
    assert MISSING not in wire.values()
    assert cls.parse(codec.decode(codec.encode(wire))) == typed  # type: ignore[union-attr]
    _round_trip(ttype, EXAMPLES[ttype])


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.text(max_size=8) | st.binary(max_size=40) | st.sampled_from(SUBSTITUTES),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(ttype=st.sampled_from(sorted(REGISTRY)), data=st.data())
def test_parse_refuses_as_input_error_or_round_trips(ttype: str, data: st.DataObject) -> None:
    body = dict(EXAMPLES[ttype])
    names = sorted(body)
    for name in data.draw(st.lists(st.sampled_from([*names, "zz"]), max_size=3)):
        if data.draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = data.draw(_values)
    _round_trip(ttype, body)


def test_golden_ledger_replays_to_the_same_results_and_state() -> None:
    expected = json.loads(GOLDEN.read_text())
    got = replay(golden_types())
    assert got["count"] == expected["count"] == 1202
    for ttype, results in expected["results"].items():
        assert got["results"][ttype] == results, ttype
    assert got["state"] == expected["state"]
    codes = {r[0] for v in got["results"].values() for r in v}
    assert "ok" in codes and len(codes) > 15  # the ledger reaches past the shape checks


def test_types_added_since_replay_to_the_results_they_were_introduced_with() -> None:
    expected = json.loads(ADDED.read_text())
    assert set(expected) == set(REGISTRY) - set(golden_types())
    got = added_replay()
    for ttype, results in expected.items():
        assert got[ttype] == results, ttype
    assert {"ok", "malformed"} <= {r[0] for v in got.values() for r in v}

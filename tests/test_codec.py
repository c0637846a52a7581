"""Deterministic CBOR: one value, one encoding; anything else is a MalformedError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger import codec
from glucoledger.errors import MalformedError

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@given(values)
def test_roundtrip_is_exact(v: object) -> None:
    data = codec.encode(v)
    assert codec.decode(data) == v
    assert codec.encode(codec.decode(data)) == data


@pytest.mark.parametrize(
    "hex_bytes, why",
    [
        ("a2616201616101", "keys out of order"),
        ("1817", "23 encoded in two bytes (not shortest)"),
        ("9f01ff", "indefinite-length array"),
        ("f93c00", "a float"),
        ("c11a514b67b0", "a tag (epoch date)"),
        ("a10102", "an integer map key"),
        ("a2616101616102", "duplicate key"),
        ("", "empty input"),
        ("82", "truncated array"),
        ("0101", "trailing bytes"),
    ],
)
def test_non_canonical_or_disallowed_is_refused(hex_bytes: str, why: str) -> None:
    with pytest.raises(MalformedError):
        codec.decode(bytes.fromhex(hex_bytes))


@pytest.mark.parametrize("bad", [1.5, {1: 2}, [{"a": 1.0}], 2**64, -(2**63) - 1, object()])
def test_disallowed_values_cannot_be_encoded(bad: object) -> None:
    with pytest.raises(MalformedError):
        codec.encode(bad)


def test_nesting_is_bounded() -> None:
    v: object = 1
    for _ in range(40):
        v = [v]
    with pytest.raises(MalformedError, match="deeper"):
        codec.encode(v)


def test_size_is_bounded() -> None:
    with pytest.raises(MalformedError, match="limit"):
        codec.decode(codec.encode(b"x" * 100), max_size=50)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_fuzz_decode_parses_or_raises_malformed(data: bytes) -> None:
    try:
        codec.decode(data)
    except MalformedError:
        pass


def test_signed_tx_hash_from_slice_equals_hash_of_encoding() -> None:
    from glucoledger import crypto
    from glucoledger.ledger.tx import SignedTx, Transaction, sign

    for body in ({}, {"a": [1, 2, {"b": b"x" * 300}]}, {"z" * 30: "y" * 1000}):
        tx = Transaction("c/h", "t.x", body, bytes(32), 7)
        stx = sign(tx, [crypto.generate(), crypto.generate("p256")])
        assert SignedTx.decode(stx.raw).tx_hash == tx.hash() == stx.tx_hash

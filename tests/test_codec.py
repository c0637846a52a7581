"""Deterministic CBOR: one value, one encoding; anything else is a MalformedError."""

from __future__ import annotations

import cbor2
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


# Keys of every UTF-8 length class (1-byte heads up to 23, then 24..255 and 256+ bytes) and
# of 1- to 4-byte characters, in whatever order the dict was built.
keys = (st.text(max_size=8) | st.text(min_size=20, max_size=30)
        | st.text(alphabet="a\u00e9\u20ac\U0001f600", min_size=60, max_size=70))
wide = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=30)
    | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=6) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=3000)
@given(wide)
def test_encode_is_cbor2s_canonical_encoding_bit_for_bit(v: object) -> None:
    """``encode`` orders the keys itself and writes with cbor2's plain mode: the bytes are
    exactly what cbor2's canonical mode (RFC 8949 4.2.1 for these types) writes."""
    assert codec.encode(v) == cbor2.dumps(v, canonical=True)


@given(values, st.sampled_from([0, 1, 22, 23, 24, 254, 255, 256, 65535, 65536]))
def test_append_encoded_is_the_encoding_of_the_longer_list(item: object, n: int) -> None:
    """Every head width the list's length can cross: 23 -> 24 items, 255 -> 256, 65535 ->
    65536 (the head grows by 1, 1 and 2 bytes)."""
    items = list(range(n))
    assert codec.append_encoded(codec.encode(items), item) == codec.encode([*items, item])


@pytest.mark.parametrize("not_an_array", [b"", codec.encode({"a": 1}), codec.encode(3),
                                          b"\x9f\x01\xff"])  # the last: indefinite length
def test_append_encoded_takes_only_an_array(not_an_array: bytes) -> None:
    with pytest.raises(ValueError, match="canonical encoding of an array"):
        codec.append_encoded(not_an_array, 1)


def test_append_encoded_checks_the_item_at_its_depth_in_the_list() -> None:
    deep: object = 1
    for _ in range(32):  # 32 lists deep: encodable alone, one too deep inside another list
        deep = [deep]
    codec.encode(deep)
    with pytest.raises(MalformedError):
        codec.append_encoded(codec.encode([]), deep)


@pytest.mark.parametrize("major", range(8))
@pytest.mark.parametrize("n", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
def test_encode_head_is_the_shortest_head(major: int, n: int) -> None:
    """The head cbor2 writes for an integer (major 0) or a byte string of length ``n``
    (major 2), with the major type swapped in: every width, at both ends."""
    head = cbor2.dumps(n)
    assert codec.encode_head(major, n) == bytes((major << 5 | head[0] & 31,)) + head[1:]
    if major == 4 and n < 300:
        assert codec.encode_head(4, n) == codec.encode(list(range(n)))[:len(head)]


def test_encode_head_refuses_what_no_head_holds() -> None:
    with pytest.raises(MalformedError, match="outside the 64-bit range"):
        codec.encode_head(4, 2**64)
    with pytest.raises(ValueError, match="a count or a length, not -1"):
        codec.encode_head(4, -1)


@settings(max_examples=1500)
@given(st.dictionaries(keys, wide, max_size=8), st.data())
def test_encode_with_is_the_encoding_of_the_whole_map(whole: dict[str, object],
                                                      data: st.DataObject) -> None:
    """Any entries given already encoded, at any place in the key order (first, last,
    between, all, none): the bytes are those of the whole map encoded."""
    spliced = data.draw(st.sets(st.sampled_from(sorted(whole))) if whole else st.just(set()))
    value = {k: v for k, v in whole.items() if k not in spliced}
    encoded = {k: codec.encode(whole[k]) for k in spliced}
    assert codec.encode_with(value, encoded) == codec.encode(whole)


@settings(max_examples=600)
@given(st.dictionaries(keys, wide, max_size=8), keys, values)
def test_value_span_is_where_each_value_is_encoded(whole: dict[str, object], other: str,
                                                  new: object) -> None:
    """For every key of a map: the bytes at ``value_span`` are that value's encoding, and
    putting another value's encoding there gives the map with that value, encoded. A key
    the map lacks is a KeyError, as indexing the decoded map is, wherever it would sort."""
    raw = codec.encode(whole)
    for key, value in whole.items():
        start, end = codec.value_span(raw, key)
        assert raw[start:end] == codec.encode(value)
        assert raw[:start] + codec.encode(new) + raw[end:] == codec.encode({**whole,
                                                                           key: new})
    asked = tuple(reversed(sorted(whole)))  # any order, in one walk
    assert codec.value_spans(raw, asked) == [codec.value_span(raw, k) for k in asked]
    if other not in whole:
        with pytest.raises(KeyError) as missing:
            codec.value_spans(raw, (*asked, other))
        assert missing.value.args == (other,)
    # The same map inside another value, after an item of any size: found where it lies.
    outer = codec.encode([new, whole])
    at = 1 + len(codec.encode(new))
    assert outer[at:] == raw
    assert codec.value_spans(outer, asked, at) == [(s + at, e + at)
                                                  for s, e in codec.value_spans(raw, asked)]


def test_value_span_steps_over_every_head_width() -> None:
    """Entries before the one asked for with one-, two-, three-, five- and nine-byte heads
    (a map of 30 entries, strings of 300 and 70,000 bytes, the largest integers)."""
    whole: dict[str, object] = {f"k{i:02}": i for i in range(30)}
    whole.update({"a": b"x" * 70_000, "b": "y" * 300, "c": [2**64 - 1, -(2**63)],
                  "d": {"e": [None, True, False, {"f": b"z" * 24}]}, "zz": "here"})
    raw = codec.encode(whole)
    for key in whole:
        start, end = codec.value_span(raw, key)
        assert codec.decode(raw[start:end]) == whole[key]
    assert codec.value_spans(raw, ()) == []
    with pytest.raises(ValueError, match="takes an encoded map"):
        codec.value_span(codec.encode([1, 2]), "a")
    with pytest.raises(ValueError, match="a key asked for twice"):
        codec.value_spans(raw, ("a", "zz", "a"))


def test_encode_with_refuses_as_encode_does_and_names_a_key_given_twice() -> None:
    with pytest.raises(MalformedError, match="not text"):
        codec.encode_with({1: 2}, {"a": codec.encode(1)})  # type: ignore[dict-item]
    with pytest.raises(MalformedError, match="cannot be encoded"):
        codec.encode_with({"b": 1.5}, {"a": codec.encode(1)})
    with pytest.raises(ValueError, match="both in value and in encoded"):
        codec.encode_with({"a": 1}, {"a": codec.encode(1)})
    for value in ({"b": "\ud800"}, {"\ud800": 1}, {"b": {"c": "\ud800"}}):
        with pytest.raises(MalformedError, match="lone surrogate"):
            codec.encode(value)
        with pytest.raises(MalformedError, match="lone surrogate"):
            codec.encode_with(value, {"a": codec.encode(1)})
    for value in ({"b": 2**64}, {"b": -(2**63) - 1}):
        with pytest.raises(MalformedError, match="outside the 64-bit range"):
            codec.encode_with(value, {"a": codec.encode(1)})
    with pytest.raises(MalformedError, match="cannot be encoded"):
        codec.encode_with({"b": bytearray(b"x")}, {"a": codec.encode(1)})


def test_encode_with_checks_the_entries_at_their_depth_in_the_map() -> None:
    deep: object = 1
    for _ in range(32):  # as deep as a map's value may be: one more is refused
        deep = [deep]
    with pytest.raises(MalformedError, match="deeper than 32"):
        codec.encode({"d": deep})
    with pytest.raises(MalformedError, match="deeper than 32"):
        codec.encode_with({"d": deep}, {"a": codec.encode(1)})
    codec.encode_with({"d": deep[0]}, {"a": codec.encode(1)})  # type: ignore[index]


def test_encode_keeps_the_order_when_its_memos_are_full() -> None:
    """The key and shape memos stop growing at their bound; encoding stays canonical."""
    for i in range(codec._MEMO_MAX + 50):
        v = {f"k{i}": 1, "b": {f"z{i}": [1, {f"a{i}": 2, "y": 3}]}, "aa": i}
        assert codec.encode(v) == cbor2.dumps(v, canonical=True)
        rest = {k: x for k, x in v.items() if k != "b"}  # encode_with fills _KEY_BYTES
        assert codec.encode_with(rest, {"b": codec.encode(v["b"])}) == codec.encode(v)
    assert len(codec._KEY_ORDER) <= codec._MEMO_MAX
    assert len(codec._SHAPE_ORDER) <= codec._MEMO_MAX
    assert len(codec._KEY_BYTES) <= codec._MEMO_MAX
    whole = codec.encode({f"k{i}": i for i in range(100)})
    for i in range(100):  # value_spans's questions: at most 64 kept, each answered right
        assert codec.value_spans(whole, (f"k{i}",)) == [codec.value_span(whole, f"k{i}")]
    assert len(codec._ASKED) <= 64
    long_key = {"x" * 100: 1, "y" * 99: 2}  # not memoized (over 64 characters)
    assert codec.encode(long_key) == cbor2.dumps(long_key, canonical=True)
    assert codec.encode_with({"x" * 100: 1}, {"y" * 99: b"\x02"}) == codec.encode(long_key)
    assert tuple(long_key) not in codec._SHAPE_ORDER and "x" * 100 not in codec._KEY_ORDER
    assert "x" * 100 not in codec._KEY_BYTES


def test_the_memos_keep_no_long_key() -> None:
    """Keys come from outside: a map with a long key is encoded right and not remembered,
    so what the memos hold stays small whatever maps are sent."""
    for memo in (codec._KEY_ORDER, codec._SHAPE_ORDER, codec._KEY_BYTES):
        memo.clear()  # room left: another test may have filled them, and then none remembers
    for i in range(50):
        v = {"k" + str(i) * 5000: 1, "a": 2}
        assert codec.encode(v) == cbor2.dumps(v, canonical=True)
        assert codec.encode_with({"k" + str(i) * 5000: 1}, {"a": b"\x02"}) == codec.encode(v)
    assert all(len(k) <= 64 for shape in codec._SHAPE_ORDER for k in shape)
    assert all(len(k) <= 64 for k in codec._KEY_ORDER)
    assert all(len(k) <= 64 for k in codec._KEY_BYTES)


def test_a_key_that_only_equals_text_is_refused_whatever_the_memos_hold() -> None:
    """The memos match keys by equality; a str subclass equal to a remembered key is still
    not text, first time or after the same shape was encoded with plain text keys."""

    class Name(str):
        pass

    for _ in range(2):
        with pytest.raises(MalformedError, match="not text"):
            codec.encode({Name("memo-kind"): 1, "memo-b": 2})
        assert codec.encode({"memo-kind": 1, "memo-b": 2}) == cbor2.dumps(
            {"memo-kind": 1, "memo-b": 2}, canonical=True)
    with pytest.raises(MalformedError, match="not text"):
        codec.encode([{Name("memo-kind"): 1}])


@pytest.mark.parametrize("bad", ["\ud800", {"\udfff": 1}, [{"a": "x\ud83d"}]])
def test_text_that_is_not_unicode_is_refused_with_a_reason(bad: object) -> None:
    with pytest.raises(MalformedError, match="lone surrogate"):
        codec.encode(bad)


@pytest.mark.parametrize("hex_bytes", [
    "62c328",          # a text value cut inside a character
    "a162eda08001",    # a key holding a UTF-8-encoded lone surrogate
    "8163c0af41",      # an overlong form, inside an array
])
def test_text_that_is_not_utf8_is_refused_with_what_to_send(hex_bytes: str) -> None:
    with pytest.raises(MalformedError, match="text that is not UTF-8; send UTF-8 text"):
        codec.decode(bytes.fromhex(hex_bytes))


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


@pytest.mark.parametrize("bad", [1.5, {1: 2}, [{"a": 1.0}], 2**64, -(2**63) - 1, object(),
                                 {"a": [1, (2, {3: 4})]}, {"a": {1, 2}}, bytearray(b"x"),
                                 [[2**64]], {"a": {"b": -(2**63) - 1}}])
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


@settings(max_examples=300)
@given(st.dictionaries(keys, wide, min_size=1, max_size=8), keys)
def test_a_body_field_is_taken_as_encoded_in_the_envelope(body: dict[str, object],
                                                         other: str) -> None:
    """``SignedTx.body_encoding``: each field's bytes in the envelope, as sent and as
    decoded, are what encoding the field's value gives; a field the body lacks is a
    KeyError; a transaction held without its bytes encodes the value."""
    from glucoledger import crypto
    from glucoledger.ledger.tx import SignedTx, Transaction, sign

    tx = Transaction("c/h", "t.x", body, bytes(32), 3)
    made = sign(tx, [crypto.generate()])
    assert made.raw[:10] == b"\xa2\x62tx\xa5\x64body"  # the body's map starts at byte 10
    for stx in (made, SignedTx.decode(made.raw), SignedTx(tx, made.sigs, b"", made.tx_hash)):
        for name, value in body.items():
            assert stx.body_encoding(name) == codec.encode(value)
        if other not in body:
            with pytest.raises(KeyError):
                stx.body_encoding(other)


def test_the_decoders_take_any_bytes_like_value_and_refuse_text() -> None:
    """Both builds alike: the compiled one (setup.py) checks the declared types at the call."""
    from glucoledger import crypto
    from glucoledger.ledger.block import GENESIS_PREV, BlockHeader
    from glucoledger.ledger.tx import SignedTx, Transaction, sign

    raw = codec.encode({"a": [1, b"x"]})
    stx = sign(Transaction("c/h", "t.x", {}, bytes(32), 0), [crypto.generate()])
    header = BlockHeader(chain="c/h", height=0, prev=GENESIS_PREV, time=0, tx_count=0,
                         tx_root=bytes(32), log_size=0, log_root=bytes(32), results=bytes(32),
                         cut=0)
    for kind in (bytes, bytearray, memoryview):
        assert codec.decode(kind(raw)) == {"a": [1, b"x"]}
        assert SignedTx.decode(kind(stx.raw)).raw == stx.raw
        assert BlockHeader.decode(kind(header.encode())) == header
    for wrong in ("text", None, 7):
        with pytest.raises(TypeError):
            codec.decode(wrong)  # type: ignore[arg-type]

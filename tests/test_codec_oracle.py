"""``codec.decode`` (one pass over the bytes that checks canonical form as it builds the value,
no re-encode) accepts and refuses exactly what the former check did, and gives the same
values, item types included: decode with cbor2, walk the value for allowed types and key
order, re-encode in input order, compare bytes. That former check is kept here, verbatim in
substance, as the oracle.

The inputs are built to hit every way an encoding can be non-canonical or disallowed (RFC
8949 4.2.1 and the codec's type rules): arguments longer than needed, indefinite lengths
(arrays, maps, chunked strings), keys out of order or repeated, non-text keys, floats of
every width, tags (including cbor2's string-reference and value-sharing tags, which can make
data *shorter* than canonical), other simple values, bignums, 65-bit negatives, trailing or
missing bytes, invalid UTF-8, deep nesting; plus plain random bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoledger import codec
from glucoledger.errors import MalformedError

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


def _oracle_walk(value: object, depth: int = 0) -> None:
    t = type(value)
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise MalformedError("range")
        return
    if t in (str, bytes, bool, type(None)):
        return
    if t not in (list, dict):
        raise MalformedError("type")
    if depth >= 32:
        raise MalformedError("deep")
    if t is dict:
        prev: bytes | None = None
        for key in value:  # type: ignore[attr-defined]
            if type(key) is not str:
                raise MalformedError("key type")
            kb = key.encode()
            if prev is not None and (len(kb), kb) <= (len(prev), prev):
                raise MalformedError("order")
            prev = kb
        items: Any = value.values()  # type: ignore[attr-defined]
    else:
        items = value
    for item in items:
        _oracle_walk(item, depth + 1)


def oracle_decode(data: bytes) -> object:
    """The former ``codec.decode``: decode, check types and key order, re-encode, compare."""
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 - the former decode mapped every parse failure
        raise MalformedError(f"parse {type(exc).__name__}") from None
    _oracle_walk(value)
    try:
        again = cbor2.dumps(value)
    except Exception:  # noqa: BLE001
        raise MalformedError("re-encode") from None
    if again != data:
        raise MalformedError("not canonical")
    return value


def _outcome(fn: Any, data: bytes) -> tuple[bool, object]:
    try:
        return True, fn(data)
    except MalformedError:
        return False, None


def _typed(value: object) -> object:
    """``value`` with every item's exact type beside it: ``==`` alone takes True for 1."""
    if isinstance(value, list):
        return (list, [_typed(v) for v in value])
    if isinstance(value, dict):
        return (dict, [(type(k), k, _typed(v)) for k, v in value.items()])
    return (type(value), value)


def assert_same(data: bytes) -> bool:
    ok_new, v_new = _outcome(codec.decode, data)
    ok_old, v_old = _outcome(oracle_decode, data)
    assert ok_new == ok_old, (data.hex(), ok_new, ok_old)
    if ok_new:
        assert _typed(v_new) == _typed(v_old), data.hex()
    return ok_new


# --- a deliberately sloppy encoder: every non-canonical form a sender could produce ---------

def _head(d: st.DataObject, major: int, arg: int, *, sloppy: bool) -> bytes:
    widths = [w for w, lim in ((0, 24), (1, 256), (2, 65536), (4, 1 << 32), (8, 1 << 64))
              if arg < lim]
    w = d.draw(st.sampled_from(widths)) if sloppy else widths[0]
    if w == 0:
        return bytes([major << 5 | arg])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[w]
    return bytes([major << 5 | info]) + arg.to_bytes(w, "big")


def sloppy_encode(d: st.DataObject, value: object, rate: float) -> bytes:
    """Encode ``value``, each item non-canonically with some probability."""
    sloppy = d.draw(st.floats(0, 1)) < rate
    if value is None or isinstance(value, bool):
        return {None: b"\xf6", True: b"\xf5", False: b"\xf4"}[value]
    if isinstance(value, int):
        if sloppy and d.draw(st.booleans()):
            choice = d.draw(st.sampled_from(["f16", "f32", "f64", "bignum", "tag"]))
            if choice == "f64":
                return b"\xfb" + struct.pack(">d", float(value))
            if choice == "f32":
                return b"\xfa" + struct.pack(">f", float(value))
            if choice == "f16":
                try:
                    return b"\xf9" + struct.pack(">e", float(value))
                except (OverflowError, struct.error):
                    return b"\xf9\x7c\x00"
            if choice == "bignum":
                mag = value if value >= 0 else -1 - value
                raw = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "big")
                return (b"\xc2" if value >= 0 else b"\xc3") + _head(d, 2, len(raw),
                                                                   sloppy=False) + raw
            return b"\xd8\x64" + sloppy_encode(d, value, 0.0)  # tag 100 around it
        if value >= 0:
            return _head(d, 0, value, sloppy=sloppy)
        return _head(d, 1, -1 - value, sloppy=sloppy)
    if isinstance(value, (str, bytes)):
        raw = value.encode() if isinstance(value, str) else value
        major = 3 if isinstance(value, str) else 2
        if sloppy and d.draw(st.booleans()):  # indefinite length, in chunks
            cut = d.draw(st.integers(0, len(raw)))
            parts = [raw[:cut], raw[cut:]]
            return bytes([major << 5 | 31]) + b"".join(
                _head(d, major, len(p), sloppy=False) + p for p in parts) + b"\xff"
        return _head(d, major, len(raw), sloppy=sloppy) + raw
    if isinstance(value, list):
        body = b"".join(sloppy_encode(d, v, rate) for v in value)
        if sloppy and d.draw(st.booleans()):
            return b"\x9f" + body + b"\xff"
        return _head(d, 4, len(value), sloppy=sloppy) + body
    assert isinstance(value, dict)
    pairs = [(sloppy_encode(d, k, rate), sloppy_encode(d, v, rate)) for k, v in value.items()]
    pairs.sort(key=lambda kv: kv[0])
    if sloppy:
        mess = d.draw(st.sampled_from(["shuffle", "dup", "intkey", "indef", "count", "none"]))
        if mess == "shuffle" and len(pairs) > 1:
            pairs = d.draw(st.permutations(pairs))
        elif mess == "dup" and pairs:
            i = d.draw(st.integers(0, len(pairs) - 1))
            pairs.insert(i, pairs[i])
        elif mess == "intkey":
            pairs.append((_head(d, 0, d.draw(st.integers(0, 30)), sloppy=False), b"\x01"))
        elif mess == "indef":
            return b"\xbf" + b"".join(k + v for k, v in pairs) + b"\xff"
        elif mess == "count":
            return _head(d, 5, len(pairs), sloppy=True) + b"".join(k + v for k, v in pairs)
    return _head(d, 5, len(pairs), sloppy=False) + b"".join(k + v for k, v in pairs)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1)
    | st.text(max_size=30) | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=26), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=1500)
@given(st.data(), values, st.sampled_from([0.0, 0.05, 0.3, 1.0]))
def test_sloppy_encodings_same_verdict_as_reencode_oracle(d: st.DataObject, v: object,
                                                           rate: float) -> None:
    data = sloppy_encode(d, v, rate)
    accepted = assert_same(data)
    if rate == 0.0 and (not isinstance(v, int) or _INT_MIN <= v):
        assert accepted or _oracle_walk_fails(v)


def _oracle_walk_fails(v: object) -> bool:
    try:
        _oracle_walk(v)
    except MalformedError:
        return True
    return False


@settings(max_examples=1500)
@given(st.binary(max_size=80))
def test_random_bytes_same_verdict_as_oracle(data: bytes) -> None:
    assert_same(data)


@settings(max_examples=800)
@given(st.data(), values)
def test_canonical_with_one_byte_changed_same_verdict(d: st.DataObject, v: object) -> None:
    try:
        data = codec.encode(v)
    except MalformedError:
        return
    i = d.draw(st.integers(0, len(data) - 1))
    b = d.draw(st.integers(0, 255))
    mutated = data[:i] + bytes([b]) + data[i + 1:]
    assert_same(mutated)
    assert_same(data + bytes([b]))
    assert_same(data[:i])


# Named cases: each non-canonical or disallowed form, refused by both.
REFUSED = [
    ("a2616201616101", "keys out of order"),
    ("a2616101616102", "duplicate key"),
    ("a3616101616102616101", "duplicate key, not adjacent-equal order"),
    ("a1010102", "integer map key (count 1, trailing)"),
    ("a10102", "integer map key"),
    ("a1f401", "boolean map key"),
    ("a1410001", "byte-string map key"),
    ("1817", "23 in two bytes"),
    ("190017", "23 in three bytes"),
    ("1a000000ff", "255 in five bytes"),
    ("1b00000000ffffffff", "2**32-1 in nine bytes"),
    ("3817", "-24 in two bytes"),
    ("5801aa", "byte-string length in two bytes"),
    ("780161", "text length in two bytes"),
    ("980101", "array count in two bytes"),
    ("b801616101", "map count in two bytes"),
    ("9f01ff", "indefinite array"),
    ("bf616101ff", "indefinite map"),
    ("5f4101ff", "indefinite byte string"),
    ("7f6161ff", "indefinite text string"),
    ("f93c00", "half float"),
    ("fa3f800000", "single float"),
    ("fb3ff0000000000000", "double float"),
    ("f7", "undefined"),
    ("f0", "simple value 16"),
    ("f820", "simple value 32"),
    ("c11a514b67b0", "tag 1 (epoch date)"),
    ("c249010000000000000000", "bignum 2**64"),
    ("c240", "bignum zero"),
    ("3bffffffffffffffff", "-2**64 (outside 64-bit range)"),
    ("3b8000000000000000", "-2**63-1"),
    ("d9010082616163d81900", "string references (tag 256, 25)"),
    ("d81c8101", "value sharing (tag 28)"),
    ("1c", "reserved additional information 28"),
    ("ff", "a lone break"),
    ("", "empty input"),
    ("82", "truncated array"),
    ("6261", "truncated text"),
    ("19", "truncated argument"),
    ("0101", "trailing bytes"),
    ("62c328", "invalid UTF-8"),
    ("81" * 33 + "01", "33 nested arrays"),
]


@pytest.mark.parametrize("hex_bytes, why", REFUSED, ids=[w for _, w in REFUSED])
def test_named_forms_refused_by_both(hex_bytes: str, why: str) -> None:
    data = bytes.fromhex(hex_bytes)
    with pytest.raises(MalformedError):
        oracle_decode(data)
    with pytest.raises(MalformedError):
        codec.decode(data)


def _nested(n: int) -> object:
    v: object = 1
    for _ in range(n):
        v = [v]
    return v


ACCEPTED = [
    ("3b7fffffffffffffff", -(2**63)),
    ("1bffffffffffffffff", 2**64 - 1),
    ("81" * 32 + "01", _nested(32)),
    ("a2616101626161f6", {"a": 1, "aa": None}),
    ("a2617a0162616180", {"z": 1, "aa": []}),
    ("a17818" + "61" * 24 + "f5", {"a" * 24: True}),
]


@pytest.mark.parametrize("hex_bytes, expected", ACCEPTED)
def test_named_forms_accepted_by_both(hex_bytes: str, expected: object) -> None:
    data = bytes.fromhex(hex_bytes)
    assert assert_same(data)
    assert codec.decode(data) == expected


def test_decode_spans_name_the_top_level_items() -> None:
    data = codec.encode({"tx": {"a": [1, 2]}, "sigs": [b"x"]})
    value, starts = codec.decode_spans(data)
    assert value == {"tx": {"a": [1, 2]}, "sigs": [b"x"]}
    assert len(starts) == 4
    assert codec.decode(data[starts[1]:starts[2]]) == {"a": [1, 2]}
    assert codec.decode(data[starts[3]:]) == [b"x"]
    # Keys and values alternate; an array's items; nothing inside the top level; a scalar.
    assert [codec.decode(data[a:b]) for a, b in zip(starts, starts[1:], strict=False)] == [
        "tx", {"a": [1, 2]}, "sigs"]
    items = [b"ab", [True, None], -7, {"k": False}]
    data = codec.encode(items)
    value, starts = codec.decode_spans(data)
    assert value == items and len(starts) == 4
    ends = [*starts[1:], len(data)]
    assert [codec.decode(data[a:b]) for a, b in zip(starts, ends, strict=True)] == items
    assert codec.decode_spans(codec.encode("text")) == ("text", [])


def test_the_key_memo_stays_bounded_whatever_keys_arrive() -> None:
    """Map keys come from outside: the decoder remembers only short ones, and only so many."""
    for i in range(codec._MEMO_MAX + 200):
        long_key, short_key = f"{i:0>70}", f"k{i}"
        assert codec.decode(codec.encode({short_key: i, long_key: i})) == {
            short_key: i, long_key: i}
    assert len(codec._KEYS) <= codec._MEMO_MAX
    assert all(len(encoded) <= 64 for encoded in codec._KEYS)
    assert all(codec.decode(encoded) == key for encoded, key in codec._KEYS.items())

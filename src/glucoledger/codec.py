"""The one canonical encoding: deterministic CBOR (RFC 8949 section 4.2.1, core deterministic).

Everything glucoledger hashes or signs is encoded here, so the same value gives the same bytes
on every node, every time.

Invariants:
- Only these types: int (64-bit range), str, bytes, bool, None, list/tuple, and dict with str
  keys. No floats (values that need fractions are carried as integers in a stated unit), no
  tags, no indefinite lengths.
- Map keys are sorted bytewise by their encoding (for text keys, RFC 8949 4.2.1 and the older
  length-first rule coincide); integers and lengths use the shortest form.
- ``decode`` accepts only canonical bytes, so one value has exactly one encoding and a hash
  names exactly one value. It checks canonical form on the bytes themselves, in one pass over
  the item heads (``_scan``), before cbor2's C decoder builds the value; nothing is re-encoded.
  ``tests/test_codec_oracle.py`` proves, against the former decode-and-re-encode check as an
  oracle, that both accept and refuse exactly the same inputs.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import InputError, MalformedError

__all__ = ["MAX_ENCODED", "Value", "decode", "decode_authenticated", "decode_spans",
           "decode_trusted", "encode", "parse_hex_id"]

#: Largest encoded object accepted anywhere (a transaction, a block header, a proof): 1 MiB.
MAX_ENCODED = 1 << 20

Value = Any  # int | str | bytes | bool | None | list[Value] | dict[str, Value]

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


_SCALARS = frozenset({int, str, bytes, bool, type(None)})
_CONTAINERS = frozenset({list, tuple, dict})
_NONE = type(None)


def _bad_type(t: type, verb: str) -> MalformedError:
    return MalformedError(f"type {t.__name__} {verb}; use int, str, bytes, bool, None, list "
                          "or dict")


def _walk(value: object, *, tuples: bool, verb: str) -> None:
    """Reject anything outside the allowed types. Iterative (this runs on every encode), and
    scalars are checked where they are met rather than pushed: most values are scalars."""
    t = type(value)
    if t in _SCALARS:
        if t is int and not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise MalformedError(f"integer {value} is outside the 64-bit range")
        return
    if t not in _CONTAINERS or (t is tuple and not tuples):
        raise _bad_type(t, verb)
    stack: list[tuple[object, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth = pop()
        if depth >= 32:
            raise MalformedError("value nests deeper than 32 levels; flatten it")
        if type(v) is dict:
            for key in v:
                if type(key) is not str:
                    raise MalformedError(f"map key {key!r} is not text; only text keys are allowed")
            items = v.values()
        else:
            items = v  # type: ignore[assignment]
        for item in items:
            ti = type(item)
            if ti is str or ti is bytes or ti is _NONE or ti is bool:
                continue
            if ti is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    raise MalformedError(f"integer {item} is outside the 64-bit range")
            elif ti is list or ti is dict or (ti is tuple and tuples):
                push((item, depth + 1))
            else:
                raise _bad_type(ti, verb)


def _check(value: object) -> None:
    """Reject anything outside the allowed types."""
    _walk(value, tuples=True, verb="cannot be encoded")


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises MalformedError for a type outside the allowed set."""
    _check(value)
    data: bytes = cbor2.dumps(value, canonical=True)
    return data


_MAX_DEPTH = 32
_NEG_LIMIT = 1 << 63  # major type 1 holds -1 - arg; arg < 2**63 keeps it in the 64-bit range
_NOT_CANONICAL = ("CBOR is not in canonical form (RFC 8949 4.2.1): re-encode it with sorted "
                  "keys, shortest integers and definite lengths")


def _table() -> tuple[bytes, tuple[int, ...]]:
    """Per initial byte: what kind of head it starts, and its argument width in bytes."""
    kind = bytearray(256)  # 0: refused; 1: one-byte scalar; 2: int; 3: neg int; 4: string;
    width = [0] * 256      # 5: array; 6: map
    for b in range(256):
        major, info = b >> 5, b & 31
        if major == 7:
            kind[b] = 1 if info in (20, 21, 22) else 0
            continue
        if major == 6 or info >= 28:
            continue  # tags; reserved and indefinite lengths
        kind[b] = (2, 3, 4, 4, 5, 6)[major]
        width[b] = 0 if info < 24 else 1 << (info - 24)
    return bytes(kind), tuple(width)


_KIND, _WIDTH = _table()
_SHORTEST_FOR = {1: 24, 2: 256, 4: 65536, 8: 1 << 32}


def _refusal(head: int) -> MalformedError:
    major, info = head >> 5, head & 31
    if major == 7:
        return MalformedError("CBOR floats and simple values other than false, true and null "
                              "are not allowed; carry fractions as integers")
    if major == 6:
        return MalformedError("CBOR tags are not allowed; send plain values")
    if info == 31:
        return MalformedError(_NOT_CANONICAL)
    return MalformedError("not valid CBOR: reserved additional information")


def _scan(data: bytes) -> list[int]:
    """Check that ``data`` is exactly one item in canonical form of the allowed types.

    One pass over the item heads (RFC 8949 section 3), without building any value:
    - every argument (integer, length, count) in its shortest form (4.2.1), no indefinite
      lengths (additional info 31) nor reserved ones (28-30);
    - major types 0-5 only, plus the simple values false, true and null: no tags (6), no
      floats, no other simple values;
    - negative integers within the 64-bit range (-2**63 and up);
    - map keys are text, and each key's encoded bytes sort strictly after the previous key's
      (bytewise, 4.2.1; so no key repeats);
    - at most 32 nested containers; and no byte after the item, none missing.

    Text is checked to be UTF-8 by the decoder that follows. Returns where each item directly
    inside the top-level container starts (for a map, keys and values alternate), so callers
    can hash an inner item's bytes as received. Raises MalformedError.
    """
    end = len(data)
    if not end:
        raise MalformedError("not valid CBOR: empty input")
    kinds, widths = _KIND, _WIDTH
    pos = 0
    starts: list[int] = []
    stack: list[tuple[int, bool, bytes]] = []
    # The current container: items (map entries) left, is a map, previous key's encoding.
    left, is_map, prev = 1, False, b""
    try:
        while True:
            if not left:
                if not stack:
                    break
                left, is_map, prev = stack.pop()
                continue
            left -= 1
            top = len(stack) == 1
            if is_map:  # the key first: text, after the previous key
                if top:
                    starts.append(pos)
                head = data[pos]
                if kinds[head] != 4 or head < 0x60:
                    raise MalformedError("map key is not text; only text keys are allowed")
                w = widths[head]
                if w:
                    arg = int.from_bytes(data[pos + 1:pos + 1 + w], "big")
                    if arg < _SHORTEST_FOR[w]:
                        raise MalformedError(_NOT_CANONICAL)
                else:
                    arg = head & 31
                stop = pos + 1 + w + arg
                if stop > end:
                    raise IndexError
                key = data[pos:stop]
                if key <= prev:
                    raise MalformedError(
                        "CBOR map keys are not in canonical order (RFC 8949 4.2.1), or "
                        "repeat; re-encode it deterministically")
                prev = key
                pos = stop
            if top:
                starts.append(pos)
            head = data[pos]
            kind = kinds[head]
            w = widths[head]
            if w:
                if pos + 1 + w > end:
                    raise IndexError
                arg = int.from_bytes(data[pos + 1:pos + 1 + w], "big")
                if arg < _SHORTEST_FOR[w]:
                    raise MalformedError(_NOT_CANONICAL)
            else:
                arg = head & 31
            pos += 1 + w
            if kind == 4:
                pos += arg
                if pos > end:
                    raise IndexError
            elif kind >= 5:
                if len(stack) >= _MAX_DEPTH:
                    raise MalformedError("value nests deeper than 32 levels; flatten it")
                stack.append((left, is_map, prev))
                left, is_map, prev = arg, kind == 6, b""
            elif kind == 3:
                if arg >= _NEG_LIMIT:
                    raise MalformedError(f"integer {-1 - arg} is outside the 64-bit range")
            elif not kind:
                raise _refusal(head)
    except IndexError:
        raise MalformedError("not valid CBOR: the input ends inside an item") from None
    if pos != end:
        raise MalformedError(_NOT_CANONICAL if pos < end else
                             "not valid CBOR: the input ends inside an item")
    return starts


def decode_spans(data: bytes, *, max_size: int = MAX_ENCODED) -> tuple[Value, list[int]]:
    """``decode``, and where each item directly inside the top-level container starts."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("decode takes bytes")
    if len(data) > max_size:
        raise MalformedError(f"encoded object is {len(data)} bytes; the limit is {max_size}")
    data = bytes(data)
    starts = _scan(data)
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            EOFError, KeyError, IndexError) as exc:  # invalid UTF-8 in a text string
        raise MalformedError(f"not valid CBOR: {type(exc).__name__}") from None
    return value, starts


def decode(data: bytes, *, max_size: int = MAX_ENCODED) -> Value:
    """Decode canonical CBOR bytes.

    Raises MalformedError when the bytes are too large, do not parse, hold a disallowed type,
    or are not the canonical encoding of what they hold; TypeError for a non-bytes argument.
    """
    return decode_spans(data, max_size=max_size)[0]


def decode_trusted(data: bytes) -> Value:
    """Decode bytes this process encoded itself (state values): no canonical re-check.

    Never use it on bytes from outside; ``verify`` re-derives every stored value anyway.
    """
    return cbor2.loads(data)


def decode_authenticated(data: bytes) -> Value:
    """Decode bytes this node encoded and authenticated (the plaintext of a blob whose
    AES-GCM tag verified under its data key): no canonical re-scan. Raises MalformedError
    when they do not parse (they always do unless the node wrote garbage)."""
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            EOFError, KeyError, IndexError) as exc:
        raise MalformedError(f"not valid CBOR: {type(exc).__name__}") from None


def encode_unchecked(value: Value) -> bytes:
    """``encode`` (sorted keys, canonical) for values built by validated types (records,
    batches), without re-walking the value to check its types: a hot path of ingest."""
    data: bytes = cbor2.dumps(value, canonical=True)
    return data


def parse_hex_id(text: str, what: str) -> bytes:
    """A 32-byte id (a transaction hash, an account id) typed as 64 hex digits, as every edge
    prints them. Raises InputError (code ``bad_input``) saying ``what`` it should be."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InputError(f"{what} is 64 hex digits (as printed when it was created)")
    return value

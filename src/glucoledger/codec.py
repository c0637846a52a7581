"""The one canonical encoding: deterministic CBOR (RFC 8949 section 4.2.1, core deterministic).

Everything glucoledger hashes or signs is encoded here, so the same value gives the same bytes
on every node, every time.

Invariants:
- Only these types: int (64-bit range), str, bytes, bool, None, list/tuple, and dict with str
  keys. No floats (values that need fractions are carried as integers in a stated unit), no
  tags, no indefinite lengths.
- Map keys are sorted bytewise by their encoding (for text keys, RFC 8949 4.2.1 and the older
  length-first rule coincide); integers and lengths use the shortest form.
- ``decode`` accepts only canonical bytes: it decodes and re-encodes, and any difference is a
  MalformedError. So one value has exactly one encoding and a hash names exactly one value.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import InputError, MalformedError

__all__ = ["MAX_ENCODED", "Value", "decode", "decode_trusted", "encode", "parse_hex_id"]

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


def _walk(value: object, *, sorted_keys: bool, tuples: bool, verb: str) -> None:
    """Reject anything outside the allowed types; with ``sorted_keys``, also maps whose keys
    are not in canonical order. Iterative (this runs on every decode and encode), and scalars
    are checked where they are met rather than pushed: most values are scalars."""
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
            prev: bytes | None = None
            for key in v:
                if type(key) is not str:
                    raise MalformedError(f"map key {key!r} is not text; only text keys are allowed")
                if sorted_keys:
                    kb = key.encode()
                    if prev is not None and (len(kb), kb) <= (len(prev), prev):
                        raise MalformedError(
                            "CBOR map keys are not in canonical order (RFC 8949 4.2.1), or "
                            "repeat; re-encode it deterministically")
                    prev = kb
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
    _walk(value, sorted_keys=False, tuples=True, verb="cannot be encoded")


def _check_canonical_maps(value: object) -> None:
    """After a decode: allowed types only, and every map's keys in canonical order.

    With key order checked here, re-encoding in *input* order (cbor2 keeps it) and comparing
    bytes proves the rest of canonical form (shortest integers and lengths, definite lengths),
    without the cost of a sorting encoder on every decode.
    """
    _walk(value, sorted_keys=True, tuples=False, verb="is not allowed")


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises MalformedError for a type outside the allowed set."""
    _check(value)
    data: bytes = cbor2.dumps(value, canonical=True)
    return data


def decode(data: bytes, *, max_size: int = MAX_ENCODED) -> Value:
    """Decode canonical CBOR bytes.

    Raises MalformedError when the bytes are too large, do not parse, hold a disallowed type,
    or are not the canonical encoding of what they hold.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("decode takes bytes")
    if len(data) > max_size:
        raise MalformedError(f"encoded object is {len(data)} bytes; the limit is {max_size}")
    try:
        value = cbor2.loads(bytes(data))
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            EOFError, KeyError, IndexError) as exc:  # all mean "does not parse"
        raise MalformedError(f"not valid CBOR: {type(exc).__name__}") from None
    _check_canonical_maps(value)
    try:
        again = cbor2.dumps(value)  # input key order, which was just checked to be canonical
    except (cbor2.CBOREncodeError, ValueError, TypeError):  # pragma: no cover - filtered above
        raise MalformedError("value cannot be re-encoded") from None
    if again != bytes(data):
        raise MalformedError(
            "CBOR is not in canonical form (RFC 8949 4.2.1): re-encode it with sorted keys, "
            "shortest integers and definite lengths"
        )
    return value


def decode_trusted(data: bytes) -> Value:
    """Decode bytes this process encoded itself (state values): no canonical re-check.

    Never use it on bytes from outside; ``verify`` re-derives every stored value anyway.
    """
    return cbor2.loads(data)


def encode_trusted(value: Value) -> bytes:
    """Re-encode a value ``decode`` just returned, in its (already canonical) key order."""
    data: bytes = cbor2.dumps(value)
    return data


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

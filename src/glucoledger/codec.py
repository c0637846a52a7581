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

from .errors import MalformedError

__all__ = ["MAX_ENCODED", "Value", "decode", "encode"]

#: Largest encoded object accepted anywhere (a transaction, a block header, a proof): 1 MiB.
MAX_ENCODED = 1 << 20

Value = Any  # int | str | bytes | bool | None | list[Value] | dict[str, Value]

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


def _check(value: object, depth: int = 0) -> None:
    if depth > 32:
        raise MalformedError("value nests deeper than 32 levels; flatten it")
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise MalformedError(f"integer {value} is outside the 64-bit range")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedError(f"map key {key!r} is not text; only text keys are allowed")
            _check(item, depth + 1)
        return
    raise MalformedError(
        f"type {type(value).__name__} cannot be encoded; use int, str, bytes, bool, None, "
        "list or dict"
    )


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
    except Exception as exc:  # cbor2 raises several types, all meaning "does not parse"
        raise MalformedError(f"not valid CBOR: {type(exc).__name__}") from None
    _check(value)
    try:
        again = cbor2.dumps(value, canonical=True)
    except Exception:  # pragma: no cover - _check already filtered unencodable types
        raise MalformedError("value cannot be re-encoded canonically") from None
    if again != bytes(data):
        raise MalformedError(
            "CBOR is not in canonical form (RFC 8949 4.2.1): re-encode it with sorted keys, "
            "shortest integers and definite lengths"
        )
    return value

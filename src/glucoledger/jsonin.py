"""JSON from outside (request bodies, uploads), parsed with bounded nesting.

CPython's json scanner recurses in C once per nesting level and relies on the interpreter's
recursion limit to stop: at the default (1,000) a body of 100,000 ``[`` raises
RecursionError, but any library that raises the limit for its own recursion (py_ecc sets
100,000 on import, py-evm 12,288) turns the same body into a C stack overflow that kills the
process: one request would stop the node. So the depth is measured before parsing, on the
bytes, whatever the recursion limit is: string literals are removed (JSON's own string
syntax, RFC 8259 section 7) and the brackets left are counted. For malformed input the count
can only be too high (an unterminated string's brackets are counted), never too low.

Also refused: NaN and the infinities (not JSON numbers, RFC 8259 section 6).

The module can stand in for ``json`` where a library takes one (python-socketio's ``json=``):
``loads`` and ``dumps`` as the standard library's. ``recursion_limit_kept`` goes around
imports of libraries that raise the limit (py_ecc, and web3 through it), so the process
keeps CPython's default protection as well.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

__all__ = ["MAX_DEPTH", "dumps", "loads", "nesting", "recursion_limit_kept"]

dumps = json.dumps

#: Deeper than any Nightscout, FHIR or glucoledger document (they nest a few levels).
MAX_DEPTH: Final = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting(raw: bytes) -> int:
    """The deepest bracket nesting of ``raw`` outside string literals."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


#: One decoder for every call (``json.loads`` with an argument builds a new one each time).
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


@contextmanager
def recursion_limit_kept() -> Iterator[None]:
    """Restore the interpreter's recursion limit after the block (a third-party import)."""
    limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``raw`` parsed; ValueError (with a message a sender can act on) if it is not JSON, uses
    NaN or Infinity, or nests deeper than ``max_depth``."""
    data = raw.encode() if isinstance(raw, str) else raw
    # As many opening brackets as allowed levels (counted in strings too) cannot nest deeper:
    # most bodies, checked in C; the exact count only for the rest.
    if data.count(b"[") + data.count(b"{") > max_depth and nesting(data) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    try:
        # json.loads's own steps for bytes: the encoding from the first bytes (a UTF-8 BOM
        # stripped), lone surrogates kept for the decoder to refuse or pass as json does.
        return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None

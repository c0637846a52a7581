"""A record's annex: what its source document said besides the record, as canonical JSON text.

Uploaders send more than glucoledger models (Nightscout documents carry device names, pump
event ids, xDrip+ raw sensor values...). A record may keep that as its ``ns`` annex so the
document reads back as it was sent (interop/nightscout.py decides what goes in it).

Invariants:
- An annex is the canonical JSON text of an object: keys sorted, no whitespace, UTF-8 as is
  (no ASCII escapes), ints as digits and floats as Python's shortest round-trip repr, so one
  object has exactly one text, ``annex_value(annex_text(v)) == v``, and an int stays an int
  and a float a float. NaN and infinities are refused (RFC 8259 has no such numbers).
- The canonical CBOR codec never sees a float: the annex is a text string to it.
- At most ``MAX_ANNEX_CHARS`` characters; the interop layer applies tighter bounds per kind.
"""

from __future__ import annotations

import json
from typing import Any, Final

from .. import jsonin
from ..errors import MalformedError, OutOfRangeError

__all__ = ["MAX_ANNEX_CHARS", "annex_text", "annex_value", "check_annex"]

#: Largest annex a record may carry (a Nightscout profile with a few named profiles fits).
MAX_ANNEX_CHARS: Final = 65_536


def annex_text(value: dict[str, Any]) -> str:
    """The canonical JSON text of ``value``.

    Raises ValueError (a NaN or infinity) or TypeError (a type JSON does not have).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def annex_value(text: str) -> dict[str, Any]:
    """The object an annex text holds. Raises MalformedError if it is not a JSON object."""
    try:
        value = jsonin.loads(text)
    except ValueError:
        raise MalformedError("the record's annex (ns) is not JSON text") from None
    if not isinstance(value, dict):
        raise MalformedError("the record's annex (ns) is not a JSON object")
    return value


def check_annex(text: object) -> None:
    """Accept None or the canonical JSON text of an object of 2..MAX_ANNEX_CHARS characters.

    Raises MalformedError (not text, not a JSON object, not canonical) or OutOfRangeError
    (too long).
    """
    if text is None:
        return
    if not isinstance(text, str):
        raise MalformedError(f"the record's annex (ns) must be text, not {type(text).__name__}")
    if not 2 <= len(text) <= MAX_ANNEX_CHARS:
        raise OutOfRangeError(f"the record's annex (ns) is {len(text)} characters; "
                              f"2..{MAX_ANNEX_CHARS} allowed")
    value = annex_value(text)
    try:
        again = annex_text(value)
    except ValueError:  # 1e400 parses as an infinity
        raise MalformedError("the record's annex (ns) holds a number out of range") from None
    if again != text:
        raise MalformedError("the record's annex (ns) is not canonical JSON (sorted keys, no "
                             "whitespace, shortest numbers): write it with annex_text")

"""Account names: the one rule, checked in one place (issue 10, strict input).

A name is local to a node (its address book; the ledger knows only account ids). It is

- 1 to ``MAX_NAME`` characters of ASCII letters, digits, ``.``, ``-`` and ``_``;
- not starting with ``.`` or ``-`` (no hidden wallet files, nothing a shell reads as an
  option: ``.``, ``..``, ``-rf`` are refused);
- taken exactly as typed: never trimmed, never case-folded. ``" dr-lee "`` and
  ``"dr-lee\\n"`` are refused, not turned into ``dr-lee``.

Every edge (HTTP bodies and paths, portal forms, the CLI, the registry) calls
:func:`check_name`, or uses :data:`NAME_PATTERN` where a schema needs a regular expression.
"""

from __future__ import annotations

import re

from .errors import InputError

__all__ = ["MAX_NAME", "NAME_PATTERN", "RESERVED", "check_name"]

MAX_NAME = 48
#: The rule as one regular expression, for schemas (pydantic's regex engine: ``$`` is the end).
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}$"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}")
#: Names the node uses for itself.
RESERVED = frozenset({"org", "node"})


def check_name(name: object, *, what: str = "account name") -> str:
    """``name`` unchanged if it follows the rule; InputError saying what is wrong otherwise."""
    if not isinstance(name, str):
        raise InputError(f"the {what} must be a string")
    if _NAME.fullmatch(name) is None:
        shown = repr(name[:MAX_NAME + 2])
        if not name:
            why = "it is empty"
        elif len(name) > MAX_NAME:
            why = f"it is longer than {MAX_NAME} characters"
        elif name[0] in ".-":
            why = f"it starts with {name[0]!r}"
        else:
            why = "it has a character other than letters, digits, '.', '-' or '_'"
        raise InputError(f"{what} {shown} is not accepted: {why}. Use 1-{MAX_NAME} letters, "
                         "digits, '.', '-' or '_', starting with a letter, digit or '_', "
                         "with no spaces")
    return name

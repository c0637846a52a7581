"""Field checks and times of Nightscout documents (split from interop/nightscout.py). Pure.

- ``check_shape``: what a document may hold at all (no Mongo operator or dotted keys, bounded
  depth and strings, Unicode text, finite numbers in 64 bits);
- ``time_of``: when a document happened, first time field present (``TIMES``), with its UTC
  offset; a node-stamped ``SERVER_TIME`` (interop/nsaccept.py) orders it instead, while
  ``key_time`` keeps the device's own time in its identity so a retry is the same document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..errors import MalformedError, OutOfRangeError
from ..glucose.readings import MAX_TIME_MS, MIN_TIME_MS, parse_time

__all__ = ["MAX_DEPTH", "MAX_DOCS", "MAX_STRING", "SERVER_TIME", "TIMES", "check_shape", "key_time",
           "num", "server_time", "time_of", "time_raw"]

MAX_DOCS: Final = 10_000
MAX_DEPTH: Final = 8
MAX_STRING: Final = 4_096
_KEY: Final = re.compile(r"^[A-Za-z0-9_@ -]{1,64}$")
_INT_LIMIT: Final = 1 << 63
#: Where the node marks a document's server time (a document sent without a time, or from a
#: device clock running ahead): ``{"ms": <server epoch ms>, "reason": "..."}``.
SERVER_TIME: Final = "glucoledgerServerTime"
#: Where each collection's documents say when they happened, first present wins.
TIMES: Final = {"entries": ("date", "dateString", "sysTime"),
                 "treatments": ("created_at", "timestamp", "date", "mills"),
                 "devicestatus": ("created_at", "date", "mills"),
                 "profile": ("startDate", "created_at", "mills", "date")}


def check_shape(value: Any, where: str = "body", depth: int = 0) -> None:
    """Refuse Mongo operator keys, dotted keys, deep nesting, huge strings, text that is not
    Unicode (lone surrogates) and numbers JSON cannot carry. Raises MalformedError."""
    if depth > MAX_DEPTH:
        raise MalformedError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not _KEY.match(k):
                raise MalformedError(
                    f"{where} has the field name {str(k)[:40]!r}: names are 1-64 letters, "
                    "digits, spaces, _ @ or - (no $ operators, no dots)")
            check_shape(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_DOCS:
            raise MalformedError(f"{where} holds {len(value)} items; at most {MAX_DOCS}")
        for i, v in enumerate(value):
            check_shape(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise MalformedError(f"{where} is a string of {len(value)} characters; at most "
                                 f"{MAX_STRING}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedError(f"{where} is not Unicode text (a lone surrogate \\ud8xx)"
                                 ) from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedError(f"{where} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise MalformedError(f"{where} is a whole number outside the 64-bit range")
    elif value is not None and not isinstance(value, bool):
        raise MalformedError(f"{where} has a value of type {type(value).__name__}")


def num(doc: Mapping[str, Any], name: str, what: str, *, required: bool = True) -> float | None:
    if name not in doc or doc[name] is None:
        if required:
            raise MalformedError(f"{what} is missing the field {name!r}")
        return None
    v = doc[name]
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise MalformedError(f"{what}: {name} {v[:40]!r} is not a number") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MalformedError(f"{what}: {name} must be a number, not {type(v).__name__}")
    return float(v)


def _utc_offset(doc: Mapping[str, Any]) -> int:
    """The document's ``utcOffset`` (minutes) when it is one a clock can have, else 0."""
    offset = doc.get("utcOffset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not -720 <= offset <= 840:
        return 0
    return offset


def _text_offset(doc: Mapping[str, Any], names: Iterable[str]) -> int:
    """The UTC offset of the first ISO time text among ``names`` that has one, else 0."""
    for name in names:
        v = doc.get(name)
        if isinstance(v, str) and not v.isdecimal():
            try:
                off = parse_time(v)[1]
            except MalformedError:
                continue
            if off and -720 <= off <= 840:
                return off
    return 0


def server_time(doc: Mapping[str, Any]) -> int | None:
    """The server time a document was stamped with (``SERVER_TIME``), if any.

    The node stamps a document that has no time, or whose device clock runs ahead
    (nsaccept.stamp); the stamp, not the device time, then orders the record."""
    mark = doc.get(SERVER_TIME)
    if isinstance(mark, dict):
        ms = mark.get("ms")
        if isinstance(ms, int) and not isinstance(ms, bool):
            return ms
    return None


def time_of(doc: Mapping[str, Any], names: tuple[str, ...], what: str) -> tuple[int, int]:
    """Epoch ms and UTC offset (minutes) from the first time field present.

    A time in UTC (epoch ms, or ISO text ending in Z) takes its offset from ``utcOffset``,
    else from another time field written in local time (xDrip+ sends ``date`` in epoch ms
    and ``dateString`` as ``...T08:00:00.000+0100``): "08:00 at home" should stay 08:00.
    """
    stamped = server_time(doc)
    if stamped is not None:
        try:
            off = time_raw(doc, names, what)[1]
        except MalformedError:
            off = 0
        t = stamped
    else:
        t, off = time_raw(doc, names, what)
    if not MIN_TIME_MS <= t <= MAX_TIME_MS:
        raise OutOfRangeError(f"{what}: time {t} ms is outside 2000..2100; check the device "
                              "clock and that the time is in milliseconds")
    return t, off if off != 0 else _utc_offset(doc) or _text_offset(doc, names)


def key_time(doc: Mapping[str, Any], names: tuple[str, ...], t: int) -> int:
    """The time in a document's identity: the device's own when it sent one (so a retry of
    a document stamped for a clock running ahead is the same document), else ``t``."""
    if server_time(doc) is None:
        return t
    try:
        return time_raw(doc, names, "document")[0]
    except MalformedError:
        return t


def time_raw(doc: Mapping[str, Any], names: Iterable[str], what: str) -> tuple[int, int]:
    for name in names:
        v = doc.get(name)
        if v is None:
            continue
        if isinstance(v, bool):
            raise MalformedError(f"{what}: {name} must be a time, not a bool")
        if isinstance(v, float) and math.isfinite(v):
            v = int(v)
        if isinstance(v, int):
            return v, 0
        if isinstance(v, str):
            if v.isdecimal() and len(v) <= 16:
                return int(v), 0
            text = v.replace("Z", "+00:00") if v.endswith("Z") else v
            try:
                t, off = parse_time(text)
            except MalformedError as exc:
                raise MalformedError(f"{what}: {name}: {exc.message}") from None
            return t, off or 0
        raise MalformedError(f"{what}: {name} must be epoch ms or ISO 8601 text")
    raise MalformedError(f"{what} has no time: send one of {', '.join(names)}")

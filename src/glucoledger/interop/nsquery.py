"""Nightscout v1 ``find``/``count`` queries over documents read back. Pure.

What clients send (Nightscout ``lib/server/query.js`` semantics, the subset in use):

- a time window on any time field, ``find[date][$gte]=<ms>``, ``find[created_at][$gte]=<ISO>``,
  ``find[dateString][$lte]=...`` (``$gte``, ``$gt``, ``$lte``, ``$lt``, ``$eq``): applied to the
  document's time (the record's time), whichever time field is named, so it works the same on
  entries, treatments, devicestatus and profiles. The window also narrows the consent request.
- conditions on other fields: ``find[eventType]=Temp Basal`` (equality), ``$ne``,
  ``$exists`` (``true``/``false``), ``$gt``/``$gte``/``$lt``/``$lte`` (numbers as numbers, text
  as text; a document without the field does not match, as in MongoDB);
- ``count``: how many, newest first (0 means the collection's default).

Anything else is refused with a MalformedError naming what is supported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ..errors import MalformedError

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "Found", "Query", "parse_query", "select"]

DEFAULT_COUNT: Final = {"entries": 10, "treatments": 100, "devicestatus": 10, "profile": 10}
MAX_COUNT: Final = 10_000
MAX_CONDITIONS: Final = 16
TIME_FIELDS: Final = ("date", "dateString", "sysTime", "created_at", "timestamp", "mills",
                      "startDate")
_RANGE: Final = ("$gte", "$gt", "$lte", "$lt")
_OPS: Final = (*_RANGE, "$eq", "$ne", "$exists")
_FIND: Final = re.compile(r"^find\[([A-Za-z_][A-Za-z0-9_]{0,31})\](?:\[(\$[a-z]{2,6})\])?$")


@dataclass(frozen=True)
class Query:
    """A ``find``/``count`` query: a time window, conditions, how many."""

    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # exclusive
    where: tuple[tuple[str, str, str], ...] = ()  # (field, operator, value as sent)
    count: int = 10


@dataclass(frozen=True)
class Found:
    """A document read back: its collection, Nightscout identity, time and fields."""

    collection: str
    key: str
    time_ms: int
    doc: dict[str, Any]


def _query_time(value: str, name: str) -> int:
    if re.fullmatch(r"-?\d{1,16}", value):
        return int(value)
    text = value.replace("Z", "+00:00") if value.endswith("Z") else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedError(f"find[{name}] value {value[:40]!r} is neither epoch ms nor an "
                             "ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_query(collection: str, params: Iterable[tuple[str, str]],
                extra_type: str | None = None) -> Query:
    """Parse query parameters (``find[date][$gte]=...``, ``find[eventType]=...``, ``count``).

    ``extra_type`` adds ``find[type]=<it>`` (the ``/entries/sgv`` route). Raises
    MalformedError for an unsupported parameter or operator, a bad time or count.
    """
    start: int | None = None
    end: int | None = None
    where: list[tuple[str, str, str]] = []
    if extra_type:
        where.append(("type", "$eq", extra_type))
    count = DEFAULT_COUNT.get(collection, 10)
    for name, value in params:
        if name in ("token", "secret"):
            continue
        if name == "count":
            if not re.fullmatch(r"\d{1,6}", value):
                raise MalformedError(f"count must be a whole number, not {value[:20]!r}")
            n = int(value)
            count = DEFAULT_COUNT.get(collection, 10) if n == 0 else min(n, MAX_COUNT)
            continue
        m = _FIND.match(name)
        if m is None:
            raise MalformedError(
                f"query parameter {name[:40]!r} is not supported: use find[field] or "
                f"find[field][$op] ({', '.join(_OPS)}), or count")
        field, op = m.group(1), m.group(2) or "$eq"
        if op not in _OPS:
            raise MalformedError(f"operator {op} is not supported; use {', '.join(_OPS)}")
        if len(value) > 64:
            raise MalformedError(f"find[{field}] value is {len(value)} characters; at most 64")
        if field in TIME_FIELDS and op in (*_RANGE, "$eq"):
            ms = _query_time(value, field)
            if op in ("$gte", "$eq"):
                start = ms if start is None else max(start, ms)
            if op == "$gt":
                start = ms + 1 if start is None else max(start, ms + 1)
            if op == "$lt":
                end = ms if end is None else min(end, ms)
            if op in ("$lte", "$eq"):
                end = ms + 1 if end is None else min(end, ms + 1)
            continue
        if op == "$exists" and value not in ("true", "false", "1", "0"):
            raise MalformedError(f"find[{field}][$exists] takes true or false, not "
                                 f"{value[:20]!r}")
        where.append((field, op, value))
        if len(where) > MAX_CONDITIONS:
            raise MalformedError(f"more than {MAX_CONDITIONS} find conditions; send fewer")
    return Query(start, end, tuple(where), count)


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _equal(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return _number(text) == value
    if value is None:
        return text == "null"
    return isinstance(value, str) and value == text


def _order(value: Any, text: str, op: str) -> bool:
    a: Any
    b: Any
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        a, b = value, _number(text)
        if b is None:
            return False
    elif isinstance(value, str):
        a, b = value, text
    else:
        return False
    return bool(a > b if op == "$gt" else a >= b if op == "$gte" else
                a < b if op == "$lt" else a <= b)


def _matches(doc: dict[str, Any], field: str, op: str, text: str) -> bool:
    if op == "$exists":
        return (field in doc) == (text in ("true", "1"))
    if op == "$ne":
        return field not in doc or not _equal(doc[field], text)
    if field not in doc:
        return False
    if op == "$eq":
        return _equal(doc[field], text)
    return _order(doc[field], text, op)


def select(found: Iterable[Found], query: Query) -> list[Found]:
    """Apply a query: time window, conditions, newest first, at most ``count``."""
    out = [f for f in found
           if (query.start_ms is None or f.time_ms >= query.start_ms)
           and (query.end_ms is None or f.time_ms < query.end_ms)
           and all(_matches(f.doc, k, op, v) for k, op, v in query.where)]
    out.sort(key=lambda f: f.time_ms, reverse=True)
    return out[:query.count]

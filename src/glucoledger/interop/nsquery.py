"""Nightscout v1 ``find``/``count`` queries over documents read back. Pure.

The semantics of cgm-remote-monitor ``lib/server/query.js`` and the v1 API routes
(``lib/api/entries/index.js``, ``lib/api/treatments/index.js``, ``lib/server/*.js``), which pass
``qs``-parsed ``find`` objects to MongoDB:

- a time window on any time field, ``find[date][$gte]=<ms>`` (also ``1796296828291.0``: the
  walker ``parseInt``s ``date``), ``find[created_at][$gte]=<ISO>`` (a space in an ISO time is the
  ``+`` a client did not escape, as ``enforceDateFilter`` repairs it), ``$gte``, ``$gt``,
  ``$lte``, ``$lt``, ``$eq``: applied to the document's time, whichever time field is named.
  The window also narrows the consent request.
- without any time condition, only the last 4 days (``enforceDateFilter``'s ``deltaAgo``,
  two days times two), except for profiles, which Nightscout lists whole;
- conditions on other fields, dotted paths included (``find[pump.clock]``): equality,
  ``$ne``, ``$in``/``$nin`` (``find[eventType][$in][]=A&...[]=B``), ``$exists``, ``$gt``...
  (numbers as numbers, text as text; a document without the field does not match, as in
  MongoDB); a value written ``/re/flags`` (flags ``i``, ``m``, ``s``) on a treatment's
  ``notes``, ``eventType`` or ``enteredBy`` is a regular expression (``parseRegEx``), run by
  RE2 in time linear in the text (``Regex`` below: what clients send, and what is refused);
- ``find[$and][i][field][$op]`` (all hold) and ``find[$or][i][field][$op]`` (one holds), as
  Trio sends them;
- ``count``: how many, newest first; absent or 0 means the default (entries 10, treatments 100
  or 1000 when ``find`` is present, devicestatus 10). A count above ``MAX_COUNT`` is a 400
  that says how to page, never a silent cut.
- every other parameter (``token``, ``secret``, xDrip+'s ``rr``, jQuery's ``_``, ``ts``...) is
  ignored, as Nightscout ignores it.

A MalformedError (400) only where Nightscout fails too: a time it cannot parse, a regular
expression that does not compile, a count that is not a number; and for a regular expression
that only a backtracking engine runs (``Regex``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any, Final

import re2

from ..errors import MalformedError

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "Cond", "Found", "Query", "Regex", "parse_query",
           "select", "v3_params"]

DEFAULT_COUNT: Final = {"entries": 10, "treatments": 100, "devicestatus": 10, "profile": 10}
#: treatments with a ``find`` (lib/api/treatments/index.js: ``query.find ? 1000 : 100``).
FIND_COUNT: Final = {"treatments": 1000}
MAX_COUNT: Final = 100_000
MAX_CONDITIONS: Final = 16
MAX_IN: Final = 64
#: Nightscout's default window when a query names no time (query.js: TWO_DAYS * 2).
DEFAULT_WINDOW_MS: Final = 4 * 86_400_000
TIME_FIELDS: Final = ("date", "dateString", "sysTime", "created_at", "timestamp", "mills",
                      "startDate", "srvModified", "srvCreated")
REGEX_FIELDS: Final = {"treatments": ("notes", "eventType", "enteredBy")}
#: API v3's ``field$re=<pattern>`` as ``v3_params`` passes it on (``parse_query(v3=True)``).
V3_RE: Final = "$re"
_RANGE: Final = ("$gte", "$gt", "$lte", "$lt")
_OPS: Final = (*_RANGE, "$eq", "$ne", "$exists", "$in", "$nin")
_FIND: Final = re.compile(
    r"^find\[([A-Za-z_][A-Za-z0-9_.]{0,63})\](?:\[(\$[a-z]{2,6})\](?:\[\d{0,3}\])?)?$")
#: Trio's forms: ``find[$and][0][enteredBy][$ne]=Trio``, ``find[$or][1][dateString][$eq]=...``.
_LOGIC: Final = re.compile(
    r"^find\[\$(and|or)\]\[(\d{1,2})\]\[([A-Za-z_][A-Za-z0-9_.]{0,63})\]"
    r"(?:\[(\$[a-z]{2,6})\])?$")
#: The pseudo-field of a time condition inside ``$or`` (compared with the document's time).
TIME: Final = "@time"
_REGEX: Final = re.compile(r"^/(.*)/([imsx]*)$", re.DOTALL)
#: A find regular expression, ``/``, pattern, ``/`` and flags together, in characters (the same
#: bound as every other find value).
MAX_PATTERN: Final = 256
#: RE2 instructions a find regular expression may compile to. 256 characters of text, with
#: or without ``i``, compile to about 260; what goes past this is a large repeat count
#: (``.{500}``) or a Unicode class (``\pL`` alone is 1,200). A search costs at most a
#: constant times this times the bytes of the value (bench/nsregex.py measures it).
MAX_PROGRAM: Final = 1000
#: RE2's memory for one expression: its program and its DFA caches (a compile that needs more
#: fails, a search that needs more falls back to RE2's NFA, still linear).
RE2_MAX_MEM: Final = 1 << 20
#: What one query's regular expressions may search: the sum, over every value a pattern is
#: tried on, of its program size times the value's characters (+1). RE2 does at most a
#: constant times that much work: a query at this bound with the worst DFA-defeating pattern
#: measured, [ab]*a[ab]{240} over notes of 2,000 random a/b, took 1.2 s through the server
#: (3.9 s in bench/nsregex.py on a machine loaded 7-9 on 2 cores), in one thread with the
#: GIL let go (/api/status answered meanwhile in 0.05 s); what clients send, far less.
#: /basal/i (11 steps) over 400,000 eventTypes of 14 characters, or /exerc/i (9) over 29,000
#: notes of 256, is within it; a large program over many long notes is refused (400).
MAX_REGEX_STEPS: Final = 1 << 26
_LIMITS: Final = (f"regular expressions in find are limited to {MAX_PATTERN} characters and "
                  "to what runs in time linear in the text (RE2): text, . [classes] ^ $ \\b, "
                  "alternatives a|b, groups, repeats * + ? {n,m}, flags i m s")
_USE: Final = ("use plain text or those; no backreferences (\\1), lookarounds ((?=, (?!, "
               "(?<=), \\Z (write \\z), or the x flag")
_NUMBER: Final = re.compile(r"^-?\d{1,16}(?:\.\d*)?$")


@dataclass(frozen=True)
class Cond:
    """One condition: a (dotted) field, an operator, the values as sent (several for $in,
    $nin), and the compiled pattern when the value is a regular expression."""

    field: str
    op: str
    values: tuple[str, ...]
    pattern: Regex | None = None


@dataclass(frozen=True)
class Query:
    """A ``find``/``count`` query: a time window, conditions, how many."""

    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # exclusive
    where: tuple[Cond, ...] = ()
    count: int = 10
    either: tuple[Cond, ...] = ()  # ``$or``: at least one holds (when any)


@dataclass(frozen=True)
class Found:
    """A document read back: its collection, Nightscout identity, time and fields."""

    collection: str
    key: str
    time_ms: int
    doc: dict[str, Any]


def _query_time(value: str, name: str) -> int:
    if _NUMBER.fullmatch(value):
        return int(float(value)) if "." in value else int(value)
    text = value.strip().replace(" ", "+")
    text = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedError(f"find[{name}] value {value[:40]!r} is neither epoch ms nor an "
                             "ISO 8601 time (Nightscout: cannot parse as a valid ISO-8601 "
                             "date)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Regex:
    """A find regular expression (``/source/flags``), compiled by RE2.

    Nightscout turns ``/.../flags`` into a JavaScript RegExp that MongoDB runs with PCRE, a
    backtracking engine, as Python's ``re`` is: ``/(.*)*(.*)*x/`` took 37 s on one 256-character
    value here, holding the GIL, so the whole server stood still. RE2 runs in time linear in
    the text (at most a constant times ``MAX_PROGRAM`` steps a byte) and lets go of the GIL
    while it searches. What clients send (cgm-remote-monitor's reports: ``/<typed text>/i`` on
    notes and eventType; ``/Sensor Start|Sensor Change/``; oref0: ``/openaps:\\/\\//``; the v3
    docs' ``eventType$re=Temp.*``) means the same in RE2. What RE2 refuses needs backtracking:
    backreferences, lookarounds; a refusal is a MalformedError that says what is allowed.

    As in PCRE (MongoDB) and RE2, not as in Python's ``re``: ``\\d``, ``\\w``, ``\\s``,
    ``\\b`` are ASCII. ``$`` without ``m`` is the very end (Python's also matched before a
    final newline; stored values have none at the end).
    """

    source: str
    flags: str
    compiled: Any = dc_field(compare=False, hash=False, repr=False)
    #: RE2 instructions (at most ``MAX_PROGRAM``): its steps a character, at worst.
    size: int = 1

    def search(self, text: str) -> bool:
        """Whether the expression occurs in ``text``."""
        return self.compiled.search(text) is not None


def _options() -> Any:
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.never_capture = True  # a yes/no: no submatches, so RE2 never needs its NFA for them
    options.log_errors = False
    return options


_RE2_OPTIONS: Final = _options()


def _pattern(collection: str, field_: str, value: str, *, anywhere: bool = False
             ) -> Regex | None:
    m = _REGEX.match(value)
    if m is None or not (anywhere or field_ in REGEX_FIELDS.get(collection, ())):
        return None
    name = f"find[{field_}] {value[:40]!r}"
    if len(value) > MAX_PATTERN:
        raise MalformedError(f"{name}... is {len(value)} characters: {_LIMITS}; shorten it")
    source, flags = m.group(1), m.group(2)
    if "x" in flags:
        raise MalformedError(f"{name}: the x flag is not one Nightscout reads (a JavaScript "
                             f"RegExp has none): {_LIMITS}; write it without spaces and "
                             "comments and send it without x")
    inline = "".join(sorted(set(flags)))
    try:
        compiled = re2.compile(f"(?{inline}){source}" if inline else source, _RE2_OPTIONS)
    except re2.error as exc:
        arg = exc.args[0] if exc.args else ""
        reason = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
        if "too large" in reason:
            raise MalformedError(f"{name} is refused: it compiles to more than {RE2_MAX_MEM} "
                                 f"bytes ({_LIMITS}); use smaller repeat counts {{n,m}} and "
                                 "fewer Unicode classes") from None
        try:  # Python's parser only tells the two refusals apart; it never matches here
            re.compile(source)
        except re.error as py:
            raise MalformedError(f"{name} is not a regular expression: {py.msg}") from None
        except (RecursionError, OverflowError):
            pass
        raise MalformedError(f"{name} is refused ({reason}): {_LIMITS}; {_USE}") from None
    size = int(compiled.programsize)
    if size > MAX_PROGRAM:
        raise MalformedError(f"{name} is refused: it compiles to {size} steps, at most "
                             f"{MAX_PROGRAM} ({_LIMITS}); use smaller repeat counts {{n,m}} "
                             "and fewer Unicode classes")
    return Regex(source, flags, compiled, size)


def parse_query(collection: str, params: Iterable[tuple[str, str]],
                extra_type: str | None = None, *, now_ms: int | None = None,
                v3: bool = False) -> Query:
    """Parse query parameters as Nightscout does (module docstring).

    ``extra_type`` adds ``find[type]=<it>`` (the ``/entries/sgv`` route). ``now_ms`` enables
    the default 4-day window of a query that names no time. ``v3``: ``find[f][$re]`` (from
    ``v3_params``) is a regular expression on any field. Raises MalformedError.
    """
    regexes: dict[str, Regex] = {}
    start: int | None = None
    end: int | None = None
    timed = False
    grouped: dict[tuple[str, str], list[str]] = {}
    if extra_type:
        grouped[("type", "$eq")] = [extra_type]
    count: int | None = None
    found_find = False
    extra: list[Cond] = []  # from $and
    either: list[Cond] = []  # from $or
    for name, value in params:
        if name == "count":
            if not re.fullmatch(r"\d{1,9}", value.strip()):
                raise MalformedError(f"count must be a whole number, not {value[:20]!r}")
            n = int(value)
            if n > MAX_COUNT:
                raise MalformedError(f"count {n} is more than {MAX_COUNT} documents in one "
                                     "answer: page with find[date][$lt]=<the oldest date seen>")
            count = n or None
            continue
        logic = _LOGIC.match(name)
        if logic is not None:
            found_find = True
            kind, field, op = logic.group(1), logic.group(3), logic.group(4) or "$eq"
            if op not in _OPS or op in ("$in", "$nin"):
                raise MalformedError(f"operator {op} is not supported inside ${kind}")
            if field in TIME_FIELDS and op in (*_RANGE, "$eq"):
                cond = Cond(TIME, op, (str(_query_time(value, field)),))
            else:
                # A regular expression is never cut (over MAX_PATTERN it is refused), so the
                # value kept is the one the pattern was compiled from.
                pattern = _pattern(collection, field, value) if op in ("$eq", "$ne") else None
                cond = Cond(field, op, (value if pattern else value[:256],), pattern)
            if kind == "and":
                extra.append(cond)
            else:
                either.append(cond)
            continue
        m = _FIND.match(name)
        if m is None:
            if name.startswith("find["):
                raise MalformedError(f"query parameter {name[:40]!r} is not a find this server "
                                     f"reads: use find[field] or find[field][$op] "
                                     f"({', '.join(_OPS)})")
            continue  # rr, _, ts, token, secret...: Nightscout ignores them too
        found_find = True
        field, op = m.group(1), m.group(2) or "$eq"
        if op == V3_RE and v3:
            # API v3's field$re: MongoDB's $regex on any field (search/input.js, mongoCollection
            # utils.js parseFilter), text values only, a time field's text included.
            pattern = _pattern(collection, field, f"/{value}/", anywhere=True)
            assert pattern is not None
            grouped[(field, V3_RE)] = [value]
            regexes[field] = pattern
            continue
        if op not in _OPS:
            raise MalformedError(f"operator {op} is not supported; use {', '.join(_OPS)}")
        if len(value) > 256:
            _pattern(collection, field, value)  # a regular expression says what is allowed
            raise MalformedError(f"find[{field}] value is {len(value)} characters; at most 256")
        if field in TIME_FIELDS and op in (*_RANGE, "$eq"):
            ms = _query_time(value, field)
            timed = True
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
        grouped.setdefault((field, op), []).append(value)
    where = []
    for (field, op), values in grouped.items():
        if op not in ("$in", "$nin"):
            values = values[-1:]  # qs: the last of repeated scalars
        if len(values) > MAX_IN:
            raise MalformedError(f"find[{field}][{op}] lists {len(values)} values; at most "
                                 f"{MAX_IN}")
        if op == V3_RE:
            where.append(Cond(field, "$eq", (f"/{values[0]}/",), regexes[field]))
            continue
        pattern = _pattern(collection, field, values[0]) if op in ("$eq", "$ne") else None
        where.append(Cond(field, op, tuple(values), pattern))
    where += extra
    if len(where) + len(either) > MAX_CONDITIONS:
        raise MalformedError(f"more than {MAX_CONDITIONS} find conditions; send fewer")
    # Nightscout puts no date filter on a query by _id
    by_id = any(c.field == "_id" for c in (*where, *either))
    if not timed and not by_id and now_ms is not None and collection != "profile":
        start = now_ms - DEFAULT_WINDOW_MS
    default = FIND_COUNT.get(collection) if found_find else None
    return Query(start, end, tuple(where),
                 count or default or DEFAULT_COUNT.get(collection, 10), tuple(either))


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


_MISSING: Final = object()


def _get(doc: dict[str, Any], path: str) -> Any:
    """A (dotted) field of a document, or ``_MISSING``."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


class _Steps:
    """What a query's regular expressions may still search (``MAX_REGEX_STEPS``)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_REGEX_STEPS

    def search(self, pattern: Regex, text: str) -> bool:
        self.left -= pattern.size * (len(text) + 1)
        if self.left < 0:
            raise MalformedError(
                f"the regular expression /{pattern.source[:40]}/ would take more than "
                f"{MAX_REGEX_STEPS} steps over the documents of this window (its "
                f"{pattern.size} steps a character, times the characters it is tried on): "
                "narrow the time window (find[created_at][$gte] and [$lt]) or use a shorter "
                "expression")
        return pattern.search(text)


def _is(value: Any, c: Cond, steps: _Steps) -> bool:
    if c.pattern is not None:
        return isinstance(value, str) and steps.search(c.pattern, value)
    return _equal(value, c.values[0])


def _matches(f: Found, c: Cond, steps: _Steps) -> bool:
    doc = f.doc
    value = f.time_ms if c.field == TIME else _get(doc, c.field)
    if c.op == "$exists":
        return (value is not _MISSING) == (c.values[0] in ("true", "1"))
    if c.op == "$ne":
        return value is _MISSING or not _is(value, c, steps)
    if c.op == "$nin":
        return value is _MISSING or not any(_equal(value, v) for v in c.values)
    if value is _MISSING:
        return False
    if c.op == "$eq":
        return _is(value, c, steps)
    if c.op == "$in":
        return any(_equal(value, v) for v in c.values)
    return _order(value, c.values[0], c.op)


def select(found: Iterable[Found], query: Query) -> list[Found]:
    """Apply a query: time window, conditions, newest first, at most ``count``.

    Raises MalformedError when its regular expressions would search more than
    ``MAX_REGEX_STEPS`` (a bound on RE2's work, counted before each search)."""
    steps = _Steps()
    out = [f for f in found
           if (query.start_ms is None or f.time_ms >= query.start_ms)
           and (query.end_ms is None or f.time_ms < query.end_ms)
           and all(_matches(f, c, steps) for c in query.where)
           and (not query.either or any(_matches(f, c, steps) for c in query.either))]
    out.sort(key=lambda f: f.time_ms, reverse=True)
    return out[:query.count]


_V3_OPS: Final = {"eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt",
                  "lte": "$lte", "in": "$in", "nin": "$nin"}
_V3_FIELD: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]{0,63})(?:\$([a-z]{2,3}))?$")
_V3_IGNORED: Final = frozenset({"token", "secret", "fields", "now", "skip", "rr", "_", "ts"})


def v3_params(params: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """API v3 search parameters (cgm-remote-monitor ``lib/api3/generic/search``: ``field=v``,
    ``field$op=v`` with ops eq ne gt gte lt lte in nin re, ``in``/``nin`` values split on
    ``|``, ``sort=f`` / ``sort$desc=f``, ``limit``) as v1 ``find``/``count`` parameters, and
    whether the answer is oldest first. Raises MalformedError for an unknown operator."""
    out: list[tuple[str, str]] = []
    ascending = False
    for name, value in params:
        if name == "limit":
            out.append(("count", value))
        elif name == "sort":
            ascending = True
        elif name == "sort$desc":
            ascending = False
        elif name not in _V3_IGNORED:
            m = _V3_FIELD.match(name)
            if m is None:
                continue  # as Nightscout: what it does not read, it ignores
            field, op = m.group(1), m.group(2) or "eq"
            if op == "re":
                out.append((f"find[{field}][{V3_RE}]", value))
            elif op in ("in", "nin"):
                out += [(f"find[{field}][${op}][]", v) for v in value.split("|")]
            elif op in _V3_OPS:
                out.append((f"find[{field}][{_V3_OPS[op]}]", value))
            else:
                raise MalformedError(f"{name}: operator {op} is not one of "
                                     f"{', '.join((*_V3_OPS, 're'))}")
    return out, ascending

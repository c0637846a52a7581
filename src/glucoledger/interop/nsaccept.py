"""Per-document outcomes of a Nightscout POST: never block a stream. Pure: no I/O, no clock.

Nightscout (``lib/server/entries.js``, ``treatments.js``) stores what it is sent, one document
at a time, and answers one element per document. Uploaders (xDrip+, Loop, Trio, AndroidAPS)
resend a whole batch until it is answered, so a server that refused a batch for one bad
document would stall every later reading behind it. Here:

- every document is judged on its own (``parse_each``): it is ``Accepted`` (a ``Doc`` to
  store), a ``Repeat`` of an earlier document of the same POST (same Nightscout identity:
  answered with the same element, stored once), or ``Refused`` with the reason, which the
  node logs where the patient sees it and answers in place (``refused_answer``);
- what Nightscout accepts is stored, with what is suspect marked (interop/nightscout.py):
  decimal mg/dL (rounded, the value as sent kept), sensor LOW/HIGH (``censored``), entry
  types other than sgv/mbg/cal (a note), documents without a time and documents from a
  device clock running ahead (``stamp``: the server time orders the record, marked in
  ``SERVER_TIME``, the device time kept as sent);
- what cannot be stored at all (not an object, Mongo operator keys, a time before 2000 or
  more than ``MAX_AHEAD_MS`` ahead, a bolus of 500 U...) is ``Refused``.

Invariants: ``len(parse_each(c, body, now)) == len(body)`` (one outcome per document, in
order); a refused document changes nothing; the outcome of a document does not depend on
the other documents of the POST except for ``Repeat`` and, for a document from a clock
running ahead, the latest such time of the POST (``stamp``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import InputError, MalformedError, OutOfRangeError
from ..glucose.readings import MAX_CLOCK_SKEW_MS
from . import nightscout as ns
from .nsfields import TIMES, time_raw

__all__ = ["MAX_AHEAD_MS", "Accepted", "Outcome", "Refused", "Repeat", "parse_each",
           "refused_answer", "stamp"]

#: How far ahead of the server a device clock may run and its documents still be stored
#: (ordered at the server's time). A day covers a phone set to the wrong time zone.
MAX_AHEAD_MS: Final = 24 * 3_600_000
_OBJECT_ID: Final = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class Accepted:
    """A document to store; ``target`` the ``_id`` it was sent with (a PUT replaces the
    document with that ``_id``: node/nightscout.py), ``sent`` what was sent."""

    doc: ns.Doc
    target: str | None = None
    sent: Any = None


@dataclass(frozen=True)
class Repeat:
    """The same Nightscout identity as the document at ``first`` in this POST."""

    first: int


@dataclass(frozen=True)
class Refused:
    """A document that cannot be stored: why (for the patient's log), as an InputError."""

    error: InputError
    sent: Any


Outcome = Accepted | Repeat | Refused


def _device_time(collection: str, doc: Mapping[str, Any]) -> int | None:
    """The document's own time, or None when it has none (a bad time raises MalformedError)."""
    names = TIMES[collection]
    if not any(doc.get(n) is not None for n in names):
        return None
    return time_raw(doc, names, f"{collection} document")[0]


def _ahead(t: int | None, now_ms: int) -> bool:
    return t is not None and now_ms + MAX_CLOCK_SKEW_MS < t <= now_ms + MAX_AHEAD_MS


def _time_or_none(collection: str, doc: Any) -> int | None:
    """A document's own time, None when it has none or is no document (judged alone later)."""
    if not isinstance(doc, dict):
        return None
    try:
        return _device_time(collection, doc)
    except InputError:
        return None


def stamp(collection: str, doc: dict[str, Any], now_ms: int,
          newest_ahead: int | None = None) -> dict[str, Any]:
    """The document with the server time marked where Nightscout would use its own clock.

    No time at all: Nightscout stamps ``created_at``/``date`` with its clock; so do we, and
    the document says so (``SERVER_TIME`` reason ``"no time sent"``). A time more than the
    allowed clock skew ahead but within ``MAX_AHEAD_MS``: the clock that wrote it runs ahead.
    ``newest_ahead`` is the latest such time of its POST (None: none, or this document
    alone): each document of the POST dated after the server time is ordered that much
    earlier than its device time (the newest at the server time), the device time kept as
    sent (reason ``"device clock ahead"``). So what an uploader sends at once from a clock
    running ahead (xDrip+'s queue after a network gap on a phone set 20 minutes fast) keeps
    its order and spacing, never all at one instant, where only one reading and one dose
    would count. A document dated before the server time keeps its time. A client's own
    ``SERVER_TIME`` field is dropped: only the node stamps. Raises MalformedError for a time
    field that is not a time.
    """
    out = {k: v for k, v in doc.items() if k not in ("_id", ns.SERVER_TIME)}
    t = _device_time(collection, out)
    newest = t if newest_ahead is None and _ahead(t, now_ms) else newest_ahead
    if t is None:
        out[ns.SERVER_TIME] = {"ms": now_ms, "reason": "no time sent"}
    elif newest is not None and now_ms < t <= newest:
        out[ns.SERVER_TIME] = {"ms": t - (newest - now_ms), "reason": "device clock ahead"}
    elif t > now_ms + MAX_AHEAD_MS:
        raise OutOfRangeError(
            f"{collection} document: time is {(t - now_ms) // 3_600_000} h ahead of the "
            "server, more than a day: set the phone's or device's clock (and time zone)")
    return out


def parse_each(collection: str, body: Any, now_ms: int) -> list[Outcome]:
    """One outcome per document of a POST body (one document or a list), in order.

    Raises MalformedError only when the body as a whole is not a POST body (not an object or
    a list of them, too many documents, an unknown collection): Nightscout fails those too.
    """
    docs = ns.body_documents(collection, body)
    out: list[Outcome] = []
    first: dict[str, int] = {}
    newest_ahead = max((t for t in map(lambda d: _time_or_none(collection, d), docs)
                        if t is not None and _ahead(t, now_ms)), default=None)
    for i, d in enumerate(docs):
        what = f"{collection}[{i}]"
        try:
            if not isinstance(d, dict):
                raise MalformedError(f"{what} must be an object, not {type(d).__name__}")
            ns.check_shape(d, what)
            doc = ns._parse_doc(collection, stamp(collection, d, now_ms, newest_ahead), what)
        except InputError as exc:
            out.append(Refused(exc, d))
            continue
        except ArithmeticError:  # decimal.InvalidOperation on a number like 1e25 (readings)
            out.append(Refused(OutOfRangeError(
                f"{what} holds a number too large for any reading or dose"), d))
            continue
        if doc.key in first:
            out.append(Repeat(first[doc.key]))
            continue
        first[doc.key] = i
        target = d.get("_id")
        out.append(Accepted(doc, target if isinstance(target, str) and _OBJECT_ID.match(target)
                            else None, d))
    return out


def refused_answer(collection: str, sent: Any, error: InputError) -> dict[str, Any]:
    """The answer element for a document that was not stored.

    Nightscout would have stored it and echoed it with an ``_id``; the apps check for one
    element per document, each with an ``_id`` (Loop fails a whole upload otherwise), and
    resend what was not answered. So the element echoes what was sent (the fields that can be
    answered as JSON), with a stable ``_id``
    (a hash of the document: the same for every retry) and ``glucoledger`` saying it was not
    stored and why; the uploader moves on, the patient sees the reason in her log.
    """
    echo: dict[str, Any] = {}
    for k, v in (sent.items() if isinstance(sent, dict) else ()):
        try:  # only what can be answered as JSON (no NaN, no lone surrogate, no operator)
            ns.check_shape({k: v})
        except InputError:
            continue
        echo[k] = v
    text = json.dumps(sent, sort_keys=True, default=str, ensure_ascii=True)
    digest = hashlib.sha256(f"{collection}|{text}".encode()).hexdigest()[:24]
    echo["_id"] = digest
    echo["glucoledger"] = {"stored": False, "reason": error.message}
    return echo

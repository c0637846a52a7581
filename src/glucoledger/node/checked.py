"""A checked upload: a Nightscout POST judged in an HTTP worker, re-checked cheaply here.

With ``serve --workers N`` (api/workers.py) a worker process receives a Nightscout upload
(POST or PUT of ``/api/v1/{entries,treatments,devicestatus,profile}[.json]``), parses its JSON,
judges every document (``interop.nsaccept.parse_each``) and builds the validated batches
(``parse_batch``: most of the CPU an upload costs before the ledger), then hands the result
to the ordering process as plain data (``check_upload``). The ordering process rebuilds it
with ``accept_checked`` and stores it through ``NightscoutService.post_judged``.

What the ordering process takes from a worker, and what it checks again (never trusting a
worker blindly, but without redoing the expensive part):

- who: never taken. The ordering process authenticates the credential itself and the
  binding (patient, gateway) is its own; the gateway's signature and the node's are made
  there, with keys no worker holds.
- the records stored: every record is rebuilt through ``Batch.from_value``, which checks
  each field's type and range again, the order, counts and time range of each batch
  (about a tenth of ``parse_batch``'s cost), and no record may lie further in the future
  than ``parse_batch`` allows by the ordering process's own clock.
- the judgment: the worker's clock must agree with the ordering process's within
  ``CLOCK_SLACK_MS``; the accepted documents and the batches must hold the same number of
  records of the same streams. The document identities and echoes are the worker's; a
  worker that lied about them could only misfile uploads of the patient whose credential it
  relayed, which it could do anyway by sending requests with that credential.

Anything that does not fit (another version, a shape error, a clock far off) makes
``accept_checked`` answer None, and the ordering process judges the request body itself,
exactly as with one process: the answer is the same either way.

The format is data only (it crosses the process boundary as CBOR): ``{"v": 1, "collection",
"now_ms", "outcomes": [...], "batches": [Batch.to_value(), ...]}``, each outcome
``["a", key, time_ms, [[stream, item], ...], echo, target, sent]``, ``["r", first]`` or
``["x", code, message, sent]``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from .. import jsonin
from ..errors import GlucoledgerError, InputError
from ..glucose.readings import MAX_CLOCK_SKEW_MS, Batch
from ..interop import nightscout as ns
from ..interop import nsaccept

__all__ = ["CLOCK_SLACK_MS", "UPLOAD_PATHS", "Judged", "accept_checked", "check_upload"]

VERSION: Final = 1
#: How far the worker's clock may be from the ordering process's (one machine: the same
#: clock; the slack covers the time the request waited in between).
CLOCK_SLACK_MS: Final = 5_000
#: The upload routes a worker checks, by path (api/routes_nightscout.py serves the same).
UPLOAD_PATHS: Final = {f"/api/v1/{c}{s}": c for c in ("entries", "treatments",
                                                       "devicestatus", "profile")
                       for s in ("", ".json")}


@dataclass(frozen=True)
class Judged:
    """A body judged by a worker and re-checked here: what ``post_judged`` stores."""

    outcomes: list[nsaccept.Outcome]
    batches: list[Batch]


def check_upload(method: str, path: str, body: bytes, now_ms: int | None = None
                 ) -> dict[str, Any] | None:
    """In a worker: the checked form of an upload, or None (not an upload route, or a body
    the ordering process must refuse itself, with its own message). Never raises."""
    collection = UPLOAD_PATHS.get(path)
    if collection is None or method not in ("POST", "PUT"):
        return None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        value = jsonin.loads(body)
        outcomes = nsaccept.parse_each(collection, value, now)
        from .nightscout import batches_of  # the very grouping the ordering process uses

        docs = [o.doc for o in outcomes if isinstance(o, nsaccept.Accepted)]
        batches = batches_of(docs, now) if docs else []
    except (ValueError, RecursionError, GlucoledgerError, ArithmeticError):
        return None
    out: list[list[Any]] = []
    for o in outcomes:
        if isinstance(o, nsaccept.Accepted):
            d = o.doc
            out.append(["a", d.key, d.time_ms, [[s, i] for s, i in d.items], d.echo,
                        o.target, o.sent])
        elif isinstance(o, nsaccept.Repeat):
            out.append(["r", o.first])
        else:
            out.append(["x", o.error.code, o.error.message, o.sent])
    return {"v": VERSION, "collection": collection, "now_ms": now, "outcomes": out,
            "batches": [b.to_value() for b in batches]}


def _outcome(collection: str, v: Any, n: int) -> nsaccept.Outcome:
    if not isinstance(v, list) or not v:
        raise ValueError("an outcome is a list")
    if v[0] == "a" and len(v) == 7:
        _, key, time_ms, items, echo, target, sent = v
        if not (isinstance(key, str) and type(time_ms) is int and isinstance(items, list)
                and isinstance(echo, dict) and (target is None or isinstance(target, str))):
            raise ValueError("an accepted document's fields")
        parts = []
        for it in items:
            if not (isinstance(it, list) and len(it) == 2 and isinstance(it[0], str)
                    and isinstance(it[1], dict)):
                raise ValueError("a document's item")
            parts.append((it[0], it[1]))
        return nsaccept.Accepted(ns.Doc(collection, key, time_ms, tuple(parts), echo),
                                 target, sent)
    if v[0] == "r" and len(v) == 2 and type(v[1]) is int and 0 <= v[1] < n:
        return nsaccept.Repeat(v[1])
    if v[0] == "x" and len(v) == 4 and isinstance(v[1], str) and isinstance(v[2], str):
        return nsaccept.Refused(InputError(v[2], code=v[1]), v[3])
    raise ValueError("an outcome's kind")


def accept_checked(value: Any, collection: str, now_ms: int) -> Judged | None:
    """In the ordering process: the worker's judgment of an upload to ``collection``,
    re-checked (see the module's docstring), or None to judge the body here instead."""
    if not isinstance(value, dict) or value.get("v") != VERSION \
            or value.get("collection") != collection:
        return None
    sent_at = value.get("now_ms")
    if type(sent_at) is not int or abs(sent_at - now_ms) > CLOCK_SLACK_MS:
        return None
    raw_out, raw_batches = value.get("outcomes"), value.get("batches")
    if not isinstance(raw_out, list) or not isinstance(raw_batches, list) or not raw_out:
        return None
    try:
        outcomes = [_outcome(collection, o, i) for i, o in enumerate(raw_out)]
        batches = [Batch.from_value(b) for b in raw_batches]
    except (ValueError, TypeError, GlucoledgerError):
        return None
    want: Counter[str] = Counter()
    for o in outcomes:
        if isinstance(o, nsaccept.Accepted):
            want.update(s for s, _ in o.doc.items)
    have: Counter[str] = Counter()
    for b in batches:
        have[b.stream] += b.count
        if b.end_ms > now_ms + MAX_CLOCK_SKEW_MS:
            return None
    if want != have:
        return None
    return Judged(outcomes, batches)

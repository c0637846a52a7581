"""JSON-lines ingest: one reading or event per line, any mix of streams.

The format is specified in docs/ingest-format.md. Each non-blank line is a JSON object with a
``stream`` field and that stream's input fields (see ``readings.parse_batch``); lines starting
with ``#`` are comments.

Invariants:
- All or nothing: one bad line refuses the whole input, and the error names the line number,
  the item's time when known, and the reason.
- The result is one ``Batch`` per stream, in the order each stream first appears; records
  within a batch are sorted by time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import MalformedError
from .readings import MAX_BATCH, STREAMS, Batch, parse_batch

__all__ = ["parse_jsonl"]


def parse_jsonl(lines: Iterable[str], now_ms: int) -> list[Batch]:
    """Parse JSON-lines input into one validated Batch per stream.

    ``now_ms`` is the caller's clock (items more than 5 minutes after it are refused).
    Raises MalformedError (a line that is not a JSON object, a missing or unknown stream,
    too many lines for a stream) or any error ``parse_batch`` raises, naming the line.
    """
    groups: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            item = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise MalformedError(f"line {number}: not valid JSON") from None
        if not isinstance(item, dict):
            raise MalformedError(f"line {number}: must be a JSON object")
        stream = item.pop("stream", None)
        if stream not in STREAMS:
            raise MalformedError(
                f"line {number}: missing or unknown stream {stream!r}; "
                f"use one of {', '.join(STREAMS)}"
            )
        items, labels = groups.setdefault(stream, ([], []))
        if len(items) >= MAX_BATCH:
            raise MalformedError(
                f"line {number}: more than {MAX_BATCH} {stream} items; split the input"
            )
        items.append(item)
        labels.append(f"line {number} ({stream})")
    return [
        parse_batch(stream, items, now_ms=now_ms, labels=labels)
        for stream, (items, labels) in groups.items()
    ]

"""Nightscout's socket.io ``dataUpdate`` payload, from v1 documents. Pure.

cgm-remote-monitor (lib/server/websocket.js, lib/data/ddata.js, lib/data/calcdelta.js)
pushes its in-memory data set to every authorized socket: a full set when a client
authorizes, then deltas (``delta: true``) holding only what is new or changed. What its
clients read (AndroidAPS's v1 NSClientService ``onDataUpdate``, NSSgv, NSMbg):

- ``sgvs``: ``{_id, mgdl, mills, device, direction, filtered, unfiltered, noise, rssi,
  type}``; ``mbgs``: ``{_id, mgdl, mills, device}``; ``cals``: ``{_id, mills, scale,
  intercept, slope}`` (entries split by ``type``);
- ``treatments``, ``devicestatus``: the documents with ``mills`` (their time in ms); a
  treatment removed since the last push as ``{_id, action: "remove"}``, a changed one with
  ``action: "update"`` (AndroidAPS stores both added and updated ones);
- ``profiles``: the profile documents, the newest last.

``Feed`` remembers what one socket was sent, so the next push is a delta: the documents
whose content changed, and removals of those it had that are gone from the parts of the
window read again (a push reads only where something changed: node/nightscout.py
``follow``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = ["COLLECTIONS", "Feed", "mills_of", "payload"]

#: The collections a socket is fed, in the order cgm-remote-monitor's ddata holds them.
COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile")

_SGV_FIELDS: Final = ("_id", "device", "direction", "filtered", "unfiltered", "noise", "rssi",
                      "type")


def mills_of(doc: Mapping[str, Any]) -> int | None:
    """A document's time in ms: ``date``/``mills`` when numeric, else ``created_at`` (or
    ``startDate`` for a profile) parsed as ISO 8601; None when it has none."""
    for k in ("mills", "date"):
        v = doc.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
    for k in ("created_at", "startDate", "dateString"):
        v = doc.get(k)
        if isinstance(v, str):
            try:
                return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                continue
    return None


def _entry(doc: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    kind = doc.get("type", "sgv")
    mills = mills_of(doc)
    if mills is None:
        return None
    if kind == "sgv" and isinstance(doc.get("sgv"), (int, float)):
        out = {k: doc[k] for k in _SGV_FIELDS if k in doc}
        return "sgvs", dict(out, mgdl=doc["sgv"], mills=mills, type="sgv")
    if kind == "mbg" and isinstance(doc.get("mbg"), (int, float)):
        return "mbgs", {"_id": doc.get("_id"), "mgdl": doc["mbg"], "mills": mills,
                        "device": doc.get("device")}
    if kind == "cal":
        return "cals", {"_id": doc.get("_id"), "mills": mills, "scale": doc.get("scale"),
                        "intercept": doc.get("intercept"), "slope": doc.get("slope")}
    return None


def payload(collection: str, docs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The ``dataUpdate`` keys ``docs`` of ``collection`` make (see the module text)."""
    if collection == "entries":
        out: dict[str, list[Any]] = {}
        for d in docs:
            hit = _entry(d)
            if hit is not None:
                out.setdefault(hit[0], []).append(hit[1])
        for items in out.values():
            items.sort(key=lambda x: x["mills"])
        return out
    if collection == "profile":
        return {"profiles": sorted((dict(d) for d in docs), key=lambda d: mills_of(d) or 0)}
    rows = [dict(d, mills=m) for d in docs if (m := mills_of(d)) is not None]
    return {collection: sorted(rows, key=lambda d: d["mills"])}


def _digest(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, default=str)


@dataclass
class Feed:
    """What one socket was sent, by collection and ``_id``: (digest, time in ms)."""

    sent: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)

    def delta(self, collection: str, docs: Sequence[Mapping[str, Any]], *, full: bool,
              since_ms: int, spans: Sequence[tuple[int, int]] | None = None
              ) -> dict[str, list[Any]]:
        """The payload for ``docs``: everything the socket may read of ``collection`` in
        ``spans`` (``[from, to)``; default: the window, from ``since_ms`` on). All of them when
        ``full``, else the new and changed ones, and for treatments a removal of each one
        sent before, inside ``spans``, that is no longer there (one that only aged out of the
        window is not a removal). Remembers ``docs`` as sent, and those sent before inside
        the window but outside ``spans`` (not read again, so unchanged)."""
        read = [(since_ms, 1 << 62)] if spans is None else list(spans)

        def read_again(t: int) -> bool:
            return any(lo <= t < hi for lo, hi in read)

        before = self.sent.get(collection, {})
        now = {str(d.get("_id")): (_digest(d), mills_of(d) or 0) for d in docs}
        kept = {i: v for i, v in before.items()
                if v[1] >= since_ms and not read_again(v[1]) and i not in now}
        self.sent[collection] = {**kept, **now}
        fresh = docs if full else [d for d in docs
                                   if before.get(str(d.get("_id"))) != now[str(d.get("_id"))]]
        out = payload(collection, fresh)
        if not full and collection == "treatments":
            out.setdefault("treatments", [])
            for row in out["treatments"]:
                if str(row.get("_id")) in before:
                    row["action"] = "update"
            out["treatments"] += [{"_id": i, "action": "remove"}
                                  for i in sorted(set(before) - set(now))
                                  if read_again(before[i][1])]
        return {k: v for k, v in out.items() if v}

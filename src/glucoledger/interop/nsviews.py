"""Nightscout's computed views of the latest entries: ``/api/v2/properties`` and ``/pebble``.
Pure: entries documents (newest first, as the v1 read gives them) and the server time in.

- ``properties`` follows cgm-remote-monitor ``lib/api2/properties.js`` and the ``bgnow``,
  ``delta`` and ``direction`` plugins (``lib/plugins/bgnow.js``, ``direction.js``): what
  Nightguard, watch faces and widgets poll. Only those three properties; others asked for
  are absent from the answer, as Nightscout omits disabled plugins.
- ``pebble`` follows ``lib/server/pebble.js``: ``status``, ``bgs`` (sgv as text, trend as
  a number, ``bgdelta``), ``cals``.

Invariant: computed from the documents given and ``now_ms`` only; a reader sees nothing here
that the same reader's ``entries.json`` would not show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["PROPERTIES", "TREND_NUMBER", "pebble", "properties"]

#: Nightscout's trend arrows as the numbers Dexcom and the Pebble API use.
TREND_NUMBER: Final = {"NONE": 0, "DoubleUp": 1, "SingleUp": 2, "FortyFiveUp": 3, "Flat": 4,
                       "FortyFiveDown": 5, "SingleDown": 6, "DoubleDown": 7,
                       "NOT COMPUTABLE": 8, "RATE OUT OF RANGE": 9}
_LABEL: Final = {"DoubleUp": "⇈", "SingleUp": "↑", "FortyFiveUp": "↗", "Flat": "→",
                 "FortyFiveDown": "↘", "SingleDown": "↓", "DoubleDown": "⇊",
                 "NOT COMPUTABLE": "-", "RATE OUT OF RANGE": "⇕", "NONE": "⇼"}
PROPERTIES: Final = ("bgnow", "delta", "direction")
_BUCKET_MS: Final = 5 * 60_000


def _sgvs(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("type", "sgv") == "sgv"
            and isinstance(e.get("sgv"), (int, float)) and isinstance(e.get("date"), int)]


def _arrow(e: dict[str, Any]) -> str:
    d = e.get("direction")
    return d if isinstance(d, str) else "NONE"


def _point(e: dict[str, Any]) -> dict[str, Any]:
    return {"_id": e.get("_id"), "mgdl": e["sgv"], "mills": e["date"],
            "device": e.get("device"), "direction": e.get("direction"), "type": "sgv",
            "scaled": e["sgv"]}


def properties(entries: Sequence[dict[str, Any]], now_ms: int,
               wanted: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``bgnow``/``delta``/``direction`` properties of the newest sgv entries."""
    sgvs = _sgvs(entries)
    out: dict[str, Any] = {}
    if sgvs:
        last = sgvs[0]
        now_bucket = [e for e in sgvs if last["date"] - e["date"] < _BUCKET_MS]
        mean = sum(e["sgv"] for e in now_bucket) / len(now_bucket)
        out["bgnow"] = {"mean": mean, "last": last["sgv"], "mills": last["date"],
                        "sgvs": [_point(e) for e in now_bucket]}
        before = [e for e in sgvs if _BUCKET_MS <= last["date"] - e["date"] < 2 * _BUCKET_MS]
        if before:
            prev = before[0]
            elapsed = (last["date"] - prev["date"]) / 60_000
            absolute = last["sgv"] - prev["sgv"]
            out["delta"] = {"absolute": absolute, "elapsedMins": elapsed,
                            "interpolated": False, "mean5MinsAgo": prev["sgv"],
                            "mgdl": absolute, "scaled": absolute,
                            "display": f"{'+' if absolute >= 0 else ''}{absolute}",
                            "previous": _point(prev)}
        arrow = _arrow(last)
        out["direction"] = {"display": _LABEL.get(arrow, "⇼"), "value": arrow,
                            "label": _LABEL.get(arrow, "⇼"), "entity": _LABEL.get(arrow, "⇼")}
    if wanted is not None:
        out = {k: v for k, v in out.items() if k in wanted}
    return out


def pebble(entries: Sequence[dict[str, Any]], now_ms: int, count: int = 1) -> dict[str, Any]:
    """``GET /pebble``: the newest ``count`` sgv readings with their deltas."""
    sgvs = _sgvs(entries)
    bgs = []
    for i, e in enumerate(sgvs[:count]):
        prev = sgvs[i + 1] if i + 1 < len(sgvs) else None
        direction = _arrow(e)
        bg: dict[str, Any] = {"sgv": str(e["sgv"]), "trend": TREND_NUMBER.get(direction, 0),
                              "direction": direction, "datetime": e["date"]}
        if prev is not None:
            bg["bgdelta"] = e["sgv"] - prev["sgv"]
        bgs.append(bg)
    return {"status": [{"now": now_ms}], "bgs": bgs, "cals": []}

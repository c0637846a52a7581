"""A patient's pages: her home (current glucose first), the live ``now.json``, her audit trail.

Home, top to bottom (what a person with diabetes looks at most, first): the current glucose
(value, trend arrow, change, minutes ago, a stale warning) in her units and time zone; today's
timeline (glucose chart with its data table, insulin, carbohydrates, notes); the period she
chooses (7/14/30/90 days, optionally compared with the period before) with time in ranges
in words and numbers, GRI and the AGP report; alerts from her rules; devices with their last
data; who has access; emergencies; the newest lines of her audit trail; erase.

Reads: two audited reads of her own data per page view: the report's period, exactly the
last N whole local days in her zone (``period_report``, the same read a summary is), and the
days around it the page also draws (today, the sensor's age, the comparison).
``now.json`` first asks the vault for the end of her newest CGM batch (metadata the node
holds anyway, no decryption, nothing released) and makes an audited read of the last day
only when something newer than the page's reading arrived; polling therefore does not fill
the ledger. Her own reads are collapsed into one line a day in her audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..errors import OutOfRangeError
from ..glucose.metrics import Summary, summarize
from ..glucose.readings import STREAMS, Bolus, Carbs, CgmReading, DeviceSettings, Note, SmbgReading
from ..node import consent_actions as ca
from ..node.access import RawRelease
from ..node.accounts import AddressBook
from ..node.alerts import detect_episodes
from ..node.alerts import rules as alert_rules
from ..node.audit import AuditEntry, audit_with_refusals
from ..node.localdays import reader_days, whole_days
from ..node.report import AgpReport
from ..node.report import agp_report as build_report
from .auth import optional_session
from .context import Principal, ctx
from .portal_base import STREAM_WORDS, fmt_of, names, render, who
from .portal_charts import agp_chart, agp_report, day_chart
from .portal_devices import device_status, is_device_note
from .portal_view import STALE_MS, Fmt, current
from .routes_consent import devices as list_devices
from .routes_consent import emergency_requests, grant_value, read_for

__all__ = ["PERIODS", "audit_rows", "before_row", "home", "period_of", "period_report",
           "report_row", "router", "summary_row"]

router = APIRouter(include_in_schema=False)
PERIODS = (7, 14, 30, 90)
DAY_MS = 86_400_000
PAGE = 25
#: How far back the home looks for a sensor start (the longest CGM sensors last 15 days).
SENSOR_DAYS = 15


def _records(request: Request, p: Principal, days: int) -> list[Any]:
    """Her own records of every stream for the last ``days`` days (one audited read)."""
    try:
        rel = read_for(request, p, p.id, list(STREAMS), "raw", days)
    except OutOfRangeError:  # nothing stored yet
        return []
    assert isinstance(rel, RawRelease)
    return sorted(rel.records, key=lambda r: r.time_ms)


def summary_row(readings: Sequence[CgmReading], start_ms: int, end_ms: int
                ) -> dict[str, Any] | None:
    """The consensus metrics of ``[start_ms, end_ms)`` plus GRI, or None without data."""
    rs = [r for r in readings if start_ms <= r.time_ms < end_ms]
    if not rs:
        return None
    return report_row(summarize(rs, start_ms=start_ms, end_ms=end_ms))


def _today(records: Sequence[Any], fmt: Fmt, now_ms: int) -> dict[str, Any]:
    """Today (from her local midnight): the glucose line and the events, in time order."""
    local = fmt.local(now_ms)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    start = int(midnight.timestamp() * 1000)
    day = [r for r in records if r.time_ms >= start]
    cgm = [(r.time_ms, r.mgdl) for r in day if isinstance(r, CgmReading)]
    events: list[dict[str, Any]] = []
    marks: list[tuple[int, str]] = []
    for r in day:
        if isinstance(r, Bolus):
            events.append({"time_ms": r.time_ms, "what": "Insulin",
                           "detail": f"{r.units_milli / 1000:g} units ({r.kind} bolus)"})
            marks.append((r.time_ms, "I"))
        elif isinstance(r, Carbs):
            events.append({"time_ms": r.time_ms, "what": "Carbohydrates",
                           "detail": f"{r.grams_tenths / 10:g} g"})
            marks.append((r.time_ms, "C"))
        elif isinstance(r, SmbgReading):
            events.append({"time_ms": r.time_ms, "what": "Finger-stick",
                           "detail": f"{fmt.glucose(r.mgdl)} {fmt.units}"})
        elif isinstance(r, Note) and not is_device_note(r):
            events.append({"time_ms": r.time_ms, "what": "Note", "detail": r.text[:200]})
        elif isinstance(r, DeviceSettings):
            events.append({"time_ms": r.time_ms, "what": "Pump settings",
                           "detail": "new settings uploaded"})
    events.sort(key=lambda e: e["time_ms"])
    cgm.sort()
    hourly = []  # the chart's data table: one row an hour (the last reading of the hour)
    for hh in range(24):
        lo = start + hh * 3_600_000
        inside = [v for t, v in cgm if lo <= t < lo + 3_600_000]
        if inside:
            hourly.append({"time_ms": lo, "mgdl": inside[-1], "low": min(inside),
                           "high": max(inside)})
    chart = day_chart(cgm, start, fmt, title=f"Glucose today, {fmt.day(now_ms)}",
                      marks=marks)
    return {"start_ms": start, "chart": chart, "hourly": hourly, "events": events,
            "insulin": sum(r.units_milli for r in day if isinstance(r, Bolus)) / 1000,
            "carbs": sum(r.grams_tenths for r in day if isinstance(r, Carbs)) / 10}


def _devices(request: Request, p: Principal) -> list[dict[str, Any]]:
    """Her devices with the time of the newest data each sent (vault metadata)."""
    vault = ctx(request).svc.access.vault
    last: dict[bytes, int] = {}
    for row in vault.batches(p.id):
        last[row.uploader] = max(last.get(row.uploader, 0), row.end)
    out = []
    for d in list_devices(request, p):
        out.append({**d, "last_data_ms": last.get(bytes.fromhex(d["id"]))})
    return out


def period_report(request: Request, p: Principal, patient: bytes, streams: Sequence[str],
                  view: str, days: int, name: str, fmt: Fmt) -> AgpReport:
    """The AGP report of the last ``days`` whole local days of ``patient`` in her zone
    (node/localdays.py), as ``p`` may see them: one audited read of exactly that period, in
    ``view``, so a raw and a summary report of the same data give the same numbers (both are
    the node's summary of that window, node/report.py) and the header names the zone.

    Raises OutOfRangeError when the period holds no CGM reading, and what ``read_for``
    raises (a refusal is audited and releases nothing).
    """
    c = ctx(request)
    span = reader_days(c.node.state, c.node.data_dir, p.id, patient, days, c.node.now_ms(),
                       tuple(sorted(set(streams))))
    rel = read_for(request, p, patient, sorted(set(streams)), view, days, span=span)
    return build_report(rel, patient=name, units=fmt.units, zone=span.named_zone)


def period_of(request: Request, p: Principal, patient: bytes, streams: Sequence[str],
              view: str, days: int, name: str, fmt: Fmt
              ) -> tuple[AgpReport | None, dict[str, Any] | None]:
    """``period_report`` and its numbers for the page (``report_row``); (None, None) when
    the period holds no CGM reading."""
    try:
        rep = period_report(request, p, patient, streams, view, days, name, fmt)
    except OutOfRangeError:
        return None, None
    return rep, report_row(rep.summary)


def report_row(s: Summary) -> dict[str, Any]:
    """The page's numbers of a summary (the period table and the ranges bar)."""
    return {"start_ms": s.start_ms, "end_ms": s.end_ms, "tir": s.tir, "tbr70": s.tbr70,
            "tbr54": s.tbr54, "tar180": s.tar180, "tar250": s.tar250, "mean": s.mean,
            "cv": s.cv, "gmi": s.gmi, "active": s.active, "days": s.days_with_data,
            "gri": s.gri, "sufficient": s.sufficient}


def before_row(readings: Sequence[CgmReading], rep: AgpReport | None, days: int
               ) -> dict[str, Any] | None:
    """The ``days`` whole local days before the report's period (the comparison), from the
    readings of a wider read, or None without data or report."""
    if rep is None or rep.zone is None:
        return None
    name, zone = rep.zone
    prev = whole_days(days, rep.summary.start_ms, name, zone)
    return summary_row(readings, prev.start_ms, prev.end_ms)


def home(request: Request, p: Principal, msg: str | None) -> Response:
    node = ctx(request).node
    fmt = fmt_of(request)
    q = request.query_params
    days = int(q["days"]) if q.get("days", "").isdecimal() and int(q["days"]) in PERIODS else 14
    compare = q.get("compare") == "1"
    poll = int(q["poll"]) if q.get("poll", "").isdecimal() else 60
    poll = min(max(poll, 2), 300)
    now = int(time.time() * 1000)
    # at least SENSOR_DAYS: a sensor started before a 7-day period still has an age; a day
    # more than the comparison: its first whole local day starts before now - 2 x days
    records = _records(request, p, max(days * 2 + 1 if compare else days, SENSOR_DAYS))
    cgm = [r for r in records if isinstance(r, CgmReading)]
    rep, period = period_of(request, p, p.id, ("carbs", "cgm", "insulin"), "raw", days,
                            p.name, fmt)
    before = before_row(cgm, rep, days) if compare else None
    rules = alert_rules(node, p.id)
    episodes = detect_episodes([r for r in cgm if r.time_ms >= now - 7 * DAY_MS], rules)[::-1]
    grants = [grant_value(request, g) for g in ca.grants(node, p.id)]
    grants.sort(key=lambda g: (not g["active"], g["grantee_name"]))
    by_name = {r["name"]: r["mgdl"] for r in rules}
    trail = audit_rows(audit_with_refusals(node, ctx(request).seclog, p.id,
                                             vault=ctx(request).svc.vault), p.id, fmt)
    people = names(request)
    grantees = [{"name": n, "kind": k} for n, k in sorted(
        (i.name, i.kind) for i in _people(request) if i.kind in ("clinician", "trusted"))]
    return render(request, "patient.html", who=p, notice=msg[:200] if msg else None,
                  now=current(cgm, now, fmt), version=newest_cgm(request, p.id), poll=poll,
                  days=days, compare=compare,
                  periods=PERIODS, period=period, before=before, today=_today(records, fmt,
                                                                               now),
                  agp=agp_report(rep), agp_chart=agp_chart(
                      rep.agp, fmt, title=f"Glucose profile, the last {days} days")
                  if rep else None,
                  episodes=episodes[:10],
                  low=fmt.glucose(by_name.get("low", 70)),
                  high=fmt.glucose(by_name.get("high", 250)),
                  grants=grants, audit=trail[:5], names=people, devices=_devices(request, p),
                  status=device_status(records), now_ms=now,
                  grantees=grantees, emergencies=[
                      r for r in emergency_requests(request, p) if r["status"] == "pending"])


def _people(request: Request) -> list[Any]:
    return list(AddressBook(ctx(request).node).all())


def newest_cgm(request: Request, patient: bytes) -> str:
    """A token that changes whenever her stored CGM changes: the number of committed batches,
    their readings and the latest batch end. Vault metadata only (no decryption, nothing
    released); a new upload is a new batch, so the token changes with every new reading."""
    rows = ctx(request).svc.access.vault.batches(patient, "cgm")
    return (f"{len(rows)}.{sum(r.count for r in rows)}."
            f"{max((r.end for r in rows), default=0)}")


@router.get("/portal/now.json")
def now_json(request: Request,
             since: Annotated[str, Query(max_length=64, pattern=r"^[0-9.]*$")] = "",
             at: Annotated[int, Query(ge=0)] = 0) -> Response:
    """The current glucose for the open home page. ``since``: the data version the page shows
    (``version`` of the last answer); ``at``: the time of the reading it shows. With nothing
    newer stored, answers ``{"changed": false, minutes_ago, stale}`` without a read."""
    _, p = who(request)
    if p.kind != "patient":
        raise OutOfRangeError("only a patient's home shows a current glucose")
    version = newest_cgm(request, p.id)
    now = int(time.time() * 1000)
    headers = {"Cache-Control": "no-store"}
    cur = None
    if version != since:
        cgm = [r for r in _records(request, p, 1) if isinstance(r, CgmReading)]
        cur = current(cgm, now, fmt_of(request))
    if cur is None:
        return JSONResponse({"changed": False, "version": since,
                             "minutes_ago": (now - at) // 60_000 if at else None,
                             "stale": bool(at) and now - at > STALE_MS}, headers=headers)
    return JSONResponse({"changed": True, "version": version, **cur}, headers=headers)


# --- the audit trail in plain words ---------------------------------------------------------
def _what(e: AuditEntry) -> str:
    streams = ", ".join(STREAM_WORDS.get(s, s).lower() for s in e.streams)
    if e.kind == "access":
        return f"{'every reading' if e.view == 'raw' else 'a summary'} of {streams}"
    if e.kind == "emergency_request":
        return f"asked for emergency access ({e.detail})"
    if e.kind == "emergency":
        return f"emergency access opened: {e.detail}"
    if e.kind == "emergency_declined":
        return "an emergency request was declined"
    if e.kind == "emergency_ended":
        return "emergency access was ended early"
    if e.kind == "erase":
        return f"erased {streams}"
    return e.detail


def audit_rows(entries: Sequence[AuditEntry], me: bytes, fmt: Fmt) -> list[dict[str, Any]]:
    """Plain-words rows; her own allowed looks collapsed into one row per local day."""
    out: list[dict[str, Any]] = []
    own: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.kind == "access" and e.who == me and e.decision == "permit":
            day = fmt.day(e.time_ms)
            if day in own:
                own[day]["count"] += 1
                continue
            own[day] = row = {"time_ms": e.time_ms, "who": me, "own": True, "count": 1,
                              "what": "your own data", "result": "allowed",
                              "emergency": False, "kind": "access", "streams": e.streams}
            out.append(row)
            continue
        ok = e.outcome in ("permit", "requested", "opened", "declined", "ended", "erased",
                           "disclosed")
        result = ("allowed" if e.outcome == "permit" else "refused" if not ok
                  else e.outcome)
        if not ok:
            result = f"refused: {e.reason or 'not allowed'}"
        out.append({"time_ms": e.time_ms, "who": e.who, "own": False, "count": 1,
                    "what": _what(e), "result": result, "emergency": e.emergency,
                    "kind": e.kind, "streams": e.streams, "decided_by": e.decided_by})
    return out


@router.get("/portal/audit", response_class=HTMLResponse)
def audit_page(request: Request, who_: Annotated[str, Query(alias="who", max_length=64)] = "",
               what: Annotated[str, Query(max_length=16)] = "",
               result: Annotated[str, Query(max_length=16)] = "",
               emergency: Annotated[str, Query(max_length=4)] = "",
               page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    """Her audit trail: filters (who, what, allowed/refused, emergency only) and pages."""
    if optional_session(request) is None:
        return RedirectResponse("/portal/login", status_code=303)
    _, p = who(request)
    if p.kind != "patient":
        raise OutOfRangeError("the audit trail is the patient's own page; clinicians see "
                              "theirs in each patient's trail")
    if what and what not in STREAM_WORDS:
        raise OutOfRangeError(f"what {what[:16]!r}: choose one of the listed kinds of data")
    if result not in ("", "allowed", "refused"):
        raise OutOfRangeError("result: choose allowed or refused")
    fmt = fmt_of(request)
    c = ctx(request)
    rows = audit_rows(audit_with_refusals(c.node, c.seclog, p.id, vault=c.svc.vault), p.id, fmt)
    people = names(request)
    actors = sorted({(people.get(r["who"], "someone"), r["who"].hex()) for r in rows
                     if r["who"] != p.id})
    if who_ == "me":
        rows = [r for r in rows if r["who"] == p.id]
    elif who_:
        rows = [r for r in rows if r["who"].hex() == who_]
    if what:
        rows = [r for r in rows if what in r["streams"]]
    if result:
        rows = [r for r in rows if r["result"].startswith(result)]
    if emergency == "1":
        rows = [r for r in rows if r["emergency"]]
    pages = max(1, -(-len(rows) // PAGE))
    page = min(page, pages)
    base = {"who": who_, "what": what, "result": result, "emergency": emergency}
    return render(request, "audit.html", who=p, rows=rows[(page - 1) * PAGE:page * PAGE],
                  total=len(rows), page=page, pages=pages, names=people, actors=actors,
                  f=base, query=urlencode({k: v for k, v in base.items() if v}))

"""A clinician's workspace and a trusted party's page.

Clinician: a triage list of the patients whose grants she holds now, one row each with the
last 14 days' time in range, time below 54 and below 70, GRI, sensor wear, last data and
grant expiry; sortable (``sort``, ``dir``), filterable (``flag``) and paged. Each row opens
a per-patient page with a period picker (7/14/30/90 days, optionally compared with the period
before), the metrics, the AGP report, a daily view and pump settings, and CSV / FHIR
downloads. Every number comes from an audited read through the grant; a summary-only grant is
read with ``view=summary`` only, so no reading, daily view or raw value can appear on her
pages or in her downloads (the access machine would refuse a raw read anyway).

Trusted party: the emergency requests waiting for her decision, with exactly the streams
and days that would open, and the emergencies she approved, with when each ends and a
button to end it early.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import GlucoledgerError, NotFoundError, PermissionDeniedError
from ..glucose.readings import STREAMS, Bolus, Carbs, CgmReading, DeviceSettings
from ..node import consent_actions as ca
from ..node import emergency as em
from ..node.access import RawRelease, SignedSummary
from ..node.accounts import AddressBook, identity
from ..node.fhir_export import export_bundle
from ..node.localdays import reader_days
from ..node.report import AgpReport
from .auth import optional_session
from .context import Principal, ctx
from .portal_base import fmt_of, names, render, who
from .portal_charts import agp_chart, agp_report, day_chart
from .portal_devices import device_status
from .portal_patient import DAY_MS, PERIODS, SENSOR_DAYS, before_row, period_of
from .portal_view import Fmt
from .routes_consent import emergency_requests, grant_value, read_for

__all__ = ["grant_for", "router", "workspace"]

router = APIRouter(include_in_schema=False)
PAGE = 20
SORTS = {"name": "patient", "tir": "tir", "tbr54": "tbr54", "tbr70": "tbr70", "gri": "gri",
         "wear": "active", "last": "last_ms", "expiry": "valid_until"}
FLAGS = {"": "Everyone", "below54": "Time below 54 at least 1 %",
         "below70": "Time below 70 at least 4 %", "tir": "Time in range under 70 %",
         "wear": "Sensor worn under 70 % of the time", "gri": "GRI 40 or more (zones C to E)",
         "stale": "No data in the last 24 hours", "ending": "Access ends within 7 days",
         "emergency": "Emergency access"}


def _patient_rows(request: Request, p: Principal) -> list[dict[str, Any]]:
    """One row per patient with an active grant to ``p`` (the most permissive grant)."""
    node = ctx(request).node
    now = int(time.time() * 1000)
    book = names(request)
    vault = ctx(request).svc.access.vault
    best: dict[bytes, Any] = {}
    for g in ca.grants_to(node, p.id):
        if not g.active_at(now):
            continue
        held = best.get(g.patient)
        if held is None or (held.view == "summary" and g.view == "raw") or (
                g.emergency and not held.emergency):
            best[g.patient] = g
    rows = []
    for pid, g in best.items():
        row: dict[str, Any] = {"patient": book.get(pid, pid.hex()[:16]), "grant":
                               grant_value(request, g), "valid_until": g.valid_until,
                               "tir": None, "tbr54": None, "tbr70": None, "gri": None,
                               "active": None, "last_ms": None}
        if "cgm" in g.streams:
            row["last_ms"] = max((b.end for b in vault.batches(pid, "cgm")), default=None)
            try:
                rel = read_for(request, p, pid, ["cgm"], "summary", 14)
                assert isinstance(rel, SignedSummary)
                s = rel.summary
                row.update(shown(s))
            except GlucoledgerError as exc:
                row["error"] = exc.message
        rows.append(row)
    return rows


def shown(s: Any) -> dict[str, float]:
    """A summary's triage numbers as the list shows them (clinician.html: ``%.0f`` and
    ``%.1f``; Python's ``round`` and ``%`` formatting round alike), so the filters, the
    sort and the red marks agree with the numbers on the page: a GRI of 39.6 shows as 40
    and is listed under "GRI 40 or more"; a time below 54 of 0.96 % shows as 1.0 and is
    marked."""
    return {"tir": round(s.tir, 0), "tbr54": round(s.tbr54, 1), "tbr70": round(s.tbr70, 1),
            "active": round(s.active, 0), "gri": round(s.gri, 0)}


def _flagged(row: dict[str, Any], flag: str, now: int) -> bool:
    """Whether ``row`` belongs under the filter ``flag`` (one of FLAGS) at ``now``."""
    if flag == "emergency":
        return bool(row["grant"]["emergency"])
    if flag == "stale":  # nothing uploaded for a day, or never: the sensor or uploader stopped
        return row["last_ms"] is None or now - row["last_ms"] > DAY_MS
    if flag == "ending":
        return bool(row["valid_until"] - now <= 7 * DAY_MS)
    key, limit, above = {"below54": ("tbr54", 1.0, True), "below70": ("tbr70", 4.0, True),
                         "tir": ("tir", 70.0, False), "wear": ("active", 70.0, False),
                         "gri": ("gri", 40.0, True)}.get(flag, ("", 0.0, True))
    if not key:
        return True
    v = row[key]
    return v is not None and (v >= limit if above else v < limit)


def workspace(request: Request, p: Principal, msg: str | None) -> Response:
    q = request.query_params
    notice = msg[:200] if msg else None
    requests = emergency_requests(request, p)
    to_decide = [r for r in requests if r["role"] == "decide"]
    if p.kind != "clinician":
        return render(request, "trusted.html", who=p, notice=notice, to_decide=to_decide,
                      approved=em.approved_by(ctx(request).node, p.id), streams=STREAMS,
                      names=names(request))
    sort = q.get("sort", "name") if q.get("sort") in SORTS else "name"
    desc = q.get("dir") == "desc"
    flag = q.get("flag", "") if q.get("flag", "") in FLAGS else ""
    now = int(time.time() * 1000)
    rows = [r for r in _patient_rows(request, p) if _flagged(r, flag, now)]
    key = SORTS[sort]
    have = sorted([r for r in rows if r[key] is not None], key=lambda r: r[key], reverse=desc)
    rows = have + [r for r in rows if r[key] is None]  # no data: always last
    pages = max(1, -(-len(rows) // PAGE))
    page = min(max(int(q["page"]) if q.get("page", "").isdecimal() else 1, 1), pages)
    patients = [i for i in AddressBook(ctx(request).node).all() if i.kind == "patient"]
    return render(request, "clinician.html", who=p, notice=notice, total=len(rows),
                  rows=rows[(page - 1) * PAGE:page * PAGE], page=page, pages=pages,
                  sort=sort, desc=desc, flag=flag, flags=FLAGS, sorts=SORTS,
                  patients=patients, to_decide=to_decide,
                  asked=[r for r in requests if r["role"] == "asked"],
                  max_hours=em.EMERGENCY_MAX_HOURS, streams=STREAMS)


def grant_for(request: Request, p: Principal, name: str) -> tuple[bytes, Any]:
    """The patient called ``name`` and the most permissive active grant she gave ``p``."""
    try:
        pid = identity(ctx(request).node, name).id
    except (NotFoundError, GlucoledgerError):
        raise NotFoundError(f"no patient {name[:48]!r} on this node; open one from your "
                            "list") from None
    now = int(time.time() * 1000)
    mine = [g for g in ca.grants(ctx(request).node, pid, p.id) if g.active_at(now)]
    if not mine:
        raise PermissionDeniedError(f"{name[:48]} has not given you access (or it ended); "
                                    "ask her to grant it", code="no_grant")
    mine.sort(key=lambda g: (g.view != "raw", not g.emergency, -len(g.streams)))
    return pid, mine[0]


def _period_args(request: Request) -> tuple[int, bool]:
    q = request.query_params
    days = int(q["days"]) if q.get("days", "").isdecimal() and int(q["days"]) in PERIODS else 14
    return days, q.get("compare") == "1"


def _daily(readings: Sequence[CgmReading], treatments: Sequence[Any], fmt: Any,
           now: int) -> list[dict[str, Any]]:
    """The last 7 local days, newest first: a chart and the day's numbers each, with the
    insulin ("I") and carbohydrates ("C") the apps uploaded marked beside glucose and
    totalled (a raw grant that includes those streams), as Tidepool and Nightscout show a
    day."""
    out = []
    today = fmt.local(now).replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(7):
        start = int(today.timestamp() * 1000) - back * DAY_MS
        pts = [(r.time_ms, r.mgdl) for r in readings if start <= r.time_ms < start + DAY_MS]
        if not pts:
            continue
        day = [t for t in treatments if start <= t.time_ms < start + DAY_MS]
        marks = [(t.time_ms, "I" if isinstance(t, Bolus) else "C") for t in day]
        vals = [v for _, v in pts]
        out.append({"start_ms": start, "count": len(pts), "low": min(vals),
                    "high": max(vals), "mean": sum(vals) / len(vals),
                    "tir": 100 * sum(70 <= v <= 180 for v in vals) / len(vals),
                    "insulin": sum(t.units_milli for t in day if isinstance(t, Bolus)) / 1000
                    if any(isinstance(t, Bolus) for t in day) else None,
                    "carbs": sum(t.grams_tenths for t in day if isinstance(t, Carbs)) / 10
                    if any(isinstance(t, Carbs) for t in day) else None,
                    "chart": day_chart(pts, start, fmt, title=f"Glucose on {fmt.day(start)}",
                                       marks=marks)})
    return out


def _profile(rep: AgpReport | None, fmt: Fmt, days: int) -> Any:
    """The portal's phone-sized AGP chart with its cursor and table (portal_charts.py)."""
    if rep is None:
        return None
    return agp_chart(rep.agp, fmt, title=f"Glucose profile, the last {days} days")


@router.get("/portal/patients/{name}", response_class=HTMLResponse)
def patient_page(request: Request, name: str) -> Response:
    if optional_session(request) is None:
        return RedirectResponse("/portal/login", status_code=303)
    _, p = who(request)
    pid, g = grant_for(request, p, name)
    days, compare = _period_args(request)
    fmt = fmt_of(request)
    now = int(time.time() * 1000)
    values: dict[str, Any] = {"who": p, "pname": name, "grant": grant_value(request, g),
                              "days": days, "compare": compare, "periods": PERIODS,
                              "status": None, "now_ms": now}
    if g.view == "summary":
        rep, values["period"] = period_of(request, p, pid, ["cgm"], "summary", days, name,
                                          fmt)
        values.update(agp=agp_report(rep), agp_chart=_profile(rep, fmt, days))
        values["why"] = "summaries-only access does not include device status"
        return render(request, "clinician_patient.html", **values)
    streams = sorted(set(g.streams) & {"carbs", "cgm", "insulin", "notes", "settings"})
    values["why"] = f"{name} has not shared notes and device status with you"
    if not streams:  # nothing this page draws
        return render(request, "clinician_patient.html", **values)
    rep, values["period"] = (period_of(request, p, pid, sorted(
        set(g.streams) & {"carbs", "cgm", "insulin"}), "raw", days, name, fmt)
        if "cgm" in g.streams else (None, None))
    # at least SENSOR_DAYS (the grant's window still bounds it): a sensor's start; a day
    # more than the comparison, whose first whole local day starts before now - 2 x days
    rel = read_for(request, p, pid, streams, "raw",
                   max(days * 2 + 1 if compare else days, SENSOR_DAYS))
    assert isinstance(rel, RawRelease)
    if "notes" in streams:
        values["status"] = device_status(rel.records)
    cgm = sorted((r for r in rel.records if isinstance(r, CgmReading)), key=lambda r: r.time_ms)
    settings = sorted((r for r in rel.records if isinstance(r, DeviceSettings)),
                      key=lambda r: r.time_ms)
    values.update(
        before=before_row(cgm, rep, days) if compare else None,
        agp=agp_report(rep), agp_chart=_profile(rep, fmt, days),
        daily=_daily(cgm, [r for r in rel.records if isinstance(r, (Bolus, Carbs))], fmt,
                     now), settings=settings[-1] if settings else None,
        schedules=_schedules(settings[-1], fmt) if settings else [])
    return render(request, "clinician_patient.html", **values)


@router.get("/portal/patients/{name}/readings.csv")
def download_csv(request: Request, name: str,
                 days: Annotated[int, Query(ge=1, le=90)] = 14) -> Response:
    """CSV through consent (an audited read): every reading under a raw grant, the summary
    metrics alone under a summary grant."""
    _, p = who(request)
    pid, g = grant_for(request, p, name)
    out = io.StringIO()
    w = csv.writer(out)
    if g.view == "summary":
        rel = read_for(request, p, pid, ["cgm"], "summary", days)
        assert isinstance(rel, SignedSummary)
        s = rel.summary
        w.writerow(["patient", "from_utc", "to_utc", "time_in_range_pct", "below_70_pct",
                    "below_54_pct", "above_180_pct", "above_250_pct", "mean_mgdl", "cv_pct",
                    "gmi_pct", "sensor_active_pct"])
        w.writerow([name, _iso(s.start_ms), _iso(s.end_ms), s.tir, s.tbr70, s.tbr54,
                    s.tar180, s.tar250, s.mean, s.cv, s.gmi, s.active])
        kind = "summary"
    else:
        rel = read_for(request, p, pid, ["cgm"], "raw", days)
        assert isinstance(rel, RawRelease)
        w.writerow(["patient", "time_utc", "glucose_mgdl", "trend"])
        for r in sorted((r for r in rel.records if isinstance(r, CgmReading)),
                        key=lambda r: r.time_ms):
            w.writerow([name, _iso(r.time_ms), r.mgdl, r.trend or ""])
        kind = "readings"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}-{kind}-{days}d.csv"',
        "Cache-Control": "no-store"})


@router.get("/portal/patients/{name}/fhir.json")
def download_fhir(request: Request, name: str,
                  days: Annotated[int, Query(ge=1, le=90)] = 14) -> Response:
    """A FHIR R4 Bundle through consent (node/fhir_export.py: raw only under a raw grant) of
    the last ``days`` whole local days in the patient's zone, the period the page and its
    report show, which is the Observations' ``effectivePeriod``."""
    _, p = who(request)
    pid, _g = grant_for(request, p, name)
    c = ctx(request)
    now = c.node.now_ms()
    span = reader_days(c.node.state, c.node.data_dir, p.id, pid, days, now)  # as the report
    with c.account_lock(p.id):
        bundle = export_bundle(c.node, c.svc.access, p.id, c.keys_for(p), pid,
                               start_ms=span.start_ms, end_ms=span.end_ms, units="mg/dL",
                               now_ms=now)
    return Response(json.dumps(bundle), media_type="application/fhir+json", headers={
        "Content-Disposition": f'attachment; filename="{name}-fhir-{days}d.json"',
        "Cache-Control": "no-store"})


def _schedules(s: DeviceSettings, fmt: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """The pump's schedules in words: (title, [(HH:MM, value with unit)])."""
    def hm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    return [
        ("Basal rates", [(hm(e[0]), f"{e[1] / 1000:g} U/h") for e in s.basal_schedule]),
        ("Carbohydrate ratios", [(hm(e[0]), f"1 U per {e[1] / 10:g} g")
                                 for e in s.carb_ratios]),
        ("Sensitivities", [(hm(e[0]), f"{fmt.glucose(e[1])} {fmt.units} per U")
                           for e in s.sensitivities]),
        ("Targets", [(hm(e[0]), f"{fmt.glucose(e[1])}–{fmt.glucose(e[2])} {fmt.units}")
                     for e in s.targets]),
    ]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

"""Commands for consent: grant, revoke, grants, read, report, audit, emergency, erase, and
``account recover``. Thin: parse, call ``glucoledger.node``, render.

Accounts are named as in the node's address book (``glucoledger account create``); their
custodial keys sign. Every read here (``read``, ``report``) is an audited ``access``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError
from ..files import atomic_write
from ..glucose.readings import STREAMS
from ..glucose.units import normalize_units
from ..node import accounts
from ..node import consent_actions as ca
from ..node import emergency as em
from ..node.access import AccessService, RawRelease, SignedSummary
from ..node.audit import audit_trail
from ..node.localdays import reader_days
from ..node.report import agp_report
from ..node.service import Node
from ..state.consent import DAY_MS, MAX_WINDOW_DAYS, Grant, Request, grants_of, to_fhir_consent
from .common import (
    ID_CHARS,
    DataOpt,
    FormatOpt,
    JsonOpt,
    audit_rows,
    choice,
    confirm_destruction,
    console,
    emit,
    err_console,
    local_iso,
    open_node,
    open_node_and_vault,
    open_services,
    out_file,
    parse_when,
    plural,
    print_json,
    records_table,
    streams_opt,
    table,
)
from .ledger_cmds import account_app

__all__ = ["register", "write_report"]

Name = Annotated[str, typer.Option(help="The patient: an account name (see `account list`).")]


@contextmanager
def _access(data: Path | None) -> Iterator[tuple[Node, AccessService]]:
    with open_services(data) as services:
        yield services.node, services.access


def _submit(node: Node, name: str, type_: str, body: dict[str, Any],
            which: list[int] | None = None) -> bytes:
    ident = accounts.identity(node, name)
    stx, _ = node.send(type_, body, ident.id, accounts.keys_of(node, ident, which or [0]))
    return stx.tx_hash


def grant(patient: Name,
          to: Annotated[str, typer.Option("--to", help="Who receives access: an account name "
                                          "(e.g. a clinician).")],
          streams: Annotated[str, streams_opt()] = "cgm",
          view: Annotated[str, typer.Option(help="raw (every reading) or summary (metrics "
                                            "only).", callback=choice("raw", "summary"))
                          ] = "summary",
          last_days: Annotated[int | None, typer.Option(
              help="A sliding window: the last N days (default 14 unless --from/--until).",
              min=1, max=MAX_WINDOW_DAYS)] = None,
          start: Annotated[str | None, typer.Option(
              "--from", help="Fixed window start: ISO 8601 with offset, or epoch ms.")] = None,
          end: Annotated[str | None, typer.Option(
              "--until", "--to-ms", help="Fixed window end (exclusive): ISO 8601 with offset, "
              "or epoch ms.")] = None,
          valid_days: Annotated[int, typer.Option(help="The grant expires after N days.",
                                                  min=1, max=MAX_WINDOW_DAYS)] = 90,
          purpose: Annotated[str, typer.Option(help="Why access is granted (e.g. treatment, "
                                               "research).")] = "treatment",
          alerts: Annotated[bool, typer.Option(help="Also send low/high glucose alerts to "
                                               "the grantee.")] = False,
          data: DataOpt = None) -> None:
    """Grant an account access to your data (a ledger transaction; you sign it).

    Example: glucoledger grant --patient alice --to dr-lee --view raw --last-days 30
    """
    if (start is None) != (end is None):
        raise InputError("give both --from and --until, or --last-days")
    window = ({"from": parse_when(start, "--from"), "to": parse_when(end, "--until")}
              if start is not None and end is not None else {"last_days": last_days or 14})
    with open_node(data) as node:
        who = accounts.identity(node, patient)
        grantee = accounts.identity(node, to)
        now = int(time.time() * 1000)
        gid = ca.grant(node, who.id, accounts.keys_of(node, who, [0]), grantee.id,
                       streams=streams.split(","), view=view, window=window, valid_from=now,
                       valid_until=now + valid_days * DAY_MS, purpose=purpose, alerts=alerts)
    console.print(f"{patient} granted {to} {view} access to {streams} "
                  f"({_window(window)}) until {local_iso(now + valid_days * DAY_MS)}; "
                  f"grant {gid.hex()[:ID_CHARS]}")


def revoke(patient: Name,
           grant_id: Annotated[str, typer.Option(
               "--grant", help="The grant's id, or any unique start of it (at least 4 "
               "hex digits), as `grants` shows it.")],
           data: DataOpt = None) -> None:
    """Revoke a grant; it stops working from the block that holds the revocation.

    Example: glucoledger revoke --patient alice --grant 3fa9c2
    """
    with open_node(data) as node:
        who = accounts.identity(node, patient)
        g = ca.find_grant(node, who.id, grant_id)
        ca.revoke(node, who.id, accounts.keys_of(node, who, [0]), g.id)
        names = accounts.names(node)
    console.print(f"{patient} revoked grant {g.id.hex()[:ID_CHARS]} to "
                  f"{names.get(g.grantee, g.grantee.hex()[:ID_CHARS])}")


def grants(patient: Name,
           fhir: Annotated[bool, typer.Option(help="Print FHIR R4 Consent resources.")] = False,
           as_json: JsonOpt = False, data: DataOpt = None) -> None:
    """List a patient's grants (or print them as FHIR R4 Consent resources).

    Example: glucoledger grants --patient alice --json
    """
    with open_node(data) as node:
        gs = grants_of(node.state, accounts.identity(node, patient).id)
        book = accounts.names(node)
    if fhir:
        print_json([to_fhir_consent(g) for g in gs])
        return
    cols = ["grant", "to", "streams", "view", "window", "valid until", "purpose", "status"]
    rows = [_grant_row(g, book) for g in gs]
    if as_json:
        print_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    console.print(table(f"grants of {patient}", cols, rows))


def _window(w: Mapping[str, int]) -> str:
    if "last_days" in w:
        return f"last {w['last_days']} days"
    return f"{local_iso(w['from'])} to {local_iso(w['to'])}"


def _grant_row(g: Grant, book: dict[bytes, str]) -> list[str]:
    return [g.id.hex()[:ID_CHARS], book.get(g.grantee, g.grantee.hex()[:ID_CHARS]),
            ", ".join(g.streams), g.view, _window(g.window), local_iso(g.valid_until),
            g.purpose + (" (emergency)" if g.emergency and "emergency" not in g.purpose
                         else ""), g.status]


def read(who: Annotated[str, typer.Option("--as", help="The reader: an account name "
                                          "holding a grant (or the patient herself).")],
         patient: Name,
         view: Annotated[str, typer.Option(help="raw (every reading) or summary.",
                                           callback=choice("raw", "summary"))] = "summary",
         streams: Annotated[str, streams_opt()] = "cgm",
         last_days: Annotated[int, typer.Option(help="How many days back (a summary: whole "
                                                "local days, to her last midnight).", min=1,
                                                max=MAX_WINDOW_DAYS)] = 14,
         fmt: FormatOpt = "table",
         out: Annotated[Path | None, out_file("Write to this file instead of the "
                                              "screen.")] = None,
         data: DataOpt = None) -> None:
    """Read a patient's data as an account (audited; denied reads are audited too).

    Example: glucoledger read --as dr-lee --patient alice --view raw --format csv --out a.csv
    """
    with _access(data) as (node, svc):
        ident = accounts.identity(node, who)
        pid = accounts.identity(node, patient).id
        window: dict[str, int] = {"last_days": last_days}
        wanted = tuple(sorted(streams.split(",")))
        if view == "summary":  # whole local days, as the report (node/localdays.py)
            window = reader_days(node.state, node.data_dir, ident.id, pid, last_days,
                                 node.now_ms(), wanted).window()
        req = Request(pid, wanted, view, window)
        rel = svc.read_as(ident.id, accounts.keys_of(node, ident, [0]), req)
    if isinstance(rel, SignedSummary):
        doc = _summary_doc(rel)
        emit(fmt, out, list(doc), [[_cell(v) for v in doc.values()]], f"summary of {patient}",
             [doc])
    elif isinstance(rel, RawRelease):
        cols, rows, docs = records_table(rel.records)
        emit(fmt, out, cols, rows, f"{len(rows)} readings of {patient}", docs)
    err_console.print(f"{who} read {patient}'s {view} ({streams}, last {last_days} days); "
                      f"audited on the ledger as {rel.grounds.access_tx.hex()[:ID_CHARS]}"
                      + (f"; wrote {out}" if out else ""))


def readings(patient: Name,
             start: Annotated[str, typer.Option("--from", help="First time: ISO 8601 with "
                                                "offset, or epoch ms.")],
             end: Annotated[str, typer.Option("--to", help="End time (exclusive): ISO 8601 "
                                              "with offset, or epoch ms.")],
             who: Annotated[str | None, typer.Option("--as", help="The reader (default: the "
                                                     "patient herself).")] = None,
             streams: Annotated[str, streams_opt()] = "cgm",
             fmt: FormatOpt = "table",
             out: Annotated[Path | None, out_file("Write to this file instead of the "
                                                  "screen.")] = None,
             data: DataOpt = None) -> None:
    """List readings with their exact times (ms), e.g. to prove one with `prove-reading`.

    Example: glucoledger readings --patient alice --from 2026-01-02T08:00+01:00
    --to 2026-01-02T09:00+01:00
    """
    lo, hi = parse_when(start, "--from"), parse_when(end, "--to")
    if hi <= lo:
        raise InputError("--to must come after --from")
    with _access(data) as (node, svc):
        reader = accounts.identity(node, who or patient)
        req = Request(accounts.identity(node, patient).id, tuple(sorted(streams.split(","))),
                      "raw", {"from": lo, "to": hi})
        rel = svc.read_as(reader.id, accounts.keys_of(node, reader, [0]), req)
    if not isinstance(rel, RawRelease):  # pragma: no cover - a raw request releases raw
        raise InputError("this read did not release readings")
    cols, rows, docs = records_table(rel.records, rel.history)
    emit(fmt, out, cols, rows, f"{len(rows)} readings of {patient}", docs)


def _one_stream(name: str) -> str:
    if name not in STREAMS:
        raise typer.BadParameter(f"{name!r} is not a stream; use one of {', '.join(STREAMS)}")
    return name


def _summary_doc(rel: SignedSummary) -> dict[str, Any]:
    s = rel.summary
    return {"time in range %": round(s.tir, 1), "below 70 %": round(s.tbr70, 1),
            "below 54 %": round(s.tbr54, 1), "above 180 %": round(s.tar180, 1),
            "above 250 %": round(s.tar250, 1), "mean mg/dL": round(s.mean, 1),
            "CV %": round(s.cv, 1), "GMI %": round(s.gmi, 2), "CGM active %": round(s.active, 1),
            "days with data": s.days_with_data, "sufficient": s.sufficient,
            "GRI": round(s.gri, 1), "GRI zone": s.gri_zone, "sensor LOW": s.censored_low,
            "sensor HIGH": s.censored_high, "commitments": len(rel.grounds.commits)}


def _cell(v: Any) -> str:
    return "yes" if v is True else "no" if v is False else str(v)


def write_report(node: Node, svc: AccessService, who: str, patient: str, days: int,
                 out: Path, png: bool, *, view: str = "raw", units: str = "mg/dL",
                 streams: tuple[str, ...] = ("cgm",)) -> int:
    """Audited read (``view`` raw or summary), then the AGP report (node/report.py, the one
    pipeline the portal uses too). Returns the readings it drew on."""
    ident = accounts.identity(node, who)
    wanted = tuple(sorted(set(streams) | {"cgm"})) if view == "raw" else ("cgm",)
    pid = accounts.identity(node, patient).id
    span = reader_days(node.state, node.data_dir, ident.id, pid, days, node.now_ms(), wanted)
    req = Request(pid, wanted, view, span.window())
    rel = svc.read_as(ident.id, accounts.keys_of(node, ident, [0]), req)
    assert isinstance(rel, (RawRelease, SignedSummary))
    rep = agp_report(rel, patient=patient, units=units, zone=span.named_zone)
    atomic_write(out, rep.html().encode())
    if png:
        atomic_write(out.with_suffix(".png"), rep.png())
    return rep.readings


def report(patient: Name,
           out: Annotated[Path, out_file("Where to write the HTML report.")] = Path("report.html"),
           days: Annotated[int, typer.Option(help="How many whole local days the report covers "
                                             "(ending at the patient's last local midnight).",
                                             min=1,
                                             max=90)] = 14,
           who: Annotated[str | None, typer.Option("--as", help="The reader (default: the "
                                                   "patient herself).")] = None,
           png: Annotated[bool, typer.Option(help="Also write a PNG next to the HTML.")] = False,
           view: Annotated[str, typer.Option(help="raw (full AGP with daily profiles) or "
                                             "summary (aggregate parts only)")] = "raw",
           units: Annotated[str, typer.Option(help="mg/dL or mmol/L")] = "mg/dL",
           treatments: Annotated[bool, typer.Option(help="Add insulin and carbs to the daily "
                                                     "view (raw).")] = False,
           data: DataOpt = None) -> None:
    """Write the AGP report (HTML, and PNG with --png) from data the reader may see.

    Example: glucoledger report --patient alice --as dr-lee --days 14 --out alice.html
    """
    if view not in ("raw", "summary"):
        raise InputError(f"--view {view!r}: choose raw or summary")
    normalize_units(units)
    streams = ("carbs", "cgm", "insulin") if treatments else ("cgm",)
    with _access(data) as (node, svc):
        n = write_report(node, svc, who or patient, patient, days, out, png, view=view,
                         units=units, streams=streams)
    console.print(f"wrote {out} ({n} readings)" + (f" and {out.with_suffix('.png')}" if png
                                                   else ""))


def audit(patient: Name, as_json: JsonOpt = False, data: DataOpt = None) -> None:
    """The patient's audit trail: every read, granted or denied, every emergency request and
    decision, every refused attempt; emergencies first.

    Example: glucoledger audit --patient alice
    """
    with open_node_and_vault(data) as (node, vault):
        pid = accounts.identity(node, patient).id
        trail = audit_trail(node, pid, vault=vault)
        book = accounts.names(node)
    cols = ["when", "block", "event", "who", "outcome", "what", "transaction"]
    rows = audit_rows(trail, book)
    if as_json:
        print_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    console.print(table(f"audit trail of {patient} ({plural(len(trail), 'event')})", cols,
                        rows))


def emergency(clinician: Annotated[str, typer.Option(help="The clinician who asks.")],
              patient: Name,
              trusted: Annotated[str, typer.Option(help="The patient's trusted party, who "
                                                   "approves.")],
              hours: Annotated[int, typer.Option(help="How long access stays open.", min=1,
                                                 max=24)] = 24,
              days: Annotated[int, typer.Option(help="How many days of data it opens.",
                                                min=1, max=90)] = 14,
              reason: Annotated[str, typer.Option(help="Why (shown to the trusted party and "
                                                  "in the audit trail).")] = "emergency care",
              data: DataOpt = None) -> None:
    """Break-glass from the operator's console, with both custodial keys at hand: the
    clinician's request, then the trusted party's approval (the same two steps, and the same
    checks, as the portal and the API, where each signs on her own device).

    Example: glucoledger emergency --clinician dr-lee --patient alice --trusted rosa --hours 4
    """
    with open_node(data) as node:
        c = accounts.identity(node, clinician)
        t = accounts.identity(node, trusted)
        p = accounts.identity(node, patient)
        req, _ = em.request(node, c.id, accounts.keys_of(node, c, [0]), p.id, hours=hours,
                            days=days, reason=reason)
        done = em.approve(node, t.id, accounts.keys_of(node, t, [0]), req.id)
    if done.status != "approved":
        console.print(f"approved by {trusted}; request {req.id.hex()[:ID_CHARS]} still needs "
                      f"{patient}'s other emergency cosigners")
        return
    console.print(f"emergency access for {clinician} to {patient}'s data open for "
                  f"{plural(hours, 'hour')} (grant {req.id.hex()[:ID_CHARS]})")


def erase(patient: Name,
          stream: Annotated[list[str], typer.Option(
              help=f"A stream to erase ({', '.join(STREAMS)}); repeat for more.",
              callback=lambda v: [_one_stream(x) for x in v])],
          start: Annotated[str | None, typer.Option(
              "--from", help="Only from this time: ISO 8601 with offset, or epoch ms.")] = None,
          end: Annotated[str | None, typer.Option(
              "--to", help="Only before this time: ISO 8601 with offset, or epoch ms.")] = None,
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask; erase at once.")] = False,
          data: DataOpt = None) -> None:
    """Erase streams (optionally only [--from, --to)): keys and blobs destroyed, for good.

    Without --yes it asks you to type "erase"; without a terminal it refuses.

    Example: glucoledger erase --patient alice --stream cgm --yes
    """
    lo = parse_when(start, "--from") if start is not None else None
    hi = parse_when(end, "--to") if end is not None else None
    what = f"{patient}'s {', '.join(stream)}" + (
        f" from {local_iso(lo)}" if lo is not None else "") + (
        f" before {local_iso(hi)}" if hi is not None else "")
    confirm_destruction(yes, f"This destroys {what} for good.", "erase")
    with open_services(data) as services:
        node = services.node
        ident = accounts.identity(node, patient)
        rep = services.erasure.erase_as(ident.id, accounts.keys_of(node, ident, [0]), stream,
                                        lo, hi)
    console.print(f"erased {plural(rep.batches, 'batch', 'batches')} of {what}: keys and "
                  f"blobs destroyed (block {rep.height})")


def recover(patient: Name,
            trusted: Annotated[str, typer.Option(help="The patient's trusted party, who "
                                                 "cosigns.")],
            lost: Annotated[int, typer.Option(help="Which key was lost: 1 or 2.", min=1,
                                              max=2)] = 2,
            data: DataOpt = None) -> None:
    """Rotate out a lost key (or a forgotten password's key) with the other key plus the
    trusted party; the old key stops working from that block.

    Example: glucoledger account recover --patient alice --trusted rosa --lost 2
    """
    with open_node(data) as node:
        r = accounts.recover_key(node, patient, trusted, lost)
    console.print(f"key {lost} of {patient} replaced in block {r.height}; the old key no "
                  "longer signs")


def register(app: typer.Typer) -> None:
    for fn in (grant, revoke, grants, read, readings, report, audit, emergency, erase):
        app.command()(fn)
    account_app.command("recover")(recover)

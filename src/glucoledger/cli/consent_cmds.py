"""Commands for consent: grant, revoke, grants, read, report, audit, emergency, erase, and
``account recover``. Thin: parse, call ``glucoledger.node``, render.

Accounts are named as in the node's address book (``glucoledger account create``); their
custodial keys sign. Every read here (``read``, ``report``) is an audited ``access``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ..crypto import generate
from ..errors import InputError
from ..files import atomic_write
from ..glucose.units import normalize_units
from ..node import accounts
from ..node import emergency as em
from ..node.access import AccessService, RawRelease, SignedSummary
from ..node.audit import audit_trail
from ..node.erasure import ErasureService
from ..node.report import agp_report
from ..node.service import Node
from ..state.accounts_model import patient_policy
from ..state.consent import DAY_MS, Grant, Request, grants_of, to_fhir_consent
from .common import DataOpt, console, open_node, open_node_and_vault, table
from .ledger_cmds import account_app

__all__ = ["register", "write_report"]

Name = Annotated[str, typer.Option(help="An account name from the address book.")]


@contextmanager
def _access(data: Path | None) -> Iterator[tuple[Node, AccessService]]:
    with open_node_and_vault(data) as (node, vault):
        yield node, AccessService(node, vault)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _submit(node: Node, name: str, type_: str, body: dict[str, Any],
            which: list[int] | None = None) -> bytes:
    ident = accounts.identity(node, name)
    stx, _ = node.send(type_, body, ident.id, accounts.keys_of(node, ident, which or [0]))
    return stx.tx_hash


def grant_body(grantee: bytes, streams: list[str], view: str, last_days: int | None,
               start: int | None, end: int | None, valid_days: int, purpose: str, alerts: bool,
               now_ms: int) -> dict[str, Any]:
    if (start is None) != (end is None):
        raise InputError("give both --from and --to (epoch ms), or --last-days")
    window = {"from": start, "to": end} if start is not None else {"last_days": last_days or 14}
    return {"grantee": grantee, "streams": streams, "view": view, "window": window,
            "valid_from": now_ms, "valid_until": now_ms + valid_days * DAY_MS,
            "purpose": purpose, "alerts": alerts}


def grant(patient: Name, to: Annotated[str, typer.Option("--to")],
          streams: Annotated[str, typer.Option(help="Comma-separated streams.")] = "cgm",
          view: Annotated[str, typer.Option(help="raw or summary")] = "summary",
          last_days: Annotated[int | None, typer.Option()] = None,
          start: Annotated[int | None, typer.Option("--from")] = None,
          end: Annotated[int | None, typer.Option("--to-ms")] = None,
          valid_days: int = 90, purpose: str = "treatment", alerts: bool = False,
          data: DataOpt = None) -> None:
    """Grant an account access to your data (a ledger transaction; you sign it)."""
    with open_node(data) as node:
        body = grant_body(accounts.identity(node, to).id, streams.split(","), view, last_days,
                          start, end, valid_days, purpose, alerts, int(time.time() * 1000))
        gid = _submit(node, patient, "consent.grant", body)
    console.print(f"grant {gid.hex()}")


def revoke(patient: Name, grant_id: Annotated[str, typer.Option("--grant")],
           data: DataOpt = None) -> None:
    """Revoke a grant; it stops working from the block that holds the revocation."""
    with open_node(data) as node:
        tx = _submit(node, patient, "consent.revoke", {"grant": bytes.fromhex(grant_id)})
    console.print(f"revoked by {tx.hex()[:16]}")


def grants(patient: Name, fhir: bool = False, data: DataOpt = None) -> None:
    """List a patient's grants (or print them as FHIR R4 Consent resources)."""
    with open_node(data) as node:
        gs = grants_of(node.state, accounts.identity(node, patient).id)
        book = {i.id: i.name for i in accounts.AddressBook(node).all()}
    if fhir:
        console.print_json(json.dumps([to_fhir_consent(g) for g in gs]))
        return
    console.print(table(f"grants of {patient}", ["grant", "to", "streams", "view", "window",
                                                  "valid until", "purpose", "status"],
                        [_grant_row(g, book) for g in gs]))


def _grant_row(g: Grant, book: dict[bytes, str]) -> list[str]:
    w = g.window
    window = f"last {w['last_days']} d" if "last_days" in w else \
        f"{_iso(w['from'])}..{_iso(w['to'])}"
    return [g.id.hex()[:16], book.get(g.grantee, g.grantee.hex()[:16]), ",".join(g.streams),
            g.view, window, _iso(g.valid_until), g.purpose + (" !" if g.emergency else ""),
            g.status]


def read(who: Annotated[str, typer.Option("--as")], patient: Name,
         view: str = "summary", streams: str = "cgm", last_days: int = 14,
         data: DataOpt = None) -> None:
    """Read a patient's data as an account (audited; denied reads are audited too)."""
    with _access(data) as (node, svc):
        ident = accounts.identity(node, who)
        req = Request(accounts.identity(node, patient).id, tuple(sorted(streams.split(","))),
                      view, {"last_days": last_days})
        rel = svc.read_as(ident.id, accounts.keys_of(node, ident, [0]), req)
    if isinstance(rel, SignedSummary):
        s = rel.summary
        console.print(f"TIR {s.tir:.1f} %  TBR<70 {s.tbr70:.1f} %  TBR<54 {s.tbr54:.1f} %  "
                      f"TAR>180 {s.tar180:.1f} %  TAR>250 {s.tar250:.1f} %  mean {s.mean:.1f} "
                      f"mg/dL  CV {s.cv:.1f} %  GMI {s.gmi:.2f} %  active {s.active:.1f} %  "
                      f"days {s.days_with_data}  sufficient {s.sufficient}  GRI {s.gri:.1f} "
                      f"({s.gri_zone})  sensor LOW {s.censored_low}  HIGH {s.censored_high}")
        console.print(f"signed by the node over {len(rel.grounds.commits)} commitments; "
                      f"audited as {rel.grounds.access_tx.hex()[:16]}")
    elif isinstance(rel, RawRelease):
        console.print(f"{len(rel.records)} records released; audited as "
                      f"{rel.grounds.access_tx.hex()[:16]}")


def write_report(node: Node, svc: AccessService, who: str, patient: str, days: int,
                 out: Path, png: bool, *, view: str = "raw", units: str = "mg/dL",
                 streams: tuple[str, ...] = ("cgm",)) -> int:
    """Audited read (``view`` raw or summary), then the AGP report (node/report.py, the one
    pipeline the portal uses too). Returns the readings it drew on."""
    ident = accounts.identity(node, who)
    wanted = tuple(sorted(set(streams) | {"cgm"})) if view == "raw" else ("cgm",)
    req = Request(accounts.identity(node, patient).id, wanted, view, {"last_days": days})
    rel = svc.read_as(ident.id, accounts.keys_of(node, ident, [0]), req)
    assert isinstance(rel, (RawRelease, SignedSummary))
    rep = agp_report(rel, patient=patient, units=units)
    atomic_write(out, rep.html().encode())
    if png:
        atomic_write(out.with_suffix(".png"), rep.png())
    return rep.readings


def report(patient: Name, out: Annotated[Path, typer.Option()] = Path("report.html"),
           days: int = 14, who: Annotated[str | None, typer.Option("--as")] = None,
           png: bool = False,
           view: Annotated[str, typer.Option(help="raw (full AGP with daily profiles) or "
                                             "summary (aggregate parts only)")] = "raw",
           units: Annotated[str, typer.Option(help="mg/dL or mmol/L")] = "mg/dL",
           treatments: Annotated[bool, typer.Option(help="add insulin and carbs to the daily "
                                                     "view (raw)")] = False,
           data: DataOpt = None) -> None:
    """Write the AGP report (HTML, and PNG with --png) from data the reader may see."""
    if view not in ("raw", "summary"):
        raise InputError(f"--view {view!r}: choose raw or summary")
    normalize_units(units)
    streams = ("carbs", "cgm", "insulin") if treatments else ("cgm",)
    with _access(data) as (node, svc):
        n = write_report(node, svc, who or patient, patient, days, out, png, view=view,
                         units=units, streams=streams)
    console.print(f"wrote {out} ({n} readings)" + (f" and {out.with_suffix('.png')}" if png
                                                   else ""))


def audit(patient: Name, data: DataOpt = None) -> None:
    """The patient's audit trail: every read, granted or denied, every emergency request and
    decision, every refused attempt; emergencies first."""
    with open_node(data) as node:
        pid = accounts.identity(node, patient).id
        trail = audit_trail(node, pid)
        book = {i.id: i.name for i in accounts.AddressBook(node).all()}
    console.print(table(f"audit trail of {patient} ({len(trail)} events)",
                        ["when", "block", "event", "who", "outcome", "what", "tx"],
                        [[_iso(e.time_ms), str(e.height),
                          ("EMERGENCY " if e.emergency else "") + e.kind,
                          book.get(e.who, e.who.hex()[:16]),
                          e.outcome + (f":{e.reason}" if e.reason else ""), e.detail[:48],
                          e.tx_hash.hex()[:16]] for e in trail]))


def emergency(clinician: Name, patient: Name, trusted: Name, hours: int = 24, days: int = 14,
              reason: str = "emergency care", data: DataOpt = None) -> None:
    """Break-glass from the operator's console, with both custodial keys at hand: the
    clinician's request, then the trusted party's approval (the same two steps, and the same
    checks, as the portal and the API, where each signs on her own device)."""
    with open_node(data) as node:
        c = accounts.identity(node, clinician)
        t = accounts.identity(node, trusted)
        p = accounts.identity(node, patient)
        req, _ = em.request(node, c.id, accounts.keys_of(node, c, [0]), p.id, hours=hours,
                            days=days, reason=reason)
        done = em.approve(node, t.id, accounts.keys_of(node, t, [0]), req.id)
    if done.status != "approved":
        console.print(f"approved by {trusted}; request {req.id.hex()[:16]} still needs "
                      f"{patient}'s other emergency cosigners")
        return
    console.print(f"emergency access open for {hours} h (grant {req.id.hex()[:16]})")


def erase(patient: Name, stream: Annotated[list[str], typer.Option()],
          start: Annotated[int | None, typer.Option("--from")] = None,
          end: Annotated[int | None, typer.Option("--to")] = None,
          data: DataOpt = None) -> None:
    """Erase streams (optionally only [--from, --to) epoch ms): keys and blobs destroyed."""
    with open_node_and_vault(data) as (node, vault):
        svc = ErasureService(node, vault)
        ident = accounts.identity(node, patient)
        rep = svc.erase_as(ident.id, accounts.keys_of(node, ident, [0]), stream, start, end)
    console.print(f"erased {rep.batches} batches of {','.join(rep.streams)} by transaction "
                  f"{rep.tx_hash.hex()[:16]} (block {rep.height})")


def recover(patient: Name, trusted: Name,
            lost: Annotated[int, typer.Option(help="Which key was lost: 1 or 2.")] = 2,
            data: DataOpt = None) -> None:
    """Rotate out a lost key (or a forgotten password's key) with the other key plus the
    trusted party; the old key stops working from that block."""
    if lost not in (1, 2):
        raise InputError("--lost is 1 or 2")
    with open_node(data) as node:
        p = accounts.identity(node, patient)
        kept = accounts.keys_of(node, p, [2 - lost])[0]
        tkey = accounts.keys_of(node, accounts.identity(node, trusted), [0])[0]
        new = generate()
        keys = (new, kept) if lost == 1 else (kept, new)
        body = {"policy": patient_policy(keys[0].public, keys[1].public, tkey.public)}
        _, r = node.send("account.update", body, p.id, [kept, tkey])
        node.wallet.save(p.key_names[lost - 1], new)
    console.print(f"key {lost} of {patient} replaced in block {r.height}; the old key no "
                  "longer signs")


def register(app: typer.Typer) -> None:
    for fn in (grant, revoke, grants, read, report, audit, emergency, erase):
        app.command()(fn)
    account_app.command("recover")(recover)

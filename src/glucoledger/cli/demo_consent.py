"""The consent chapter of ``glucoledger demo``: grants, audited reads, a revocation, an
emergency, alerts, a tamper attempt caught, an erasure, the audit trail, the AGP report."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import GlucoledgerError
from ..glucose.readings import Batch
from ..glucose.simulate import simulate_patient
from ..ledger.tx import SignedTx
from ..node import accounts, emergency
from ..node import consent_actions as ca
from ..node.access import AccessService, RawRelease, SignedSummary
from ..node.alerts import AlertService
from ..node.audit import audit_trail
from ..node.devices import bind_device
from ..node.erasure import ErasureService, erased_by
from ..node.service import Node
from ..node.services import NodeServices
from ..node.verify import verify_vault
from ..node.world import World
from ..state.consent import DAY_MS, Request
from .common import audit_rows, console, humanize, plural, table
from .data_cmds import uploader_names

__all__ = ["consent_story"]

_SHA256 = re.compile(r"\b([0-9a-f]{16})[0-9a-f]{48}\b")


def consent_story(node: Node, folder: Path, step: Callable[[str], None]) -> None:
    _story(node, folder, step)


def _try(what: str, fn: Callable[[], object], names: dict[bytes, str]) -> list[str]:
    """One row of a story table: what was tried, the decision in words, the whole message
    (names for ids, never cut: the table wraps between words)."""
    try:
        out = fn()
    except GlucoledgerError as exc:
        return [what, f"[red]refused: {exc.code.replace('_', ' ')}[/]",
                humanize(exc.message, names)]
    if isinstance(out, SignedSummary):
        s = out.summary
        return [what, "[green]granted[/]", (f"summary: time in range {s.tir:.1f} %, GMI "
                f"{s.gmi:.2f} %, CV {s.cv:.1f} % (signed by the node over "
                f"{plural(len(out.grounds.commits), 'commitment')})")]
    if isinstance(out, RawRelease):
        flag = " (emergency)" if out.grounds.emergency else ""
        return [what, f"[green]granted{flag}[/]",
                f"{plural(len(out.records), 'reading')} released"]
    return [what, "ok", str(out)]


def _story(node: Node, folder: Path, step: Callable[[str], None]) -> None:
    services = NodeServices.of(node)  # the one composition root; the node stays open
    v, ingest, svc = services.vault, services.ingest, services.access
    now = int(time.time() * 1000)
    step("Care team: an endocrinologist (dr-lee), a diabetes nurse, a caregiver, an ER doctor")
    for name, kind in (("nurse-kim", "clinician"), ("carer-sam", "trusted"),
                       ("dr-er", "clinician")):
        accounts.create_account(node, name, kind)
    who = {n: accounts.identity(node, n) for n in ("alice", "rosa", "dr-lee", "nurse-kim",
                                                   "carer-sam", "dr-er")}
    keys = {n: accounts.keys_of(node, i, [0]) for n, i in who.items()}
    alice = who["alice"].id
    names = accounts.names(node)

    step("Alice's two devices (a CGM and a pen) upload 14 simulated days into the vault")
    world = World.load(node)
    cgm_dev, pen = world.add_device("ALICE-CGM"), world.add_device("ALICE-PEN", model="PEN")
    for dev in (cgm_dev, pen):
        bind_device(node, alice, keys["alice"], dev.id)
    sim = simulate_patient(42, 14, now - 14 * DAY_MS)
    for stream, dev in (("cgm", cgm_dev), ("insulin", pen), ("carbs", pen)):
        recs = sim[stream]
        b = Batch(stream, tuple(recs), recs[0].time_ms, recs[-1].time_ms, len(recs))
        n = len(ingest.ingest_batches([b], patient=alice, uploader=dev.id, signer=dev.key))
        names.update(uploader_names(node))
        console.print(f"{stream}: {plural(len(recs), 'reading')} in "
                      f"{plural(n, 'sealed batch', 'sealed batches')}")

    step("Alice grants (each a ledger transaction she signs)")

    def grant(to: str, view: str, window: dict[str, int], streams: list[str],
              alerts: bool = False) -> bytes:
        return ca.grant(node, alice, keys["alice"], who[to].id, streams=streams, view=view,
                        window=window, valid_from=now - 60_000, valid_until=now + 90 * DAY_MS,
                        alerts=alerts)

    grant("dr-lee", "summary", {"last_days": 14}, ["cgm"])
    nurse_grant = grant("nurse-kim", "raw", {"last_days": 30}, ["cgm", "insulin", "carbs"])
    grant("carer-sam", "summary", {"last_days": 1}, ["cgm"], alerts=True)
    console.print("Alice lets dr-lee see summaries of her last 14 days, nurse-kim every "
                  "reading of her last 30 days, and carer-sam a summary of her last day with "
                  "alerts; each grant lasts 90 days")

    step("Alerts: lows and highs of at least 15 minutes raise alert transactions")
    alerts = AlertService(node, v)
    notes = alerts.scan(alice)
    rules: dict[str, int] = {}
    for n_ in notes:
        rules[n_.rule] = rules.get(n_.rule, 0) + 1
    console.print(f"{plural(len(notes), 'alert')} queued for carer-sam: "
                  + ", ".join(plural(c, k.replace("_", " ")) for k, c in sorted(rules.items())))

    def req(name: str, view: str, streams: tuple[str, ...] = ("cgm",), days: int = 14,
            patient: bytes | None = None) -> SignedTx:
        r = Request(patient or alice, streams, view, {"last_days": days})
        return svc.request(who[name].id, keys[name], r)

    step("Reads: every one is an access transaction ordered before anything is released")
    nurse_req = req("nurse-kim", "raw", ("cgm", "insulin"))
    sim1 = (world.directory.resolve("patients", "sim-1")
            if "sim-1" in world.directory.registry.accounts() else who["rosa"].id)
    rows = [
        _try("dr-lee: 14-day summary", lambda: svc.read(req("dr-lee", "summary").raw), names),
        _try("dr-lee: raw readings", lambda: svc.read(req("dr-lee", "raw").raw), names),
        _try("nurse-kim: raw cgm+insulin", lambda: svc.read(nurse_req.raw), names),
        _try("nurse-kim: replays that signed request", lambda: svc.read(nurse_req.raw), names),
        _try("nurse-kim: another patient's data",
             lambda: svc.read(req("nurse-kim", "raw", patient=sim1).raw), names),
        _try("dr-er: raw (no grant)", lambda: svc.read(req("dr-er", "raw").raw), names),
    ]
    console.print(table("reads", ["who / what", "decision", "detail"], rows))

    step("Alice revokes the nurse's grant; from that block on she is denied")
    ca.revoke(node, alice, keys["alice"], nurse_grant)
    console.print("Alice revoked nurse-kim's grant")
    console.print(table("after revocation", ["who / what", "decision", "detail"], [
        _try("nurse-kim: raw cgm", lambda: svc.read(req("nurse-kim", "raw").raw), names)]))

    step("Emergency: dr-er asks; nothing opens until rosa approves from her own account")
    body = {"patient": alice, "hours": 4, "days": 3, "reason": "unresponsive, suspected hypo"}
    alone = node.submit([node.build("emergency.open", body, who["dr-er"].id,
                                    keys["dr-er"]).raw])[0]
    asked, _ = emergency.request(node, who["dr-er"].id, keys["dr-er"], alice, hours=4, days=3,
                                 reason="unresponsive, suspected hypo")
    waiting = _try("dr-er: raw while the request waits",
                   lambda: svc.read(req("dr-er", "raw", days=3).raw), names)
    seen = emergency.pending_for(node, who["rosa"].id)
    done = emergency.approve(node, who["rosa"].id, keys["rosa"], asked.id)
    console.print(table("emergency", ["who / what", "decision", "detail"], [
        ["dr-er alone, no trusted party",
         f"[red]refused: {alone.result.code.replace('_', ' ')}[/]",
         humanize(alone.result.message, names)],
        ["dr-er asks (on the ledger)", f"[yellow]{asked.status}[/]",
         f"rosa sees {len(seen)} request: {seen[0].reason if seen else ''}"],
        waiting,
        ["rosa approves with her own key", f"[green]{done.status}[/]",
         "4 hours of raw access, flagged"],
        _try("dr-er: raw, last 3 days",
             lambda: svc.read(req("dr-er", "raw", days=3).raw), names),
    ]))

    step("A tamper attempt: one byte of a stored blob flipped; the next read and verify catch it")
    row = v.batches(alice, "cgm")[-1]
    path, offset, _ = v.blobs.locate(row.ct)  # type: ignore[attr-defined]
    original = path.read_bytes()
    at = offset + 40
    path.write_bytes(original[:at] + bytes([original[at] ^ 1]) + original[at + 1:])
    # A fresh reader, as after a restart: nothing decrypted earlier is held in memory, so the
    # read goes to the altered blob on disk.
    fresh = AccessService(node, v)
    caught = _try("dr-lee: summary over the altered batch (fresh reader)",
                  lambda: fresh.read(req("dr-lee", "summary").raw), names)
    try:
        verify_vault(node.store, v, erased=erased_by(node))
        caught2 = ["verify-vault", "[red]missed[/]", ""]
    except GlucoledgerError as exc:
        # A SHA-256 as its first 16 hex digits, as the blob is named in the row above: a
        # whole 64-digit hash does not fit a table cell on a terminal without being cut.
        detail = _SHA256.sub(r"\1", humanize(exc.message, names))
        caught2 = ["verify-vault", f"[red]caught: {exc.code}[/]", detail]
    console.print(table("tamper", ["check", "result", "detail"], [caught, caught2]))
    path.write_bytes(original)
    console.print("blob restored from a backup copy")

    step("AGP report (HTML + PNG), from data the reader may see (an audited raw read)")
    from .consent_cmds import write_report

    out = folder / "report.html"
    n = write_report(node, svc, "alice", "alice", 14, out, png=True)
    console.print(f"wrote {out} and {out.with_suffix('.png')} ({n} readings)")

    step("Erasure (GDPR art. 17): alice erases her carbs stream; keys and blobs destroyed")
    erasure = ErasureService(node, v, outbox=alerts.db, readers=[svc])
    rep = erasure.erase(erasure.request(alice, keys["alice"], ["carbs"]).raw)
    vr = verify_vault(node.store, v, erased=erased_by(node))
    console.print(f"Alice erased {plural(rep.batches, 'batch', 'batches')} of carbs (block "
                  f"{rep.height}); verify-vault: {plural(vr.batches, 'batch', 'batches')}, "
                  f"{len(vr.erased)} reported as erased: {vr.describe_erasures()[0]}")

    step("Alice's audit trail (emergencies first)")
    trail = audit_trail(node, alice, vault=v)
    rows = [[r[1], r[2], r[3], r[4], r[5]] for r in audit_rows(trail, accounts.names(node))]
    console.print(table(f"Alice's audit trail ({plural(len(trail), 'event')})",
                        ["block", "event", "who", "outcome", "what"], rows))
    alerts.close()
    services.close()

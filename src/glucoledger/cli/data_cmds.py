"""Commands for device data: simulate, ingest, batches, prove-reading, verify-proof, firmware.

Thin: parse, call ``glucoledger.node`` (ingest, proofs, firmware, world), render. The
simulated makers, patients and devices live in the node's wallet and ``directory.json``
(``node/world.py``); real devices keep their own keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError, NotFoundError
from ..glucose.readings import STREAMS, Batch, parse_time
from ..glucose.simulate import simulate_patient, simulate_with_simglucose
from ..ledger.checkpoint import NoteVerifier
from ..node import accounts
from ..node import firmware as fw
from ..node.ingest import IngestService, open_vault
from ..node.proofs import dumps_proof, prove_reading, verify_proof
from ..node.service import Node
from ..node.verify import verify_vault
from ..node.world import World
from .common import DataOpt, console, data_dir, open_node, open_node_and_vault, table

__all__ = ["demo_data", "register"]

DAY_MS = 86_400_000


@contextmanager
def _service(data: Path | None) -> Iterator[tuple[Node, IngestService]]:
    with open_node_and_vault(data) as (node, vault):
        yield node, IngestService(node, vault)


def _patient_id(node: Node, name: str) -> bytes:
    """A patient by address-book name, simulated-patient name, or id."""
    try:
        ident = accounts.identity(node, name)
    except NotFoundError:
        return World.load(node).directory.resolve("patients", name)
    if ident.kind != "patient":
        raise InputError(f"{name!r} is a {ident.kind}, not a patient")
    return ident.id


def _world(node: Node) -> World:
    try:
        return World.load(node)
    except NotFoundError:
        return World.create(node)


def _time(text: str) -> int:
    if text.isdigit():
        return int(text)
    return parse_time(text)[0]


def simulate_into(node: Node, service: IngestService, patients: int, days: int, *,
                  seed: int = 1, use_simglucose: bool = False,
                  now_ms: int | None = None) -> list[list[str]]:
    """Simulate ``patients`` for ``days`` days and ingest them through their own devices."""
    world = _world(node)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    start = now - days * DAY_MS - 3_600_000
    rows = []
    first = len(world.directory.doc["patients"])
    for k in range(first, first + patients):
        name = f"sim-{k + 1}"
        patient = world.add_patient(name)
        device = world.add_device(f"SIM-{k + 1:04d}", patient=patient)
        if use_simglucose:
            streams = simulate_with_simglucose(seed + k, days, start)
        else:
            streams = simulate_patient(seed + k, days, start)
        count = 0
        batches = []
        for stream, recs in streams.items():
            if recs:
                batches.append(Batch(stream, tuple(recs), recs[0].time_ms, recs[-1].time_ms,
                                     len(recs)))
        receipts = service.ingest_batches(batches, patient=patient.id, uploader=device.id,
                                          signer=device.key, batch_size=288)
        count = sum(r.count for r in receipts)
        rows.append([name, patient.id.hex()[:16], device.serial, str(len(receipts)),
                     str(count), receipts[0].trust if receipts else "-"])
    return rows


def simulate(
    patients: Annotated[int, typer.Option("--patients", min=1, max=1000)] = 3,
    days: Annotated[int, typer.Option("--days", min=1, max=365)] = 14,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    simglucose: Annotated[bool, typer.Option(
        "--simglucose/--builtin", help="Use the UVA/Padova simulator (simglucose) if "
        "installed; slow (about 8 s per simulated day).")] = False,
    data: DataOpt = None,
) -> None:
    """Simulate patients with their own devices and ingest their data in day batches."""
    with _service(data) as (node, service):
        rows = simulate_into(node, service, patients, days, seed=seed,
                             use_simglucose=simglucose)
    console.print(table("simulated and ingested", ["patient", "account", "device", "batches",
                                                   "records", "trust"], rows))


def ingest(
    file: Annotated[Path, typer.Argument(help="JSON lines (docs/ingest-format.md).")],
    patient: Annotated[str, typer.Option("--patient", help="Patient name or id.")],
    device: Annotated[str, typer.Option("--device", help="Device serial or id.")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000)] = 288,
    data: DataOpt = None,
) -> None:
    """Ingest a JSON-lines file as uploads signed by a (simulated) device of this node."""
    with _service(data) as (node, service):
        world = World.load(node)
        p, d = world.patient(patient), world.device(device)
        receipts = service.ingest_jsonl(file, patient=p.id, uploader=d.id, signer=d.key,
                                        batch_size=batch_size)
    before = sum(1 for r in receipts if r.duplicate)
    title = f"ingested {file}" + (f" ({before} of {len(receipts)} batches were stored before: "
                                  "their original receipts)" if before else "")
    console.print(table(title, ["stream", "seq", "records", "trust", "log index", "blob",
                                "stored"],
                        [[r.stream, str(r.seq), str(r.count), r.trust, str(r.tx_index),
                          r.ct.hex()[:16], "before" if r.duplicate else "now"]
                         for r in receipts]))


def batches(
    patient: Annotated[str, typer.Option("--patient", help="Patient name or id.")],
    stream: Annotated[Optional[str], typer.Option("--stream")] = None,  # noqa: UP007
    data: DataOpt = None,
) -> None:
    """List a patient's committed batches, with how they were attested."""
    with _service(data) as (node, service):
        pid = _patient_id(node, patient)
        rows = service.vault.batches(pid, stream)
    console.print(table("batches", ["stream", "hours (UTC)", "records", "trust", "custody",
                                    "uploader", "seq", "log index"],
                        [[r.stream, f"{time.strftime('%Y-%m-%d %H:00', time.gmtime(r.start/1000))}"
                          f" +{(r.end - r.start) // 3_600_000}h", str(r.count), r.trust,
                          r.custody, r.uploader.hex()[:12], str(r.seq), str(r.tx_index)]
                         for r in rows]))


def prove(
    patient: Annotated[str, typer.Option("--patient", help="Patient name or id.")],
    time_: Annotated[str, typer.Option("--time", help="Epoch ms or ISO 8601 with offset.")],
    out: Annotated[Path, typer.Option("--out")],
    stream: Annotated[str, typer.Option("--stream")] = "cgm",
    data: DataOpt = None,
) -> None:
    """Write a self-contained proof of one reading (checked with `verify-proof`)."""
    if stream not in STREAMS:
        raise InputError(f"unknown stream {stream!r}; use one of {', '.join(STREAMS)}")
    with _service(data) as (node, service):
        pid = _patient_id(node, patient)
        doc = prove_reading(node, service.vault, pid, stream, _time(time_))
        vkey = node.verifier().vkey()
    out.write_bytes(dumps_proof(doc))
    console.print(f"wrote {out}; check it anywhere with:\n  glucoledger verify-proof {out} "
                  f"--node-key '{vkey}'")


def verify_proof_cmd(
    file: Annotated[Path, typer.Argument()],
    node_key: Annotated[str, typer.Option("--node-key", help="The node's verifier key.")],
) -> None:
    """Check a reading proof offline: only the file and the node's verifier key."""
    result = verify_proof(file.read_bytes(), NoteVerifier.parse(node_key))
    r = result.reading
    console.print(f"[bold green]valid[/]: {type(r).__name__} {r.to_value()}")
    console.print(f"patient {result.patient.hex()[:16]}, stream {result.stream}, "
                  f"[bold]{result.trust}[/] by {result.uploader.hex()[:16]} (seq {result.seq}); "
                  f"log index {result.log_index} in checkpoint {result.checkpoint.size} "
                  f"(block {result.checkpoint.height}) signed by {result.signer}")


def verify_vault_cmd(data: DataOpt = None) -> None:
    """Check every committed batch's blob (hash and decryption) against the ledger."""
    from ..node.vaultcheck import verify_vault_folder

    report = verify_vault_folder(data_dir(data))  # read-only; names every damaged item
    console.print(f"[bold green]OK[/]: {report.batches} batches, {report.decrypted} decrypted, "
                  f"{report.self_custody} in patients' custody ({report.seconds:.2f} s)")
    for line in report.describe_erasures():
        console.print(f"  {line}")


firmware_app = typer.Typer(help="Firmware releases (after TUF): publish, revoke, floor, verify.",
                           no_args_is_help=True)
ModelOpt = Annotated[str, typer.Option("--model")]
VersionOpt = Annotated[str, typer.Option("--version")]


@firmware_app.command("verify")
def firmware_verify(
    image: Annotated[Path, typer.Argument()], model: ModelOpt, version: VersionOpt,
    installed: Annotated[Optional[str], typer.Option("--installed")] = None,  # noqa: UP007
    data: DataOpt = None,
) -> None:
    """Accept IMAGE only if it is a released, unrevoked, threshold-signed, newer version."""
    with open_node(data) as node:
        rel = fw.verify_image(node.state, image.read_bytes(), model, version, installed)
    console.print(f"[bold green]accepted[/]: {rel.model} {rel.version}, {rel.length} bytes, "
                  f"sha256 {rel.sha256.hex()[:16]}…, signed with weight {rel.signers}")


@firmware_app.command("publish")
def firmware_publish(image: Annotated[Path, typer.Argument()], model: ModelOpt,
                     version: VersionOpt, data: DataOpt = None) -> None:
    """Publish IMAGE as a release, signed by two of the simulated maker's three keys."""
    with open_node(data) as node:
        w = _world(node)
        fw.publish(node, w.maker, w.maker_keys[:2], model, version, image.read_bytes())
    console.print(f"released {model} {version}")


@firmware_app.command("revoke")
def firmware_revoke(model: ModelOpt, version: VersionOpt, data: DataOpt = None) -> None:
    with open_node(data) as node:
        w = World.load(node)
        fw.revoke(node, w.maker, w.maker_keys[:2], model, version)
    console.print(f"revoked {model} {version}")


@firmware_app.command("floor")
def firmware_floor(model: ModelOpt, version: VersionOpt, data: DataOpt = None) -> None:
    with open_node(data) as node:
        w = World.load(node)
        fw.set_floor(node, w.maker, w.maker_keys[:2], model, version)
    console.print(f"rollback floor of {model} is now {version}")


def demo_data(node: Node, folder: Path, *, patients: int = 3, days: int = 14) -> None:
    """The demo's data chapter: simulate, ingest through devices, prove one reading."""
    vault = open_vault(node)
    try:
        service = IngestService(node, vault)
        t = time.perf_counter()
        rows = simulate_into(node, service, patients, days)
        took = time.perf_counter() - t
        console.print(table(f"{patients} patients x {days} days, ingested in {took:.1f} s",
                            ["patient", "account", "device", "batches", "records", "trust"],
                            rows))
        world = World.load(node)
        pid = world.directory.resolve("patients", rows[0][0])
        row = vault.batches(pid, "cgm")[len(vault.batches(pid, "cgm")) // 2]
        _, batch = vault.open(row)
        reading = batch.items[len(batch.items) // 2]
        proof = dumps_proof(prove_reading(node, vault, pid, "cgm", reading.time_ms))
        path = folder / "proof.json"
        path.write_bytes(proof)
        result = verify_proof(proof, NoteVerifier.parse(node.verifier().vkey()))
        console.print(f"proof of one reading ({len(proof)} bytes) -> {path}: "
                      f"[bold green]valid[/], {result.reading.to_value()['mgdl']} mg/dL, "
                      f"{result.trust}")
        report = verify_vault(node.store, vault)
        console.print(f"vault: {report.batches} batches, every blob's hash and tag verified")
    finally:
        vault.close()


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command()(ingest)
    app.command()(batches)
    app.command("prove-reading")(prove)
    app.command("verify-proof")(verify_proof_cmd)
    app.command("verify-vault")(verify_vault_cmd)
    app.add_typer(firmware_app, name="firmware")

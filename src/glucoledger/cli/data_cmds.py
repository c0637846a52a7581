"""Commands for device data: simulate, ingest, batches, prove-reading, verify-proof, firmware.

Thin: parse, call ``glucoledger.node`` (ingest, proofs, firmware, world), render. The
simulated maker's and devices' keys live in the node's wallet, their names in the one
registry of names (``node/registry.py``); real devices keep their own keys.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError, TooLargeError
from ..files import atomic_write, storage_error
from ..glucose.readings import STREAMS, Batch
from ..glucose.simulate import simulate_patient, simulate_with_simglucose
from ..ledger.checkpoint import NoteVerifier
from ..node import accounts
from ..node import firmware as fw
from ..node.ingest import IngestService
from ..node.proofs import dumps_proof, prove_reading, verify_proof
from ..node.registry import Registry
from ..node.service import Node
from ..node.services import NodeServices
from ..node.verify import verify_vault
from ..node.world import World
from .common import (
    ID_CHARS,
    DataOpt,
    JsonOpt,
    choice,
    console,
    data_dir,
    in_file,
    local_iso,
    open_node,
    open_services,
    out_file,
    parse_when,
    plural,
    print_json,
    read_text,
    table,
)

__all__ = ["demo_data", "register"]

DAY_MS = 86_400_000


@contextmanager
def _service(data: Path | None) -> Iterator[tuple[Node, IngestService]]:
    with open_services(data) as services:
        yield services.node, services.ingest


def _patient_id(node: Node, name: str) -> bytes:
    """A patient account (custodial or simulated: one registry of names) by name or id."""
    ident = accounts.identity(node, name)
    if ident.kind != "patient":
        raise InputError(f"{name!r} is a {ident.kind}, not a patient")
    return ident.id


def simulate_into(node: Node, service: IngestService, patients: int, days: int, *,
                  seed: int = 1, use_simglucose: bool = False,
                  now_ms: int | None = None) -> list[list[str]]:
    """Simulate ``patients`` for ``days`` days and ingest them through their own devices."""
    world = World.open(node)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    start = now - days * DAY_MS - 3_600_000
    rows = []
    first = world.next_simulated() - 1
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
        rows.append([name, device.serial, str(len(receipts)), str(count),
                     receipts[0].trust if receipts else "-"])
    return rows


def simulate(
    patients: Annotated[int, typer.Option("--patients", min=1, max=1000,
                                          help="How many simulated patients.")] = 3,
    days: Annotated[int, typer.Option("--days", min=1, max=365,
                                      help="How many days each.")] = 14,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**31 - 1,
                                      help="Random seed (same seed, same data).")] = 1,
    simglucose: Annotated[bool, typer.Option(
        "--simglucose/--builtin", help="Use the UVA/Padova simulator (simglucose) if "
        "installed; slow (about 8 s per simulated day).")] = False,
    data: DataOpt = None,
) -> None:
    """Simulate patients with their own devices and ingest their data in day batches.

    Example: glucoledger simulate --patients 2 --days 7
    """
    with _service(data) as (node, service):
        rows = simulate_into(node, service, patients, days, seed=seed,
                             use_simglucose=simglucose)
    console.print(table("simulated and ingested", ["patient", "device", "sealed batches",
                                                   "readings", "trust"], rows))


def ingest(
    file: Annotated[Path, in_file("JSON lines (docs/ingest-format.md).")],
    patient: Annotated[str, typer.Option("--patient", help="The patient: an account name.")],
    device: Annotated[str, typer.Option("--device", help="The device's serial (bound to the "
                                        "patient with `device bind`).")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000,
                                            help="Readings per sealed batch.")] = 288,
    data: DataOpt = None,
) -> None:
    """Ingest a JSON-lines file as uploads signed by a device of this node, for its patient.

    Example: glucoledger ingest readings.jsonl --patient alice --device CGM-0001
    """
    read_text(file, "JSON-lines readings")  # a binary or unreadable file is refused here
    with _service(data) as (node, service):
        pid = _patient_id(node, patient)
        d = World.load(node).device(device)
        receipts = service.ingest_jsonl(file, patient=pid, uploader=d.id, signer=d.key,
                                        batch_size=batch_size)
    total = sum(r.count for r in receipts)
    before = sum(1 for r in receipts if r.duplicate)
    title = (f"{plural(total, 'reading')} of {patient} from {device}, "
             f"{plural(len(receipts), 'sealed batch', 'sealed batches')}"
             + (f" ({before} of {len(receipts)} batches were stored before: their original "
                "receipts)" if before else ""))
    console.print(table(title, ["stream", "seq", "readings", "trust", "log index", "blob",
                                "stored"],
                        [[r.stream, str(r.seq), str(r.count), r.trust, str(r.tx_index),
                          r.ct.hex()[:16], "before" if r.duplicate else "now"]
                         for r in receipts]))


def batches(
    patient: Annotated[str, typer.Option("--patient", help="Patient name or id.")],
    stream: Annotated[str | None, typer.Option(
        "--stream", help=f"Only this stream ({', '.join(STREAMS)}).",
        callback=choice(*STREAMS))] = None,
    as_json: JsonOpt = False,
    data: DataOpt = None,
) -> None:
    """List a patient's committed batches, with how they were attested.

    Example: glucoledger batches --patient alice --stream cgm
    """
    with _service(data) as (node, service):
        pid = _patient_id(node, patient)
        found = service.vault.batches(pid, stream)
        names = uploader_names(node)
    cols = ["stream", "from", "to", "readings", "trust", "custody", "uploader", "seq",
            "log index"]
    rows = [[r.stream, local_iso(r.start), local_iso(r.end), str(r.count), r.trust, r.custody,
             names.get(r.uploader, r.uploader.hex()[:ID_CHARS]), str(r.seq), str(r.tx_index)]
            for r in found]
    if as_json:
        print_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    console.print(table(f"batches of {patient}", cols, rows))


def prove(
    patient: Annotated[str, typer.Option("--patient", help="The patient: an account name.")],
    time_: Annotated[str, typer.Option("--time", help="The reading's exact time: epoch ms, or "
                                       "ISO 8601 with offset (as `readings` lists it).")],
    out: Annotated[Path, out_file("Where to write the proof (JSON).")],
    stream: Annotated[str, typer.Option("--stream", help=f"The stream ({', '.join(STREAMS)}).",
                                        callback=choice(*STREAMS))] = "cgm",
    data: DataOpt = None,
) -> None:
    """Write a self-contained proof of one reading (checked with `verify-proof`).

    Example: glucoledger prove-reading --patient alice
    --time 2026-01-02T08:05:00.000+01:00 --out p.json
    """
    with _service(data) as (node, service):
        pid = _patient_id(node, patient)
        doc = prove_reading(node, service.vault, pid, stream, parse_when(time_, "--time"))
        vkey = node.verifier().vkey()
    atomic_write(out, dumps_proof(doc))
    console.print(f"wrote {out}; check it anywhere with:\n  glucoledger verify-proof {out} "
                  f"--node-key '{vkey}'")


def verify_proof_cmd(
    file: Annotated[Path, in_file("The proof file `prove-reading` wrote.")],
    node_key: Annotated[str, typer.Option("--node-key", help="The node's verifier key "
                                          "(`checkpoint --vkey`).")],
) -> None:
    """Check a reading proof offline: only the file and the node's verifier key.

    Example: glucoledger verify-proof p.json --node-key 'node-1+1a2b3c4d+AbC...'
    """
    text = read_text(file, "proof (JSON) that `prove-reading` wrote")
    result = verify_proof(text.encode(), NoteVerifier.parse(node_key))
    r = result.reading
    console.print(f"[bold green]valid[/]: {type(r).__name__} {r.to_value()}")
    console.print(f"patient {result.patient.hex()[:16]}, stream {result.stream}, "
                  f"[bold]{result.trust}[/] by {result.uploader.hex()[:16]} (seq {result.seq}); "
                  f"log index {result.log_index} in checkpoint {result.checkpoint.size} "
                  f"(block {result.checkpoint.height}) signed by {result.signer}")


def verify_vault_cmd(data: DataOpt = None) -> None:
    """Check every committed batch's blob (hash and decryption) against the ledger.

    Example: glucoledger verify-vault --data ./clinic
    """
    from ..node.vaultcheck import verify_vault_folder

    report = verify_vault_folder(data_dir(data))  # read-only; names every damaged item
    console.print(f"[bold green]OK[/]: {report.batches} batches, {report.decrypted} decrypted, "
                  f"{report.self_custody} in patients' custody ({report.seconds:.2f} s)")
    for line in report.describe_erasures():
        console.print(f"  {line}")
    if report.zk_days or report.zk_unchecked:
        console.print(f"  {report.zk_days} zero-knowledge day commitment(s) open to the same "
                      "readings as the batches' SHA-256 commitments")
    for line in report.zk_unchecked:
        console.print(f"  {line}")


firmware_app = typer.Typer(help="Firmware releases (after TUF): publish, revoke, floor, verify.",
                           no_args_is_help=True)
ModelOpt = Annotated[str, typer.Option("--model", help="The device model (e.g. CGM-G7).")]
VersionOpt = Annotated[str, typer.Option("--version", help="The release version (e.g. 1.2.0).")]
ImageArg = Annotated[Path, in_file("The firmware image file.")]


@firmware_app.command("verify")
def firmware_verify(
    image: ImageArg, model: ModelOpt, version: VersionOpt,
    installed: Annotated[str | None, typer.Option(
        "--installed", help="The version installed now (a downgrade is refused).")] = None,
    data: DataOpt = None,
) -> None:
    """Accept IMAGE only if it is a released, unrevoked, threshold-signed, newer version.

    Example: glucoledger firmware verify fw.bin --model CGM-G7 --version 1.2.0 --installed 1.1.0
    """
    with open_node(data) as node:
        rel = fw.verify_digest(node.state, *_image(image), model, version, installed)
    console.print(f"[bold green]accepted[/]: {rel.model} {rel.version}, {rel.length} bytes, "
                  f"sha256 {rel.sha256.hex()[:16]}…, signed with weight {rel.signers}")


@firmware_app.command("publish")
def firmware_publish(image: ImageArg, model: ModelOpt,
                     version: VersionOpt, data: DataOpt = None) -> None:
    """Publish IMAGE as a release, signed by two of the simulated maker's three keys.

    Example: glucoledger firmware publish fw.bin --model CGM-G7 --version 1.2.0
    """
    with open_node(data) as node:
        w = World.open(node)
        fw.publish_digest(node, w.maker, w.maker_keys[:2], model, version, *_image(image))
    console.print(f"released {model} {version}")


@firmware_app.command("revoke")
def firmware_revoke(model: ModelOpt, version: VersionOpt, data: DataOpt = None) -> None:
    """Revoke a release: devices refuse it from now on.

    Example: glucoledger firmware revoke --model CGM-G7 --version 1.2.0
    """
    with open_node(data) as node:
        w = World.load(node)
        fw.revoke(node, w.maker, w.maker_keys[:2], model, version)
    console.print(f"revoked {model} {version}")


@firmware_app.command("floor")
def firmware_floor(model: ModelOpt, version: VersionOpt, data: DataOpt = None) -> None:
    """Set the rollback floor: versions below it are refused.

    Example: glucoledger firmware floor --model CGM-G7 --version 1.1.0
    """
    with open_node(data) as node:
        w = World.load(node)
        fw.set_floor(node, w.maker, w.maker_keys[:2], model, version)
    console.print(f"rollback floor of {model} is now {version}")


def _image(path: Path) -> tuple[bytes, int]:
    """The image's SHA-256 and length, read in pieces: an image may be large (up to
    ``MAX_IMAGE``), and a file that never ends (/dev/zero) is refused past it, not read
    into memory."""
    h, length = hashlib.sha256(), 0
    try:
        with path.open("rb") as f:
            while piece := f.read(1 << 20):
                length += len(piece)
                if length > fw.MAX_IMAGE:
                    raise TooLargeError(f"{path} is larger than {fw.MAX_IMAGE >> 30} GiB, the "
                                        "largest firmware image: not a firmware image?")
                h.update(piece)
    except OSError as exc:
        raise storage_error(exc, path, "reading the firmware image") from None
    return h.digest(), length


def uploader_names(node: Node) -> dict[bytes, str]:
    """Device and gateway ids this node has names (serials) for."""
    return {bytes.fromhex(e["id"]): serial
            for serial, e in Registry(node.data_dir).devices().items()}


def demo_data(node: Node, folder: Path, *, patients: int = 3, days: int = 14) -> None:
    """The demo's data chapter: simulate, ingest through devices, prove one reading."""
    with NodeServices.of(node) as services:  # the node stays open for the next chapters
        vault, service = services.vault, services.ingest
        t = time.perf_counter()
        rows = simulate_into(node, service, patients, days)
        took = time.perf_counter() - t
        console.print(table(f"{patients} patients x {days} days, ingested in {took:.1f} s",
                            ["patient", "device", "sealed batches", "readings", "trust"],
                            rows))
        world = World.load(node)
        pid = world.directory.resolve("patients", rows[0][0])
        row = vault.batches(pid, "cgm")[len(vault.batches(pid, "cgm")) // 2]
        _, batch = vault.open(row)
        reading = batch.items[len(batch.items) // 2]
        proof = dumps_proof(prove_reading(node, vault, pid, "cgm", reading.time_ms))
        path = folder / "proof.json"
        atomic_write(path, proof)
        result = verify_proof(proof, NoteVerifier.parse(node.verifier().vkey()))
        console.print(f"proof of one reading ({len(proof)} bytes) -> {path}: "
                      f"[bold green]valid[/], {result.reading.to_value()['mgdl']} mg/dL, "
                      f"{result.trust}")
        report = verify_vault(node.store, vault)
        console.print(f"vault: {report.batches} batches, every blob's hash and tag verified")


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command()(ingest)
    app.command()(batches)
    app.command("prove-reading")(prove)
    app.command("verify-proof")(verify_proof_cmd)
    app.command("verify-vault")(verify_vault_cmd)
    app.add_typer(firmware_app, name="firmware")

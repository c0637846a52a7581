"""``glucoledger device register/bind/list/revoke``: a patient's devices from the command line.

Thin: parse, call ``glucoledger.node`` (``world`` for the node's maker and device keys,
``devices`` for the ledger transactions), render. A device registered here is made by this
node's maker (created on first use, keys in the sealed wallet) and keeps its signing key in
the wallet under its serial, so ``ingest --device SERIAL`` can sign uploads as it; a real
device keeps its own key and is registered over the API (``POST /api/devices``).
Binding is the patient's transaction, signed with her custodial key (state/devices.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..node import accounts
from ..node import devices as dv
from ..node.world import World, check_serial
from .common import ID_CHARS, DataOpt, JsonOpt, console, open_node, print_json, table

__all__ = ["device_app"]

device_app = typer.Typer(help="A patient's devices: register, bind, list, revoke.",
                         no_args_is_help=True)

Serial = Annotated[str, typer.Option("--serial", help="The device's serial number, as "
                                     "printed on it (e.g. CGM-0001).")]
Patient = Annotated[str, typer.Option("--patient", help="The patient: an account name "
                                      "(see `account list`).")]


@device_app.command("register")
def register(serial: Serial,
             model: Annotated[str, typer.Option(help="The device model (e.g. CGM-G7).")] = "CGM-G7",
             data: DataOpt = None) -> None:
    """Register a device made by this node's maker; its signing key stays in the wallet.

    The key is saved before the ledger sees the device: if stopped, run it again to finish.

    Example: glucoledger device register --serial CGM-0001 --model CGM-G7
    """
    check_serial(serial)  # before World.open creates the node's maker on first use
    with open_node(data) as node:
        dev = World.open(node).add_device(serial, model)
    console.print(f"registered {model} {serial} (device {dev.id.hex()[:ID_CHARS]}); bind it "
                  f"with: glucoledger device bind --serial {serial} --patient NAME")


@device_app.command("bind")
def bind(serial: Serial, patient: Patient, data: DataOpt = None) -> None:
    """Bind a registered device to a patient (she signs): its uploads become her data.

    Example: glucoledger device bind --serial CGM-0001 --patient alice
    """
    with open_node(data) as node:
        dev = World.load(node).device(serial)
        who = accounts.identity(node, patient)
        dv.bind_device(node, who.id, accounts.keys_of(node, who, [0]), dev.id)
    console.print(f"{serial} is now {patient}'s device; upload with: glucoledger ingest FILE "
                  f"--patient {patient} --device {serial}")


@device_app.command("list")
def list_(patient: Annotated[str | None, typer.Option(
              "--patient", help="Only this patient's devices.")] = None,
          as_json: JsonOpt = False, data: DataOpt = None) -> None:
    """List devices and gateways, with their patient, status and last sequence number.

    Example: glucoledger device list --patient alice --json
    """
    with open_node(data) as node:
        pid = accounts.identity(node, patient).id if patient else None
        found = dv.uploaders(node, patient=pid)
        names = accounts.names(node)
    cols = ["serial", "model", "kind", "patient", "status", "last seq", "id"]
    rows = [[u.serial or "-", u.model or "-", u.kind,
             "-" if u.patient is None else names.get(u.patient, u.patient.hex()[:ID_CHARS]),
             u.status, str(u.last_seq), u.id.hex()[:ID_CHARS]]
            for u in sorted(found, key=lambda u: (u.serial or "", u.id))]
    if as_json:
        print_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    console.print(table(f"devices ({len(rows)})", cols, rows))


@device_app.command("revoke")
def revoke(serial: Serial,
           patient: Annotated[str | None, typer.Option(
               "--patient", help="Revoke as this patient (default: as the maker).")] = None,
           data: DataOpt = None) -> None:
    """Revoke a device (lost or compromised): its uploads are refused from the next block.

    Example: glucoledger device revoke --serial CGM-0001 --patient alice
    """
    with open_node(data) as node:
        world = World.load(node)
        dev = world.device(serial)
        if patient is None:
            dv.revoke_device(node, world.maker, world.maker_keys[:1], dev.id)
        else:
            who = accounts.identity(node, patient)
            dv.revoke_device(node, who.id, accounts.keys_of(node, who, [0]), dev.id)
    console.print(f"revoked {serial}: its uploads are refused from now on")

"""``glucoledger demo``: the whole story on the embedded default, told step by step."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..crypto import generate
from ..errors import InputError
from ..files import atomic_write
from ..node import accounts
from ..node.service import Node
from ..state.accounts_model import patient_policy
from .common import console, humanize, table

__all__ = ["register"]


def _step(text: str) -> None:
    console.print(f"\n[bold cyan]▸ {text}[/]")


def demo(
    data: Annotated[Path | None, typer.Option(
        "--data", help="Folder for the demo node (default: a new temporary folder).")] = None,
) -> None:
    """Tell the whole story on a new node: accounts, devices, data, grants, reads, verify.

    Example: glucoledger demo --data ./story
    """
    folder = data if data is not None else Path(tempfile.mkdtemp(prefix="glucoledger-demo-"))
    if (folder / "node.json").exists():
        raise InputError(f"{folder} already holds a node; give the demo an empty folder")
    # The story is prose: wrapped between words at the terminal's width (the console's
    # soft wrap would leave the terminal to cut lines mid-word). Keys, the signed note and
    # the command to copy stay whole on one line each.
    soft, console.soft_wrap = console.soft_wrap, False
    try:
        _story(folder)
    finally:
        console.soft_wrap = soft
    console.print(f"\nNext: glucoledger verify --data {folder} --from-checkpoint "
                  f"{folder / 'checkpoint.txt'}", soft_wrap=True)


def _story(folder: Path) -> None:
    _step(f"A new chain in {folder}")
    node = Node.init(folder)
    with node:
        console.print(f"node key (verifier): {node.verifier().vkey()}", soft_wrap=True)
        _step("Accounts: a trusted party, a patient (2 keys + the trusted party), a clinician, "
              "a device maker")
        made = [
            accounts.create_account(node, "rosa", "trusted"),
            accounts.create_account(node, "alice", "patient", trusted="rosa"),
            accounts.create_account(node, "dr-lee", "clinician"),
            accounts.create_account(node, "acme", "maker"),
        ]
        console.print(table("registered", ["name", "kind", "block"],
                            [[i.name, i.kind, str(r.height)] for i, r in made]))

        alice = accounts.identity(node, "alice")
        rosa = accounts.identity(node, "rosa")
        k1, k2 = accounts.keys_of(node, alice)
        rosa_key = accounts.keys_of(node, rosa)[0]

        _step("Refused transactions are ordered and recorded with a reason; they change nothing")
        stranger = generate()
        new_key = generate()
        rotate = {"policy": patient_policy(k1.public, new_key.public, rosa_key.public)}
        first = node.build("multisig.rule", {"proposer": made[2][0].id,
                                             "types": ["multisig.rule"]}, alice.id, [k1])
        attempts = [
            ("a key that is not alice's",
             node.build("account.update", rotate, alice.id, [stranger])),
            ("one key where two are needed", node.build("account.update", rotate, alice.id, [k1])),
            ("a rule no one may set", first),
        ]
        receipts = node.submit([s.raw for _, s in attempts])
        replay = node.submit([node.build("account.update", rotate, alice.id, [k1, rosa_key]).raw])
        replayed = node.submit([node.build("account.update", rotate, alice.id, [k1, rosa_key],
                                           nonce=node.next_nonce(alice.id) - 1).raw])
        names = accounts.names(node)
        rows = [[what, r.result.code.replace("_", " "), humanize(r.result.message, names)]
                for (what, _), r in zip(attempts, receipts, strict=True)]
        rows.append(["the same nonce again (a replay)",
                     replayed[0].result.code.replace("_", " "),
                     humanize(replayed[0].result.message, names)])
        console.print(table("refused", ["attempt", "reason", "message"], rows))

        _step("Key recovery: alice lost key 2; key 1 plus her trusted party rotate it out")
        console.print(f"alice's key 1 and rosa together replace key 2: "
                      f"{'accepted' if replay[0].ok else replay[0].result.code} "
                      f"(block {replay[0].height})")
        node.wallet.save("alice.2", new_key)
        old = node.submit([node.build("account.update", rotate, alice.id, [k2, k1]).raw])[0]
        console.print(f"the lost key no longer signs for alice: refused "
                      f"({old.result.code.replace('_', ' ')})")

        _step("Device data: 3 simulated patients x 14 days, uploaded by their own registered "
              "devices (signed, sequenced), sealed in the vault, committed; one reading proven")
        from .data_cmds import demo_data

        demo_data(node, folder)

        from .demo_consent import consent_story

        consent_story(node, folder, _step)

        _step("The latest checkpoint (C2SP signed note)")
        note = node.checkpoint()
        atomic_write(folder / "checkpoint.txt", note)
        console.print(note.decode().rstrip(), soft_wrap=True)

        _step("verify: re-derive every hash, root, signature and link from the store")
        report = node.verify()
        console.print(f"[bold green]OK[/]: {report.blocks} blocks, {report.transactions} "
                      f"transactions ({report.rejected} refused, recorded as such), log root "
                      f"{report.log_root.hex()}")


def register(app: typer.Typer) -> None:
    app.command()(demo)

"""Commands for zero-knowledge claims: zk-setup, zk-contribute, prove-claim, verify-claim.

Thin: parse, call ``node/zkclaims.py`` and ``zk/toolchain.py``, render. The toolchain and the
ceremony's files live outside the repository (``$GLUCOLEDGER_ZK_HOME``, default
``~/.cache/glucoledger-zk``). ``--profile test`` is the test suite's small circuit (the first
50 minutes of each day); real claims use the default ``day`` profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..files import atomic_write
from ..ledger.checkpoint import NoteVerifier
from ..node import accounts
from ..node.services import NodeServices
from ..node.zkclaims import ZkClaims, dumps_claim, verify_claim
from ..zk.toolchain import PROFILES, Toolchain, load_keys
from .common import DataOpt, choice, console, in_file, open_services, out_file, read_text

__all__ = ["register"]

ProfileOpt = Annotated[str, typer.Option(
    "--profile", help="Circuit profile: day (300 five-minute slots per local day) or test.",
    callback=choice(*PROFILES))]


def _claims_for(services: NodeServices, patient: str, profile: str
                ) -> tuple[ZkClaims, accounts.Identity]:
    """The node's claims service for ``profile`` and the patient (a patient account)."""
    ident = accounts.identity(services.node, patient)
    if ident.kind != "patient":
        raise typer.BadParameter(f"{patient!r} is a {ident.kind}, not a patient",
                                 param_hint="--patient")
    return ZkClaims(services.node, services.vault, Toolchain(PROFILES[profile])), ident


def zk_setup(profile: ProfileOpt = "day") -> None:
    """Install circom2, snarkjs and circomlib (npm), build the circuits, and close the
    ceremony with the public beacon. Run `zk-contribute` before it for a real consortium.

    Example: glucoledger zk-setup
    """
    tc = Toolchain(PROFILES[profile])
    if not tc.installed():
        console.print(f"installing circom2, snarkjs and circomlib under {tc.home} ...")
        tc.install()
    keys = tc.finish()
    console.print(f"[bold green]ready[/]: the {profile!r} profile's keys are in {tc.setup_dir} "
                  f"(setup {keys.digest[:16]})")
    console.print("note: a setup closed by the beacon alone is for development and tests; "
                  "for claims others rely on, consortium members run `zk-contribute` first "
                  "(docs/threat-model.md)")


def zk_contribute(
    name: Annotated[str, typer.Option("--name", help="Who contributes (recorded in the "
                                      "ceremony's file).")],
    phase: Annotated[int, typer.Option(
        "--phase", min=1, max=2, help="1: the powers of tau (every member, first); 2: each "
        "circuit's keys (every member, after phase 1 is closed).")] = 1,
    profile: ProfileOpt = "day",
) -> None:
    """Add one secret contribution to the ceremony, before `zk-setup` closes it.

    Phase 1 first (each member in turn), then phase 2 (each member in turn); `zk-setup`
    closes both with the public beacon. One honest contribution in each phase keeps proofs
    unforgeable (docs/threat-model.md).

    Example: glucoledger zk-contribute --name hospital-a --phase 1
    """
    tc = Toolchain(PROFILES[profile])
    if tc.ready():
        console.print("the ceremony is already closed: contributions come before `zk-setup`")
        raise typer.Exit(2)
    if not tc.installed():
        console.print(f"installing circom2, snarkjs and circomlib under {tc.home} ...")
        tc.install()
    if phase == 1:
        if tc.phase1_closed():
            console.print("phase 1 is closed: contribute to phase 2 (`--phase 2`)")
            raise typer.Exit(2)
        path = tc.contribute(name)
        console.print(f"contributed to phase 1 as {name!r}: {path}; hand the ceremony folder "
                      f"({tc.setup_dir}) to the next member")
        return
    paths = tc.contribute_phase2(name)
    console.print(f"contributed to phase 2 as {name!r}: {', '.join(p.name for p in paths)} in "
                  f"{tc.setup_dir}; hand the folder to the next member, or run `zk-setup` "
                  "to close the ceremony")


def prove_claim(
    patient: Annotated[str, typer.Option("--patient", help="The patient: an account name.")],
    out: Annotated[Path, out_file("Where to write the claim file (JSON).")],
    claim: Annotated[str | None, typer.Option("--claim", help="tir>=P, tbr54<=Q, tbr54=0, "
                                              "'mean in A..B' or gmi<G.")] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=90,
                                      help="Whole local days, ending at the last midnight.")
                    ] = 14,
    to: Annotated[str, typer.Option("--to", help="To whom (optional; sealed on the "
                                    "ledger: only her node reads it).")
                  ] = "",
    disclosure: Annotated[str | None, typer.Option(
        "--disclosure", help="Prove under a disclosure she already signed (its id, 8+ hex "
        "digits, as `audit` shows it) instead of signing a new one.")] = None,
    profile: ProfileOpt = "day",
    data: DataOpt = None,
) -> None:
    """Prove a claim about the patient's glucose without revealing a reading.

    The patient first signs a disclosure (the claim, the period, to whom) with her custodial
    key: it is on the ledger and in her audit trail before the node proves anything.

    Example: glucoledger prove-claim --patient alice --claim "tir>=70" --days 14 --out c.json
    """
    if (claim is None) == (disclosure is None):
        raise typer.BadParameter("give --claim (she signs a new disclosure) or --disclosure "
                                 "(one she signed), not both", param_hint="--claim")
    with open_services(data) as services:
        node = services.node
        zk, ident = _claims_for(services, patient, profile)
        if claim is not None:
            signed = zk.disclose(ident.id, accounts.keys_of(node, ident, [0]), claim, days,
                                 node.now_ms(), to)
            console.print(f"{patient} signed disclosure {signed.id.hex()[:16]} ({signed.claim} "
                          f"over {signed.days} day(s)); it is in her audit trail")
            disclosure = signed.id.hex()
        assert disclosure is not None
        doc = zk.prove_claim(ident.id, disclosure)
        vkey = node.verifier().vkey()
    atomic_write(out, dumps_claim(doc))
    console.print(f"wrote {out} ({doc['claim']} over {len(doc['windows'])} day(s)); check it "
                  f"anywhere with:\n  glucoledger verify-claim {out} --node-key '{vkey}'")


def verify_claim_cmd(
    file: Annotated[Path, in_file("The claim file `prove-claim` wrote.")],
    node_key: Annotated[str, typer.Option("--node-key", help="The node's verifier key "
                                          "(`checkpoint --vkey`).")],
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="The signed checkpoint note you hold; the claim must be made "
        "at it.", exists=True, dir_okay=False)] = None,
    keys: Annotated[Path | None, typer.Option(
        "--keys", help="Folder with day.vkey.json and claim.vkey.json (default: this "
        "machine's zk-setup).", exists=True, file_okay=False)] = None,
    profile: ProfileOpt = "day",
) -> None:
    """Check a claim offline, in Python: the file, the node's key and the verification keys.

    Example: glucoledger verify-claim c.json --node-key 'node-1+1a2b3c4d+AbC...'
    """
    prof = PROFILES[profile]
    vkeys = load_keys(keys, prof) if keys is not None else Toolchain(prof).keys()
    note = read_text(checkpoint, "checkpoint note").encode() if checkpoint else None
    text = read_text(file, "claim file (JSON) that `prove-claim` wrote")
    result = verify_claim(text.encode(), NoteVerifier.parse(node_key), vkeys, checkpoint=note)
    console.print(f"[bold green]valid[/]: {result.describe()}")


def zk_commit(
    patient: Annotated[str, typer.Option("--patient", help="The patient: an account name.")],
    days: Annotated[int, typer.Option("--days", min=1, max=90,
                                      help="Whole local days, ending at the last midnight.")
                    ] = 1,
    profile: ProfileOpt = "day",
    data: DataOpt = None,
) -> None:
    """Record the Poseidon commitments of the patient's last whole days (run nightly).

    Example: glucoledger zk-commit --patient alice --days 1
    """
    with open_services(data) as services:
        node = services.node
        zk, ident = _claims_for(services, patient, profile)
        records = zk.commit_days(ident.id, days, node.now_ms())
    console.print(f"{len(records)} of {days} day(s) committed (days without readings have "
                  "none)")


def withdraw_claim(
    patient: Annotated[str, typer.Option("--patient", help="The patient's account name.")],
    disclosure: Annotated[str, typer.Option(
        "--disclosure", help="The disclosure's id (8+ hex digits, as `audit` shows it).")],
    data: DataOpt = None,
) -> None:
    """Withdraw a patient's disclosure: her node proves nothing more under it.

    Claim files already made stay proofs about those days (a withdrawal cannot reach copies
    handed over). The withdrawal is on the ledger and in her audit trail.

    Example: glucoledger withdraw-claim --patient alice --disclosure 3f2a9c01
    """
    with open_services(data) as services:
        zk, ident = _claims_for(services, patient, "day")  # any profile: nothing is proved
        d = zk.withdraw(ident.id, accounts.keys_of(services.node, ident, [0]), disclosure)
    console.print(f"{patient} withdrew disclosure {d.id.hex()[:16]} ({d.claim} over {d.days} "
                  f"day(s)) at block {d.withdrawn_height}; no more proofs are made under it. "
                  "Files already handed over stay proofs about those days.")


def register(app: typer.Typer) -> None:
    app.command("zk-setup")(zk_setup)
    app.command("zk-contribute")(zk_contribute)
    app.command("zk-commit")(zk_commit)
    app.command("prove-claim")(prove_claim)
    app.command("verify-claim")(verify_claim_cmd)
    app.command("withdraw-claim")(withdraw_claim)

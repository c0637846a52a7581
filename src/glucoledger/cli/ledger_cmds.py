"""Ledger commands: init, upgrade, account, blocks, checkpoint, verify, keygen."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..crypto import generate, keyfile
from ..errors import InputError, NotFoundError
from ..ledger.checkpoint import NoteVerifier
from ..node import accounts
from ..node.service import Node, verify_folder
from ..node.verify import IntegrityError
from .common import (
    ID_CHARS,
    AccessRecordsOpt,
    DataOpt,
    JsonOpt,
    RulesOpt,
    ask_secret,
    console,
    data_dir,
    err_console,
    in_file,
    local_iso,
    open_node,
    out_file,
    print_json,
    progress,
    read_text,
    table,
)

__all__ = ["register"]

account_app = typer.Typer(help="Create and inspect accounts.", no_args_is_help=True)


def init(
    data: DataOpt = None,
    chain: Annotated[str, typer.Option(
        help="Chain name (the checkpoint origin).")] = "glucoledger/local",
    name: Annotated[str, typer.Option(
        help="This node's name (its checkpoint key name).")] = "node-1",
) -> None:
    """Create a new chain with one organization and its node in --data.

    Example: glucoledger init --data ./clinic
    """
    node = Node.init(data_dir(data), chain=chain, name=name)
    with node:
        console.print(f"created chain [bold]{chain}[/] in {node.data_dir}")
        console.print(f"node key: {node.verifier().vkey()}")


def upgrade(data: DataOpt = None, rules: RulesOpt = None,
            access_records: AccessRecordsOpt = None) -> None:
    """Move this chain to the newest state rule set and access record format (a
    gov.upgrade transaction its organization signs): the newer refusals and the smaller access
    records apply from the next transaction on; what is on the ledger replays as decided.

    For a chain made by `glucoledger init` (one organization). A consortium's members
    upgrade together: `glucoledger consortium propose upgrade`, cosign, submit.

    Example: glucoledger upgrade --data ./clinic
    """
    from ..node.proposals import upgrade as run_upgrade
    from ..node.proposals import upgrade_body, versions

    folder = data_dir(data)
    if (folder / "member.txt").exists():
        raise InputError("this folder is a consortium member: members change the chain's "
                         "rules together: `glucoledger consortium propose upgrade --out "
                         "p.cbor`, then each member runs `consortium cosign p.cbor` and one "
                         "runs `consortium submit p.cbor`")
    with open_node(data) as node:
        body = upgrade_body(node, rules=rules, access_records=access_records)
        if not body:
            console.print(f"{folder} is on {versions(node)}, the newest this glucoledger "
                          "knows: nothing to upgrade")
            return
        stx, receipt = run_upgrade(node, node.wallet.load("org"), body)
        console.print(f"{folder} is now on {versions(node)}, from block {receipt.height} on "
                      f"(gov.upgrade {stx.tx_hash.hex()[:ID_CHARS]})")


@account_app.command("create")
def account_create(
    name: Annotated[str, typer.Argument(help="A local name for the account.")],
    kind: Annotated[str, typer.Option(
        help="patient, clinician, trusted, organization, maker, ...")] = "patient",
    trusted: Annotated[str | None, typer.Option(
        help="Trusted party (patients): an existing account name.")] = None,
    sponsor: Annotated[str | None, typer.Option(
        help="Sponsoring account (default: this node's organization).")] = None,
    alg: Annotated[str, typer.Option(help="ed25519 or p256.")] = "ed25519",
    data: DataOpt = None,
) -> None:
    """Create a custodial account (keys kept in the node's sealed wallet).

    Keys are saved before the ledger sees the account: if stopped, run it again to finish.

    Example: glucoledger account create alice --kind patient --trusted rosa --data ./clinic
    """
    if alg not in ("ed25519", "p256"):
        raise InputError("--alg must be ed25519 or p256")
    with open_node(data) as node:
        ident, receipt = accounts.create_account(node, name, kind, sponsor=sponsor,
                                                 trusted=trusted, alg=alg)
        console.print(f"{kind} [bold]{name}[/] = {ident.id.hex()} (block {receipt.height})")


@account_app.command("list")
def account_list(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """List the accounts this node knows by name.

    Example: glucoledger account list --json --data ./clinic
    """
    with open_node(data) as node:
        found = [(ident, node.account(ident.id)) for ident in accounts.AddressBook(node).all()]
    if as_json:
        print_json([{"name": i.name, "kind": a.kind, "id": i.id.hex(), "keys": len(a.cosigners),
                     "nonce": a.nonce} for i, a in found])
        return
    console.print(table("accounts", ["name", "kind", "id", "keys", "nonce"],
                        [[i.name, a.kind, i.id.hex()[:ID_CHARS], str(len(a.cosigners)),
                          str(a.nonce)] for i, a in found]))


@account_app.command("show")
def account_show(name: Annotated[str, typer.Argument(help="The account's name.")],
                 data: DataOpt = None) -> None:
    """Show an account's cosigners, weights and thresholds.

    Example: glucoledger account show alice --data ./clinic
    """
    with open_node(data) as node:
        ident = accounts.identity(node, name)
        acct = node.account(ident.id)
        console.print(f"[bold]{name}[/] {acct.kind} {acct.id.hex()} nonce {acct.nonce}")
        rows = [[c.key.alg, c.key.key_id.hex()[:16],
                 ", ".join(f"{k}={v}" for k, v in sorted(c.weights.items()))]
                for c in acct.cosigners]
        console.print(table("cosigners", ["alg", "key id", "weights"], rows))
        console.print("thresholds: " + ", ".join(f"{k}={v}"
                                                 for k, v in sorted(acct.thresholds.items())))


def blocks(data: DataOpt = None,
           last: Annotated[int, typer.Option(help="How many recent blocks.", min=1,
                                             max=100_000)] = 10,
           as_json: JsonOpt = False) -> None:
    """Show the most recent blocks.

    Example: glucoledger blocks --last 5 --data ./clinic
    """
    with open_node(data) as node:
        node.sync()
        found = [(h, bhash, hdr, sum(1 for r in results if not r.ok))
                 for h, bhash, hdr, results in node.store.recent_blocks(last)]
    if as_json:
        print_json([{"height": h, "time": local_iso(hdr.time), "time_ms": hdr.time,
                     "transactions": hdr.tx_count, "refused": refused,
                     "log_size": hdr.log_size, "hash": bhash.hex()}
                    for h, bhash, hdr, refused in found])
        return
    console.print(table("blocks", ["height", "time", "transactions", "refused", "log size",
                                   "hash"],
                        [[str(h), local_iso(hdr.time), str(hdr.tx_count), str(refused),
                          str(hdr.log_size), bhash.hex()[:ID_CHARS]]
                         for h, bhash, hdr, refused in found]))


def checkpoint(
    data: DataOpt = None,
    vkey: Annotated[bool, typer.Option("--vkey",
                                       help="Print the node's verifier key instead.")] = False,
    out: Annotated[Path | None, out_file("Also write the checkpoint to this file.")] = None,
    final: Annotated[bool, typer.Option("--final", help="The latest final checkpoint, cosigned "
                                        "by the consortium's threshold.")] = False,
) -> None:
    """Print the latest signed checkpoint (C2SP signed note).

    Example: glucoledger checkpoint --out kept.txt --data ./clinic
    """
    with open_node(data) as node:
        if vkey:
            console.print(node.verifier().vkey(), soft_wrap=True)
            return
        note = final_checkpoint(node) if final else node.checkpoint()
        if out is not None:
            out.write_bytes(note)
        typer.echo(note.decode(), nl=False)


def final_checkpoint(node: Node) -> bytes:
    note = node.store.get_meta("final")
    if not isinstance(note, bytes):
        raise NotFoundError("no final checkpoint yet: this is not a consortium member, or its "
                            "`glucoledger node` has not seen the threshold of signatures")
    return note


def _verifiers(node_key: str | None) -> list[NoteVerifier] | None:
    if node_key is None:
        return None
    text = read_text(Path(node_key), "verifier key") if os.path.isfile(node_key) else node_key
    return [NoteVerifier.parse(line) for line in text.split() if line.strip()]


def verify(
    data: DataOpt = None,
    from_checkpoint: Annotated[Path | None, in_file(
        "A checkpoint you kept: the store must still extend it.",
        option="--from-checkpoint")] = None,
    node_key: Annotated[str | None, typer.Option(
        help="Verifier key(s) (vkey text or a file) to trust instead of the node's own.")] = None,
    need: Annotated[int, typer.Option(
        help="Signatures from --node-key keys the checkpoint must carry (a consortium's "
             "threshold: require a final checkpoint).", min=1, max=1000)] = 1,
) -> None:
    """Re-derive every hash, root, signature and link; exit non-zero naming every bad spot.

    Example: glucoledger verify --from-checkpoint kept.txt --data ./clinic
    """
    folder = data_dir(data)
    held = read_text(from_checkpoint, "checkpoint").encode() if from_checkpoint else None
    with progress() as bar:
        task = bar.add_task("verifying blocks", total=None)
        try:
            report = verify_folder(
                folder, from_checkpoint=held, node_keys=_verifiers(node_key), need=need,
                progress=lambda done, total: bar.update(task, completed=done, total=total))
        except IntegrityError as exc:
            f = exc.finding
            err_console.print(f"[bold red]FAILED[/] ({f.kind})")
            if f.detail is None:
                rows = [["block height", str(f.height) if f.height is not None else "-"],
                        ["transaction index",
                         str(f.tx_index) if f.tx_index is not None else "-"],
                        ["transaction hash", f.tx_hash or "-"], ["what", f.what],
                        ["expected", f.expected], ["found", f.found]]
                err_console.print(table("first bad spot", ["", ""], rows))
            if len(exc.findings) > 1:
                # Field findings as a table; whole sentences (the log, the wallet, the
                # research side files) one a line after it.
                fielded = [g for g in exc.findings if g.detail is None]
                err_console.print(f"every bad spot ({len(exc.findings)}):")
                if fielded:
                    err_console.print(table(
                        "in the chain store",
                        ["block", "transaction", "what", "expected", "found"],
                        [[str(g.height) if g.height is not None else "-",
                          str(g.tx_index) if g.tx_index is not None else "-",
                          g.what, g.expected, g.found] for g in fielded]))
                for g in exc.findings:
                    if g.detail is not None:
                        err_console.print(f"  {g.describe()}", soft_wrap=True)
            for note in exc.unchecked:
                err_console.print(f"  {note}")
            raise
    console.print(
        f"[bold green]OK[/]: {report.blocks} blocks, {report.transactions} transactions "
        f"({report.rejected} rejected, recorded as such), log size {report.log_size}, "
        f"root {report.log_root.hex()[:16]}…, {report.tx_per_second:,.0f} tx/s"
    )
    from ..node.pending import interrupted

    for note in [*report.notes, *interrupted(folder)]:
        console.print(f"  {note}")
    if report.checkpoint_height is not None:
        console.print(f"consistent with your checkpoint at height {report.checkpoint_height}")
    from ..node.vaultcheck import vault_expected

    if vault_expected(folder):  # a missing vault.db is damage once the ledger commits batches
        from .data_cmds import verify_vault_cmd

        verify_vault_cmd(data)  # every committed batch's blob: hash, tag, or "erased by"


def keygen(
    out: Annotated[Path, out_file("Where to write the encrypted key file.")],
    alg: Annotated[str, typer.Option(help="ed25519 or p256.")] = "ed25519",
    password_env: Annotated[str | None, typer.Option(
        help="Read the password from this environment variable instead of a prompt.")] = None,
) -> None:
    """Make a self-custody key, encrypted at rest with Argon2id (RFC 9106) and AES-256-GCM.

    Example: glucoledger keygen --out alice.key
    """
    if alg not in ("ed25519", "p256"):
        raise InputError("--alg must be ed25519 or p256")
    if out.exists():
        raise InputError(f"{out} exists; choose another path (keys are never overwritten)")
    password = (os.environ.get(password_env, "") if password_env
                else ask_secret("password", instead=", or give --password-env VAR"))
    if len(password) < 8:
        raise InputError("use a password of at least 8 characters")
    key = generate(alg)  # type: ignore[arg-type]
    keyfile.save(out, key, password)
    console.print(f"wrote {out}: {alg} key {key.public.key_id.hex()[:16]}")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(upgrade)
    app.add_typer(account_app, name="account")
    app.command()(blocks)
    app.command()(checkpoint)
    app.command()(verify)
    app.command()(keygen)

"""Consortium commands: node, consortium (keys, node-key, genesis, sign, etcd-auth,
etcd-user, init, status, submit, export, import, rejoin, propose, cosign), cluster (up,
down), verify-anchor. Parse, call ``node``, render."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from .. import codec
from ..crypto import PrivateKey
from ..errors import InputError, NotFoundError, PermissionDeniedError
from ..files import atomic_write
from ..node import control, devcluster
from ..node.blockexport import export_blocks, import_blocks
from ..node.genesis_file import Genesis, Member, create_member, init_member, member_of
from ..node.service import Node, NodeConfig, etcd_chain_key
from ..ordering.etcd import EtcdOrderer
from ..runtime import long_running_gc
from ..state.accounts import NEW_ACCESS_RECORDS, NEW_RULES
from .common import (
    AccessRecordsOpt,
    DataOpt,
    RulesOpt,
    console,
    data_dir,
    in_file,
    open_node,
    out_file,
    read_text,
)

__all__ = ["register"]

consortium_app = typer.Typer(help="Set up and operate a consortium member.", no_args_is_help=True)
cluster_app = typer.Typer(help="A local development consortium (etcd + nodes on loopback).",
                          no_args_is_help=True)

OrdererOpt = Annotated[str | None, typer.Option(
    "--orderer", help="etcd://HOST:PORT[,HOST:PORT...] (default: the one in node.json).")]

#: The largest height, position or count a number option takes (SQLite's INTEGER).
MAX_INT = 2**63 - 1


def node(
    data: DataOpt = None,
    orderer: OrdererOpt = None,
    name: Annotated[str | None, typer.Option(
        help="This member's name (checked against node.json).")] = None,
    port: Annotated[int, typer.Option(
        help="Control port (0: any free port).", min=0, max=65535)] = 0,
    host: Annotated[str, typer.Option(
        help="The name or address the control endpoint listens on and other members reach "
        "(it must be in the node certificate: `consortium keys --host`). Off this machine "
        "it is served over mutual TLS only.")] = "127.0.0.1",
    tls: Annotated[bool, typer.Option(
        "--tls", help="Serve over mutual TLS on loopback too.")] = False,
    compact_every: Annotated[int, typer.Option(
        help="Compact the log once every member stored this many entries past its start.",
        min=1, max=1_000_000_000)] = 20_000,
    anchor_endpoint: Annotated[str | None, typer.Option(
        help="Anchor final checkpoints to this Ethereum JSON-RPC URL ('tester': "
        "in-process).")] = None,
    anchor_every: Annotated[float, typer.Option(
        help="Seconds between anchors.", min=1.0, max=86_400.0)] = 60.0,
    workers: Annotated[int, typer.Option(
        help="Processes checking signatures when a read of the log or a submit brings 256 "
        "transactions or more (catching up, rejoining, large submits). 1: all in this "
        "process, for members sharing a machine; on a machine of its own, its cores.",
        min=1, max=64)] = 1,
) -> None:
    """Run a consortium member: follow the etcd log, derive and cosign blocks, serve control.

    Example: glucoledger node --data /srv/gl --host a.example.org --port 7001
    """
    folder = data_dir(data)
    config = NodeConfig.load(folder)
    if name is not None and name != config.name:
        raise InputError(f"{folder} is member {config.name}, not {name}")
    if orderer is not None and orderer != config.orderer:
        NodeConfig(config.chain, config.name, orderer).save(folder)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print(f"member {config.name} of {config.chain} on {orderer or config.orderer}")
    long_running_gc()
    control.run_node(folder, port=port, stop=stop, compact_every=compact_every,
                     anchor_endpoint=anchor_endpoint, anchor_every=anchor_every, host=host,
                     tls=tls, workers=workers)


def verify_anchor(
    endpoint: Annotated[str, typer.Option(
        help="Ethereum JSON-RPC URL of the anchoring chain.")],
    data: DataOpt = None,
    height: Annotated[int | None, typer.Option(
        help="The anchored block (default: the latest anchor).", min=0, max=MAX_INT)] = None,
    checkpoint_file: Annotated[Path | None, in_file(
        "A cosigned checkpoint to check against (default: this node's stored one).",
        option="--checkpoint")] = None,
) -> None:
    """Check an anchor recorded on the ledger against the public chain and the checkpoint.

    Example: glucoledger verify-anchor --endpoint http://127.0.0.1:8545 --data /srv/gl
    """
    from ..node.anchor import check_recorded, connect

    cosigned = (read_text(checkpoint_file, "cosigned checkpoint").encode()
                if checkpoint_file is not None else None)
    with open_node(data) as n:
        cp, record = check_recorded(n, connect(endpoint), height, cosigned)
    console.print(f"[bold green]OK[/]: block {cp.height} (size {cp.size}, root "
                  f"{cp.root.hex()[:16]}…) is anchored in chain {record['chain_id']} block "
                  f"{record['block_number']}, tx {record['tx_hash'].hex()}")


@consortium_app.command("keys")
def keys(name: Annotated[str, typer.Option(help="The organization's name.")],
         data: DataOpt = None,
         host: Annotated[list[str] | None, typer.Option(
             help="A host name or IP address of this member's node, for its TLS certificate "
             "(repeat; default 127.0.0.1 and localhost).")] = None) -> None:
    """Create a member folder: node key, organization key, TLS CA and node certificate;
    print the member line (it carries the TLS CA).

    Example: glucoledger consortium keys --name org-a --data /srv/gl --host a.example.org
    """
    member = create_member(data_dir(data), name, host)
    console.print(member.line(), soft_wrap=True)


@consortium_app.command("node-key")
def node_key(data: DataOpt = None) -> None:
    """Make a new node key for a rotation (kept in the wallet next to the current one) and
    print its vkey for `consortium propose rotate-key --vkey`. The node signs with it from
    the height the rotation states, and with its old key before.

    Example: glucoledger consortium node-key --data /srv/gl
    """
    from ..crypto import generate
    from ..ledger.checkpoint import NoteVerifier

    name, wallet = member_of(data_dir(data))
    taken = set(wallet.names())
    slot = next(f"node-{i}" for i in range(1, len(taken) + 2) if f"node-{i}" not in taken)
    key = generate("ed25519")
    wallet.save(slot, key)
    console.print(NoteVerifier(name, key.public).vkey(), soft_wrap=True)


@consortium_app.command("rotate-cert")
def rotate_cert(data: DataOpt = None) -> None:
    """Make this member's next TLS identity (a new CA, node and etcd client certificates for
    the same host names) in DATA/tls/next/ and print the CA file for `consortium propose
    rotate-cert --ca`. The node switches to it at the height the rotation states.

    Example: glucoledger consortium rotate-cert --data /srv/gl
    """
    import datetime

    from ..node.tlsrotation import prepare

    folder = data_dir(data)
    name, _ = member_of(folder)
    ca = prepare(folder, name, datetime.datetime.now(datetime.UTC))
    console.print(f"{name}: next TLS identity in {ca.parent}; propose it with `glucoledger "
                  f"consortium propose rotate-cert --name {name} --ca {ca}`", soft_wrap=True)


@consortium_app.command("genesis")
def genesis(
    out: Annotated[Path, out_file("Where to write the genesis file.")],
    member: Annotated[list[str], typer.Option(
        help="A member line from `consortium keys` (repeat).")],
    threshold: Annotated[int, typer.Option(
        help="Signatures that make a checkpoint final.", min=1, max=1000)],
    chain: Annotated[str, typer.Option(help="Chain name.")] = "glucoledger/consortium",
) -> None:
    """Write an (unsigned) genesis file naming the members, their keys and the threshold.

    Example: glucoledger consortium genesis --member LINE_A --member LINE_B --member LINE_C
    --threshold 2 --out genesis.json
    """
    doc = Genesis(chain, threshold, tuple(Member.parse_line(m) for m in member), {},
                  access_records=NEW_ACCESS_RECORDS, rules=NEW_RULES)
    out.write_text(doc.to_json())
    console.print(f"wrote {out}: {len(doc.members)} members, threshold {threshold}; now "
                  "`glucoledger consortium sign` in each member's folder")


@consortium_app.command("sign")
def sign(file: Annotated[Path, in_file("The genesis file (signed in place).")],
         data: DataOpt = None) -> None:
    """Add this member's node-key signature to the genesis file.

    Example: glucoledger consortium sign genesis.json --data /srv/gl
    """
    name, wallet = member_of(data_dir(data))
    doc = Genesis.load(file).sign(name, wallet.load("node"))
    file.write_text(doc.to_json())
    missing = doc.missing()
    console.print(f"signed as {name}; " + (f"still missing: {', '.join(missing)}" if missing
                                           else "complete"))


@consortium_app.command("init")
def init(genesis_file: Annotated[Path, in_file("The consortium's signed genesis file.",
                                               option="--genesis")],
         orderer: Annotated[str, typer.Option(help="etcd://HOST:PORT[,...]")],
         data: DataOpt = None) -> None:
    """Join the chain named by the genesis file (appends the genesis if the log is empty).

    Example (on machine a, whose etcd member is this organization's own): glucoledger
    consortium init --genesis genesis.json --orderer 'etcd://a:2379?tls=/srv/gl/tls'
    --data /srv/gl
    """
    doc = Genesis.load(genesis_file)
    tls_dir = data_dir(data) / "tls"
    if doc.trust_bundle() and tls_dir.is_dir():  # the orderer's TLS needs it at once
        atomic_write(tls_dir / "trust.pem", doc.trust_bundle())
    with EtcdOrderer.from_url(orderer, etcd_chain_key(doc.chain)) as ord_:
        init_member(data_dir(data), doc, orderer, ord_)
    console.print(f"member folder {data_dir(data)} joined {doc.chain}; start it with "
                  f"`glucoledger node --data {data_dir(data)}`")


@consortium_app.command("etcd-auth")
def etcd_auth(genesis_file: Annotated[Path, in_file("The consortium's signed genesis file.",
                                                    option="--genesis")],
              orderer: Annotated[str, typer.Option(help="etcd://HOST:PORT[,...] (TLS).")],
              admin: Annotated[Path, typer.Option(
                  help="A new folder for etcd's root user: keep it with the consortium's "
                  "access-control operator only.")],
              data: DataOpt = None) -> None:
    """Turn on etcd access control: one etcd user per member, each writing only its own
    keys (``ordering.etcd_rbac``). Run once, by one operator, on an etcd cluster started with
    TLS and --client-cert-auth, before the members run `consortium init`, through the
    operator's own etcd member (each takes its organization's client certificates alone). Writes
    ADMIN/users/NAME/etcd-user.json: give each member its file, to keep as
    tls/etcd-user.json (mode 0600) in its folder.

    Example: glucoledger consortium etcd-auth --genesis genesis.json
    --orderer etcd://a:2379 --admin /srv/etcd-admin --data /srv/gl
    """
    from ..ordering.etcd import TlsFiles
    from ..ordering.etcd_rbac import EtcdAdmin, client_identity, user_name, write_account

    doc = Genesis.load(genesis_file)
    folder = data_dir(data)
    me, _ = member_of(folder)
    if (admin / "etcd-user.json").exists():
        raise InputError(f"{admin} already holds etcd's root: auth is on; use another folder "
                         "only for a new cluster")
    admin.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(admin / "trust.pem", doc.trust_bundle())
    client_identity(admin, folder / "tls", "etcd-admin")
    files = TlsFiles(str(admin / "trust.pem"), str(admin / "etcd-client.pem"),
                     str(admin / "etcd-client.key"))
    url = orderer.partition("?")[0]
    first = EtcdAdmin.from_url(url, files)
    try:
        first.enable(admin)
    finally:
        first.close()
    root = EtcdAdmin.from_folder(url, admin)
    try:
        for m in doc.members:
            password = root.add_member(etcd_chain_key(doc.chain), m.name)
            target = folder / "tls" if m.name == me else admin / "users" / m.name
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_account(target, user_name(m.name), password)
            console.print(f"{m.name}: etcd user {user_name(m.name)} -> {target}/etcd-user.json")
    finally:
        root.close()
    console.print(f"etcd auth is on; root is in {admin}. To have your node revoke removed "
                  f"members, copy {admin} to {folder}/etcd-admin")


@consortium_app.command("etcd-user")
def etcd_user(name: Annotated[str, typer.Option(help="The member's name.")],
              genesis_file: Annotated[Path, in_file("The consortium's genesis file.",
                                                    option="--genesis")],
              orderer: Annotated[str, typer.Option(help="etcd://HOST:PORT[,...] (TLS).")],
              admin: Annotated[Path, typer.Option(
                  help="The folder `consortium etcd-auth` made (etcd's root).")],
              revoke: Annotated[bool, typer.Option(
                  "--revoke", help="Delete the member's etcd user and role instead.")] = False
              ) -> None:
    """Create a member's etcd user, or give it a new password (the old one stops working):
    for a member added by `propose member-add`, or one whose user file was lost. Writes
    ADMIN/users/NAME/etcd-user.json for the member to keep as tls/etcd-user.json. With
    --revoke: delete it (a removed member, if the root holder's node is not running to do it).

    Example: glucoledger consortium etcd-user --name org-d --genesis genesis.json
    --orderer etcd://a:2379 --admin /srv/etcd-admin
    """
    from ..names import check_name
    from ..ordering.etcd_rbac import EtcdAdmin, user_name, write_account

    check_name(name, what="member name")
    doc = Genesis.load(genesis_file)
    if not (admin / "etcd-user.json").exists():
        raise InputError(f"{admin} holds no etcd root user: run `glucoledger consortium "
                         "etcd-auth` first, or pass the folder it made")
    root = EtcdAdmin.from_folder(orderer.partition("?")[0], admin)
    try:
        if revoke:
            had = user_name(name) in root.users()
            root.revoke(name)
            (admin / "users" / name / "etcd-user.json").unlink(missing_ok=True)
            said = ("deleted: its token and password no longer work" if had
                    else "was not there (nothing to do)")
            console.print(f"{name}: etcd user {user_name(name)} {said}")
            return
        password = root.add_member(etcd_chain_key(doc.chain), name)
    finally:
        root.close()
    target = admin / "users" / name
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_account(target, user_name(name), password)
    console.print(f"{name}: etcd user {user_name(name)} -> {target}/etcd-user.json")


def _control_url(data: Path | None, to: str | None) -> str:
    if to:
        return to
    try:
        return str(json.loads((data_dir(data) / "control.json").read_text())["url"])
    except (OSError, ValueError, KeyError):
        raise NotFoundError("no running node found: pass --to URL or the --data of a running "
                            "`glucoledger node`") from None


ToOpt = Annotated[str | None, typer.Option("--to", help="A node's control URL.")]
_T = TypeVar("_T")


def _as_member(data: Path | None, call: Callable[[PrivateKey], _T]) -> _T:
    """``call`` signed with the member folder's node key; after a `rotate-key` took effect
    the old key is refused (403 ``replaced_key``, nothing done) and the next one in the
    wallet is tried."""
    _, wallet = member_of(data_dir(data))
    keys = wallet.node_keys()
    for key in keys[:-1]:
        try:
            return call(key)
        except PermissionDeniedError as exc:
            if exc.code != "replaced_key":
                raise
    return call(keys[-1])


def _read(path: Path, what: str) -> bytes:
    """A file the user named, or an InputError that names it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


@consortium_app.command("status")
def status(data: DataOpt = None, to: ToOpt = None) -> None:
    """Show a running member's height, final checkpoint, members and divergence reports
    (the request is signed with the node key of the --data member folder).

    Example: glucoledger consortium status --data /srv/gl
    """
    url = _control_url(data, to)
    tls = data_dir(data) / "tls"
    console.print_json(json.dumps(_as_member(data, lambda k: control.get_status(url, k,
                                                                              tls=tls))))


@consortium_app.command("submit")
def submit(file: Annotated[Path, in_file("A CBOR list of envelopes, or one envelope.")],
           data: DataOpt = None, to: ToOpt = None) -> None:
    """Submit transactions to a running member and print their receipts (the request is
    signed with the node key of the --data member folder).

    Example: glucoledger consortium submit p.cbor --data /srv/gl
    """
    raw = _read(file, "the transactions file")
    value = codec.decode(raw, max_size=64 << 20)
    envelopes = value if isinstance(value, list) else [raw]
    url = _control_url(data, to)
    tls = data_dir(data) / "tls"
    for r in _as_member(data, lambda k: control.submit(url, envelopes, k, tls=tls)):
        console.print(f"{r['tx_hash'] or '-'} block {r['height']} index {r['index']}: "
                      f"{r['code']} {r['message']}")


@consortium_app.command("export")
def export(out: Annotated[Path, out_file("Where to write the blocks (CBOR).", option=None)],
           data: DataOpt = None,
           start: Annotated[int, typer.Option("--from", help="First height.", min=0,
                                              max=MAX_INT)] = 0) -> None:
    """Export blocks (up to the final checkpoint) for a member catching up past compaction.

    Example: glucoledger consortium export blocks.cbor --data /srv/gl
    """
    with open_node(data) as n:
        out.write_bytes(export_blocks(n, start))
    console.print(f"wrote {out}")


@consortium_app.command("import")
def import_(file: Annotated[Path, in_file("A `consortium export` file.")],
            data: DataOpt = None) -> None:
    """Verify exported blocks (cosigned checkpoint, header chain, re-derivation) and store
    them.

    Example: glucoledger consortium import blocks.cbor --data /srv/gl
    """
    with Node(data_dir(data)) as n:
        count = import_blocks(n, _read(file, "the export"))
    console.print(f"verified and stored {count} blocks")


@consortium_app.command("rejoin")
def rejoin(
    genesis_file: Annotated[Path, in_file("The consortium's genesis file.",
                                          option="--genesis")],
    orderer: Annotated[str, typer.Option(help="etcd://HOST:PORT[,...] of the consortium.")],
    peer: Annotated[str | None, typer.Option(
        help="One member's control URL to fetch blocks from.")] = None,
    export_file: Annotated[Path | None, in_file(
        "A `consortium export` file, instead of --peer (offline).", option="--export")] = None,
    keys_from: Annotated[Path | None, typer.Option(
        "--keys", file_okay=False, dir_okay=True,
        help="Folder with the backup of this member's keys (master.key, member.txt, "
        "wallet/); default: the --data folder's own.")] = None,
    data: DataOpt = None,
) -> None:
    """Rebuild a lost or damaged member folder from the genesis, its keys and one peer.

    Example: glucoledger consortium rejoin --genesis genesis.json --orderer
    'etcd://c:2379?tls=/srv/gl/tls' --keys BACKUP --peer https://a:7001 --data /srv/gl
    """
    from ..node.rejoin import rejoin as do_rejoin
    from ..node.rejoin import restore_folder

    if (peer is None) == (export_file is None):
        raise InputError("give exactly one of --peer URL or --export FILE")
    folder = data_dir(data)
    name = restore_folder(folder, Genesis.load(genesis_file), orderer, keys_from)
    export = _read(export_file, "the export") if export_file is not None else None
    count = do_rejoin(folder, peer=peer, export=export)
    console.print(f"{name}: verified and stored {count} blocks (final checkpoint cosigned by "
                  f"the members at its height); start it with `glucoledger node --data "
                  f"{folder}`")


@consortium_app.command("propose")
def propose(
    kind: Annotated[str, typer.Argument(
        help="member-add | member-remove | rotate-key | rotate-cert | threshold | upgrade")],
    out: Annotated[Path, out_file("Where to write the proposal (an envelope).")],
    name: Annotated[str | None, typer.Option(help="The member the change is about.")] = None,
    member: Annotated[str | None, typer.Option(
        help="member-add: the new member's line from `consortium keys`.")] = None,
    vkey: Annotated[str | None, typer.Option(
        help="rotate-key: the member's new node key (vkey).")] = None,
    ca: Annotated[Path | None, in_file(
        "rotate-cert: the member's new TLS CA certificate (from `consortium rotate-cert`).",
        option="--ca")] = None,
    threshold: Annotated[int | None, typer.Option(
        help="The checkpoint threshold after the change.", min=1, max=1000)] = None,
    at: Annotated[int | None, typer.Option(
        help="First height the change applies to (default: the block after the one that "
        "carries it).", min=1, max=MAX_INT)] = None,
    rules: RulesOpt = None,
    access_records: AccessRecordsOpt = None,
    data: DataOpt = None,
) -> None:
    """Write a governance proposal signed by this member's organization key.

    upgrade moves the chain to the newest state rule set and access record format (or those
    given) from the transaction after it: every member runs this glucoledger first.

    Example: glucoledger consortium propose member-remove --name org-c --threshold 2
    --out p.cbor --data /srv/gl
    """
    from ..ledger.checkpoint import NoteVerifier
    from ..node.proposals import describe, upgrade_body, versions
    from ..node.proposals import propose as make
    from ..state.accounts_model import single_key_policy

    body: dict[str, object] = {}
    if kind == "member-add":
        if member is None:
            raise InputError("member-add needs --member LINE (printed by `consortium keys`)")
        m = Member.parse_line(member)
        body = {"name": m.name, "policy": single_key_policy(m.org_key),
                "node": m.node.key.to_value()}
    elif kind in ("member-remove", "rotate-key", "rotate-cert"):
        if name is None:
            raise InputError(f"{kind} needs --name MEMBER")
        body = {"name": name}
        if kind == "rotate-cert":
            body["tls_ca"] = _new_ca(ca)
        if kind == "rotate-key":
            if vkey is None:
                raise InputError("rotate-key needs --vkey (the member's new node key)")
            body["node"] = NoteVerifier.parse(vkey).key.to_value()
    elif kind not in ("threshold", "upgrade"):
        raise InputError(f"unknown proposal {kind!r}: member-add, member-remove, rotate-key, "
                         "rotate-cert, threshold or upgrade")
    if (rules is not None or access_records is not None) and kind != "upgrade":
        raise InputError("--rules and --access-records go with `propose upgrade` only")
    if kind == "upgrade" and (threshold is not None or at is not None):
        raise InputError("upgrade takes --rules and --access-records only: it applies from "
                         "the transaction after it")
    if threshold is not None:
        body["threshold"] = threshold
    elif kind == "threshold":
        raise InputError("threshold needs --threshold N")
    if at is not None:
        body["at"] = at
    _, wallet = member_of(data_dir(data))
    with open_node(data) as n:
        if kind == "upgrade":
            body = dict(upgrade_body(n, rules=rules, access_records=access_records))
            if not body:
                raise InputError(f"the chain is on {versions(n)}, the newest this "
                                 "glucoledger knows: nothing to propose")
        stx = make(n, kind, body, wallet.load("org"))
    atomic_write(out, stx.raw)
    console.print(f"wrote {out}: {describe(stx)}; each member now runs `glucoledger "
                  f"consortium cosign {out}`, then one runs `glucoledger consortium submit "
                  f"{out}`")


def _new_ca(path: Path | None) -> bytes:
    """The CA file for a rotate-cert proposal, checked (one CA certificate, valid now)."""
    import datetime

    from ..crypto import tls
    from ..errors import MalformedError

    if path is None:
        raise InputError("rotate-cert needs --ca FILE (printed by `consortium rotate-cert`)")
    pem = _read(path, "the CA certificate")
    try:
        tls.check_ca(pem, datetime.datetime.now(datetime.UTC))
    except MalformedError as exc:
        raise InputError(f"{path}: {exc.message}") from None
    return pem


@consortium_app.command("cosign")
def cosign(proposal: Annotated[Path, in_file("A proposal file (signed in place).")],
           data: DataOpt = None) -> None:
    """Check a proposal's signatures, show it, and add this member's organization signature.

    Example: glucoledger consortium cosign p.cbor --data /srv/gl
    """
    from ..ledger.tx import SignedTx
    from ..node.proposals import cosign as add
    from ..node.proposals import describe

    _, wallet = member_of(data_dir(data))
    raw = _read(proposal, "the proposal")
    console.print(f"signing: {describe(SignedTx.decode(raw))}")
    stx = add(raw, wallet.load("org"))
    atomic_write(proposal, stx.raw)
    console.print(f"now {len(stx.sigs)} signature(s) on {proposal}")


@cluster_app.command("up")
def cluster_up(nodes: Annotated[int, typer.Option(
                   help="How many etcd members and nodes.", min=1, max=9)] = 3,
               dir: Annotated[Path, typer.Option(
                   "--dir", help="Where everything lives.")] = Path("consortium"),
               tls: Annotated[bool, typer.Option(
                   help="etcd with TLS and client/peer certificate authentication.")] = True,
               base_port: Annotated[int | None, typer.Option(
                   help="etcd on BASE_PORT.. (2 a member), nodes after them (default: any "
                   "free ports).", min=1024, max=65000)] = None,
               ) -> None:
    """Start n etcd members and n member nodes on 127.0.0.1; print their addresses.

    Example: glucoledger cluster up --nodes 3 --dir D
    """
    state = devcluster.up(dir, nodes, base_port=base_port, tls=tls)
    console.print(f"etcd: {state['etcd']}")
    for n in state["nodes"]:
        console.print(f"{n['name']}: pid {n['pid']}, control {n['control']}, data {n['data']}")
    console.print(f"stop with: glucoledger cluster down --dir {dir}")


@cluster_app.command("down")
def cluster_down(dir: Annotated[Path, typer.Option(
                     "--dir", help="The folder `cluster up` used.")] = Path("consortium"),
                 ) -> None:
    """Stop exactly the processes `cluster up` started in --dir.

    Example: glucoledger cluster down --dir D
    """
    for line in devcluster.down(dir):
        console.print(f"stopped {line}")


ClusterDir = Annotated[Path, typer.Option("--dir", help="The folder `cluster up` used.")]
MemberName = Annotated[str, typer.Option("--name", help="The member, e.g. org-2.")]


@cluster_app.command("restart-etcd")
def cluster_restart_etcd(dir: ClusterDir = Path("consortium")) -> None:
    """Restart every etcd member with the trust bundle the nodes have in force (after a
    `rotate-cert` or a member's removal took effect: etcd reads its trusted CAs only at
    start); a removed organization's etcd member leaves the cluster.

    Example: glucoledger cluster restart-etcd --dir D
    """
    for line in devcluster.restart_etcd(dir):
        console.print(line)


@cluster_app.command("stop-node")
def cluster_stop_node(name: MemberName, dir: ClusterDir = Path("consortium")) -> None:
    """Stop one member's node (its etcd member keeps running).

    Example: glucoledger cluster stop-node --name org-2 --dir D
    """
    console.print(f"stopped {devcluster.stop_member_node(dir, name)}")


@cluster_app.command("start-node")
def cluster_start_node(name: MemberName, dir: ClusterDir = Path("consortium")) -> None:
    """Start one member's node again (after `consortium rejoin`).

    Example: glucoledger cluster start-node --name org-2 --dir D
    """
    console.print(f"{name}: control {devcluster.start_member_node(dir, name)}")


@cluster_app.command("url")
def cluster_url(name: MemberName, dir: ClusterDir = Path("consortium"),
                control: Annotated[bool, typer.Option(
                    help="Print the node's control URL instead of its etcd URL.")] = False,
                ) -> None:
    """Print the etcd URL a member uses (or its node's control URL), for other commands.

    Example: glucoledger cluster url --name org-2 --dir D
    """
    etcd, ctl = devcluster.urls(dir, name)
    typer.echo(ctl if control else etcd)


def register(app: typer.Typer) -> None:
    app.command("node")(node)
    app.command("verify-anchor")(verify_anchor)
    app.add_typer(consortium_app, name="consortium")
    app.add_typer(cluster_app, name="cluster")

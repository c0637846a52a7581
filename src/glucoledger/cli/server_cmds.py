"""Server commands: serve, password, nightscout-uploader, nightscout-reader, export-fhir."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError
from ..files import atomic_write
from ..runtime import long_running_gc
from .common import (
    DataOpt,
    ask_secret,
    console,
    data_dir,
    open_node,
    open_services,
    out_file,
    parse_when,
)

__all__ = ["register"]


def serve(
    data: DataOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    demo: Annotated[bool, typer.Option(help="Create (if empty) a demo node with people, "
                                       "passwords and 14 days of data.")] = False,
    insecure_cookies: Annotated[bool, typer.Option(
        help="Drop the Secure cookie flag (only for plain-HTTP testing off loopback).")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(
        help="Comma-separated addresses of reverse proxies whose X-Forwarded-For is believed "
        "(default: none; the client address is the TCP peer).")] = "",
    workers: Annotated[int, typer.Option(
        help="HTTP worker processes in front of the one process that orders and stores "
        "(api/workers.py); 1: one process does everything.", min=1, max=64)] = 1,
) -> None:
    """Serve the HTTP API, the Nightscout v1 routes, FHIR export and the web portal.

    Example: glucoledger serve --data ./clinic --port 8000
    """
    import uvicorn

    from ..api.app import create_app
    from ..api.context import ServerContext, ServerSettings
    from ..node.service import Node
    from ..node.services import check_stored_blocks

    folder = data_dir(data)
    if demo and not (folder / "node.json").exists():
        from ..node.demo_site import (
            DEMO_PASSWORDS,
            DEMO_READER_TOKEN,
            DEMO_UPLOADER_SECRET,
            seed_demo,
        )

        def seed(n: Node) -> None:  # inside the atomic build: a crash leaves no half demo
            ctx = ServerContext.create(n)
            try:
                seed_demo(n, ctx.svc.nightscout)
            finally:
                ctx.close()

        node = Node.init(folder, seed=seed)
        c = ServerContext.create(node)
        console.print(f"demo node in {folder}; log in as alice / "
                      f"{DEMO_PASSWORDS['alice']} (clinician: dr-lee / "
                      f"{DEMO_PASSWORDS['dr-lee']}); Nightscout uploader secret "
                      f"{DEMO_UPLOADER_SECRET!r}, reader token {DEMO_READER_TOKEN!r}")
    else:
        node = Node(folder)
        try:
            check_stored_blocks(node)  # never serve from an altered chain.db (exit 3)
        except BaseException:
            node.close()
            raise
        c = ServerContext.create(node)
    proxies = tuple(p for p in forwarded_allow_ips.split(",") if p)
    settings = ServerSettings(secure_cookies=not insecure_cookies, node_name=node.config.name,
                              forwarded_allow_ips=proxies)
    c.settings = settings
    c.svc.commit_zk_days()  # each complete local day's zk.day, off the upload path
    app = create_app(node, context=c)
    console.print(f"serving {node.chain} on http://{host}:{port}/ (portal: /portal, API docs: "
                  "/docs, OpenAPI: /openapi.json)")
    long_running_gc()  # setup is done: freeze what it loaded (runtime.py)
    try:
        if workers > 1:
            _serve_workers(app, host, port, workers, proxies, settings.max_body)
        else:
            # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: name the
            # proxies, or none (the login backoff counts per client address).
            uvicorn.run(app, host=host, port=port, log_level="warning",
                        proxy_headers=bool(proxies), forwarded_allow_ips=list(proxies))
    finally:
        c.close()
        node.close()


def _serve_workers(app: object, host: str, port: int, workers: int,
                   proxies: tuple[str, ...], max_body: int) -> None:
    """This process orders and stores; ``workers`` processes speak HTTP (api/workers.py).
    Runs until SIGINT/SIGTERM, or until a worker dies (then exits 1: fail-stop)."""
    import signal
    import threading

    from ..api.workers import Orderer
    from ..errors import GlucoledgerError

    orderer = Orderer(app, host, port, workers, proxies, max_body)  # type: ignore[arg-type]
    try:
        orderer.start()
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                         "--port or stop what uses it") from None
    except RuntimeError as exc:
        raise GlucoledgerError(str(exc)) from None
    except BaseException:  # Ctrl-C while the workers start: none is left behind
        orderer.stop()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"{workers} HTTP worker processes (pids "
                  f"{', '.join(str(p.pid) for p in orderer.procs)}); this process orders")
    try:
        while not stop.wait(0.5):
            dead = orderer.dead()
            if dead:
                raise GlucoledgerError(f"HTTP worker {dead[0]} exited; stopping the node so "
                                       "that its service manager restarts all of it")
    finally:
        orderer.stop()


def password(name: Annotated[str, typer.Argument(help="The account's name.")],
             data: DataOpt = None) -> None:
    """Set the web portal password of a custodial account (asked twice, never echoed).

    Example: glucoledger password alice
    """
    from ..node.people import Passwords

    first = ask_secret("new password", again=True)
    with open_node(data) as node:
        Passwords(node).set(name, first)
    console.print(f"password set for {name}")


def nightscout_uploader(patient: Annotated[str, typer.Argument(help="The patient's name.")],
                        data: DataOpt = None) -> None:
    """Create an uploader secret for a patient (xDrip+, Loop, AndroidAPS: v1 API secret).

    Stopped before it printed the secret? Run it again: it makes a new one.

    Example: glucoledger nightscout-uploader alice
    """
    import secrets

    secret = secrets.token_urlsafe(18)
    with open_services(data) as services:
        gw = services.nightscout.add_uploader(patient, secret)
    console.print(f"gateway {gw.name}; API secret (shown once): {secret}")


def nightscout_reader(reader: Annotated[str, typer.Argument(help="The reader's account name.")],
                      patient: Annotated[str, typer.Argument(help="The patient's name.")],
                      data: DataOpt = None) -> None:
    """Invite a reader to follow a patient through Nightscout (reads still need a grant).

    The patient only invites: the reader mints her own token, bound to her, in her own
    session (portal, or POST /api/nightscout/reader-tokens), so no read is ever signed with
    her key unless she asked for the token.

    Example: glucoledger nightscout-reader dr-lee alice
    """
    from ..node.accounts import identity
    from ..node.readers import ReaderInvites

    with open_services(data) as services:
        who = ReaderInvites(services.node, services.nightscout).invite(
            identity(services.node, patient), reader)
    console.print(f"{patient} invited {who.name} to follow her data; {who.name} mints her "
                  "own read token from her session (POST /api/nightscout/reader-tokens)")


def export_fhir(
    patient: Annotated[str, typer.Argument(help="The patient's name.")],
    as_: Annotated[str, typer.Option("--as", help="Who reads (custodial account name).")],
    data: DataOpt = None,
    start: Annotated[str | None, typer.Option(
        help="First time: ISO 8601 with offset, or epoch ms (default: 14 days ago).")] = None,
    end: Annotated[str | None, typer.Option(
        help="End time: ISO 8601 with offset, or epoch ms (default: now).")] = None,
    out: Annotated[Path | None, out_file("Write here (default: stdout).")] = None,
    check: Annotated[bool, typer.Option(help="Validate with fhir.resources.")] = False,
) -> None:
    """Export a patient's CGM data as a FHIR R4 Bundle (HL7 CGM IG), through consent.

    Example: glucoledger export-fhir alice --as dr-lee --out alice.fhir.json
    """
    from ..interop.fhir import validate
    from ..node.accounts import identity, keys_of
    from ..node.fhir_export import export_bundle

    lo = parse_when(start, "--start") if start is not None else None
    hi = parse_when(end, "--end") if end is not None else None
    with open_services(data) as services:
        node = services.node
        who = identity(node, as_)
        pid = identity(node, patient).id
        bundle = export_bundle(node, services.access, who.id, keys_of(node, who), pid,
                               start_ms=lo, end_ms=hi, units="mg/dL",
                               now_ms=int(time.time() * 1000))
    if check:
        validate(bundle)
        for e in bundle["entry"]:
            validate(e["resource"])
    text = json.dumps(bundle, indent=2)
    if out is None:
        print(text)
    else:
        atomic_write(out, (text + "\n").encode())
        console.print(f"{len(bundle['entry'])} resources written to {out}")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(password)
    app.command("nightscout-uploader")(nightscout_uploader)
    app.command("nightscout-reader")(nightscout_reader)
    app.command("export-fhir")(export_fhir)

"""Server commands: serve, password, nightscout-uploader, nightscout-reader, export-fhir."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError
from .common import DataOpt, console, data_dir, open_node

__all__ = ["register"]


def serve(
    data: DataOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Create (if empty) a demo node with people, "
                                       "passwords and 14 days of data.")] = False,
    insecure_cookies: Annotated[bool, typer.Option(
        help="Drop the Secure cookie flag (only for plain-HTTP testing off loopback).")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(
        help="Comma-separated addresses of reverse proxies whose X-Forwarded-For is believed "
        "(default: none; the client address is the TCP peer).")] = "",
) -> None:
    """Serve the HTTP API, the Nightscout v1 routes, FHIR export and the web portal."""
    import uvicorn

    from ..api.app import create_app
    from ..api.context import ServerContext, ServerSettings
    from ..node.service import Node

    folder = data_dir(data)
    if demo and not (folder / "node.json").exists():
        from ..node.demo_site import seed_demo

        node = Node.init(folder)
        c = ServerContext.create(node)
        info = seed_demo(node, c.services["nightscout"])
        console.print(f"demo node in {folder}; log in as alice / "
                      f"{info['passwords']['alice']} (clinician: dr-lee / "
                      f"{info['passwords']['dr-lee']}); Nightscout uploader secret "
                      f"{info['uploader_secret']!r}, reader token {info['reader_token']!r}")
    else:
        node = Node(folder)
        c = ServerContext.create(node)
    proxies = tuple(p for p in forwarded_allow_ips.split(",") if p)
    settings = ServerSettings(secure_cookies=not insecure_cookies, node_name=node.config.name,
                              forwarded_allow_ips=proxies)
    c.settings = settings
    app = create_app(node, context=c)
    console.print(f"serving {node.chain} on http://{host}:{port}/ (portal: /portal, API docs: "
                  "/docs, OpenAPI: /openapi.json)")
    try:
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: name the
        # proxies, or none (the login backoff counts per client address).
        uvicorn.run(app, host=host, port=port, log_level="warning",
                    proxy_headers=bool(proxies), forwarded_allow_ips=list(proxies))
    finally:
        c.close()
        node.close()


def password(name: str, data: DataOpt = None) -> None:
    """Set the web portal password of a custodial account (asked twice, never echoed)."""
    from ..node.people import Passwords

    first = typer.prompt("new password", hide_input=True)
    if typer.prompt("again", hide_input=True) != first:
        raise InputError("the two passwords differ")
    with open_node(data) as node:
        Passwords(node).set(name, first)
    console.print(f"password set for {name}")


def nightscout_uploader(patient: str, data: DataOpt = None) -> None:
    """Create an uploader secret for a patient (xDrip+, Loop, AndroidAPS: v1 API secret)."""
    import secrets

    from ..api.context import ServerContext

    secret = secrets.token_urlsafe(18)
    with open_node(data) as node:
        c = ServerContext.create(node)
        try:
            gw = c.services["nightscout"].add_uploader(patient, secret)
        finally:
            c.close()
    console.print(f"gateway {gw.name}; API secret (shown once): {secret}")


def nightscout_reader(reader: str, patient: str, data: DataOpt = None) -> None:
    """Create a read token for a reader account following a patient (reads need a grant)."""
    import secrets

    from ..api.context import ServerContext

    token = f"{reader[:16]}-{secrets.token_hex(8)}"
    with open_node(data) as node:
        c = ServerContext.create(node)
        try:
            c.services["nightscout"].add_reader(reader, patient, token)
        finally:
            c.close()
    console.print(f"token (shown once): {token}")


def export_fhir(
    patient: str,
    as_: Annotated[str, typer.Option("--as", help="Who reads (custodial account name).")],
    data: DataOpt = None,
    start: Annotated[str | None, typer.Option(help="ISO 8601 start.")] = None,
    end: Annotated[str | None, typer.Option(help="ISO 8601 end.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here (default: stdout).")
                   ] = None,
    check: Annotated[bool, typer.Option(help="Validate with fhir.resources.")] = False,
) -> None:
    """Export a patient's CGM data as a FHIR R4 Bundle (HL7 CGM IG), through consent."""
    from ..api.context import ServerContext
    from ..api.routes_fhir import _ms
    from ..interop.fhir import validate
    from ..node.accounts import identity, keys_of
    from ..node.fhir_export import export_bundle

    with open_node(data) as node:
        c = ServerContext.create(node)
        try:
            who = identity(node, as_)
            pid = identity(node, patient).id
            bundle = export_bundle(node, c.services["access"], who.id, keys_of(node, who), pid,
                                   start_ms=_ms(start, "start"), end_ms=_ms(end, "end"),
                                   units="mg/dL", now_ms=int(time.time() * 1000))
        finally:
            c.close()
    if check:
        validate(bundle)
        for e in bundle["entry"]:
            validate(e["resource"])
    text = json.dumps(bundle, indent=2)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
        console.print(f"{len(bundle['entry'])} resources written to {out}")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(password)
    app.command("nightscout-uploader")(nightscout_uploader)
    app.command("nightscout-reader")(nightscout_reader)
    app.command("export-fhir")(export_fhir)

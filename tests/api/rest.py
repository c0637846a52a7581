"""Helpers for the REST tests: signed calls as an account, logins, and a node's footprint."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from glucoledger.crypto import PrivateKey
from glucoledger.crypto.httpsig import sign_request
from glucoledger.node.accounts import identity, keys_of

BASE = "https://testserver"


def key_of(site: Any, name: str) -> PrivateKey:
    """The first key of a custodial account (``org``: the node's organization key)."""
    if name == "org":
        return site.node.wallet.load("org")  # type: ignore[no-any-return]
    return keys_of(site.node, identity(site.node, name))[0]


def call(client: Any, site: Any, who: str | None, method: str, path: str,
         body: Any = None, *, raw: bytes | None = None,
         content_type: str = "application/json") -> Any:
    """One request, signed (RFC 9421) with ``who``'s key; ``who=None`` sends no credential."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    headers = {"content-type": content_type} if data else {}
    if who is not None:
        headers.update(sign_request(key_of(site, who), method=method, url=BASE + path,
                                    body=data, nonce=secrets.token_hex(8)))
    return client.request(method, path, content=data or None, headers=headers)


def login(client: Any, name: str, password: str | None = None) -> dict[str, str]:
    """Log in (the client keeps the cookie); the CSRF header for state-changing calls."""
    r = client.post("/api/session", json={"name": name,
                                          "password": password or f"{name}-demo-password"})
    assert r.status_code == 200, r.text
    return {"x-csrf-token": r.json()["csrf"]}


def footprint(site: Any) -> tuple[Any, ...]:
    """Everything a request could change: the log, the state, the vault's rows and blobs,
    the address book, the passwords, the Nightscout credentials, the wallet."""
    node = site.node
    node.sync()
    folder = Path(node.data_dir)
    vault = site.ctx.svc.vault

    def text(name: str) -> str | None:
        p = folder / name
        return p.read_text() if p.exists() else None

    blobs = sorted((p.name, p.stat().st_size) for p in (folder / "blobs").rglob("*")
                   if p.is_file()) if (folder / "blobs").exists() else []
    wallet = node.wallet.names()
    return (node.replica.tree.size, node.state.snapshot(),
            vault._q("SELECT COUNT(*) FROM batches")[0][0], blobs, text("names.json"),
            text("passwords.json"), text("nightscout.json"), text("enrolment.json"),
            text("recovery.json"), text("reader_invites.json"), wallet)


def state_of(site: Any) -> tuple[Any, ...]:
    """The footprint without the log: a refused transaction is ordered (with its reason
    code) and changes nothing else."""
    return footprint(site)[1:]

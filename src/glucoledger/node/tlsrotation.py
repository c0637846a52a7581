"""TLS certificate authorities rotated by governance transaction (``gov.rotate_tls``).

A member replaces its TLS identity (its CA, the node certificate etcd serves and presents
to its peers, and its etcd client certificate) in three steps:

1. ``consortium rotate-cert --data DIR`` (``prepare``) makes a new CA and, from it, a node
   certificate for the same host names and an etcd client certificate, all in
   ``DIR/tls/next/`` (keys mode 0600); the current identity keeps working;
2. a member proposes ``consortium propose rotate-cert --name N --ca DIR/tls/next/ca.pem
   [--at H]``, the members cosign it and one submits it (``state.governance``);
3. every node, once its newest block reaches the stated height, writes the trust bundle in
   force there (``bundle_at``) to ``tls/trust.pem``, and the rotating member's node moves
   ``tls/next/*`` into ``tls/`` (``apply``); a folder holding etcd's root (``etcd-admin/``)
   gets the new bundle too and, for the rotating member, a root client certificate from the
   new CA. Its etcd client (``ordering._gateway``) uses the new files from its next
   connection; etcd reloads its server certificate at each handshake.

Each organization's etcd member accepts client certificates from that organization's CA
alone (``--trusted-ca-file tls/ca.pem``) and peers by the bundle (``--peer-trusted-ca-file
tls/trust.pem``): etcd takes a client certificate's CommonName as the etcd user, so a CA a
client port trusts can issue etcd's root there. etcd 3.4 reads both files only when it
starts (checked against 3.4.23: a file rewritten under a running member changes nothing
until a restart). So after the stated height each organization restarts its own etcd
member, together (within a short window: a member still on the old bundle refuses the
rotated member's new peer certificate, so writes pause until a quorum runs the new bundle;
nothing is lost, appends fail with "no quorum" and are retried; the rotated member's node
reaches its etcd member again once that restarted with its new CA). From then on a
certificate issued by the old CA is refused in the TLS handshake. The node says so, with
the fingerprints, in its log and its status (``tls``).

The bundle in force at height h: for every member in the signer set in force at h, its CA
from the genesis file, replaced by its latest ``gov.rotate_tls`` at or below h. A member
removed by governance drops out of the bundle; a member added by ``gov.member_add`` is
trusted once its CA is recorded by a ``gov.rotate_tls`` (the walk-through in README does
both). Invariants: ``bundle_at`` is a pure function of the genesis file and the chain's
state; ``apply`` changes files only with ``atomic_write`` and never leaves ``tls/`` holding
a certificate without its key (key first, then certificate, each replaced atomically).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..crypto import tls
from ..errors import InputError, MalformedError
from ..files import atomic_write
from .genesis_file import Genesis

__all__ = ["NEXT_DIR", "apply", "apply_in_force", "bundle_at", "cas_at", "genesis_cas",
           "prepare"]

log = logging.getLogger(__name__)

NEXT_DIR = "next"
#: (file in tls/next/, file in tls/), keys before their certificates.
_SWAP = (("ca.key", "ca.key"), ("ca.pem", "ca.pem"), ("node.key", "node.key"),
         ("node.pem", "node.pem"), ("etcd-client.key", "etcd-client.key"),
         ("etcd-client.pem", "etcd-client.pem"))


def cas_at(genesis_cas: dict[str, bytes], changes: Iterable[tuple[int, str, bytes]],
           members: Sequence[str], height: int) -> dict[str, bytes]:
    """Member -> CA PEM in force at ``height`` (members without a CA are left out)."""
    cas = {m: genesis_cas[m] for m in members if genesis_cas.get(m)}
    for at, name, ca in changes:
        if at <= height and name in members:
            cas[name] = ca
    return cas


def bundle_at(genesis_cas: dict[str, bytes], changes: Iterable[tuple[int, str, bytes]],
              members: Sequence[str], height: int) -> bytes:
    """The trust bundle in force at ``height``: the CAs of ``cas_at``, in member order."""
    cas = cas_at(genesis_cas, changes, members, height)
    return b"".join(cas[m] if cas[m].endswith(b"\n") else cas[m] + b"\n"
                    for m in members if m in cas)


def prepare(folder: Path, name: str, now: datetime.datetime) -> Path:
    """Make the next TLS identity of member ``name`` in ``folder/tls/next/``; return the
    path of its CA certificate (for ``consortium propose rotate-cert --ca``).

    Raises InputError when the folder has no TLS identity to replace."""
    tls_dir = folder / "tls"
    try:
        hosts = tls.hosts_of((tls_dir / "node.pem").read_bytes())
    except (OSError, MalformedError) as exc:
        raise InputError(f"{tls_dir}/node.pem is missing or unreadable ({exc}): this folder "
                         "has no TLS identity to rotate (`consortium keys` makes one)") from None
    nxt = tls_dir / NEXT_DIR
    nxt.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = tls.make_ca(name, now)
    leaf = tls.issue(ca, name, hosts, now)
    client = tls.issue_client(ca, name, now)
    for file, data, mode in (("ca.key", ca.key_pem, 0o600), ("ca.pem", ca.cert_pem, 0o644),
                             ("node.key", leaf.key_pem, 0o600),
                             ("node.pem", leaf.cert_pem, 0o644),
                             ("etcd-client.key", client.key_pem, 0o600),
                             ("etcd-client.pem", client.cert_pem, 0o644)):
        atomic_write(nxt / file, data, mode=mode)
    return nxt / "ca.pem"


def apply(folder: Path, name: str, bundle: bytes, own_ca: bytes | None) -> list[str]:
    """Bring ``folder/tls`` to the bundle and this member's CA in force; return what changed
    (empty: nothing to do). A CA in force for this member that ``tls/next/`` does not hold
    raises InputError naming the fingerprint that is missing (the node reports it)."""
    tls_dir = folder / "tls"
    changed: list[str] = []
    old_ca = _read(tls_dir / "ca.pem")
    if own_ca is not None and old_ca != own_ca:
        nxt = tls_dir / NEXT_DIR
        if _read(nxt / "ca.pem") != own_ca:
            raise InputError(
                f"the consortium trusts a new TLS CA for {name} (sha256 "
                f"{tls.fingerprint(own_ca)}) from this height, but {nxt} does not hold it: "
                "restore that folder (made by `consortium rotate-cert`) from its backup")
        for src, dst in _SWAP:
            data = _read(nxt / src)
            if data is not None:
                atomic_write(tls_dir / dst, data, mode=0o600 if dst.endswith(".key") else 0o644)
        for src, _ in _SWAP:
            (nxt / src).unlink(missing_ok=True)
        old = ", ".join(f[:16] for f in sorted(_fingerprints(old_ca)))
        changed.append(
            f"{name}'s TLS identity (CA sha256 {tls.fingerprint(own_ca)[:16]}): this "
            f"organization's etcd member takes client certificates from the old CA (sha256 "
            f"{old}), one naming etcd's root included, until it restarts with tls/ca.pem, so "
            "restart it now")
        admin = folder / "etcd-admin"
        if (admin / "etcd-user.json").exists():  # etcd's root, held here: its client
            # certificate comes from this member's CA, so it is re-issued from the new one.
            ca = tls.Identity((tls_dir / "ca.key").read_bytes(), own_ca)
            ident = tls.issue_client(ca, "etcd-admin", datetime.datetime.now(datetime.UTC))
            atomic_write(admin / "etcd-client.key", ident.key_pem, mode=0o600)
            atomic_write(admin / "etcd-client.pem", ident.cert_pem)
            changed.append("the etcd-admin client certificate")
    before = _read(tls_dir / "trust.pem")
    if bundle and before != bundle:
        atomic_write(tls_dir / "trust.pem", bundle)
        dropped = sorted(_fingerprints(before) - _fingerprints(bundle))
        changed.append("the trust bundle (tls/trust.pem)" + (
            f" without CA sha256 {', '.join(f[:16] for f in dropped)}, which etcd's peer "
            "ports trust until they restart; the etcd member of an organization removed "
            "takes that CA's client certificates, one naming etcd's root included, until it "
            "leaves the cluster (`etcdctl member remove`, README)" if dropped else ""))
    admin_trust = folder / "etcd-admin" / "trust.pem"
    if bundle and admin_trust.exists() and _read(admin_trust) != bundle:
        atomic_write(admin_trust, bundle)
    return changed


def genesis_cas(folder: Path) -> dict[str, bytes]:
    """Member -> TLS CA in the folder's ``genesis.json``. Raises InputError."""
    return {m.name: m.tls_ca for m in Genesis.load(folder / "genesis.json").members}


def apply_in_force(folder: Path, name: str, cas: dict[str, bytes],
                   changes: Sequence[tuple[int, str, bytes]], members: Sequence[str],
                   height: int) -> list[str]:
    """``apply`` with the bundle and this member's CA in force at ``height`` (``cas``: the
    genesis CAs, ``changes`` from ``state.governance.tls_changes``)."""
    own = [ca for at, n, ca in changes if n == name and at <= height]
    return apply(folder, name, bundle_at(cas, changes, members, height),
                 own[-1] if own else None)


def _fingerprints(bundle: bytes | None) -> set[str]:
    """The fingerprints of a bundle's certificates (none for a missing or damaged bundle: it
    is replaced, not reported on)."""
    try:
        return tls.bundle_fingerprints(bundle) if bundle else set()
    except MalformedError:
        return set()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None

"""Per-member etcd users and roles (etcd v3 auth, role-based access control).

etcd itself refuses what a member may not do: with auth enabled, each member's node is the
etcd user ``member:<name>`` (the ``:`` cannot occur in a member name or a certificate
CommonName we issue, so no member's user can be reached by another identity) whose role
``member:<name>`` grants, under the chain's prefix ``/glucoledger/<chain>/``:

- READ of the whole prefix (the ordered log and every member's side keys);
- READWRITE of its own keys only: its log keys ``batch/<name>/``, ``head/<name>``,
  ``first/<name>`` (``ordering.etcd``, layout 2: an append compares the whole ``head/``
  range, which needs only READ, and puts the member's own batch and head), and its side
  keys ``sig/<name>/`` (its cosignatures), ``stored/<name>``, ``health/<name>``,
  ``ctl/<name>`` (``ordering.etcd_kv``).

Nothing else: no other member's keys, no key shared between members, no key outside the
chain, no user or role management (etcd reserves that to ``root``). So no member can write
or delete another member's batches, nor decide the order: the order is etcd's serial
application of the members' compare-and-put transactions. What a member can do with its
own keys (rewrite its own batch, put one outside the protocol, claim a head it has no
batch for) stalls the log with an error naming it at every reader (``ordering.etcd``) but
changes no ordered entry unseen. History compaction is open to every authenticated user
in etcd 3.4 (it removes old revisions, not keys).

Revoking (``revoke``): the member's role is taken from its user and both are deleted; its
current token stops working at once (etcd answers "invalid auth token"), and a new
authentication fails. ``reconcile`` makes etcd's users match a member set (the one in force
at a node's newest height), so removing a member by governance transaction revokes it.
``remove_etcd_member`` takes a removed organization's etcd server out of the cluster.

The admin is etcd's ``root`` user, whose password lives in one operator's ``etcd-admin``
folder (``cluster up``: the first node's), never in other members' folders: whoever holds it
can change every role, so it is the consortium's trusted RBAC operator.

Every function raises OrderingError with the cause when etcd refuses or fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path

from ..errors import OrderingError
from ..files import atomic_write, atomic_write_json
from ._gateway import Gateway, GatewayError, TlsFiles, b64, parse_etcd_url

__all__ = ["USER_PREFIX", "EtcdAdmin", "member_grants", "user_name", "write_account"]

USER_PREFIX = "member:"
_ALREADY = 9  # gRPC FAILED_PRECONDITION: user/role already exists, auth already enabled
_NOT_FOUND = 9


def user_name(member: str) -> str:
    return USER_PREFIX + member


def _end(prefix: str) -> str:
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


def member_grants(chain_key: str, member: str) -> list[tuple[str, str, str | None]]:
    """(READ | READWRITE, key, range end or None for one key) of ``member``'s role."""
    p = f"/glucoledger/{chain_key}/"
    return [
        ("READ", p, _end(p)),
        ("READWRITE", f"{p}batch/{member}/", _end(f"{p}batch/{member}/")),
        ("READWRITE", f"{p}head/{member}", None),
        ("READWRITE", f"{p}first/{member}", None),
        ("READWRITE", f"{p}sig/{member}/", _end(f"{p}sig/{member}/")),
        ("READWRITE", f"{p}stored/{member}", None),
        ("READWRITE", f"{p}health/{member}", None),
        ("READWRITE", f"{p}ctl/{member}", None),
    ]


def write_account(folder: Path, user: str, password: str) -> None:
    """``folder/etcd-user.json`` (mode 0600), read by ``TlsFiles.in_dir``."""
    atomic_write_json(folder / "etcd-user.json", {"user": user, "password": password},
                      mode=0o600)


class EtcdAdmin:
    """etcd's ``root`` over the JSON gateway (the identity in an ``etcd-admin`` folder)."""

    def __init__(self, endpoints: list[str], tls: TlsFiles, timeout: float = 5.0) -> None:
        self._gw = Gateway(endpoints, timeout, tls)

    @classmethod
    def from_url(cls, etcd_url: str, tls: TlsFiles) -> EtcdAdmin:
        """At the endpoints of ``etcd_url`` with ``tls`` (raises ValueError on a bad URL)."""
        return cls(parse_etcd_url(etcd_url)[0], tls)

    @classmethod
    def from_folder(cls, etcd_url: str, folder: Path) -> EtcdAdmin:
        """Root at the endpoints of ``etcd_url`` with the identity in ``folder`` (trust.pem,
        etcd-client.pem/.key, etcd-user.json). Raises ValueError on unusable files."""
        return cls(parse_etcd_url(etcd_url)[0], TlsFiles.in_dir(str(folder)))

    def _call(self, path: str, body: dict[str, object], ok_codes: Iterable[int] = ()) -> None:
        try:
            self._gw.call(path, body)
        except GatewayError as exc:
            if exc.code in set(ok_codes):
                return
            raise OrderingError(f"etcd refused {path.rsplit('/', 1)[-1]} ({exc}); check that "
                                "the etcd-admin folder holds the root user of this cluster"
                                ) from None

    def enable(self, admin_dir: Path, password: str | None = None) -> None:
        """Create ``root`` (password saved in ``admin_dir``) and turn auth on. Run once, on a
        fresh cluster, with ``admin_dir`` holding a member CA's client certificate."""
        password = password or secrets.token_urlsafe(24)
        self._call("/v3/auth/user/add", {"name": "root", "password": password}, [_ALREADY])
        self._call("/v3/auth/role/add", {"name": "root"}, [_ALREADY])
        self._call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        write_account(admin_dir, "root", password)
        self._call("/v3/auth/enable", {}, [_ALREADY])

    def add_member(self, chain_key: str, member: str) -> str:
        """Create (or re-create) ``member``'s user and role; return its new password."""
        user = user_name(member)
        password = secrets.token_urlsafe(24)
        self._call("/v3/auth/user/delete", {"name": user}, [_NOT_FOUND])
        self._call("/v3/auth/role/delete", {"role": user}, [_NOT_FOUND])
        self._call("/v3/auth/user/add", {"name": user, "password": password})
        self._call("/v3/auth/role/add", {"name": user})
        for perm, key, end in member_grants(chain_key, member):
            grant: dict[str, str] = {"permType": perm, "key": b64(key)}
            if end is not None:
                grant["range_end"] = b64(end)
            self._call("/v3/auth/role/grant", {"name": user, "perm": grant})
        self._call("/v3/auth/user/grant", {"user": user, "role": user})
        return password

    def users(self) -> list[str]:
        try:
            reply = self._gw.call("/v3/auth/user/list", {})
        except GatewayError as exc:
            raise OrderingError(f"etcd refused to list users ({exc})") from None
        return [str(u) for u in reply.body.get("users", [])]

    def revoke(self, member: str) -> None:
        """Take ``member``'s role away and delete its user and role (idempotent)."""
        user = user_name(member)
        self._call("/v3/auth/user/revoke", {"name": user, "role": user}, [_NOT_FOUND, 5])
        self._call("/v3/auth/user/delete", {"name": user}, [_NOT_FOUND, 5])
        self._call("/v3/auth/role/delete", {"role": user}, [_NOT_FOUND, 5])

    def reconcile(self, members: Iterable[str]) -> list[str]:
        """Revoke every member user not in ``members``; return the members revoked."""
        keep = {user_name(m) for m in members}
        gone = [u for u in self.users() if u.startswith(USER_PREFIX) and u not in keep]
        for u in gone:
            self.revoke(u[len(USER_PREFIX):])
        return [u[len(USER_PREFIX):] for u in gone]

    def remove_etcd_member(self, etcd_name: str) -> bool:
        """Take the etcd member named ``etcd_name`` (its ``--name``) out of the Raft cluster
        (``/v3/cluster/member/remove``): a removed organization's etcd server no longer
        holds a replica nor counts toward quorum. False when no such member is listed
        (removed already). Run before stopping that server, with quorum up."""
        try:
            listed = self._gw.call("/v3/cluster/member/list", {}).body.get("members", [])
        except GatewayError as exc:
            raise OrderingError(f"etcd refused to list its members ({exc})") from None
        ids = [m.get("ID") for m in listed if m.get("name") == etcd_name]
        if not ids:
            return False
        self._call("/v3/cluster/member/remove", {"ID": ids[0]})
        return True

    def close(self) -> None:
        self._gw.close()


def client_identity(tls_dir: Path, ca_dir: Path, member: str) -> None:
    """Issue ``member`` a client certificate (no CommonName) by the CA in ``ca_dir`` into
    ``tls_dir`` (``etcd-client.pem``, ``etcd-client.key`` mode 0600)."""
    import datetime

    from ..crypto import tls

    ca = tls.Identity((ca_dir / "ca.key").read_bytes(), (ca_dir / "ca.pem").read_bytes())
    ident = tls.issue_client(ca, member, datetime.datetime.now(datetime.UTC))
    atomic_write(tls_dir / "etcd-client.key", ident.key_pem, mode=0o600)
    atomic_write(tls_dir / "etcd-client.pem", ident.cert_pem)

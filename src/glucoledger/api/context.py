"""What the HTTP edge holds while it runs: the node, its services and the edge's own state.

``ServerContext`` is the one place the server's parts are wired together; routes reach it
through ``ctx(request)`` and call the node services it holds.
"""

from __future__ import annotations

import threading
from dataclasses import InitVar, dataclass, field
from typing import Any

from fastapi import Request

from ..crypto import PrivateKey, PublicKey
from ..crypto.httpsig import NonceCache
from ..errors import AuthenticationError, NotFoundError
from ..node.accounts import AddressBook, Identity, identity, keys_of
from ..node.enrolment import Enrolments
from ..node.people import Passwords, SecurityLog
from ..node.readers import ReaderInvites
from ..node.recovery import RecoveryCodes
from ..node.service import Node
from ..node.services import NodeServices
from .security import Argon2Gate, CostLimiter, LoginLimiter, Session, Sessions

__all__ = ["Principal", "ServerContext", "ServerSettings", "ctx"]


@dataclass(frozen=True)
class ServerSettings:
    max_body: int = 2 * 1024 * 1024  # bytes; a day of 1-minute CGM JSON is ~250 kB
    secure_cookies: bool = True
    node_name: str = "glucoledger"
    #: proxies whose X-Forwarded-For is believed (uvicorn ``forwarded_allow_ips``); none by
    #: default, so the client address is the TCP peer and cannot be chosen by the client
    forwarded_allow_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a person (session), a program (signature) or a Nightscout token."""

    ident: Identity
    via: str  # "session" | "signature" | "token"
    session: Session | None = None

    @property
    def name(self) -> str:
        return self.ident.name

    @property
    def id(self) -> bytes:
        return self.ident.id

    @property
    def kind(self) -> str:
        return self.ident.kind


@dataclass
class ServerContext:
    node: Node
    settings: ServerSettings
    passwords: Passwords
    seclog: SecurityLog
    sessions: Sessions = field(default_factory=Sessions)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    #: Argon2id checks of passwords at the door: at most ``slots`` at once (64 MiB each)
    argon2: Argon2Gate = field(default_factory=Argon2Gate)
    #: ... and of one-time codes (recovery, enrolment), apart: a flood of password guesses
    #: never keeps the owner's recovery code out (node/recovery.py checks one at a time)
    argon2_codes: Argon2Gate = field(default_factory=lambda: Argon2Gate(
        slots=1, queue=8, what="one-time codes"))
    nonces: NonceCache = field(default_factory=NonceCache)
    #: The node's services, from the one composition root (node/services.py): routes take
    #: them typed from here (``c.svc.vault``, ``c.svc.access``, ``c.svc.ingest``, ...).
    svc: NodeServices = field(init=False)
    services_root: InitVar[NodeServices | None] = None
    #: Nightscout reader invitations (node/readers.py), over ``svc.nightscout``.
    readers: ReaderInvites = field(init=False)
    #: The last ``POST /api/verify`` (or portal verify) result, shown by ``/api/status``.
    last_verify: dict[str, Any] | None = None
    #: The portal's per-account display preferences (api/portal_view.Prefs), built on use.
    portal_prefs: Any = None
    #: key id -> (account, key, whether the key carries everyday weight there)
    _keys: dict[bytes, tuple[Identity, PublicKey, bool]] = field(default_factory=dict)
    _mu: threading.Lock = field(default_factory=threading.Lock)
    enrolments: Enrolments = field(init=False)
    recovery: RecoveryCodes = field(init=False)
    #: per-account budget of costly calls (verify, exports): ``CostLimiter``
    costly: CostLimiter = field(default_factory=CostLimiter)

    def __post_init__(self, services_root: NodeServices | None) -> None:
        self.enrolments = Enrolments(self.node)
        self.recovery = RecoveryCodes(self.node)
        # The caller opened the node and closes it; the services are closed by close().
        self.svc = services_root or NodeServices.of(self.node)
        self.readers = ReaderInvites(self.node, self.svc.nightscout)

    @classmethod
    def create(cls, node: Node, settings: ServerSettings | None = None) -> ServerContext:
        return cls(node, settings or ServerSettings(), Passwords(node),
                   SecurityLog(node.data_dir))

    def close(self) -> None:
        """Close the services (the Nightscout pipeline, then the vault); not the node. The
        security log writes its pending summary lines."""
        self.seclog.flush()
        self.svc.close()

    def erase(self, patient: bytes, keys: Any, streams: list[str]) -> bytes:
        """Order the patient's erasure of ``streams`` and destroy their keys and blobs."""
        report = self.svc.erasure.erase_as(patient, keys, streams)
        # The refusal log quotes values: it goes with any erasure.
        self.svc.nightscout.refusals.forget(patient)
        return report.tx_hash

    def keys_for(self, who: Principal) -> list[PrivateKey]:
        """The caller's custodial keys: unlocked by the session's login, or the node's
        wallet keys of the account for a signed program (``node.accounts.keys_of``)."""
        if who.session is not None:
            return who.session.keys
        return keys_of(self.node, who.ident)

    def account_lock(self, account: bytes) -> threading.RLock:
        """The node's lock for the account (``Node.account_lock``): transactions built from
        its custodial keys take consecutive nonces, so they are built and ordered one at a
        time, whichever path (portal, REST, FHIR, CLI code in-process) builds them."""
        return self.node.account_lock(account)

    def key_owner(self, key_id: bytes) -> tuple[Identity, PublicKey]:
        """The account holding ``key_id`` in its policy. Raises AuthenticationError."""
        self.node.refresh()  # a key recovered away by another process stops signing now
        with self._mu:
            hit = self._keys.get(key_id)
        if hit is not None and not self._still_holds(hit[0], key_id, hit[2]):
            hit = None  # rotated out since (recovery, a policy update): ask the ledger again
        if hit is None:
            # A key can be listed by several accounts: a trusted party's key is also a
            # cosigner of her patient's account (with no everyday weight). It belongs to the
            # one account where it carries everyday ("default") weight, never to another
            # account it merely cosigns for; a key that would belong to two is nobody's.
            claims: dict[bytes, list[tuple[bool, Identity, PublicKey]]] = {}
            # The node's own organization (the operator) signs with its key, too.
            for ident in [identity(self.node, "org"), *AddressBook(self.node).all()]:
                try:
                    acct = self.node.account(ident.id)
                except NotFoundError:
                    continue
                for kid, cos in acct.keys.items():
                    claims.setdefault(kid, []).append((cos.weight("default") > 0, ident,
                                                       cos.key))
            found: dict[bytes, tuple[Identity, PublicKey, bool]] = {}
            for kid, owners in claims.items():
                everyday = [o for o in owners if o[0]] or owners
                if len(everyday) == 1:
                    weighted, ident, key = everyday[0]
                    found[kid] = (ident, key, weighted)
            with self._mu:
                self._keys = found
            hit = found.get(key_id)
        if hit is None:
            raise AuthenticationError(f"keyid {key_id.hex()[:16]} is not a key of any account "
                                      "on this node: sign with your account's registered key")
        return hit[0], hit[1]

    def _still_holds(self, ident: Identity, key_id: bytes, everyday: bool) -> bool:
        """Whether ``ident``'s account lists ``key_id`` now, with the weight it had when the
        cache was built, as the ledger's state says at this request: a key leaves its
        account from the block that rotated it out, whichever process ordered that block."""
        try:
            acct = self.node.account(ident.id)
        except NotFoundError:
            return False
        cos = acct.keys.get(key_id)
        return cos is not None and (cos.weight("default") > 0) == everyday


def ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]

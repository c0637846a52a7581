"""Opening custodial accounts for callers at the node's door (the HTTP API).

The CLI's ``account create`` is the operator at the console, holding the data folder; over the
network the same power is narrower:

- Only an organization opens accounts: the node's own (``org``, the operator's key) or an
  organization account this node keeps. It is the sponsor the state machine asks for where a
  kind needs one (clinician, maker, organization: ``state/accounts.py`` ``SPONSORS``).
- Kinds: ``OPEN_KINDS``. Devices are registered by their maker (``device.register``), gateways
  come with a Nightscout uploader secret (``node/nightscout.py``), node accounts by
  consortium governance.
- A patient names her trusted party, an account of kind ``trusted`` on this node: its key
  cosigns emergencies and key recovery (DESIGN.md, multi-signature accounts). Over HTTP it is
  required: a custodial patient who forgets her password recovers only through it.
- An optional first portal password (Argon2id, ``node/people.py``). ``first_password`` sets
  one only for an account that has none, so a remote operator credential cannot take over an
  account whose owner already logs in (the operator at the console still can, with
  ``glucoledger password``).

Everything is checked before anything is submitted: a refused request changes nothing.
Creations are serialized (the address book is one file).
"""

from __future__ import annotations

import threading

from ..errors import InputError, PermissionDeniedError
from .accounts import Identity, create_account, identity
from .people import Passwords, check_password
from .service import Node, Receipt

__all__ = ["OPEN_KINDS", "first_password", "open_account"]

OPEN_KINDS = ("patient", "trusted", "clinician", "maker", "organization")

_LOCK = threading.Lock()


def _require_organization(by: Identity) -> None:
    if by.kind != "organization":
        raise PermissionDeniedError(f"only an organization opens accounts here; {by.name} is a "
                                    f"{by.kind}", code="not_organization")


def open_account(node: Node, passwords: Passwords, by: Identity, name: str, kind: str, *,
                 trusted: str | None = None, password: str | None = None,
                 alg: str = "ed25519") -> tuple[Identity, Receipt]:
    """Open a custodial account sponsored by ``by`` and (optionally) set its first password.

    Raises PermissionDeniedError (``by`` is not an organization), InputError (kind, name,
    trusted party, password, algorithm), NotFoundError (no such trusted party),
    RejectedError (refused by the state machine).
    """
    _require_organization(by)
    if kind not in OPEN_KINDS:
        raise InputError(f"kind {kind!r} is not opened here; use one of {', '.join(OPEN_KINDS)} "
                         "(makers register devices, patients make Nightscout gateways)")
    if alg not in ("ed25519", "p256"):
        raise InputError("alg is ed25519 or p256")
    if kind == "patient":
        if trusted is None:
            raise InputError("a patient names her trusted party (an account of kind trusted): "
                             "it cosigns emergencies and key recovery")
        party = identity(node, trusted)
        if party.kind != "trusted":
            raise InputError(f"{trusted} is a {party.kind}; a patient's trusted party is an "
                             "account of kind trusted")
    elif trusted is not None:
        raise InputError("only a patient has a trusted party; leave trusted out")
    if password is not None:
        check_password(password)
    with _LOCK:
        ident, receipt = create_account(node, name, kind, sponsor=by.name, trusted=trusted,
                                        alg=alg)
        if password is not None:
            passwords.set(name, password, first=True)
    return ident, receipt


def first_password(passwords: Passwords, by: Identity, name: str, password: str) -> None:
    """Set the first portal password of ``name`` (which has none yet).

    Raises PermissionDeniedError, NotFoundError, InputError, RejectedError (``password_set``).
    """
    _require_organization(by)
    if name == "org":
        raise InputError("the operator sets the organization's own password at the node: "
                         "`glucoledger password org`")
    kind = identity(passwords.node, name).kind
    if kind not in OPEN_KINDS:
        raise InputError(f"{name} is a {kind}: it signs with its key and has no portal "
                         "password")
    passwords.set(name, check_password(password), first=True)

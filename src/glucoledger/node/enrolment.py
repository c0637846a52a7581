"""Enrolment by sponsorship: who may open an account, and who may first let a person in.

Every account opened at the node's door records who enrolled it (``<data>/enrolment.json``,
mode 0600, written by ``files.atomic_write_json``). The rules (issue 10):

- Only an organization opens accounts: the node's own (``org``, the operator's key) or an
  organization account this node keeps. It becomes the account's *sponsor*, also the one
  the state machine asks for where a kind needs one (``state/accounts.py`` ``SPONSORS``).
  An account with no record was opened at the console by the operator: its sponsor is
  ``org``.
- A first password (or a one-time enrolment code) is set only by the account's sponsor;
  the operator at the console still can (``glucoledger password``). An organization never
  sets the password of an account another organization (or the operator) opened.
- A patient's trusted party is let in only by the patient: she issues a one-time
  *invitation code* and hands it over; the trusted party redeems it and chooses her
  password. No organization sets a trusted party's password or issues her code.
- A patient names as trusted party only an account of kind ``trusted`` that her own sponsor
  opened and that no other patient names: so the trusted party of a patient sponsored by
  organization A can never be reached through a patient that organization B controls.
- Codes: 128 random bits, shown once, kept only as an Argon2id hash (RFC 9106), used once,
  valid ``CODE_TTL_S``; a new code replaces the previous one.

The consequence the property test checks (tests/api/test_enrolment_property.py): no
sequence of calls by one organization yields a session for an account it did not sponsor,
so no organization alone holds both the clinician's and the trusted party's side of an
emergency request for a patient another organization (or the operator) enrolled. A sponsor
is by construction the enrolment authority of what it opens (docs/threat-model.md says so).

Everything is checked before anything is written: a refused request changes nothing.
"""

from __future__ import annotations

import secrets
import threading
from contextlib import AbstractContextManager
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import AuthenticationError, InputError, NotFoundError, PermissionDeniedError
from ..files import atomic_write_json, locked, read_json
from ..names import check_name
from .accounts import NO_TRUSTED_PARTY, AddressBook, Identity, create_account, identity
from .people import Passwords, check_password
from .service import Node, Receipt

__all__ = ["CODE_TTL_S", "OPEN_KINDS", "Enrolments", "first_password", "open_account"]

OPEN_KINDS = ("patient", "trusted", "clinician", "maker", "organization")
CODE_TTL_S = 7 * 24 * 3600
OPERATOR = "org"

_LOCK = threading.Lock()


def _require_organization(by: Identity) -> None:
    if by.kind != "organization":
        raise PermissionDeniedError(f"only an organization enrols accounts here; {by.name} is "
                                    f"a {by.kind}", code="not_organization")


class Enrolments:
    """The node's record of sponsors, trusted-party links and pending one-time codes."""

    def __init__(self, node: Node, hasher: PasswordHasher | None = None) -> None:
        self.node = node
        self.path = node.data_dir / "enrolment.json"
        self._hasher = hasher or PasswordHasher()
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def _locked(self) -> AbstractContextManager[None]:
        """One read-modify-write of the file at a time: threads, and the other processes on
        the folder (a command next to ``serve``, a second server): ``files.locked``."""
        return locked(self.path.with_name(".enrolment.lock"), "changing the enrolments")

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"accounts": {}, "codes": {}}
        data = read_json(self.path, what="the node's enrolment record")
        return {"accounts": dict(data.get("accounts", {})), "codes": dict(data.get("codes", {}))}

    def _save(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.path, data, mode=0o600)

    def sponsor_of(self, name: str) -> str:
        """Who enrolled ``name`` (``org``: the operator, also for accounts with no record)."""
        return str(self._load()["accounts"].get(name, {}).get("sponsor", OPERATOR))

    def patients_of(self, trusted: Identity) -> list[str]:
        """The patients whose account lists ``trusted``'s key (read from the ledger's state,
        so accounts opened at the console count too)."""
        try:
            theirs = set(self.node.account(trusted.id).keys)
        except NotFoundError:
            return []
        out = []
        for ident in AddressBook(self.node).all():
            if ident.kind != "patient":
                continue
            try:
                if theirs & set(self.node.account(ident.id).keys):
                    out.append(ident.name)
            except NotFoundError:
                continue
        return out

    def record(self, name: str, sponsor: str) -> None:
        with self._locked():
            data = self._load()
            data["accounts"][name] = {"sponsor": sponsor}
            self._save(data)

    # --- one-time codes ------------------------------------------------------------------
    def may_let_in(self, by: Identity, name: str) -> Identity:
        """The account ``name`` if ``by`` may set its first password or issue its code.

        Raises NotFoundError, InputError (kinds that log in with keys only),
        PermissionDeniedError (``not_sponsor``, ``needs_invitation``, ``not_your_trusted``).
        """
        check_name(name)
        target = identity(self.node, name)
        if name == OPERATOR:
            raise InputError("the operator sets the organization's own password at the node: "
                             "`glucoledger password org`")
        if target.kind not in OPEN_KINDS:
            raise InputError(f"{name} is a {target.kind}: it signs with its key and has no "
                             "portal password")
        if target.kind == "trusted":
            if by.kind == "patient" and self.patients_of(target) == [by.name]:
                return target
            if by.kind == "patient":
                raise PermissionDeniedError(f"{name} is not your trusted party; you invite only "
                                            "the trusted party named on your account",
                                            code="not_your_trusted")
            raise PermissionDeniedError(
                f"{name} is a trusted party: only the patient who names her invites her (the "
                "patient issues a one-time code in her session); an organization never "
                "enrols a trusted party", code="needs_invitation")
        _require_organization(by)
        if self.sponsor_of(name) != by.name:
            raise PermissionDeniedError(
                f"{by.name} did not open {name}: only the organization that opened an account "
                "(its sponsor) or the operator at the node lets its owner in",
                code="not_sponsor")
        return target

    def issue_code(self, by: Identity, name: str, passwords: Passwords, now: float) -> str:
        """A one-time code that lets ``name``'s owner choose her first password.

        Raises as ``may_let_in``, and RejectedError ``password_set`` if she has one already.
        """
        self.may_let_in(by, name)
        passwords.require_none(name)
        code = secrets.token_urlsafe(16)
        digest = self._hasher.hash(code)
        with self._locked():
            data = self._load()
            data["codes"][name] = {"by": by.name, "hash": digest, "until": int(now + CODE_TTL_S)}
            self._save(data)
        return code

    def redeem(self, name: str, code: str, password: str, passwords: Passwords,
               now: float) -> Identity:
        """Use ``name``'s one-time code to set her first password; the code is then spent.

        Raises AuthenticationError (no such code, wrong, expired: one message for all),
        InputError (password length), RejectedError ``password_set``.
        """
        check_password(password)
        with self._locked():
            data = self._load()
            entry = data["codes"].get(name) if isinstance(name, str) else None
            try:
                self._hasher.verify(entry["hash"] if entry else self._decoy, code[:256])
                if entry is None or entry["until"] < now:
                    raise VerifyMismatchError
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                raise AuthenticationError("wrong account name or enrolment code, or the code "
                                          "expired: ask for a new one") from None
            passwords.set(name, password, first=True)
            del data["codes"][name]
            self._save(data)
        return identity(self.node, name)


def open_account(node: Node, passwords: Passwords, enrolments: Enrolments, by: Identity,
                 name: str, kind: str, *, trusted: str | None = None,
                 password: str | None = None, alg: str = "ed25519") -> tuple[Identity, Receipt]:
    """Open a custodial account sponsored by ``by`` and (optionally) set its first password.

    Raises PermissionDeniedError (``by`` is not an organization; the trusted party is not
    one ``by`` opened for this patient), InputError (kind, name, trusted party, password,
    algorithm), NotFoundError (no such trusted party), RejectedError (the state machine).
    """
    _require_organization(by)
    check_name(name)
    if kind not in OPEN_KINDS:
        raise InputError(f"kind {kind!r} is not opened here; use one of {', '.join(OPEN_KINDS)} "
                         "(makers register devices, patients make Nightscout gateways)")
    if alg not in ("ed25519", "p256"):
        raise InputError("alg is ed25519 or p256")
    if kind == "patient":
        if trusted is None:
            raise InputError(NO_TRUSTED_PARTY)
        check_name(trusted, what="trusted party name")
        party = identity(node, trusted)
        if party.kind != "trusted":
            raise InputError(f"{trusted} is a {party.kind}; a patient's trusted party is an "
                             "account of kind trusted")
        if enrolments.sponsor_of(trusted) != by.name:
            raise PermissionDeniedError(f"{trusted} was not opened by {by.name}: open the "
                                        "patient's trusted party yourself, for her alone",
                                        code="not_sponsor")
        if enrolments.patients_of(party):
            raise PermissionDeniedError(f"{trusted} is already another patient's trusted party; "
                                        "open one trusted-party account per patient",
                                        code="trusted_taken")
    elif trusted is not None:
        raise InputError("only a patient has a trusted party; leave trusted out")
    if password is not None:
        if kind == "trusted":
            raise PermissionDeniedError("a trusted party chooses her password with her "
                                        "patient's invitation code; leave password out",
                                        code="needs_invitation")
        check_password(password)
    with _LOCK:
        ident, receipt = create_account(node, name, kind, sponsor=by.name, trusted=trusted,
                                        alg=alg)
        enrolments.record(name, by.name)
        if password is not None:
            passwords.set(name, password, first=True)
    return ident, receipt


def first_password(passwords: Passwords, enrolments: Enrolments, by: Identity, name: str,
                   password: str) -> None:
    """Set the first portal password of ``name`` (which has none yet), as its sponsor.

    Raises PermissionDeniedError, NotFoundError, InputError, RejectedError (``password_set``).
    """
    check_password(password)
    target = enrolments.may_let_in(by, name)
    if target.kind == "trusted":  # a patient invites with a code, never by setting it
        raise PermissionDeniedError("invite your trusted party with a one-time code (POST "
                                    f"/api/accounts/{name}/enrolment-code); she chooses her "
                                    "password herself", code="needs_invitation")
    passwords.set(name, password, first=True)

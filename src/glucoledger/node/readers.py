"""Nightscout reader tokens by consent of both sides (issue 10).

A reader token makes the node sign ``access`` requests with the *reader's* custodial key
(``node/nightscout.py``), so the reader must have asked for it: a patient may only
*invite* a reader; the reader mints the token in her own session (or with her own signed
request) and it is bound to her. Nobody's key signs what its holder did not ask for: a
patient who names ``dr-kim`` gets an invitation on the node, never a token that reads as
dr-kim.

- ``invite(patient, reader)``: records that ``patient`` invites ``reader`` (a custodial
  account that can read: clinician, trusted party, organization, patient). Idempotent.
- ``mint(reader, patient)``: only with a pending invitation from that patient; spends it,
  binds a fresh 128-bit token to (reader, patient) through ``NightscoutService.add_reader``
  (which keeps only hashes) and returns the token once.
- The invitations live in ``<data>/reader_invites.json`` (``files.atomic_write_json``).

Reads through a token still need the patient's grant to that reader and are audited.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from typing import Any

from ..errors import InputError, PermissionDeniedError
from ..files import atomic_write_json, locked, read_json
from .accounts import Identity, identity
from .service import Node

__all__ = ["READER_KINDS", "ReaderInvites"]

READER_KINDS = ("clinician", "trusted", "organization", "patient")


class ReaderInvites:
    def __init__(self, node: Node, nightscout: Any) -> None:
        self.node = node
        self.nightscout = nightscout
        self.path = node.data_dir / "reader_invites.json"

    def _locked(self) -> AbstractContextManager[None]:
        """One read-modify-write of the file at a time: threads, and the other processes on
        the folder (a command next to ``serve``, a second server): ``files.locked``."""
        return locked(self.path.with_name(".reader_invites.lock"),
                      "changing the reader invitations")

    def _load(self) -> dict[str, list[str]]:
        if not self.path.exists():
            return {}
        return dict(read_json(self.path, what="the Nightscout reader invitations"))

    def pending(self, reader: Identity) -> list[str]:
        """Names of the patients whose invitation ``reader`` may accept."""
        return sorted(p for p, readers in self._load().items() if reader.name in readers)

    def invite(self, patient: Identity, reader_name: str) -> Identity:
        """``patient`` invites ``reader_name`` to mint a read token. Raises NotFoundError,
        InputError (not a reader, herself), PermissionDeniedError (not a patient)."""
        if patient.kind != "patient":
            raise PermissionDeniedError(f"only a patient invites readers of her data; "
                                        f"{patient.name} is a {patient.kind}",
                                        code="not_patient")
        reader = identity(self.node, reader_name)
        if reader.kind not in READER_KINDS or reader.id == patient.id:
            raise InputError(f"{reader_name} is a {reader.kind}: invite a clinician, caregiver "
                             "(trusted party) or organization account")
        with self._locked():
            book = self._load()
            readers = set(book.get(patient.name, []))
            readers.add(reader.name)
            book[patient.name] = sorted(readers)
            atomic_write_json(self.path, book, mode=0o600)
        return reader

    def mint(self, reader: Identity, patient_name: str) -> str:
        """A fresh read token bound to ``reader`` following ``patient_name``, minted by the
        reader herself. Raises NotFoundError, PermissionDeniedError (``not_invited``)."""
        patient = identity(self.node, patient_name)
        token = secrets.token_urlsafe(16)
        with self._locked():
            book = self._load()
            readers = book.get(patient.name, [])
            if reader.name not in readers:
                raise PermissionDeniedError(
                    f"{patient.name} has not invited {reader.name} to read her data through "
                    "Nightscout: ask her to invite you (she names you in her portal or with "
                    "POST /api/nightscout/readers)", code="not_invited")
            self.nightscout.add_reader(reader.name, patient.name, token)
            book[patient.name] = [r for r in readers if r != reader.name]
            if not book[patient.name]:
                del book[patient.name]
            atomic_write_json(self.path, book, mode=0o600)
        return token

"""One-time recovery codes: a second factor the account's owner holds (issue 10).

- ``RecoveryCodes.issue`` makes ``COUNT`` fresh codes for an account (replacing any earlier
  set), returns them once, and keeps only their Argon2id hashes (RFC 9106, argon2-cffi's
  defaults) in ``<data>/recovery.json`` (mode 0600, ``files.atomic_write_json``).
- Lookups cost one Argon2id verification: the first group of 4 characters (20 of the 80
  bits) indexes the set, the whole code is checked against its hash.
- ``use`` accepts one code for one account, spends it (it never works twice), and returns
  how many remain. A wrong code raises AuthenticationError with the same words as a wrong
  password, and nothing changes.
- Each code carries 80 random bits (16 base32 characters, shown in groups of 4): online
  guessing is hopeless, so recovery-code logins have their own, looser backoff and the owner
  reaches her account while someone hammers her password from many addresses.
"""

from __future__ import annotations

import base64
import secrets
from contextlib import AbstractContextManager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import AuthenticationError
from ..files import atomic_write_json, locked, read_json
from .accounts import Identity, identity
from .service import Node

__all__ = ["COUNT", "RecoveryCodes", "normalize"]

COUNT = 10
_DECOY = PasswordHasher().hash("glucoledger-recovery-decoy")  # equal time for unknown codes


def normalize(code: str) -> str:
    """Codes are typed by people: spaces and dashes between groups and case do not matter
    (this is the one place a credential is reformatted: the alphabet has no other forms)."""
    return "".join(ch for ch in code[:64] if ch not in " -").upper()


class RecoveryCodes:
    def __init__(self, node: Node, hasher: PasswordHasher | None = None) -> None:
        self.node = node
        self.path = node.data_dir / "recovery.json"
        self._hasher = hasher or PasswordHasher()

    def _locked(self) -> AbstractContextManager[None]:
        """One read-modify-write of the file at a time: threads, and the other processes on
        the folder (a command next to ``serve``, a second server): ``files.locked``."""
        return locked(self.path.with_name(".recovery.lock"), "changing the recovery codes")

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        return dict(read_json(self.path, what="the recovery-code hashes"))

    def issue(self, who: Identity) -> list[str]:
        """``COUNT`` new codes for ``who`` (the earlier ones stop working); shown once."""
        codes = [base64.b32encode(secrets.token_bytes(10)).decode() for _ in range(COUNT)]
        hashes = {c[:4]: self._hasher.hash(c) for c in codes}  # the first group finds the hash
        if len(hashes) < COUNT:  # two codes share a first group (1 in ~10^5): draw again
            return self.issue(who)
        with self._locked():
            book = self._load()
            book[who.name] = hashes
            atomic_write_json(self.path, book, mode=0o600)
        return ["-".join(c[i:i + 4] for i in range(0, 16, 4)) for c in codes]

    def remaining(self, name: str) -> int:
        return len(self._load().get(name, []))

    def use(self, name: str, code: str) -> tuple[Identity, int]:
        """Spend ``code`` for ``name``: the account and how many codes remain.

        Raises AuthenticationError (no such account, no codes, wrong or spent code).
        """
        typed = normalize(code)
        with self._locked():
            book = self._load()
            hashes = dict(book.get(name, {})) if isinstance(name, str) else {}
            stored = hashes.get(typed[:4])
            try:
                self._hasher.verify(stored or _DECOY, typed)
                if stored is None:
                    raise VerifyMismatchError
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                pass
            else:
                del hashes[typed[:4]]
                book[name] = hashes
                atomic_write_json(self.path, book, mode=0o600)
                return identity(self.node, name), len(hashes)
        raise AuthenticationError("wrong account name or recovery code (each code works once)")

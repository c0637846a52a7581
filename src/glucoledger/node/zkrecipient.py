"""To whom a patient disclosed a zero-knowledge claim, sealed for her node.

A ``zk.disclose`` is replicated to every member of the consortium, so its ``to`` (her words:
"Trial ABC screening", "my insurer") is not written in the clear. Her node seals it with
AES-GCM (``crypto.seal``, context "zk-to") under HMAC-SHA-256(her CGM key-encryption key,
"glucoledger zk disclosure recipient"), bound to her account, the claim and the period (a
sealed ``to`` copied into another disclosure does not open), and padded with zero bytes to
one size, :data:`state.zkdays.SEALED_TO_BYTES` (neither whether she named anyone nor how long
the name is shows). Her node reads it back for her disclosures list and her audit trail;
another member's node, or hers once her key was erased (GDPR art. 17), reads nothing.
"""

from __future__ import annotations

from typing import Any, Final

from .. import codec
from ..crypto.hashing import hmac_sha256
from ..crypto.seal import open_sealed, seal
from ..errors import GlucoledgerError, InputError
from ..state.zkdays import MAX_TO, SEALED_TO_BYTES
from ..vault.store import Vault

__all__ = ["open_recipient", "seal_recipient"]

_CONTEXT: Final = "zk-to"
_OVERHEAD: Final = 13 + 16  # crypto.seal: the version byte and the nonce; the GCM tag


def _key(kek: bytes) -> bytes:
    return hmac_sha256(kek, b"glucoledger zk disclosure recipient")


def _aad(patient: bytes, claim: str, start: int, end: int, days: int) -> bytes:
    return codec.encode([patient, claim, start, end, days])


def seal_recipient(vault: Vault, patient: bytes, to: str, claim: str, start: int, end: int,
                   days: int) -> bytes:
    """``to`` as the disclosure's body carries it. Raises InputError for more than
    ``MAX_TO`` characters or characters that do not print."""
    if len(to) > MAX_TO or not to.isprintable():
        raise InputError(f"to whom: at most {MAX_TO} printable characters (or nothing)")
    padded = to.encode().ljust(SEALED_TO_BYTES - _OVERHEAD, b"\0")
    return seal(_key(vault.kek(patient, "cgm")), padded, _CONTEXT,
                _aad(patient, claim, start, end, days))


def open_recipient(vault: Vault, patient: bytes, record: dict[str, Any]) -> str | None:
    """The recipient of the patient's disclosure ``record`` (its state record or body), or
    None where this node cannot read it: no key of hers here, her key erased, or not sealed
    by her node."""
    kek = vault.existing_kek(patient, "cgm")
    if kek is None:
        return None
    try:
        words = open_sealed(_key(kek), record["to"], _CONTEXT, _aad(
            patient, record["claim"], record["start"], record["end"], record["days"]))
        return words.rstrip(b"\0").decode()
    except (GlucoledgerError, UnicodeDecodeError, TypeError, KeyError):
        return None

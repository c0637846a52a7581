"""Sealed boxes under a symmetric key: the recipe for everything kept encrypted at rest.

``seal(key, plaintext, aad)`` = version byte 0x01 || 12-byte random nonce || AES-256-GCM
ciphertext and tag, with ``b"glucoledger/v1 seal:" + context`` bound into the associated data.
``open_sealed`` raises VerificationError when the key is wrong or any byte was altered.
Nonces are random (96 bits): a key seals at most 2^32 messages (NIST SP 800-38D 8.3); callers
use one key per batch or per small set of keys, far below that.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import MalformedError, VerificationError

__all__ = ["KEY_BYTES", "new_key", "open_sealed", "seal"]

KEY_BYTES = 32
_VERSION = 0x01


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _aad(context: str, aad: bytes) -> bytes:
    if not context or "\x00" in context:
        raise ValueError("a seal context is a non-empty string without NUL")
    return b"glucoledger/v1 seal:" + context.encode() + b"\x00" + aad


def seal(key: bytes, plaintext: bytes, context: str, aad: bytes = b"",
         *, nonce: bytes | None = None) -> bytes:
    """Encrypt and authenticate. ``nonce`` is a test seam; leave it None in real use."""
    if len(key) != KEY_BYTES:
        raise ValueError("seal keys are 32 bytes")
    n = os.urandom(12) if nonce is None else nonce
    if len(n) != 12:
        raise ValueError("nonces are 12 bytes")
    return bytes([_VERSION]) + n + AESGCM(key).encrypt(n, plaintext, _aad(context, aad))


def open_sealed(key: bytes, box: bytes, context: str, aad: bytes = b"") -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError("seal keys are 32 bytes")
    if len(box) < 1 + 12 + 16 or box[0] != _VERSION:
        raise MalformedError("not a sealed box of a known version")
    try:
        return AESGCM(key).decrypt(box[1:13], box[13:], _aad(context, aad))
    except InvalidTag:
        raise VerificationError(
            f"cannot open sealed {context}: wrong key, or the data was altered"
        ) from None

"""Signature primitives for HTTP Message Signatures (RFC 9421, section 3.3).

RFC 9421 signs the *signature base* itself (no glucoledger context prefix): ``ed25519``
(section 3.3.6) and ``ecdsa-p256-sha256`` (section 3.3.4, r||s, 64 bytes; we produce and
require the low-s form). The base is built by ``glucoledger.api.httpsig``.
"""

from __future__ import annotations

from .keys import PrivateKey, PublicKey

__all__ = ["RFC9421_ALGS", "sign_base", "verify_base"]

RFC9421_ALGS = {"ed25519": "ed25519", "p256": "ecdsa-p256-sha256"}


def sign_base(key: PrivateKey, base: bytes) -> bytes:
    return key._sign_raw(base)


def verify_base(key: PublicKey, base: bytes, signature: bytes) -> None:
    """Raise SignatureError unless ``signature`` is ``key``'s over ``base``."""
    key.verify_raw(base, signature)

"""HPKE (RFC 9180) base mode: wrap small secrets (data keys) to a patient's own X25519 key.

Suite: DHKEM(X25519, HKDF-SHA256) (KEM 0x0020), HKDF-SHA256 (KDF 0x0001), AES-256-GCM
(AEAD 0x0002), single-shot base mode (RFC 9180 section 6.1), through pyca/cryptography's
``hazmat.primitives.hpke``. A wrapped key is ``version byte 0x01 || enc (32 bytes) ||
ciphertext``; ``info`` is ``b"glucoledger/v1 hpke:" + context + 0x00 + info`` so a key
wrapped for one purpose (a batch's data key, bound to the batch identifiers) cannot be
unwrapped as another.

Raises: ``MalformedError`` for a key or box of the wrong shape; ``VerificationError`` when a
box does not open (wrong private key, altered bytes, other context/info).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from ..errors import MalformedError, VerificationError

__all__ = ["X25519_BYTES", "X25519Pair", "generate_x25519", "hpke_open", "hpke_seal",
           "x25519_public"]

X25519_BYTES = 32
_VERSION = 0x01
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_RAW = serialization.Encoding.Raw


class X25519Pair:
    """An X25519 key pair as raw bytes. The private half never appears in repr."""

    __slots__ = ("private", "public")

    def __init__(self, private: bytes, public: bytes) -> None:
        self.private, self.public = private, public

    def __repr__(self) -> str:
        return f"X25519Pair(public={self.public.hex()[:16]}...)"


def generate_x25519() -> X25519Pair:
    sk = x25519.X25519PrivateKey.generate()
    raw = sk.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return X25519Pair(raw, sk.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))


def x25519_public(private: bytes) -> bytes:
    return _private(private).public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)


def _private(raw: bytes) -> x25519.X25519PrivateKey:
    if not isinstance(raw, bytes) or len(raw) != X25519_BYTES:
        raise MalformedError("an X25519 private key is 32 bytes")
    return x25519.X25519PrivateKey.from_private_bytes(raw)


def _info(context: str, info: bytes) -> bytes:
    if not context or "\x00" in context:
        raise ValueError("an HPKE context is a non-empty string without NUL")
    return b"glucoledger/v1 hpke:" + context.encode() + b"\x00" + info


def hpke_seal(public: bytes, plaintext: bytes, context: str, info: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` to the X25519 public key ``public`` (RFC 9180 base mode)."""
    if not isinstance(public, bytes) or len(public) != X25519_BYTES:
        raise MalformedError("an X25519 public key is 32 bytes")
    try:
        pk = x25519.X25519PublicKey.from_public_bytes(public)
    except ValueError:
        raise MalformedError("not a valid X25519 public key") from None
    return bytes([_VERSION]) + _SUITE.encrypt(plaintext, pk, info=_info(context, info))


def hpke_open(private: bytes, box: bytes, context: str, info: bytes = b"") -> bytes:
    if len(box) < 1 + X25519_BYTES + 16 or box[0] != _VERSION:
        raise MalformedError("not an HPKE box of a known version")
    try:
        return _SUITE.decrypt(box[1:], _private(private), info=_info(context, info))
    except MalformedError:
        raise
    except Exception:  # InvalidTag and friends: all mean "does not open"
        raise VerificationError(
            f"cannot open HPKE {context}: wrong private key, or the data was altered"
        ) from None

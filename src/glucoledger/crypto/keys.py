"""Signing keys: Ed25519 and ECDSA P-256 (secure elements and phones mostly offer P-256).

Every glucoledger signature is domain-separated: the signed message is
``b"glucoledger/v1 sig:" + context + b"\\x00" + message``, so a signature made for one purpose
(a transaction, a device upload, a checkpoint cosignature) is worthless for any other.
The one exception is ``sign_note``: C2SP signed notes define their own signed bytes.

Encodings (what goes on the ledger):
- Ed25519 public key: 32 raw bytes. Signature: 64 bytes. Signed and checked through libsodium
  under the strict rule stated in ``crypto/ed25519.py`` (canonical S, A, R; no small order).
- P-256 public key: 33-byte compressed SEC1 point. Signature: 64 bytes r||s, big-endian, with
  low s (s <= n/2) so that a signature cannot be re-shaped into a second valid one.

A key id is ``tagged_hash("key-id", alg || public key)``: 32 bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..codec import BytesLike
from ..errors import MalformedError, SignatureError
from . import ed25519 as _ed
from .hashing import tagged_hash

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "PrivateKey",
    "PublicKey",
    "generate",
    "signing_input",
]

Algorithm = Literal["ed25519", "p256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "p256")
_ALG_BYTE = {"ed25519": b"\x01", "p256": b"\x02"}
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_N = _P256_N // 2


# Messages and signatures may be any bytes-like value, declared as such: this module is
# compiled (``_compiled.py``), and a compiled function checks its declared types at the call.
def signing_input(context: str, message: BytesLike) -> bytes:
    """The exact bytes a glucoledger signature covers."""
    if not context or "\x00" in context:
        raise ValueError("a signature context is a non-empty string without NUL")
    return b"glucoledger/v1 sig:" + context.encode() + b"\x00" + message


# No memo of verified signatures here: a node keeps its own, explicitly
# (``ledger.trust.TrustCache``); this module verifies every time it is asked.


@functools.lru_cache(maxsize=65536)
def _load_public(alg: str, raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 key object (Ed25519 keys need none: ``PublicKey`` checks their length)."""
    try:
        if alg == "p256":
            if len(raw) != 33:
                raise ValueError("length")
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise MalformedError(f"not a valid {alg} public key ({len(raw)} bytes)") from None
    raise MalformedError(f"unknown key algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def _size(raw: object) -> str:
    return f"{len(raw)} bytes" if isinstance(raw, (bytes, bytearray)) else type(raw).__name__


@dataclass(frozen=True, slots=True, init=False)
class PublicKey:
    alg: Algorithm
    raw: bytes
    #: ``key_id``, once computed (a pure function of ``alg`` and ``raw``).
    _id: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __init__(self, alg: object, raw: object) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``): two or more a transaction.
        # The parameters are ``object``: a compiled function checks its declared types at the
        # call (TypeError), and anything else must be refused as malformed, in both builds.
        if alg == "ed25519":
            # All an Ed25519 key's encoding needs here is its length: OpenSSL's key object
            # checks no more, and libsodium verifies from the bytes (``crypto.ed25519``
            # applies the encoding rule to every signature). Building that object for each
            # new account's key was 1-2 % of a consortium node's CPU.
            if not isinstance(raw, bytes) or len(raw) != 32:
                raise MalformedError(
                    f"not a valid ed25519 public key ({_size(raw)}); it is 32 bytes")
        elif not isinstance(alg, str) or alg not in ALGORITHMS:
            raise MalformedError(
                f"unknown key algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")
        elif not isinstance(raw, bytes):
            raise MalformedError(f"not a valid {alg} public key ({_size(raw)})")
        else:
            _load_public(alg, raw)  # validates; raises MalformedError
        object.__setattr__(self, "alg", alg)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "_id", b"")

    def __reduce__(self) -> tuple[type[PublicKey], tuple[str, bytes]]:
        # Pickled to and from worker processes (a checked upload holds its device's key).
        # Compiled with a written ``__init__``, the default unpickling calls it without
        # arguments; this hands it the fields.
        return PublicKey, (self.alg, self.raw)

    @property
    def key_id(self) -> bytes:
        kid = self._id
        if not kid:  # computed once per key object: a policy's checks, its account's
            # key table and a transaction's signer set each ask for it
            kid = tagged_hash("key-id", _ALG_BYTE[self.alg] + self.raw)
            object.__setattr__(self, "_id", kid)
        return kid

    def to_value(self) -> dict[str, object]:
        return {"alg": self.alg, "pub": self.raw}

    @classmethod
    def from_value(cls, value: object) -> PublicKey:
        if (
            not isinstance(value, dict)
            or set(value) != {"alg", "pub"}
            or value["alg"] not in ALGORITHMS
            or not isinstance(value["pub"], bytes)
        ):
            raise MalformedError("a public key is {alg: 'ed25519'|'p256', pub: bytes}")
        return cls(value["alg"], value["pub"])

    def verify(self, context: str, message: BytesLike, signature: BytesLike) -> None:
        """Raise SignatureError unless ``signature`` is this key's over (context, message)."""
        self.verify_raw(signing_input(context, message), signature)

    def verify_raw(self, data: BytesLike, signature: BytesLike) -> None:
        if len(signature) != 64:
            raise SignatureError(f"{self.alg} signature must be 64 bytes, got {len(signature)}")
        try:
            if self.alg == "ed25519":
                _ed.verify(self.raw, bytes(data), bytes(signature))
            else:
                key = _load_public(self.alg, self.raw)
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                if not (0 < r < _P256_N and 0 < s <= _P256_HALF_N):
                    raise InvalidSignature
                key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, SignatureError):
            raise SignatureError(
                f"signature does not verify under {self.alg} key {self.key_id.hex()[:16]}"
            ) from None

    def __repr__(self) -> str:
        return f"PublicKey({self.alg}, {self.raw.hex()[:16]}...)"


class PrivateKey:
    """A signing key. Its secret never appears in repr, str, logs or errors."""

    __slots__ = ("_key", "_sodium", "alg", "public")

    def __init__(self, alg: Algorithm, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        self.alg = alg
        self._key = key
        self._sodium = b""
        if isinstance(key, ed25519.Ed25519PrivateKey):
            # libsodium signs (same deterministic signature, 2.3x faster); the secret is held
            # once more in its 64-byte form, never shown.
            self._sodium = _ed.signing_key(key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                serialization.NoEncryption()))
            raw = self._sodium[32:]
        else:
            raw = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        self.public = PublicKey(alg, raw)

    def sign(self, context: str, message: BytesLike) -> bytes:
        return self._sign_raw(signing_input(context, message))

    def sign_note(self, text: BytesLike) -> bytes:
        """Sign C2SP signed-note text exactly as that spec defines (Ed25519 only)."""
        if self.alg != "ed25519":
            raise ValueError("C2SP signed notes are signed with Ed25519 keys")
        return self._sign_raw(text)

    def _sign_raw(self, data: BytesLike) -> bytes:
        if self._sodium or isinstance(self._key, ed25519.Ed25519PrivateKey):
            sig = _ed.sign(self._sodium, bytes(data))
        else:
            r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
            if s > _P256_HALF_N:
                s = _P256_N - s
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return sig

    def private_bytes(self) -> bytes:
        """The raw secret (32 bytes). Only the key file module calls this, to encrypt it."""
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        return self._key.private_numbers().private_value.to_bytes(32, "big")

    @classmethod
    def from_private_bytes(cls, alg: Algorithm, raw: bytes) -> PrivateKey:
        try:
            if alg == "ed25519":
                return cls(alg, ed25519.Ed25519PrivateKey.from_private_bytes(raw))
            if alg == "p256":
                return cls(alg, ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()))
        except ValueError:
            raise MalformedError(f"not a valid {alg} private key") from None
        raise MalformedError(f"unknown key algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")

    def __repr__(self) -> str:
        return f"PrivateKey({self.alg}, public={self.public.raw.hex()[:16]}...)"

    def __str__(self) -> str:  # a method, not ``__str__ = __repr__``: compiled, that alias
        return self.__repr__()  # leaves a KeyError pending that later calls raise

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("private keys are not picklable; save them with keyfile.save")


def generate(alg: Algorithm = "ed25519") -> PrivateKey:
    if alg == "ed25519":
        return PrivateKey(alg, ed25519.Ed25519PrivateKey.generate())
    if alg == "p256":
        return PrivateKey(alg, ec.generate_private_key(ec.SECP256R1()))
    raise ValueError(f"unknown key algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")

"""Private keys at rest: encrypted under a password with Argon2id and AES-256-GCM.

Argon2id parameters follow RFC 9106 section 4, second recommended option: t=3 passes,
p=4 lanes, m=2^16 KiB (64 MiB), 16-byte salt, 32-byte tag. Tests may lower the cost through
``KdfParams``; the parameters are stored in the file, so a file always opens with what made it.

File: deterministic CBOR of
``{"v": 1, "alg": ..., "pub": ..., "kdf": {"t","p","m","salt"}, "nonce": 12 bytes, "ct": ...}``
with the public key and algorithm as AES-GCM associated data, so neither can be swapped.
A wrong password and a tampered file both raise SignatureError("cannot unlock ...").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from .. import codec
from ..errors import MalformedError, SignatureError
from .keys import ALGORITHMS, PrivateKey

__all__ = ["RFC9106_SECOND", "KdfParams", "dumps", "load", "loads", "save"]

_MAX_MEMORY_KIB = 1 << 21  # refuse files that ask for more than 2 GiB


@dataclass(frozen=True)
class KdfParams:
    t: int
    p: int
    m: int  # KiB


RFC9106_SECOND = KdfParams(t=3, p=4, m=1 << 16)


def _derive(password: str, salt: bytes, params: KdfParams) -> bytes:
    kdf = Argon2id(
        salt=salt, length=32, iterations=params.t, lanes=params.p, memory_cost=params.m
    )
    return kdf.derive(password.encode("utf-8"))


def dumps(key: PrivateKey, password: str, params: KdfParams = RFC9106_SECOND) -> bytes:
    if not password:
        raise ValueError("a key file needs a non-empty password")
    salt = os.urandom(16)
    nonce = os.urandom(12)
    aad = codec.encode({"alg": key.alg, "pub": key.public.raw})
    ct = AESGCM(_derive(password, salt, params)).encrypt(nonce, key.private_bytes(), aad)
    return codec.encode(
        {
            "v": 1,
            "alg": key.alg,
            "pub": key.public.raw,
            "kdf": {"t": params.t, "p": params.p, "m": params.m, "salt": salt},
            "nonce": nonce,
            "ct": ct,
        }
    )


def loads(data: bytes, password: str) -> PrivateKey:
    """Open a key file. Raises MalformedError if it is not one, SignatureError if it won't open."""
    doc = codec.decode(data)
    try:
        if doc["v"] != 1 or doc["alg"] not in ALGORITHMS:
            raise MalformedError("unsupported key file version or algorithm")
        kdf = doc["kdf"]
        params = KdfParams(t=int(kdf["t"]), p=int(kdf["p"]), m=int(kdf["m"]))
        salt, nonce, ct, pub = kdf["salt"], doc["nonce"], doc["ct"], doc["pub"]
    except (KeyError, TypeError):
        raise MalformedError("not a glucoledger key file") from None
    if not (1 <= params.t <= 64 and 1 <= params.p <= 64
            and 8 * params.p <= params.m <= _MAX_MEMORY_KIB):
        raise MalformedError("key file asks for Argon2id parameters outside sane bounds")
    aad = codec.encode({"alg": doc["alg"], "pub": pub})
    try:
        secret = AESGCM(_derive(password, salt, params)).decrypt(nonce, ct, aad)
    except InvalidTag:
        raise SignatureError(
            "cannot unlock the key file: wrong password, or the file was altered"
        ) from None
    key = PrivateKey.from_private_bytes(doc["alg"], secret)
    if key.public.raw != pub:
        raise SignatureError("key file's public key does not match its secret; the file was "
                             "altered")
    return key


def save(path: Path, key: PrivateKey, password: str, params: KdfParams = RFC9106_SECOND) -> None:
    """Write the encrypted key file with owner-only permissions."""
    data = dumps(key, password, params)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load(path: Path, password: str) -> PrivateKey:
    return loads(Path(path).read_bytes(), password)

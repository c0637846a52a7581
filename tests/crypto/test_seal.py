from __future__ import annotations

import pytest

from glucoledger.crypto.seal import new_key, open_sealed, seal
from glucoledger.errors import MalformedError, VerificationError


def test_seal_roundtrip_binds_context_and_aad() -> None:
    key = new_key()
    box = seal(key, b"secret", "wallet-key", b"alice")
    assert open_sealed(key, box, "wallet-key", b"alice") == b"secret"
    for args in [(new_key(), box, "wallet-key", b"alice"), (key, box, "other", b"alice"),
                 (key, box, "wallet-key", b"bob")]:
        with pytest.raises(VerificationError):
            open_sealed(*args)


def test_every_flipped_byte_is_detected() -> None:
    key = new_key()
    box = seal(key, b"secret data", "ctx")
    for i in range(len(box)):
        bad = bytearray(box)
        bad[i] ^= 0x40
        with pytest.raises((VerificationError, MalformedError)):
            open_sealed(key, bytes(bad), "ctx")

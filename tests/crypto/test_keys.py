"""Signing keys and key files."""

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger import crypto
from glucoledger.crypto import keyfile
from glucoledger.crypto.keys import _P256_N
from glucoledger.errors import MalformedError, SignatureError

FAST = keyfile.KdfParams(t=1, p=1, m=64)


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_sign_verify_and_domain_separation(alg: str) -> None:
    k = crypto.generate(alg)  # type: ignore[arg-type]
    sig = k.sign("tx", b"message")
    k.public.verify("tx", b"message", sig)
    with pytest.raises(SignatureError):
        k.public.verify("device-upload", b"message", sig)  # same bytes, other purpose
    with pytest.raises(SignatureError):
        k.public.verify("tx", b"messagE", sig)
    other = crypto.generate(alg)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        other.public.verify("tx", b"message", sig)


def test_p256_high_s_is_refused() -> None:
    k = crypto.generate("p256")
    sig = k.sign("tx", b"m")
    s = int.from_bytes(sig[32:], "big")
    assert s <= _P256_N // 2  # we always produce low s
    high = sig[:32] + (_P256_N - s).to_bytes(32, "big")
    with pytest.raises(SignatureError):
        k.public.verify("tx", b"m", high)


def test_key_ids_differ_by_algorithm_and_key() -> None:
    a, b = crypto.generate(), crypto.generate("p256")
    assert len(a.public.key_id) == 32 and a.public.key_id != b.public.key_id


def test_malformed_public_keys() -> None:
    with pytest.raises(MalformedError):
        crypto.PublicKey("ed25519", b"short")
    with pytest.raises(MalformedError):
        crypto.PublicKey("p256", b"\x02" + b"\xff" * 32)
    for raw in (bytes(31), bytes(33), bytearray(32), "a" * 32, None):
        with pytest.raises(MalformedError, match="ed25519 public key"):
            crypto.PublicKey("ed25519", raw)  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="unknown key algorithm"):
        crypto.PublicKey("rsa", bytes(32))  # type: ignore[arg-type]


def test_an_ed25519_key_of_32_bytes_is_taken_as_openssl_takes_it() -> None:
    """The length is the whole check at construction (what OpenSSL's key object checks);
    the encoding rule (canonical, not small order) is applied to every signature instead."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    for raw in (bytes(32), b"\xff" * 32, crypto.generate().public.raw):
        ed25519.Ed25519PublicKey.from_public_bytes(raw)
        assert crypto.PublicKey("ed25519", raw).raw == raw


def test_secrets_never_in_repr() -> None:
    k = crypto.generate()
    secret = k.private_bytes().hex()
    assert secret not in repr(k) and secret not in str(k)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(k)


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_keyfile_roundtrip_and_refusals(tmp_path: Path, alg: str) -> None:
    k = crypto.generate(alg)  # type: ignore[arg-type]
    path = tmp_path / "k.key"
    keyfile.save(path, k, "correct horse", FAST)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert k.private_bytes() not in path.read_bytes()
    assert keyfile.load(path, "correct horse").public == k.public
    with pytest.raises(SignatureError, match="wrong password"):
        keyfile.load(path, "wrong")
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    with pytest.raises((SignatureError, MalformedError)):
        keyfile.loads(bytes(data), "correct horse")


def test_keyfile_default_parameters_are_rfc9106_second() -> None:
    assert keyfile.RFC9106_SECOND == keyfile.KdfParams(t=3, p=4, m=65536)


def test_keyfile_refuses_absurd_kdf_parameters() -> None:
    from glucoledger import codec

    k = crypto.generate()
    doc = codec.decode(keyfile.dumps(k, "pw", FAST))
    doc["kdf"]["m"] = 1 << 30
    with pytest.raises(MalformedError, match="bounds"):
        keyfile.loads(codec.encode(doc), "pw")


def test_verified_cache_never_accepts_what_fails() -> None:
    """The memo of verified signatures keys on everything: any change still fails."""
    k = crypto.generate()
    sig = k.sign("tx", b"m")  # remembered as made
    k.public.verify("tx", b"m", sig)
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    for args in [("tx", b"m", bad), ("tx", b"n", sig), ("ty", b"m", sig)]:
        with pytest.raises(SignatureError):
            k.public.verify(*args)
    with pytest.raises(SignatureError):
        crypto.generate().public.verify("tx", b"m", sig)


def test_hashes_signatures_and_checks_take_any_bytes_like_value() -> None:
    """What the interpreter took, the compiled modules take (a compiled function checks its
    declared types at the call): bytes, bytearray and memoryview give the same answers."""
    from glucoledger.crypto.hashing import (
        constant_time_equal,
        hmac_sha256,
        hmac_sha256_many,
        sha256,
        tagged_hash,
    )

    key = crypto.generate()
    data = b"glucoledger" * 9
    sig = key.sign("tx", data)
    for kind in (bytes, bytearray, memoryview):
        assert sha256(kind(data)) == sha256(data)
        assert tagged_hash("tx", kind(data)) == tagged_hash("tx", data)
        assert hmac_sha256(kind(b"k"), kind(data)) == hmac_sha256(b"k", data)
        assert hmac_sha256_many(b"k", (kind(data),)) == [hmac_sha256(b"k", data)]
        assert constant_time_equal(kind(data), data)
        assert key.sign("tx", kind(data)) == sig
        key.public.verify("tx", kind(data), kind(sig))
    with pytest.raises(TypeError):
        sha256("text")  # type: ignore[arg-type]
    for tag in ("tx", "key-id", "tx"):  # the second "tx" from the kept prefix state
        assert tagged_hash(tag, data) == sha256(b"glucoledger:" + tag.encode() + b"\x00" + data)


def test_keys_and_envelopes_pickle_in_both_builds() -> None:
    """A checked upload crosses to and from worker processes with its device's key; a
    compiled class with a written ``__init__`` unpickles through ``__reduce__``."""
    import pickle

    from glucoledger.ledger.tx import Transaction, sign

    key = crypto.generate()
    p256 = crypto.generate("p256")
    stx = sign(Transaction("c/h", "t.x", {"n": 1}, bytes(32), 3), [key, p256])
    for obj in (key.public, p256.public, stx.tx, stx.sigs[0], stx):
        back = pickle.loads(pickle.dumps(obj))
        assert back == obj and type(back) is type(obj)
    back = pickle.loads(pickle.dumps(stx))
    assert (back.raw, back.tx_hash, back.signer_ids) == (stx.raw, stx.tx_hash, stx.signer_ids)
    assert pickle.loads(pickle.dumps(key.public)).key_id == key.public.key_id

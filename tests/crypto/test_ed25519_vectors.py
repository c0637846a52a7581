"""Ed25519 through libsodium gives the same verdicts as through OpenSSL under the project's
rule (crypto/ed25519.py), on RFC 8032's vectors and on the 12 "speccheck" edge cases of
Chalkias et al. 2020 (testdata/ed25519_speccheck.json, copied from the repository and commit
named in the file).

Raw, the libraries differ: OpenSSL (``cryptography``) accepts small-order keys and nonces
(cases 0-2) and one non-canonical key (case 11); libsodium refuses them. The project takes
libsodium's rule and checks it before either library runs, so both give identical results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519 as ossl
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as sodium
from nacl.exceptions import BadSignatureError, CryptoError

from glucoledger import crypto
from glucoledger.crypto import ed25519 as ed
from glucoledger.crypto.keys import PublicKey
from glucoledger.errors import SignatureError

SPECCHECK = json.loads((Path(__file__).parent / "testdata" / "ed25519_speccheck.json")
                       .read_text())
CASES = SPECCHECK["cases"]

# RFC 8032 section 7.1, TEST 1, 2 and 3: seed, public key, message, signature.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
     "39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f"
     "3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67"
     "f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def raw_sodium(pub: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        sodium.crypto_sign_open(sig + msg, pub)
    except (BadSignatureError, CryptoError, ValueError):
        return False
    return True


def raw_openssl(pub: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        ossl.Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def strict_openssl(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """The project's rule in front of OpenSSL: what the fallback would decide."""
    try:
        ed.check_strict(pub, sig)
    except SignatureError:
        return False
    return raw_openssl(pub, msg, sig)


def ours(pub: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        ed.verify(pub, msg, sig)
    except SignatureError:
        return False
    return True


def _case(c: dict[str, str]) -> tuple[bytes, bytes, bytes]:
    return (bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]),
            bytes.fromhex(c["signature"]))


def _row(fn: object) -> str:
    return " ".join("V" if fn(*_case(c)) else "X" for c in CASES)  # type: ignore[operator]


def test_speccheck_file_is_the_published_one() -> None:
    assert len(CASES) == 12
    assert len(SPECCHECK["commit"]) == 40


def test_raw_libraries_match_the_papers_table_and_differ_on_cases_0_1_2_11() -> None:
    assert _row(raw_sodium) == SPECCHECK["results_md"]["LibSodium"]
    assert _row(raw_openssl) == SPECCHECK["results_md"]["PyCA"]
    differ = [i for i, c in enumerate(CASES) if raw_sodium(*_case(c)) != raw_openssl(*_case(c))]
    assert differ == [0, 1, 2, 11]


@pytest.mark.parametrize("i", range(12))
def test_speccheck_same_verdict_under_the_project_rule(i: int) -> None:
    pub, msg, sig = _case(CASES[i])
    expected = raw_sodium(pub, msg, sig)
    assert ours(pub, msg, sig) == expected
    assert strict_openssl(pub, msg, sig) == expected
    assert expected == (i == 3)  # only case 3 (mixed-order A and R) is valid for libsodium


@pytest.mark.parametrize("seed, pub, msg, sig", RFC8032)
def test_rfc8032_vectors_both_libraries(seed: str, pub: str, msg: str, sig: str) -> None:
    s, p, m, g = (bytes.fromhex(x) for x in (seed, pub, msg, sig))
    assert ed.public_from_seed(s) == p
    assert ed.sign(ed.signing_key(s), m) == g
    okey = ossl.Ed25519PrivateKey.from_private_bytes(s)
    assert okey.sign(m) == g
    assert ours(p, m, g) and raw_openssl(p, m, g) and strict_openssl(p, m, g)
    bad = g[:-1] + bytes([g[-1] ^ 1])
    assert not ours(p, m, bad) and not raw_openssl(p, m, bad)
    assert not ours(p, m + b"x", g) and not raw_openssl(p, m + b"x", g)


def test_rfc8032_key_through_glucoledger_api() -> None:
    s, p, m, g = (bytes.fromhex(x) for x in RFC8032[1])
    key = crypto.PrivateKey.from_private_bytes("ed25519", s)
    assert key.public.raw == p
    assert key.sign_note(m) == g
    key.public.verify_raw(m, g)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64), st.integers(0, 511),
       st.booleans())
def test_random_signatures_and_bit_flips_same_verdict(seed: bytes, msg: bytes, bit: int,
                                                     flip: bool) -> None:
    sk = ed.signing_key(seed)
    pub, sig = sk[32:], ed.sign(sk, msg)
    assert sig == ossl.Ed25519PrivateKey.from_private_bytes(seed).sign(msg)
    if flip:
        sig = bytearray(sig)
        sig[bit // 8] ^= 1 << (bit % 8)
        sig = bytes(sig)
    assert ours(pub, msg, sig) == raw_sodium(pub, msg, sig) == strict_openssl(pub, msg, sig)


# --- the small-order list, derived rather than trusted ---------------------------------------

P = (1 << 255) - 19
D = (-121665 * pow(121666, -1, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P)


def _x_for(y: int) -> int | None:
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = pow(u * pow(v, -1, P), (P + 3) // 8, P)
    if (v * x * x - u) % P:
        x = x * SQRT_M1 % P
    return x if (v * x * x - u) % P == 0 else None


def test_small_order_list_is_exactly_the_torsion_points() -> None:
    y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
    x8 = _x_for(y8)
    assert x8 is not None
    t8 = (x8, y8)
    multiples, q = [], (0, 1)
    for _ in range(8):
        multiples.append(q)
        q = _add(q, t8)
    assert q == (0, 1) and multiples[4] != (0, 1)  # order exactly 8
    torsion_y = {y for _, y in multiples}
    assert ed.SMALL_ORDER_Y == torsion_y | {P, P + 1}  # plus non-canonical 0 and 1


@pytest.mark.parametrize("y", sorted(ed.SMALL_ORDER_Y))
@pytest.mark.parametrize("sign_bit", [0, 1])
def test_small_order_keys_refused_with_a_message(y: int, sign_bit: int) -> None:
    pub = (y | sign_bit << 255).to_bytes(32, "little")
    good = crypto.generate().sign("tx", b"m")
    with pytest.raises(SignatureError, match="small-order"):
        ed.verify(pub, b"m", good)
    with pytest.raises(SignatureError, match="small-order"):
        ed.verify(crypto.generate().public.raw, b"m", pub + good[32:])


def test_non_canonical_s_refused() -> None:
    k = crypto.generate()
    sig = k.sign("tx", b"m")
    s = int.from_bytes(sig[32:], "little") + ((1 << 252) + 27742317777372353535851937790883648493)
    with pytest.raises(SignatureError):
        k.public.verify("tx", b"m", sig[:32] + s.to_bytes(32, "little"))


def test_public_key_api_refuses_small_order_key() -> None:
    try:
        key = PublicKey("ed25519", bytes(32))
    except Exception:  # noqa: BLE001 - refused already at parse time is fine too
        return
    with pytest.raises(SignatureError, match="does not verify"):
        key.verify("tx", b"m", bytes(64))

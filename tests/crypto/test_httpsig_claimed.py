"""``claimed_key_id``: what a server judges from a request's headers before its body."""

from __future__ import annotations

import time

import pytest

from glucoledger.crypto import generate
from glucoledger.crypto.httpsig import claimed_key_id, sign_request, verify_request
from glucoledger.errors import SignatureError


def test_the_claimed_key_and_time_are_read_from_the_headers_alone() -> None:
    key = generate("ed25519")
    url = "http://127.0.0.1:1/submit"
    headers = sign_request(key, method="POST", url=url, body=b"x" * 1000, nonce="n1")
    lower = {k.lower(): v for k, v in headers.items()}
    assert claimed_key_id(lower) == key.public.key_id
    with pytest.raises(SignatureError, match="not signed"):
        claimed_key_id({})
    with pytest.raises(SignatureError, match="cannot be read"):
        claimed_key_id({"signature-input": "garbage", "signature": "x"})
    stale = sign_request(key, method="POST", url=url, body=b"x", nonce="n2",
                         created=int(time.time()) - 3600)
    with pytest.raises(SignatureError, match="created"):
        claimed_key_id({k.lower(): v for k, v in stale.items()})
    # Nothing is verified: the body's signature is still checked by verify_request.
    with pytest.raises(SignatureError):
        verify_request(method="POST", target_uri=url, path="/submit", headers=lower,
                       body=b"other", lookup=lambda _k: key.public, nonces=_Nonces())


class _Nonces:
    def use(self, _key: str, _now: float) -> None:
        pass

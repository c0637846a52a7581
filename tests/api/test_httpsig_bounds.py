"""RFC 9421 at the edge, second round (issue 10): bounded nonces and replay cache, the query
covered whenever there is one, a digest whenever there is a body. Pure verifier calls with
a real Ed25519 key; each refusal is a SignatureError (401 upstream) and the cache keeps
nothing from a refused request."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest

from glucoledger.crypto import generate
from glucoledger.crypto.httpsig import (
    MAX_NONCE,
    RFC9421_ALGS,
    NonceCache,
    _base,
    sign_base,
    sign_request,
    verify_request,
)
from glucoledger.errors import BackendError, SignatureError

KEY = generate("ed25519")
URL = "https://node.example/api/batches?patient=alice"
NOW = 1_700_000_000


def _lookup(key_id: bytes) -> Any:
    assert key_id == KEY.public.key_id
    return KEY.public


def _signed(components: list[str], *, url: str = URL, nonce: str | None = None,
            body: bytes = b"", method: str = "GET") -> dict[str, str]:
    """Sign with exactly ``components`` (the client can choose what to cover)."""
    headers: dict[str, str] = {}
    if "content-digest" in components:
        from glucoledger.crypto.httpsig import content_digest

        headers["content-digest"] = content_digest(body)
    nonce = secrets.token_hex(8) if nonce is None else nonce
    inner = ("(" + " ".join(f'"{c}"' for c in components) + ")"
             f';created={NOW};keyid="{KEY.public.key_id.hex()}";nonce="{nonce}"'
             f';alg="{RFC9421_ALGS[KEY.alg]}"')
    path = url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
    base = _base(method, url, "/" + path, headers, components, inner)
    headers["signature-input"] = f"sig1={inner}"
    headers["signature"] = f"sig1=:{base64.b64encode(sign_base(KEY, base)).decode()}:"
    return headers


def _verify(headers: dict[str, str], *, url: str = URL, body: bytes = b"",
            cache: NonceCache | None = None, method: str = "GET") -> Any:
    path = "/" + url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
    return verify_request(method=method, target_uri=url, path=path, headers=headers,
                          body=body, lookup=_lookup, nonces=cache or NonceCache(), now=NOW)


def test_a_path_only_signature_does_not_cover_a_query() -> None:
    h = _signed(["@method", "@path"])
    with pytest.raises(SignatureError, match="@query"):
        _verify(h)
    # the attack it stops: a signature made for ?patient=alice, sent with ?patient=bob
    h = _signed(["@method", "@path", "@query"])
    assert _verify(h).components == ("@method", "@path", "@query")
    with pytest.raises(SignatureError):
        _verify(h, url=URL.replace("alice", "bob"))
    h = _signed(["@method", "@target-uri"])
    assert _verify(h).components == ("@method", "@target-uri")
    assert _verify(_signed(["@method", "@path"], url="https://node.example/api/me"),
                   url="https://node.example/api/me").nonce


def test_the_client_helper_signs_the_query() -> None:
    h = sign_request(KEY, method="GET", url=URL, nonce="n1", created=NOW)
    assert _verify(h).components == ("@method", "@target-uri")


@pytest.mark.parametrize("size", [MAX_NONCE + 1, 1_000_000])
def test_long_nonces_are_refused_and_not_kept(size: int) -> None:
    cache = NonceCache()
    with pytest.raises(SignatureError, match=f"1 to {MAX_NONCE}"):
        _verify(_signed(["@method", "@target-uri"], nonce="n" * size), cache=cache)
    assert cache.bytes == 0
    _verify(_signed(["@method", "@target-uri"], nonce="n" * MAX_NONCE), cache=cache)
    assert 0 < cache.bytes < 400


def test_the_replay_cache_is_bounded_in_bytes_and_fails_closed() -> None:
    cache = NonceCache(window=600, max_bytes=10_000)
    used = 0
    with pytest.raises(BackendError):
        for i in range(10_000):
            cache.use(f"{'k' * 64}:{i:0128d}", 1000.0)
            used += 1
    assert cache.bytes <= 10_000 and 30 <= used < 100
    with pytest.raises(SignatureError):  # live nonces are still refused as replays
        cache.use(f"{'k' * 64}:{0:0128d}", 1001.0)
    cache.use("fresh", 1000.0 + 601)  # the window passed: the old ones are forgotten
    assert cache.bytes == len("fresh") + 100


def test_a_body_needs_a_covered_digest() -> None:
    body = b'{"patient":"alice"}'
    h = _signed(["@method", "@target-uri"], body=body, method="POST")
    with pytest.raises(SignatureError, match="content-digest"):
        _verify(h, body=body, method="POST")
    h = _signed(["@method", "@target-uri", "content-digest"], body=body, method="POST")
    assert _verify(h, body=body, method="POST")
    with pytest.raises(SignatureError, match="Content-Digest"):
        _verify(h, body=body.replace(b"alice", b"bobby"), method="POST")


def test_a_component_listed_twice_is_refused() -> None:
    inner = (f'("@method" "@method" "@target-uri");created={NOW};'
             f'keyid="{KEY.public.key_id.hex()}";nonce="x"')
    h = {"signature-input": f"sig1={inner}", "signature": "sig1=:AAAA:"}
    with pytest.raises(SignatureError, match="twice"):
        _verify(h)

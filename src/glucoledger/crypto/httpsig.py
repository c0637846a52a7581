"""A small verifier (and signer) of HTTP Message Signatures, RFC 9421.

Shared by the HTTP API (``api.auth``: accounts' signed requests) and node-to-node calls
(``node.control``: requests signed by current members' node keys).

Scope, on purpose narrow:

- One signature, label of the caller's choice, from ``Signature-Input`` / ``Signature``
  (RFC 9421 section 4; the dictionary syntax of RFC 8941, only as far as these use it).
- Covered components we require: ``"@method"``, and ``"@target-uri"`` or ``"@path"``
  (section 2.2); when the request has a query, ``"@target-uri"`` or ``"@path"`` *and*
  ``"@query"`` (section 2.2.7), so ``?patient=`` cannot be changed on the way; plus
  ``"content-digest"`` (RFC 9530, ``sha-256`` or ``sha-512``) whenever the request has a
  body, and the digest must match the body. Other components may be listed if they are
  plain header fields present in the request.
- Parameters (section 2.3): ``created`` (within ``MAX_SKEW_S`` of our clock), ``keyid``
  (hex key id of a key in the signing account's policy), ``nonce`` (at most ``MAX_NONCE``
  characters, never seen before inside the skew window: replay protection; the cache of
  seen nonces is bounded in bytes and refuses, fail-closed, when full), optional ``alg``
  (``ed25519`` or ``ecdsa-p256-sha256``; must match the key), optional ``expires``.
- The signature base (section 2.5): one line per component, ``"name": value``, then
  ``"@signature-params": <the inner list as sent>``, lines joined with ``\\n``.

``verify_request`` returns the verified ``SignedBy`` or raises ``SignatureError`` (401):
it never returns a boolean.

Signature primitives (section 3.3): RFC 9421 signs the *signature base* itself (no
glucoledger context prefix): ``ed25519`` (section 3.3.6) and ``ecdsa-p256-sha256`` (section
3.3.4, r||s, 64 bytes; we produce and require the low-s form).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import BackendError, MalformedError, SignatureError
from .keys import PrivateKey, PublicKey

__all__ = ["MAX_NONCE", "RFC9421_ALGS", "NonceCache", "SignedBy", "claimed_key_id",
           "content_digest",
           "sign_base", "sign_request", "verify_base", "verify_request"]

RFC9421_ALGS = {"ed25519": "ed25519", "p256": "ecdsa-p256-sha256"}

MAX_SKEW_S = 300
MAX_NONCE = 128
#: Bytes of replay cache (key id hex + nonce + bookkeeping per entry): 32 MiB, about 150,000
#: requests in the 600 s window at the longest nonces.
CACHE_BYTES = 32 * 1024 * 1024
_ENTRY_OVERHEAD = 100  # dict slot, float, str header: a generous estimate per entry
_MEMBER = re.compile(r'\s*([a-z][a-z0-9_.*-]{0,63})=(.*)$', re.DOTALL)
_ITEM = re.compile(r'"([^"\\]*)"')
_PARAM = re.compile(r';([a-z][a-z0-9_.*-]{0,63})=("(?:[^"\\]|\\.)*"|-?\d{1,15}|[A-Za-z*][^;]*)')


def sign_base(key: PrivateKey, base: bytes) -> bytes:
    return key._sign_raw(base)


def verify_base(key: PublicKey, base: bytes, signature: bytes) -> None:
    """Raise SignatureError unless ``signature`` is ``key``'s over ``base``."""
    key.verify_raw(base, signature)


@dataclass(frozen=True, slots=True)
class SignedBy:
    key_id: bytes
    key: PublicKey
    created: int
    nonce: str
    components: tuple[str, ...]


class NonceCache:
    """Nonces seen in the last ``window`` seconds; ``use`` raises on a repeat. At most
    ``max_bytes`` are held (each entry counted as its length plus ``_ENTRY_OVERHEAD``)."""

    def __init__(self, window: int = 2 * MAX_SKEW_S, max_bytes: int = CACHE_BYTES) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._window = window
        self._max_bytes = max_bytes
        self.bytes = 0
        self._mu = threading.Lock()

    def use(self, nonce: str, now: float) -> None:
        with self._mu:
            # Only expired nonces are forgotten: evicting a live one under a flood would let
            # its request be replayed. A full cache refuses (fails closed) instead.
            while self._seen and next(iter(self._seen.values())) < now - self._window:
                old, _ = self._seen.popitem(last=False)
                self.bytes -= len(old) + _ENTRY_OVERHEAD
            if nonce in self._seen:
                raise SignatureError("this request's nonce was already used: a replay; sign "
                                     "every request with a fresh nonce")
            cost = len(nonce) + _ENTRY_OVERHEAD
            if self.bytes + cost > self._max_bytes:
                raise BackendError("too many signed requests in the replay window; retry in "
                                   "a few minutes")
            self._seen[nonce] = now
            self.bytes += cost


def content_digest(body: bytes, alg: str = "sha-256") -> str:
    h = hashlib.sha256(body) if alg == "sha-256" else hashlib.sha512(body)
    return f"{alg}=:{base64.b64encode(h.digest()).decode()}:"


def _dict_member(header: str, label: str | None) -> tuple[str, str]:
    """The first (or the named) member of an RFC 8941 dictionary, split naively at ', '."""
    depth = 0
    start = 0
    members: list[str] = []
    for i, c in enumerate(header):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            members.append(header[start:i])
            start = i + 1
    members.append(header[start:])
    for m in members:
        match = _MEMBER.match(m)
        if match and (label is None or match.group(1) == label):
            return match.group(1), match.group(2).strip()
    raise MalformedError("no signature with a matching label in the request")


def _query(target_uri: str) -> str:
    """``@query`` (RFC 9421 section 2.2.7): the query with its leading ``?``; ``?`` if none."""
    return "?" + urlsplit(target_uri).query


def _base(method: str, target_uri: str, path: str, headers: Mapping[str, str],
          components: list[str], params_text: str) -> bytes:
    lines = []
    if len(set(components)) != len(components):
        raise MalformedError("a component is listed twice (RFC 9421 section 2.5)")
    for c in components:
        if c == "@method":
            value = method.upper()
        elif c == "@target-uri":
            value = target_uri
        elif c == "@path":
            value = path
        elif c == "@query":
            value = _query(target_uri)
        elif c.startswith("@"):
            raise MalformedError(f"derived component {c!r} is not supported; use @method, "
                                 "@target-uri, @path or @query")
        else:
            if c not in headers:
                raise MalformedError(f"covered component {c!r} is not a header of the request")
            value = " ".join(headers[c].split())
        lines.append(f'"{c}": {value}')
    lines.append(f'"@signature-params": {params_text}')
    return "\n".join(lines).encode()


def _require_signed(headers: Mapping[str, str]) -> None:
    if "signature-input" not in headers or "signature" not in headers:
        raise SignatureError("this request is not signed: send Signature-Input and Signature "
                             "(RFC 9421) made with your account's registered key")


def verify_request(*, method: str, target_uri: str, path: str, headers: Mapping[str, str],
                   body: bytes, lookup: Callable[[bytes], PublicKey], nonces: NonceCache,
                   now: float | None = None) -> SignedBy:
    """Verify one request's signature; ``headers`` has lower-case names.

    ``lookup(key_id)`` returns the registered key or raises (NotFoundError -> 401 upstream).
    Raises SignatureError (missing, malformed, stale, replayed or wrong signature).
    """
    now = time.time() if now is None else now
    _require_signed(headers)
    try:
        label, inner = _dict_member(headers["signature-input"], None)
        _, sig_item = _dict_member(headers["signature"], label)
        m = re.match(r"^\((.*?)\)(.*)$", inner, re.DOTALL)
        if m is None:
            raise MalformedError("Signature-Input is not an inner list")
        components = _ITEM.findall(m.group(1))
        params = {k: v.strip('"') for k, v in _PARAM.findall(m.group(2))}
        sm = re.fullmatch(r":([A-Za-z0-9+/=]*):", sig_item.strip())
        if sm is None:
            raise MalformedError("Signature is not a byte sequence")
        signature = base64.b64decode(sm.group(1), validate=True)
    except (MalformedError, binascii.Error) as exc:
        raise SignatureError(f"the request signature cannot be read ({exc}); see RFC 9421 "
                             "section 4") from None
    if "@method" not in components or not ({"@target-uri", "@path"} & set(components)):
        raise SignatureError('the signature must cover "@method" and "@target-uri" (or '
                             '"@path")')
    if urlsplit(target_uri).query and "@target-uri" not in components and \
            "@query" not in components:
        raise SignatureError('the request has a query: the signature must cover "@target-uri" '
                             '(or "@path" and "@query"), so it cannot be changed on the way')
    if body and "content-digest" not in components:
        raise SignatureError('a request with a body must cover "content-digest"')
    if "content-digest" in components:
        sent = headers.get("content-digest", "")
        alg = "sha-512" if sent.startswith("sha-512=") else "sha-256"
        if sent.replace(" ", "") != content_digest(body, alg):
            raise SignatureError("Content-Digest does not match the body (RFC 9530): the "
                                 "body was altered or the digest computed over other bytes")
    for p in ("created", "keyid", "nonce"):
        if p not in params:
            raise SignatureError(f"the signature parameters must include {p!r}")
    if not 1 <= len(params["nonce"]) <= MAX_NONCE:
        raise SignatureError(f"the nonce has {len(params['nonce'])} characters; send 1 to "
                             f"{MAX_NONCE} (16 random bytes, hex or base64, are plenty)")
    try:
        created = int(params["created"])
        key_id = bytes.fromhex(params["keyid"])
    except ValueError:
        raise SignatureError("created must be an integer and keyid hex") from None
    if abs(now - created) > MAX_SKEW_S:
        raise SignatureError(f"the signature was created {int(now - created)} s from our "
                             f"clock; at most {MAX_SKEW_S} s: check the client's clock")
    if "expires" in params and params["expires"].lstrip("-").isdecimal() and \
            int(params["expires"]) < now:
        raise SignatureError("the signature has expired")
    key = lookup(key_id)
    if "alg" in params and params["alg"] != RFC9421_ALGS[key.alg]:
        raise SignatureError(f"alg {params['alg']!r} does not match the key "
                             f"({RFC9421_ALGS[key.alg]})")
    try:
        base = _base(method, target_uri, path, headers, components, inner)
    except MalformedError as exc:
        raise SignatureError(str(exc)) from None
    verify_base(key, base, signature)
    nonces.use(f"{key_id.hex()}:{params['nonce']}", now)
    return SignedBy(key_id, key, created, params["nonce"], tuple(components))


def claimed_key_id(headers: Mapping[str, str], now: float | None = None) -> bytes:
    """The ``keyid`` a request's signature claims, once its ``created`` is fresh: what a
    server can judge from the headers alone, before it reads a body (a stranger's or a
    stale request is then refused without holding its body). Nothing is verified here:
    ``verify_request`` still must be. Raises SignatureError as ``verify_request`` does."""
    now = time.time() if now is None else now
    _require_signed(headers)
    try:
        _, inner = _dict_member(headers["signature-input"], None)
    except MalformedError as exc:
        raise SignatureError(f"the request signature cannot be read ({exc}); see RFC 9421 "
                             "section 4") from None
    m = re.match(r"^\((.*?)\)(.*)$", inner, re.DOTALL)
    params = {k: v.strip('"') for k, v in _PARAM.findall(m.group(2))} if m else {}
    try:
        created = int(params["created"])
        key_id = bytes.fromhex(params["keyid"])
    except (KeyError, ValueError):
        raise SignatureError("the signature parameters must include created (an integer) "
                             "and keyid (hex)") from None
    if abs(now - created) > MAX_SKEW_S:
        raise SignatureError(f"the signature was created {int(now - created)} s from our "
                             f"clock; at most {MAX_SKEW_S} s: check the client's clock")
    return key_id


def sign_request(key: PrivateKey, *, method: str, url: str, body: bytes = b"",
                 created: int | None = None, nonce: str, label: str = "sig1") -> dict[str, str]:
    """Headers that sign a request (the client side; used by tests and the benchmark)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    components = ["@method", "@target-uri"]
    headers: dict[str, str] = {}
    if body:
        headers["content-digest"] = content_digest(body)
        components.append("content-digest")
    created = int(time.time()) if created is None else created
    inner = ("(" + " ".join(f'"{c}"' for c in components) + ")"
             f';created={created};keyid="{key.public.key_id.hex()}";nonce="{nonce}"'
             f';alg="{RFC9421_ALGS[key.alg]}"')
    base = _base(method, url, path, headers, components, inner)
    headers["signature-input"] = f"{label}={inner}"
    headers["signature"] = f"{label}=:{base64.b64encode(sign_base(key, base)).decode()}:"
    return headers

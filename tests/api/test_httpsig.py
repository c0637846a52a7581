"""Programs sign requests (RFC 9421); replays, stale and altered requests get 401."""

from __future__ import annotations

import json
import secrets
import time

from glucoledger.crypto.httpsig import sign_request
from glucoledger.node.accounts import identity, keys_of


def _signed(site, method, path, body=b"", **kw):  # type: ignore[no-untyped-def]
    key = keys_of(site.node, identity(site.node, "dr-lee"))[0]
    return sign_request(key, method=method, url=f"https://testserver{path}", body=body,
                        nonce=kw.pop("nonce", secrets.token_hex(8)), **kw)


def test_signed_request_authenticates(client, site) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/me", headers=_signed(site, "GET", "/api/me"))
    assert r.status_code == 200 and r.json()["name"] == "dr-lee" and r.json()["via"] == \
        "signature"


def test_replay_stale_and_tamper_are_401(client, site) -> None:  # type: ignore[no-untyped-def]
    h = _signed(site, "GET", "/api/me")
    assert client.get("/api/me", headers=h).status_code == 200
    assert client.get("/api/me", headers=h).status_code == 401  # same nonce: a replay
    old = _signed(site, "GET", "/api/me", created=int(time.time()) - 3600)
    assert client.get("/api/me", headers=old).status_code == 401
    body = json.dumps({"patient": "alice", "streams": ["cgm"], "view": "summary"}).encode()
    h = _signed(site, "POST", "/api/reads", body)
    r = client.post("/api/reads", content=body.replace(b"summary", b"raw    "),
                    headers={**h, "content-type": "application/json"})
    assert r.status_code == 401 and "Content-Digest" in r.json()["message"]


def test_signed_read_without_grant_is_403_and_audited(client, site) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"patient": "alice", "streams": ["cgm"], "view": "summary"}).encode()
    r = client.post("/api/reads", content=body, headers={
        **_signed(site, "POST", "/api/reads", body), "content-type": "application/json"})
    assert r.status_code == 403 and r.json()["code"] == "no_grant"
    assert site.ctx.seclog.recent(1)[0].status == 403


def test_nonce_cache_never_forgets_a_live_nonce_under_a_flood() -> None:
    import pytest

    from glucoledger.crypto.httpsig import NonceCache
    from glucoledger.errors import BackendError, SignatureError

    cache = NonceCache(window=600, max_bytes=106 + 2 * 101)  # "victim", "a" and "b"
    cache.use("victim", 1000.0)
    cache.use("a", 1001.0)
    cache.use("b", 1002.0)
    with pytest.raises(BackendError):  # full: refuse, never evict a live nonce
        cache.use("c", 1003.0)
    with pytest.raises(SignatureError):  # the first nonce is still remembered
        cache.use("victim", 1004.0)
    cache.use("d", 1000.0 + 601 + 2)  # once the window passed, expired ones go


def test_a_key_recovered_away_stops_signing_at_once(client, site) -> None:  # type: ignore[no-untyped-def]
    """A patient's lost key, replaced by recovery (kept key + trusted party), no longer
    authenticates from that block, though the server already knew it as hers."""
    from glucoledger.node.accounts import recover_key

    alice = identity(site.node, "alice")
    lost = keys_of(site.node, alice, [1])[0]

    def signed(key, method, path, body=b""):  # type: ignore[no-untyped-def]
        return sign_request(key, method=method, url=f"https://testserver{path}", body=body,
                            nonce=secrets.token_hex(8))

    r = client.get("/api/me", headers=signed(lost, "GET", "/api/me"))
    assert r.status_code == 200 and r.json()["name"] == "alice"  # the server knows the key
    recover_key(site.node, "alice", "rosa", 2)
    r = client.get("/api/me", headers=signed(lost, "GET", "/api/me"))
    assert r.status_code == 401 and "not a key of any account" in r.json()["message"]
    body = json.dumps({"grantee": "dr-kim", "streams": ["cgm"], "view": "raw",
                       "last_days": 30, "valid_days": 30}).encode()
    height = site.node.store.height()
    r = client.post("/api/grants", content=body, headers={
        **signed(lost, "POST", "/api/grants", body), "content-type": "application/json"})
    assert r.status_code == 401 and site.node.store.height() == height  # nothing ordered
    new = keys_of(site.node, alice, [1])[0]  # the wallet holds the replacement now
    assert new.public.key_id != lost.public.key_id
    r = client.get("/api/me", headers=signed(new, "GET", "/api/me"))
    assert r.status_code == 200 and r.json()["name"] == "alice"

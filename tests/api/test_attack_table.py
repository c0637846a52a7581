"""The attack table (issue 10): a real server process (``glucoledger serve --demo``) on a
free port (tests/servers.py), attacked over real TCP from real loopback addresses
(127.0.0.x, so "another client" is another TCP peer, not a header).

Each case sends one hostile request and asserts: the status and reason code, that nothing
changed (every side file of the node folder, the accounts and alice's grants), and where
the refusal was recorded (the node's security log; alice's audit trail when it names her).
The cases are the outside attack run's failures plus what already held (authorization on
``{id}`` routes, CSRF, replay, algorithm confusion, strict input, caching headers).

``test_owner_gets_in_and_revokes_while_her_name_is_hammered`` is the lockout test: an
attacker hammering alice's name from rotating addresses (and from her own shared address)
cannot stop her logging in with a recovery code, or signing with her key, and revoking.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from glucoledger.crypto import PrivateKey
from glucoledger.crypto.httpsig import MAX_NONCE, content_digest, sign_base, sign_request
from glucoledger.node.keystore import Wallet, load_master_key

from ..servers import ServeProcess

DEEP = b"[" * 200_000
SIDE_FILES = ("passwords.json", "enrolment.json", "addressbook.json", "nightscout.json",
              "reader_invites.json", "recovery.json")


class Server(ServeProcess):
    """``glucoledger serve --demo`` in its own process; the operator's wallet for keys."""

    def __init__(self, folder: Path, *extra: str) -> None:
        super().__init__(folder, "--insecure-cookies", *extra, output=False)
        self.wallet = Wallet(folder, load_master_key(folder))
        self._clients: list[httpx.Client] = []
        self._plain = self.client()

    def stop(self, wait: float = 20) -> str:
        for c in self._clients:
            c.close()
        return super().stop(wait)

    def key(self, name: str) -> PrivateKey:
        return self.wallet.load(name if name == "org" else f"{name}.1")  # type: ignore[no-any-return]

    def client(self, addr: str = "127.0.0.1") -> httpx.Client:
        """A client whose TCP packets come from ``addr`` (any 127.0.0.0/8 address)."""
        c = httpx.Client(base_url=self.url, timeout=30,
                         transport=httpx.HTTPTransport(local_address=addr))
        self._clients.append(c)
        return c

    def signed(self, who: str, method: str, path: str, body: Any = None, *,
               client: httpx.Client | None = None) -> httpx.Response:
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if data else {}
        headers.update(sign_request(self.key(who), method=method, url=self.url + path,
                                    body=data, nonce=secrets.token_hex(12)))
        c = client or self._plain
        return c.request(method, path, content=data or None, headers=headers)

    def login(self, name: str, password: str | None = None,
              addr: str = "127.0.0.1") -> tuple[httpx.Client, dict[str, str]]:
        c = self.client(addr)
        r = c.post("/api/session", json={"name": name,
                                         "password": password or f"{name}-demo-password"})
        assert r.status_code == 200, r.text
        return c, {"x-csrf-token": r.json()["csrf"]}

    def footprint(self) -> tuple[Any, ...]:
        files = tuple(hashlib.sha256((self.folder / f).read_bytes()).hexdigest()
                      if (self.folder / f).exists() else None for f in SIDE_FILES)
        wallet = tuple(sorted(p.name for p in (self.folder / "wallet").iterdir()))
        accounts = self.signed("org", "GET", "/api/accounts").json()
        grants = self.signed("alice", "GET", "/api/grants").json()
        return files, wallet, json.dumps(accounts, sort_keys=True), json.dumps(
            [(g["id"], g["active"], g.get("view"), g.get("streams")) for g in grants])

    def security_events(self) -> list[dict[str, Any]]:
        path = self.folder / "security.log"
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []

    def alice_audit(self) -> list[dict[str, Any]]:
        r = self.signed("alice", "GET", "/api/audit")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@dataclass
class World:
    srv: Server
    grant: str  # alice's grant to dr-lee
    clinic_b: tuple[httpx.Client, dict[str, str]]  # an organization account's session
    bea: tuple[httpx.Client, dict[str, str]]  # another patient (clinic-b's)
    alice: tuple[httpx.Client, dict[str, str]]
    dr_lee: tuple[httpx.Client, dict[str, str]]
    request_id: str  # an emergency request by dr-lee about alice


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = Server(tmp_path_factory.mktemp("attack") / "node")
    try:
        s = srv.signed
        r = s("alice", "POST", "/api/grants", {"grantee": "dr-lee", "streams": ["cgm"],
                                                "view": "summary", "last_days": 14,
                                                "valid_days": 30})
        assert r.status_code == 201, r.text
        grant = r.json()["id"]
        assert s("org", "POST", "/api/accounts", {"name": "clinic-b", "kind": "organization",
                                                  "password": "clinic-b-password"}
                 ).status_code == 201
        assert s("org", "POST", "/api/accounts", {"name": "dr-new", "kind": "clinician"}
                 ).status_code == 201  # no password yet: the operator's to enrol
        clinic_b = srv.login("clinic-b", "clinic-b-password")
        c, h = clinic_b
        assert c.post("/api/accounts", json={"name": "bea-tp", "kind": "trusted"},
                      headers=h).status_code == 201
        assert c.post("/api/accounts", json={"name": "bea", "kind": "patient",
                                             "trusted": "bea-tp",
                                             "password": "bea-first-password"},
                      headers=h).status_code == 201
        bea = srv.login("bea", "bea-first-password")
        r = s("dr-lee", "POST", "/api/emergency", {"patient": "alice", "hours": 1, "days": 3,
                                                   "reason": "unconscious in the ER"})
        assert r.status_code in (200, 201), r.text
        yield World(srv, grant, clinic_b, bea, srv.login("alice"), srv.login("dr-lee"),
                    r.json()["id"])
    finally:
        srv.stop()


def _raw_signed(srv: Server, who: str, method: str, path: str, components: list[str], *,
                nonce: str | None = None, alg: str | None = None, body: bytes = b"",
                digest: bool = True) -> dict[str, str]:
    """A signature made by hand (to cover only what an attacker's client would cover)."""
    key = srv.key(who)
    url = srv.url + path
    headers: dict[str, str] = {}
    if digest and body:
        headers["content-digest"] = content_digest(body)
    nonce = secrets.token_hex(8) if nonce is None else nonce
    inner = ("(" + " ".join(f'"{c}"' for c in components) + ")"
             f';created={int(time.time())};keyid="{key.public.key_id.hex()}";nonce="{nonce}"')
    if alg:
        inner += f';alg="{alg}"'
    lines = []
    for c in components:
        value = {"@method": method, "@target-uri": url, "@path": path.split("?")[0],
                 "@query": "?" + path.split("?", 1)[1] if "?" in path else "?"}.get(c)
        lines.append(f'"{c}": {value if value is not None else headers[c]}')
    lines.append(f'"@signature-params": {inner}')
    sig = base64.b64encode(sign_base(key, "\n".join(lines).encode())).decode()
    return {**headers, "signature-input": f"sig1={inner}", "signature": f"sig1=:{sig}:"}


# --- the table ----------------------------------------------------------------------------
# (case, attack(world) -> response, status, code, names alice: expected in her audit trail)
Attack = Callable[[World], httpx.Response]


def _as(pair: tuple[httpx.Client, dict[str, str]], method: str, path: str,
        body: Any = None, csrf: bool = True) -> httpx.Response:
    c, h = pair
    return c.request(method, path, json=body, headers=h if csrf else {})


def _grant_body(**over: Any) -> dict[str, Any]:
    return {"grantee": "dr-kim", "streams": ["cgm"], "view": "raw", "last_days": 7,
            "valid_days": 7, **over}


def _replayed(w: World) -> httpx.Response:
    h = _raw_signed(w.srv, "dr-lee", "GET", "/api/me", ["@method", "@target-uri"])
    c = w.srv.client()
    assert c.get("/api/me", headers=h).status_code == 200
    return c.get("/api/me", headers=h)


def _portal_revoke_by_clinician(w: World) -> httpx.Response:
    c, h = w.dr_lee
    return c.post(f"/portal/grants/{w.grant}/revoke", data={"csrf": h["x-csrf-token"]})


def _xff_rotation(w: World) -> httpx.Response:
    """Rotating X-Forwarded-For from one TCP peer: no proxy is configured, so the header is
    not believed and the peer's own backoff applies. From 127.0.0.1, the address uvicorn
    trusts by default: later cases log in with sessions opened before, or elsewhere."""
    c = w.srv.client("127.0.0.1")
    last = None
    for i in range(8):
        last = c.post("/api/session", json={"name": "alice", "password": "wrong-guess-1"},
                      headers={"x-forwarded-for": f"10.0.{i}.1"})
    assert last is not None
    return last


def _open_named(name: str) -> Attack:
    return lambda w: w.srv.signed("org", "POST", "/api/accounts",
                                  {"name": name, "kind": "clinician"})


CASES: list[tuple[str, Attack, int, str | None, bool]] = [
    # Enrolment by sponsorship: an organization reaches only what it opened.
    ("org sets a trusted party's password",
     lambda w: _as(w.clinic_b, "PUT", "/api/accounts/rosa/password",
                   {"password": "takeover-password"}), 403, "needs_invitation", False),
    ("org sets the password of an account it did not open",
     lambda w: _as(w.clinic_b, "PUT", "/api/accounts/dr-new/password",
                   {"password": "takeover-password"}), 403, "not_sponsor", False),
    ("org issues an enrolment code for a trusted party",
     lambda w: _as(w.clinic_b, "POST", "/api/accounts/rosa/enrolment-code"), 403,
     "needs_invitation", False),
    ("org issues a code for another organization's clinician",
     lambda w: _as(w.clinic_b, "POST", "/api/accounts/dr-new/enrolment-code"), 403,
     "not_sponsor", False),
    ("org names another patient's trusted party for its own patient",
     lambda w: _as(w.clinic_b, "POST", "/api/accounts",
                   {"name": "mallory", "kind": "patient", "trusted": "rosa"}), 403,
     "not_sponsor", False),
    ("org opens a trusted party with a password",
     lambda w: _as(w.clinic_b, "POST", "/api/accounts",
                   {"name": "tp-x", "kind": "trusted", "password": "takeover-password"}),
     403, "needs_invitation", False),
    ("patient invites a trusted party who is not hers",
     lambda w: _as(w.bea, "POST", "/api/accounts/rosa/enrolment-code"), 403,
     "not_your_trusted", False),
    ("a wrong enrolment code",
     lambda w: w.srv.client().post("/api/enrol", json={"name": "bea-tp", "code": "guess",
                                                       "password": "takeover-password"}),
     401, "unauthenticated", False),
    # Logins.
    ("a wrong password for alice",
     lambda w: w.srv.client("127.0.0.3").post("/api/session", json={
         "name": "alice", "password": "wrong-password"}), 401, "unauthenticated", True),
    ("X-Forwarded-For rotation from one peer", _xff_rotation, 429, "rate_limited", False),
    # Reader tokens: a patient invites, never mints a token that reads as someone else.
    ("patient mints a reader token for herself as another reader",
     lambda w: _as(w.alice, "POST", "/api/nightscout/reader-tokens", {"patient": "bea"}),
     403, "not_invited", False),
    ("clinician mints a token for a patient who did not invite him",
     lambda w: w.srv.signed("dr-kim", "POST", "/api/nightscout/reader-tokens",
                            {"patient": "alice"}), 403, "not_invited", False),
    # RFC 9421.
    ("a nonce longer than 128 characters",
     lambda w: w.srv.client().get("/api/me", headers=_raw_signed(
         w.srv, "dr-lee", "GET", "/api/me", ["@method", "@target-uri"],
         nonce="n" * (MAX_NONCE + 1))), 401, "unauthenticated", False),
    ("a signature over @path only, with a query",
     lambda w: w.srv.client().get("/api/batches?patient=alice", headers=_raw_signed(
         w.srv, "org", "GET", "/api/batches?patient=alice", ["@method", "@path"])),
     401, "unauthenticated", False),
    ("a replayed signed request", _replayed, 401, "unauthenticated", False),
    ("algorithm confusion (ecdsa named for an Ed25519 key)",
     lambda w: w.srv.client().get("/api/me", headers=_raw_signed(
         w.srv, "dr-lee", "GET", "/api/me", ["@method", "@target-uri"],
         alg="ecdsa-p256-sha256")), 401, "unauthenticated", False),
    ("a body without a covered content-digest",
     lambda w: w.srv.client().post("/api/grants", content=json.dumps(_grant_body()).encode(),
                                   headers={"content-type": "application/json",
                                            **_raw_signed(w.srv, "alice", "POST",
                                                          "/api/grants",
                                                          ["@method", "@target-uri"],
                                                          body=b"x", digest=False)}),
     401, "unauthenticated", False),
    # Refusals: 403 with the reason, in alice's audit trail when they name her.
    ("a clinician lists alice's batches",
     lambda w: w.srv.signed("dr-lee", "GET", "/api/batches?patient=alice"), 403, "denied",
     True),
    ("a clinician revokes alice's grant",
     lambda w: w.srv.signed("dr-lee", "DELETE", f"/api/grants/{w.grant}"), 403, "denied",
     True),
    ("another patient revokes alice's grant",
     lambda w: _as(w.bea, "DELETE", f"/api/grants/{w.grant}"), 403, "not_your_grant", True),
    ("another patient narrows alice's grant",
     lambda w: _as(w.bea, "PATCH", f"/api/grants/{w.grant}", {"view": "raw"}), 403,
     "not_your_grant", True),
    ("a clinician revokes in the portal", _portal_revoke_by_clinician, 403, "denied", True),
    ("another clinician reads an emergency request",
     lambda w: w.srv.signed("dr-kim", "GET", f"/api/emergency/requests/{w.request_id}"),
     403, "denied", False),
    ("a clinician approves his own emergency request",
     lambda w: w.srv.signed("dr-lee", "POST",
                            f"/api/emergency/requests/{w.request_id}/approve"), 403, None,
     False),
    # CSRF.
    ("a session POST without X-CSRF-Token",
     lambda w: _as(w.alice, "POST", "/api/grants", _grant_body(), csrf=False), 401,
     "unauthenticated", False),
    ("a portal form without its CSRF token",
     lambda w: w.alice[0].post(f"/portal/grants/{w.grant}/revoke", data={"csrf": "forged"}),
     401, "unauthenticated", False),
    # Strict input: nothing trimmed, nothing coerced, names by one rule.
    ("a padded grantee name", lambda w: _as(w.alice, "POST", "/api/grants",
                                            _grant_body(grantee=" dr-kim ")),
     422, "bad_input", False),
    ("a grantee name with a newline", lambda w: _as(w.alice, "POST", "/api/grants",
                                                    _grant_body(grantee="dr-kim\n")),
     422, "bad_input", False),
    ("last_days as a string", lambda w: _as(w.alice, "POST", "/api/grants",
                                            _grant_body(last_days="1")),
     422, "bad_input", False),
    ("valid_days as a boolean", lambda w: _as(w.alice, "POST", "/api/grants",
                                              _grant_body(valid_days=True)),
     422, "bad_input", False),
    *[(f"account name {n!r}", _open_named(n), 422, "bad_input", False)
      for n in (".", "..", "...", "-rf", ".hidden", "dr lee", "dr-lee\n")],
    # Bodies nested 200,000 deep: once killed the server (py_ecc raised the recursion limit,
    # so CPython's JSON scanner overflowed the C stack); now refused (jsonin).
    ("a deeply nested claim file, unauthenticated",
     lambda w: w.srv.client().post("/api/claims/verify", content=DEEP,
                                   headers={"content-type": "application/json"}),
     400, "malformed", False),
    ("a deeply nested grant body", lambda w: w.alice[0].post(
        "/api/grants", content=DEEP, headers={**w.alice[1], "content-type": "application/json"}),
     400, None, False),
]


@pytest.mark.parametrize(("case", "attack", "status", "code", "names_alice"), CASES,
                         ids=[c[0] for c in CASES])
def test_attack(world: World, case: str, attack: Attack, status: int, code: str | None,
                names_alice: bool) -> None:
    srv = world.srv
    before = srv.footprint()
    logged = len(srv.security_events())
    r = attack(world)
    assert r.status_code == status, (case, r.text[:300])
    if code is not None and "json" in r.headers.get("content-type", ""):
        assert r.json()["code"] == code, r.text
        assert len(r.json()["message"]) > 20  # a reason a person can act on
    assert r.headers.get("cache-control") == "no-store"
    assert "Traceback" not in r.text
    assert srv.footprint() == before, f"{case} changed something"
    if status in (401, 403):
        events = srv.security_events()[logged:]
        assert events, f"{case}: not in the security log"
        assert events[-1]["status"] == status
        if code is not None:
            assert events[-1]["code"] == code
        if names_alice:
            assert events[-1].get("patient"), f"{case}: not tied to alice"
            trail = srv.alice_audit()
            mine = [e for e in trail if e["kind"] == "refused" and e["time_ms"] >=
                    events[-1]["time_ms"] - 1]
            assert mine, f"{case}: not in alice's audit trail"


def test_deeply_nested_bodies_leave_the_server_serving(world: World) -> None:
    for path in ("/api/claims/verify", "/api/v1/entries", "/api/v3/entries", "/api/session"):
        r = world.srv.client().post(path, content=DEEP,
                                    headers={"content-type": "application/json",
                                             "api-secret": hashlib.sha1(
                                                 b"alice-uploader-secret").hexdigest()})
        assert r.status_code in (400, 401, 413, 422), (path, r.status_code, r.text[:200])
        assert world.srv.proc.poll() is None, f"{path}: the server died"
        assert world.srv.client().get("/api/status").status_code == 200


@pytest.mark.parametrize("path", ["/api/audit", "/api/grants", "/api/v1/entries.json",
                                  "/fhir/Patient/alice/$cgm-bundle", "/portal", "/api/me"])
def test_health_data_and_sessions_are_never_cached(world: World, path: str) -> None:
    c, _ = world.alice
    r = c.get(path, follow_redirects=False)
    assert r.status_code < 500
    assert (r.headers.get("cache-control"), r.headers.get("pragma")) == ("no-store", "no-cache")


def test_verify_is_rate_limited_per_account(world: World) -> None:
    srv = world.srv
    first = srv.signed("dr-kim", "POST", "/api/verify")
    assert first.status_code == 200 and first.json()["ok"] is True
    again = srv.signed("dr-kim", "POST", "/api/verify")
    assert again.status_code == 429 and int(again.headers["retry-after"]) > 0
    assert srv.signed("rosa", "POST", "/api/verify").status_code == 200  # another account


def test_a_reader_token_reads_only_what_its_holder_minted(world: World) -> None:
    """alice invites dr-kim; no token until dr-kim mints it; reads sign as dr-kim only then."""
    srv = world.srv
    r = _as(world.alice, "POST", "/api/nightscout/readers", {"reader": "dr-kim"})
    assert r.status_code == 201 and "token" not in r.json()
    r = srv.signed("dr-kim", "POST", "/api/nightscout/reader-tokens", {"patient": "alice"})
    assert r.status_code == 201 and r.json()["reader"] == "dr-kim"
    token = r.json()["token"]
    r = srv.client().get(f"/api/v1/entries.json?token={token}&count=2")
    assert r.status_code == 403  # no grant to dr-kim yet: consent still decides


def test_owner_gets_in_and_revokes_while_her_name_is_hammered(world: World) -> None:
    srv = world.srv
    c, h = world.alice
    # Her codes, made with her key (a session would type her password again, and earlier
    # rows of this table have failed logins from her address).
    codes = srv.signed("alice", "POST", "/api/recovery-codes")
    assert codes.status_code == 201, codes.text
    code1, code2 = codes.json()["codes"][:2]
    shared = "127.0.0.50"  # the attacker also sits behind alice's network address
    attackers = [f"127.0.0.{i}" for i in range(51, 71)] + [shared]
    statuses = []
    for addr in attackers:  # a burst of guesses from each address in turn
        with srv.client(addr) as a:
            for _ in range(8):
                statuses.append(a.post("/api/session", json={
                    "name": "alice", "password": secrets.token_urlsafe(9)}).status_code)
    assert statuses.count(429) >= 2 * len(attackers)  # each address is slowed down...
    assert statuses.count(401) >= 5 * len(attackers)  # ...and never the name as a whole
    # Her own password from her shared address waits like the attacker's...
    with srv.client(shared) as own:
        assert own.post("/api/session", json={"name": "alice", "password":
                                              "alice-demo-password"}).status_code == 429
        # ...but her recovery code gets her in at once, and she revokes.
        r = own.post("/api/session", json={"name": "alice", "recovery_code": code1})
        assert r.status_code == 200, r.text
        assert r.json()["recovery_codes_left"] == 9
        r2 = own.post("/api/grants", json=_grant_body(), headers={"x-csrf-token":
                                                                  r.json()["csrf"]})
        assert r2.status_code == 201, r2.text
        rv = own.delete(f"/api/grants/{r2.json()['id']}",
                        headers={"x-csrf-token": r.json()["csrf"]})
        assert rv.status_code == 200, rv.text
        # A spent code never works twice.
        assert own.post("/api/session", json={"name": "alice", "recovery_code": code1}
                        ).status_code == 401
    # From any other address her name is not locked: the password works.
    with srv.client("127.0.0.200") as elsewhere:
        assert elsewhere.post("/api/session", json={
            "name": "alice", "password": "alice-demo-password"}).status_code == 200
    # Her key (self-custody, RFC 9421) needs no login at all.
    r = srv.signed("alice", "POST", "/api/grants", _grant_body(grantee="rosa"))
    assert r.status_code == 201
    assert srv.signed("alice", "DELETE", f"/api/grants/{r.json()['id']}").status_code == 200
    grants = {g["id"]: g["active"] for g in srv.signed("alice", "GET", "/api/grants").json()}
    assert grants[r.json()["id"]] is False and grants[r2.json()["id"]] is False
    assert code2  # the rest stay usable


def test_forwarded_for_is_believed_only_from_the_configured_proxy(
        tmp_path: Path) -> None:
    """``serve --forwarded-allow-ips 127.0.0.9``: behind that proxy each forwarded client has
    its own backoff; from any other peer the header is ignored."""
    srv = Server(tmp_path / "node", "--forwarded-allow-ips", "127.0.0.9")
    try:
        def guesses(addr: str, forwarded: Callable[[int], str]) -> list[int]:
            with srv.client(addr) as c:
                return [c.post("/api/session", json={"name": "alice", "password": "wrong-1"},
                               headers={"x-forwarded-for": forwarded(i)}).status_code
                        for i in range(6)]

        assert guesses("127.0.0.9", lambda i: "10.1.1.1")[-1] == 429  # one client, slowed
        assert guesses("127.0.0.9", lambda i: f"10.2.2.{i}") == [401] * 6  # six clients
        assert guesses("127.0.0.8", lambda i: f"10.3.3.{i}")[-1] == 429  # not a proxy
        events = srv.security_events()
        assert {e["remote"] for e in events if e["code"] == "unauthenticated"} >= {
            "10.1.1.1", "10.2.2.0", "127.0.0.8"}
        assert not any(e["remote"].startswith("10.3.3.") for e in events if e["remote"])
    finally:
        srv.stop()


def test_zz_erasure_leaves_nothing_readable(world: World) -> None:
    """Last in the module (it destroys alice's CGM data): after her erasure no reader, no
    token and not she herself gets a reading back, and the refusal-free reads are audited."""
    srv = world.srv
    r = srv.signed("alice", "POST", "/api/grants", _grant_body(grantee="dr-lee", view="raw"))
    assert r.status_code == 201
    before = srv.signed("dr-lee", "POST", "/api/reads", {"patient": "alice",
                                                         "streams": ["cgm"], "view": "raw"})
    assert before.status_code == 200 and before.json()["records"]
    blobs_before = {p for p in (srv.folder / "blobs").rglob("*") if p.is_file()}
    r = srv.signed("alice", "POST", "/api/erase", {"streams": ["cgm"], "confirm": "erase"})
    assert r.status_code == 200, r.text
    for who in ("dr-lee", "alice"):
        r = srv.signed(who, "POST", "/api/reads", {"patient": "alice", "streams": ["cgm"],
                                                   "view": "raw"})
        assert r.status_code == 200 and r.json()["records"] == [], (who, r.text[:200])
    r = srv.client().get("/api/v1/entries.json?token=drlee-follow-0123456789&count=5")
    assert r.status_code in (200, 403) and (r.status_code == 403 or r.json() == [])
    kinds = [e["kind"] for e in srv.alice_audit()]
    assert "erase" in kinds and kinds.count("access") >= 3
    assert blobs_before, "the demo stored no blob: this test proves nothing"

"""REST: a maker registers devices and releases firmware; a patient binds, unbinds and
revokes. Permission refusals are 403 with the machine's reason code; nothing changes."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest

from glucoledger.crypto import generate
from glucoledger.node.accounts import create_account

from .rest import call, footprint, login, state_of


def _key(alg: str = "ed25519") -> dict[str, str]:
    k = generate(alg)  # type: ignore[arg-type]
    return {"alg": alg, "pub": base64.b64encode(k.public.raw).decode()}


@pytest.fixture
def people(site):  # type: ignore[no-untyped-def]
    """A maker (acme), a second maker (zenith) and a second patient (bea)."""
    create_account(site.node, "acme", "maker")
    create_account(site.node, "zenith", "maker")
    create_account(site.node, "bea", "patient", trusted="rosa")
    return site


def _register(client, site, serial: str = "G7-0001", who: str = "acme",  # type: ignore[no-untyped-def]
              alg: str = "ed25519") -> str:
    r = call(client, site, who, "POST", "/api/devices",
             {"serial": serial, "model": "CGM-G7", "key": _key(alg)})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def test_a_device_from_maker_to_patient_and_out(client, people) -> None:  # type: ignore[no-untyped-def]
    site = people
    did = _register(client, site, alg="p256")
    shown = call(client, site, "acme", "GET", f"/api/devices/{did}").json()
    assert (shown["status"], shown["patient"], shown["key"]["alg"]) == ("active", None, "p256")
    assert [d["id"] for d in call(client, site, "acme", "GET", "/api/devices").json()] == [did]

    h = login(client, "alice")  # the patient, in her browser session
    r = client.post(f"/api/devices/{did}/binding", headers=h)
    assert r.status_code == 200, r.text
    alice = client.get("/api/me").json()["account"]
    assert r.json()["patient"] == alice
    assert did in [d["id"] for d in client.get("/api/devices").json()]

    r = client.delete(f"/api/devices/{did}/binding", headers=h)
    assert r.status_code == 200 and r.json()["patient"] is None
    assert client.post(f"/api/devices/{did}/binding", headers=h).status_code == 200
    r = client.post(f"/api/devices/{did}/revoke", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = client.post(f"/api/devices/{did}/binding", headers=h)  # revoked is final
    assert (r.status_code, r.json()["code"]) == (409, "revoked_device")
    assert call(client, site, "acme", "GET", f"/api/devices/{did}").json()["status"] == \
        "revoked"


def test_the_maker_revokes_its_device(client, people) -> None:  # type: ignore[no-untyped-def]
    did = _register(client, people)
    r = call(client, people, "acme", "POST", f"/api/devices/{did}/revoke")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = call(client, people, "alice", "POST", f"/api/devices/{did}/binding")
    assert (r.status_code, r.json()["code"]) == (409, "revoked_device")
    assert "revoked" in r.json()["message"]


def _refusals(did: str, other: str) -> list[tuple[str, str | None, str, str, Any, int, str]]:
    """(what, caller, method, path, body, status, code)"""
    dev = f"/api/devices/{did}"
    return [
        ("register without credential", None, "POST", "/api/devices",
         {"serial": "X-1", "model": "M", "key": _key()}, 401, "unauthenticated"),
        ("a patient registers", "alice", "POST", "/api/devices",
         {"serial": "X-1", "model": "M", "key": _key()}, 403, "denied"),
        ("serial taken", "acme", "POST", "/api/devices",
         {"serial": "G7-0001", "model": "M", "key": _key()}, 409, "exists"),
        ("bad key bytes", "acme", "POST", "/api/devices",
         {"serial": "X-2", "model": "M", "key": {"alg": "ed25519", "pub": "AAAA"}}, 400,
         "malformed"),
        ("key not base64", "acme", "POST", "/api/devices",
         {"serial": "X-2", "model": "M", "key": {"alg": "ed25519", "pub": "A"}}, 400,
         "malformed"),
        ("a clinician binds", "dr-lee", "POST", f"{dev}/binding", None, 403, "denied"),
        ("another patient binds", "bea", "POST", f"{dev}/binding", None, 409,
         "bound_elsewhere"),
        ("another patient unbinds", "bea", "DELETE", f"{dev}/binding", None, 403, "not_bound"),
        ("another patient revokes", "bea", "POST", f"{dev}/revoke", None, 403, "not_allowed"),
        ("another maker revokes", "zenith", "POST", f"{dev}/revoke", None, 403, "not_allowed"),
        ("a clinician revokes", "dr-lee", "POST", f"{dev}/revoke", None, 403, "denied"),
        ("another maker looks", "zenith", "GET", dev, None, 403, "not_allowed"),
        ("a clinician looks", "dr-lee", "GET", dev, None, 403, "not_allowed"),
        ("no such device", "alice", "POST", f"/api/devices/{other}/binding", None, 409,
         "unknown_device"),
        ("no such device to look at", "acme", "GET", f"/api/devices/{other}", None, 404,
         "not_found"),
        ("device id not hex", "alice", "POST", f"/api/devices/{'z' * 64}/binding", None, 422,
         "bad_input"),
    ]


#: Refused before anything is ordered; the others are ordered and refused by the state
#: machine (on the ledger with their reason code, as every refused transaction is).
_AT_THE_DOOR = {"unauthenticated", "denied", "malformed", "bad_input", "not_found"}


def test_device_refusals_change_nothing(client, people) -> None:  # type: ignore[no-untyped-def]
    site = people
    did = _register(client, site)
    assert call(client, site, "alice", "POST", f"/api/devices/{did}/binding").status_code == 200
    for what, who, method, path, body, status, code in _refusals(did, os.urandom(32).hex()):
        before = footprint(site)
        r = call(client, site, who, method, path, body)
        assert (r.status_code, r.json()["code"]) == (status, code), (what, r.text)
        assert len(r.json()["message"]) > 20, what
        # ordered, marked refused with its code: nothing else
        if method != "GET" and code not in _AT_THE_DOOR:
            assert state_of(site) == before[1:], what
            assert footprint(site)[0] == before[0] + 1, what
        else:  # refused at the door: not even ordered
            assert footprint(site) == before, what
        if status in (401, 403):
            event = site.ctx.seclog.recent(1)[0]
            assert (event.status, event.code) == (status, code), what
    shown = call(client, site, "alice", "GET", f"/api/devices/{did}").json()
    assert (shown["status"], shown["serial"]) == ("active", "G7-0001")


def _digest(image: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(image).hexdigest(), "length": len(image)}


def test_firmware_release_verify_revoke_and_floor(client, people) -> None:  # type: ignore[no-untyped-def]
    site = people
    v1, v2 = b"firmware one" * 100, b"firmware two!" * 100
    for version, image in (("1.0", v1), ("2.0", v2)):
        r = call(client, site, "acme", "POST", "/api/firmware",
                 {"model": "CGM-G7", "version": version, **_digest(image)})
        assert r.status_code == 201, r.text
    ok = client.post("/api/firmware/verify", json={"model": "CGM-G7", "version": "2.0",
                                                   "installed": "1.0", **_digest(v2)})
    assert ok.status_code == 200 and ok.json()["accepted"] is True
    cases = [
        ({"version": "2.0", **_digest(v1)}, "length"),
        ({"version": "2.0", **_digest(v2), "sha256": "00" * 32}, "hash"),
        ({"version": "3.0", **_digest(v2)}, "unknown_release"),
        ({"version": "1.0", "installed": "2.0", **_digest(v1)}, "not_newer"),
    ]
    for body, code in cases:
        r = client.post("/api/firmware/verify", json={"model": "CGM-G7", **body})
        assert (r.status_code, r.json()["code"]) == (422, code), r.text
    assert call(client, site, "acme", "PUT", "/api/firmware/floor",
                {"model": "CGM-G7", "version": "2.0"}).status_code == 200
    r = client.post("/api/firmware/verify", json={"model": "CGM-G7", "version": "1.0",
                                                  **_digest(v1)})
    assert (r.status_code, r.json()["code"]) == (422, "below_floor")
    assert call(client, site, "acme", "POST", "/api/firmware/revoke",
                {"model": "CGM-G7", "version": "2.0"}).status_code == 200
    r = client.post("/api/firmware/verify", json={"model": "CGM-G7", "version": "2.0",
                                                  **_digest(v2)})
    assert (r.status_code, r.json()["code"]) == (422, "revoked")
    assert "newer release" in r.json()["message"]


@pytest.mark.parametrize(("who", "status", "code"), [
    (None, 401, "unauthenticated"), ("alice", 403, "denied"), ("zenith", 403, "model_owned")])
def test_only_the_models_maker_releases(client, people, who: str | None, status: int,  # type: ignore[no-untyped-def]
                                       code: str) -> None:
    site = people
    image = b"acme image"
    call(client, site, "acme", "POST", "/api/firmware",
         {"model": "CGM-G7", "version": "1.0", **_digest(image)})
    before = state_of(site)
    r = call(client, site, who, "POST", "/api/firmware",
             {"model": "CGM-G7", "version": "1.1", **_digest(b"evil")})
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert state_of(site) == before
    r = client.post("/api/firmware/verify", json={"model": "CGM-G7", "version": "1.1",
                                                  **_digest(b"evil")})
    assert r.status_code == 422 and r.json()["code"] == "unknown_release"

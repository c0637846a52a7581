"""REST: device-signed uploads (POST /api/uploads, canonical CBOR), end to end and under
attack. The device's signature is its credential; every refusal changes nothing."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.crypto import PrivateKey, generate
from glucoledger.glucose.readings import MAX_BATCH, Batch, CgmReading
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.node.accounts import create_account, identity
from glucoledger.node.proofs import verify_proof
from glucoledger.vault.batch import Upload, prepare_upload

from .conftest import Site
from .rest import call, footprint

CBOR = {"content-type": "application/cbor"}
MIN = 60_000


@dataclass
class Device:
    id: bytes
    key: PrivateKey


@dataclass
class Env:
    site: Site
    client: Any
    alice: bytes
    bea: bytes
    bound: Device  # bound to alice
    other: Device  # bound to alice too
    loose: Device  # registered, never bound
    revoked: Device  # bound to alice, then revoked
    #: The first accepted uploads (seq 1 and 5) and their answers, made once per module.
    accepted: list[tuple[Upload, Any]] | None = None


def _register(client: Any, site: Site, serial: str, alg: str = "ed25519") -> Device:
    import base64

    key = generate(alg)  # type: ignore[arg-type]
    r = call(client, site, "acme", "POST", "/api/devices", {
        "serial": serial, "model": "CGM-G7",
        "key": {"alg": alg, "pub": base64.b64encode(key.public.raw).decode()}})
    assert r.status_code == 201, r.text
    return Device(bytes.fromhex(r.json()["id"]), key)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    site = Site(tmp_path_factory.mktemp("uploads") / "node")
    create_account(site.node, "acme", "maker")
    create_account(site.node, "bea", "patient", trusted="rosa")
    with TestClient(site.app, base_url="https://testserver") as client:
        devs = [_register(client, site, f"G7-{i}", alg) for i, alg in
                enumerate(("p256", "ed25519", "ed25519", "ed25519"))]
        for d in (devs[0], devs[1], devs[3]):
            r = call(client, site, "alice", "POST", f"/api/devices/{d.id.hex()}/binding")
            assert r.status_code == 200, r.text
        assert call(client, site, "alice", "POST",
                    f"/api/devices/{devs[3].id.hex()}/revoke").status_code == 200
        yield Env(site, client, identity(site.node, "alice").id,
                  identity(site.node, "bea").id, devs[0], devs[1], devs[2], devs[3])
    site.close()


def _batch(n: int = 12, *, shift: int = 0, start: int | None = None) -> Batch:
    t0 = (start if start is not None else int(time.time() * 1000) - 2 * 3_600_000)
    items = tuple(CgmReading(t0 + i * 5 * MIN, 60, 100 + (i * 7 + shift) % 80)
                  for i in range(n))
    return Batch("cgm", items, items[0].time_ms, items[-1].time_ms, n)


def _upload(env: Env, seq: int, *, device: Device | None = None, signer: Device | None = None,
            patient: bytes | None = None, chain: str | None = None,
            batch: Batch | None = None) -> Upload:
    d = device or env.bound
    return prepare_upload(chain or env.site.node.chain, patient or env.alice, d.id, seq,
                          batch or _batch(shift=seq), (signer or d).key)


def wire(up: Upload) -> bytes:
    return codec.encode(up.to_value())


def post(env: Env, body: Any, headers: dict[str, str] | None = None) -> Any:
    return env.client.post("/api/uploads", content=body, headers=CBOR if headers is None
                           else headers)


def accepted(env: Env) -> list[tuple[Upload, Any]]:
    """Upload seq 1 and 5 of the bound device (once per module), with their answers."""
    if env.accepted is None:
        first = _upload(env, 1)
        later = _upload(env, 5, batch=_batch(shift=5, start=first.batch.end_ms + 5 * MIN))
        env.accepted = [(first, post(env, wire(first))), (later, post(env, wire(later)))]
    return env.accepted


def test_a_device_uploads_and_the_patient_proves_a_reading(env: Env) -> None:
    (up, r), (_, later) = accepted(env)
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["duplicate"] is False and receipt["seq"] == 1
    assert (receipt["patient"], receipt["uploader"]) == (env.alice.hex(), env.bound.id.hex())
    assert (receipt["stream"], receipt["count"], receipt["trust"]) == ("cgm", 12,
                                                                       "device-signed")
    stored = env.site.node.store.tx_at(receipt["index"])
    assert stored.hash is not None and stored.hash.hex() == receipt["tx_hash"]
    assert stored.decoded_result().ok
    assert later.status_code == 201 and later.json()["seq"] == 5  # gaps are allowed

    before = footprint(env.site)
    again = post(env, wire(up))  # the device did not hear back and resends: exactly once
    assert again.status_code == 200 and again.json() == {**receipt, "duplicate": True}
    assert footprint(env.site) == before

    rows = call(env.client, env.site, "alice", "GET", "/api/batches?stream=cgm").json()
    mine = [b for b in rows["batches"] if b["uploader"] == env.bound.id.hex()]
    assert [(b["seq"], b["trust"], b["log_index"]) for b in mine] == [
        (1, "device-signed", receipt["index"]), (5, "device-signed", later.json()["index"])]

    reading = up.batch.items[3]
    proof = call(env.client, env.site, "alice", "GET",
                 f"/api/proofs/reading?stream=cgm&time={reading.time_ms}")
    assert proof.status_code == 200, proof.text
    vkey = env.client.get("/api/node-key").text.strip()
    verified = verify_proof(proof.content, NoteVerifier.parse(vkey))  # offline, as an auditor
    assert verified.reading == reading and verified.trust == "device-signed"
    assert (verified.uploader, verified.seq) == (env.bound.id, 1)


def _noncanonical(up: Upload) -> bytes:
    """The same upload with its map keys in reverse canonical order."""
    value = up.to_value()
    keys = sorted(value, key=lambda k: codec.encode(k), reverse=True)
    return bytes([0xa0 + len(keys)]) + b"".join(codec.encode(k) + codec.encode(value[k])
                                                 for k in keys)


def _tampered(up: Upload) -> bytes:
    value = up.to_value()
    value["batch"]["items"][0]["mgdl"] += 1  # a reading changed after the device signed
    return codec.encode(value)


def _seq_zero(up: Upload) -> bytes:
    value = up.to_value()
    value["seq"] = 0
    return codec.encode(value)


def _duplicate_times(env: Env) -> bytes:
    t = int(time.time() * 1000) - 30 * MIN
    items = (CgmReading(t, 0, 100), CgmReading(t, 0, 104))
    return wire(_upload(env, 7, batch=Batch("cgm", items, t, t, 2)))


def _too_many(env: Env) -> bytes:
    t0 = int(time.time() * 1000) - (MAX_BATCH + 5) * MIN
    items = tuple(CgmReading(t0 + i * MIN, 0, 120) for i in range(MAX_BATCH + 1))
    return wire(_upload(env, 7, batch=Batch("cgm", items, items[0].time_ms, items[-1].time_ms,
                                            len(items))))


def _stranger(env: Env) -> bytes:
    key = generate("ed25519")
    return wire(prepare_upload(env.site.node.chain, env.alice, os.urandom(32), 7, _batch(),
                               key))


def _chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i:i + 65536]


Case = tuple[str, Callable[[Env], Any], dict[str, str] | None, int, str]
ATTACKS: list[Case] = [
    ("tampered reading", lambda e: _tampered(_upload(e, 7)), None, 401, "bad_signature"),
    ("signed by another device", lambda e: wire(_upload(e, 7, device=e.other,
                                                        signer=e.bound)), None, 401,
     "bad_signature"),
    ("unknown device", _stranger, None, 401, "unknown_device"),
    ("replayed seq, other content", lambda e: wire(_upload(e, 1, batch=_batch(shift=99))),
     None, 409, "replayed_seq"),
    ("seq below the last", lambda e: wire(_upload(e, 3)), None, 409, "reordered_seq"),
    ("unbound device", lambda e: wire(_upload(e, 7, device=e.loose)), None, 403,
     "unbound_device"),
    ("revoked device", lambda e: wire(_upload(e, 7, device=e.revoked)), None, 403,
     "revoked_device"),
    ("another patient's data", lambda e: wire(_upload(e, 7, patient=e.bea)), None, 403,
     "wrong_patient"),
    ("wrong chain", lambda e: wire(_upload(e, 7, chain="glucoledger/elsewhere")), None, 400,
     "bad_input"),
    ("non-canonical CBOR", lambda e: _noncanonical(_upload(e, 7)), None, 400, "malformed"),
    ("trailing bytes", lambda e: wire(_upload(e, 7)) + b"\x00", None, 400, "malformed"),
    ("truncated", lambda e: wire(_upload(e, 7))[:-9], None, 400, "malformed"),
    ("JSON sent as CBOR", lambda e: b'{"seq": 7}', None, 400, "malformed"),
    ("empty body", lambda e: b"", None, 400, "malformed"),
    ("sequence zero", lambda e: _seq_zero(_upload(e, 7)), None, 400, "malformed"),
    ("two readings at one time", _duplicate_times, None, 400, "out_of_range"),
    ("more readings than a batch holds", _too_many, None, 400, "malformed"),
    ("not CBOR content type", lambda e: wire(_upload(e, 7)),
     {"content-type": "application/json"}, 415, "unsupported_media_type"),
    ("no content type", lambda e: wire(_upload(e, 7)), {}, 415, "unsupported_media_type"),
    ("oversized body", lambda e: b"\xa0" * (e.site.ctx.settings.max_body + 1), None, 413,
     "too_large"),
    ("oversized, sent in chunks", lambda e: _chunks(b"\xa0" * (e.site.ctx.settings.max_body
                                                               + 1)), None, 413, "too_large"),
]


@pytest.mark.parametrize(("what", "make", "headers", "status", "code"), ATTACKS,
                         ids=[a[0] for a in ATTACKS])
def test_attacks_are_refused_and_change_nothing(env: Env, what: str, make: Any,
                                                headers: dict[str, str] | None, status: int,
                                                code: str) -> None:
    accepted(env)  # the table needs seq 1 and 5 accepted
    body = make(env)
    before = footprint(env.site)
    r = post(env, body, headers)
    assert (r.status_code, r.json()["code"]) == (status, code), (what, r.text[:300])
    assert len(r.json()["message"]) > 20
    assert footprint(env.site) == before, what
    if status in (401, 403):
        event = env.site.ctx.seclog.recent(1)[0]
        assert (event.status, event.code, event.route) == (status, code, "POST /api/uploads")


def test_after_the_attacks_the_device_carries_on(env: Env) -> None:
    accepted(env)
    last = call(env.client, env.site, "alice", "GET",
                f"/api/devices/{env.bound.id.hex()}").json()["last_seq"]
    assert last == 5
    r = post(env, wire(_upload(env, 6, batch=_batch(shift=6, start=int(time.time() * 1000)
                                                    - 20 * MIN, n=3))))
    assert r.status_code == 201 and r.json()["seq"] == 6

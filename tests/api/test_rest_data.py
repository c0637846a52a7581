"""REST: batches, single-reading proofs, verify-vault, the node key and recent blocks."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest

from glucoledger.crypto import generate
from glucoledger.ledger.checkpoint import NoteVerifier
from glucoledger.node.accounts import create_account
from glucoledger.node.proofs import verify_proof

from .rest import call, footprint


def _a_reading(client: Any, site: Any) -> dict[str, Any]:
    """One of alice's CGM readings, as she reads her own data (an audited read)."""
    r = call(client, site, "alice", "POST", "/api/reads",
             {"patient": "alice", "streams": ["cgm"], "view": "raw", "last_days": 3})
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    return records[len(records) // 2]  # type: ignore[no-any-return]


def test_patient_lists_her_batches_and_proves_a_reading(client, site) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "alice", "GET", "/api/batches?stream=cgm&limit=2")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] >= 3 and len(page["batches"]) == 2
    assert {b["trust"] for b in page["batches"]} == {"gateway-attested"}
    rest = call(client, site, "alice", "GET", "/api/batches?stream=cgm&offset=2&limit=100")
    assert len(rest.json()["batches"]) == page["total"] - 2

    reading = _a_reading(client, site)
    r = call(client, site, "alice", "GET",
             f"/api/proofs/reading?stream=cgm&time={reading['time_ms']}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    proof = r.content
    vkey = client.get("/api/node-key").text.strip()
    assert vkey == site.node.verifier().vkey()
    result = verify_proof(proof, NoteVerifier.parse(vkey))  # offline, nothing else needed
    assert result.reading.to_value() == reading and result.trust == "gateway-attested"

    checked = client.post("/api/proofs/reading/verify", content=proof,
                          headers={"content-type": "application/json"})
    assert checked.status_code == 200, checked.text
    assert checked.json()["reading"] == reading and checked.json()["valid"] is True


def _edited(proof: bytes, **changes: Any) -> bytes:
    doc = json.loads(proof)
    doc.update(changes)
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def test_altered_proofs_are_refused(client, site) -> None:  # type: ignore[no-untyped-def]
    reading = _a_reading(client, site)
    proof = call(client, site, "alice", "GET",
                 f"/api/proofs/reading?time={reading['time_ms']}").content
    doc = json.loads(proof)
    cases = [
        ("a space added", proof.replace(b",", b", ", 1), 400, "malformed"),
        ("another value", _edited(proof, reading={**reading, "mgdl": reading["mgdl"] + 1}),
         422, "inconsistent"),
        ("another index", _edited(proof, leaf_index=doc["leaf_index"] + 1), 422,
         "inconsistent"),
        ("a negative index", _edited(proof, leaf_index=-1), 400, "malformed"),
        ("not JSON", b"\xff\xfe", 400, "malformed"),
        ("an empty object", b"{}", 400, "malformed"),
        ("nothing", b"", 400, "malformed"),
        ("a salt of zeros", _edited(proof, salt=base64.b64encode(bytes(32)).decode()), 422,
         "inconsistent"),
    ]
    for what, body, status, code in cases:
        r = client.post("/api/proofs/reading/verify", content=body,
                        headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["code"]) == (status, code), (what, r.text)
    r = client.post("/api/proofs/reading/verify?node_key=not-a-key", content=proof,
                    headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (400, "malformed")
    assert "verifier key" in r.json()["message"]
    stranger = NoteVerifier(site.node.config.name, generate("ed25519").public).vkey()
    r = client.post(f"/api/proofs/reading/verify?node_key={urllib.parse.quote(stranger)}",
                    content=proof, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] in ("bad_signature", "verification_failed")


def test_the_operator_lists_any_patients_batches(client, site) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "org", "GET", "/api/batches?patient=alice")
    assert r.status_code == 200 and r.json()["total"] > 0
    r = call(client, site, "org", "GET", "/api/batches")
    assert (r.status_code, r.json()["code"]) == (400, "bad_input")
    r = call(client, site, "org", "GET", "/api/batches?patient=dr-lee")
    assert r.status_code == 400 and "not a patient" in r.json()["message"]


@pytest.mark.parametrize(("who", "path", "status", "code"), [
    (None, "/api/batches", 401, "unauthenticated"),
    ("dr-lee", "/api/batches?patient=alice", 403, "denied"),
    ("bea", "/api/batches?patient=alice", 403, "not_yours"),
    ("bea", "/api/proofs/reading?time=1700000000000", 404, "not_found"),
    ("dr-lee", "/api/proofs/reading?time=1700000000000", 403, "denied"),
    ("org", "/api/proofs/reading?time=1700000000000", 403, "denied"),
    (None, "/api/proofs/reading?time=1700000000000", 401, "unauthenticated"),
    ("alice", "/api/proofs/reading?time=5", 422, "bad_input"),
    ("alice", "/api/proofs/reading?time=1700000000001", 404, "not_found"),
    ("alice", "/api/batches?limit=0", 422, "bad_input"),
    ("alice", "/api/batches?stream=blood", 422, "bad_input"),
])
def test_data_refusals(client, site, who: str | None, path: str, status: int,  # type: ignore[no-untyped-def]
                       code: str) -> None:
    create_account(site.node, "bea", "patient", trusted="rosa")
    before = footprint(site)
    r = call(client, site, who, "GET", path)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert len(r.json()["message"]) > 20
    assert footprint(site) == before
    if status in (401, 403):
        assert site.ctx.seclog.recent(1)[0].status == status


def test_verify_vault_for_the_operator_only(client, site) -> None:  # type: ignore[no-untyped-def]
    r = call(client, site, "org", "POST", "/api/verify-vault")
    assert r.status_code == 200, r.text
    assert r.json()["batches"] == site.ctx.svc.vault.count() == r.json()["decrypted"]
    assert call(client, site, "alice", "POST", "/api/verify-vault").status_code == 403
    assert call(client, site, None, "POST", "/api/verify-vault").status_code == 401


def test_verify_vault_names_a_missing_blob(client, site) -> None:  # type: ignore[no-untyped-def]
    vault = site.ctx.svc.vault
    row = vault.batches()[0]
    vault.blobs.delete(row.ct)
    r = call(client, site, "org", "POST", "/api/verify-vault")
    assert r.status_code == 422, r.text
    # The uploader by its name in the registry (its serial), not by a hex id.
    from glucoledger.node.registry import Registry

    label = Registry(site.node.data_dir).label(row.uploader)
    assert not label.startswith("id "), label
    assert "missing" in r.json()["message"] and f"uploader {label} " in r.json()["message"]


def test_recent_blocks_and_the_node_key_are_public(client, site) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/blocks?last=3")
    assert r.status_code == 200
    rows = r.json()
    top = site.node.store.height()
    assert [b["height"] for b in rows] == [top - 3, top - 2, top - 1]
    assert rows[-1]["log_size"] == site.node.replica.tree.size
    assert rows[-1]["hash"] == site.node.store.block_row(top - 1)[0].hex()
    assert client.get("/api/blocks?last=0").status_code == 422
    assert client.get("/api/blocks?last=101").status_code == 422
    assert NoteVerifier.parse(client.get("/api/node-key").text).name == site.node.config.name

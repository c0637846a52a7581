"""Edits and deletions of Nightscout documents are versions on the ledger; nothing is lost.

A Loop-style temp basal is posted, shortened by a re-POST (Loop cancels a temp basal that
way), changed twice by PUT (xDrip+'s upsert) and deleted by _id. At each step a follower
sees exactly what Nightscout would show (one document, the last content; none after the
delete); the patient sees every version; verify passes; the proof of the first version
still verifies; after erasure no version is readable anywhere.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from glucoledger.node.accounts import identity, keys_of
from glucoledger.node.demo_site import DEMO_READER_TOKEN, DEMO_UPLOADER_SECRET
from glucoledger.node.proofs import dumps_proof, prove_reading, verify_proof
from glucoledger.node.verify import verify_vault

from .payloads import iso

SHA1 = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
UP = {"api-secret": SHA1}


def _login(client: Any, name: str) -> str:
    r = client.post("/api/session", json={"name": name, "password": f"{name}-demo-password"})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def _follower_sees(client: Any, t: int) -> list[dict[str, Any]]:
    r = client.get("/api/v1/treatments.json", params={
        "token": DEMO_READER_TOKEN, "find[eventType]": "Temp Basal",
        "find[created_at][$gte]": iso(t - 60_000), "rr": str(t)})
    assert r.status_code == 200, r.text
    # The demo's own simulated temp basals may fall in the same minutes: keep this test's.
    return [d for d in r.json() if d.get("syncIdentifier") == "c0ffee01"]


def test_three_updates_and_a_delete_lose_nothing(client, site) -> None:  # type: ignore[no-untyped-def]
    csrf = _login(client, "alice")
    r = client.post("/api/grants", headers={"x-csrf-token": csrf}, json={
        "grantee": "dr-lee", "streams": ["insulin", "carbs", "notes"], "view": "raw",
        "last_days": 14, "valid_days": 30})
    assert r.status_code == 201, r.text
    t = int(time.time() * 1000) - 30 * 60_000
    t -= t % 1000
    basal = {"eventType": "Temp Basal", "created_at": iso(t), "timestamp": iso(t),
             "enteredBy": "loop://iPhone", "temp": "absolute", "rate": 1.5, "absolute": 1.5,
             "duration": 30, "syncIdentifier": "c0ffee01"}
    steps = [("POST", basal),
             ("POST", dict(basal, duration=10)),  # Loop: cancelled after 10 minutes
             ("PUT", dict(basal, duration=5)),  # xDrip+: upsert
             ("PUT", dict(basal, duration=5, rate=0.8, absolute=0.8))]
    ids = []
    for method, doc in steps:
        r = client.request(method, "/api/v1/treatments", json=[doc], headers=UP)
        assert r.status_code == 200, r.text
        [answer] = r.json()
        ids.append(answer["_id"])
        [seen] = _follower_sees(client, t)  # exactly one document, the last content
        assert (seen["duration"], seen["rate"]) == (doc["duration"], doc["rate"])
        assert seen["_id"] == ids[0]
    assert len(set(ids)) == 1
    # A document that cannot be kept is logged for the patient (and erased with her data).
    r = client.post("/api/v1/treatments", json=[{"eventType": "Bolus", "insulin": 500,
                                                 "created_at": iso(t)}], headers=UP)
    assert r.json()[0]["glucoledger"]["stored"] is False
    assert "500" in client.get("/api/nightscout/refusals").json()[0]["reason"]
    # A retry of the last change is a repeat, not a fifth version.
    r = client.put("/api/v1/treatments", json=[steps[-1][1]], headers=UP)
    assert r.status_code == 200 and r.json()[0]["_id"] == ids[0]
    # Delete by _id (xDrip+, Loop): the follower sees nothing; Nightscout's answer.
    r = client.delete(f"/api/v1/treatments/{ids[0]}", headers=UP)
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "ok": 1}
    assert _follower_sees(client, t) == []
    # A reader token cannot delete: 403, and the document's history is unchanged.
    r = client.delete(f"/api/v1/treatments/{ids[0]}", params={"token": DEMO_READER_TOKEN})
    assert r.status_code == 403
    # The patient sees every version: four contents and the deletion, who and when.
    r = client.get(f"/api/nightscout/history/treatments/{ids[0]}")
    assert r.status_code == 200, r.text
    versions = r.json()
    assert [v["n"] for v in versions] == [1, 2, 3, 4, 5]
    assert [v["doc"]["duration"] for v in versions[:4]] == [30, 10, 5, 5]
    assert [v["doc"]["rate"] for v in versions[:4]] == [1.5, 1.5, 1.5, 0.8]
    assert versions[4]["doc"] is None
    gw = identity(site.node, "alice.ns-gw1").id.hex()
    assert all(v["by"] == gw and v["tx"] for v in versions[1:])
    # verify re-derives the chain (every version is an ordinary commitment, plus doc.version)
    assert site.node.verify().blocks > 0
    # The first version's reading is still provable.
    alice = identity(site.node, "alice").id
    vault = site.ctx.svc.vault
    proof = dumps_proof(prove_reading(site.node, vault, alice, "insulin", t))
    verified = verify_proof(proof, site.node.verifier())
    assert verified.reading.rate_milli_u_per_h == 1500  # type: ignore[union-attr]
    assert verified.reading.duration_ms == 30 * 60_000  # type: ignore[union-attr]
    # Erasure destroys every version: nothing readable, verify reports erasure, not tampering.
    site.ctx.erase(alice, keys_of(site.node, identity(site.node, "alice"), [0]), ["insulin"])
    r = client.get(f"/api/nightscout/history/treatments/{ids[0]}")
    assert r.status_code == 404
    r = client.get("/api/v1/treatments.json", headers=UP, params={
        "find[created_at][$gte]": iso(t - 60_000), "find[eventType]": "Temp Basal"})
    assert r.status_code == 200 and r.json() == []
    from glucoledger.errors import NotFoundError
    from glucoledger.node.erasure import erased_by

    try:
        prove_reading(site.node, vault, alice, "insulin", t)
    except NotFoundError:
        pass
    else:
        raise AssertionError("a reading of an erased version is still provable")
    report = verify_vault(site.node.store, vault, erased=erased_by(site.node))
    assert report.erased
    assert site.ctx.svc.nightscout.refusals.of(alice) == []


def test_a_move_in_time_is_one_document_provable_and_erasable(client, site) -> None:  # type: ignore[no-untyped-def]
    """Loop moves a carb entry by PUT with its _id: one document at the new time for every
    reader, the first version still provable at the old time, verify passes, and erasure
    leaves neither version readable."""
    from glucoledger.errors import NotFoundError

    t = int(time.time() * 1000) - 50 * 60_000
    t -= t % 1000
    carbs = {"eventType": "Carb Correction", "created_at": iso(t), "timestamp": iso(t),
             "enteredBy": "loop://iPhone", "carbs": 30, "syncIdentifier": "feed0001"}
    r = client.post("/api/v1/treatments", json=[carbs], headers=UP)
    assert r.status_code == 200, r.text
    doc_id = r.json()[0]["_id"]
    later = t + 20 * 60_000
    r = client.put("/api/v1/treatments", headers=UP, json=dict(
        carbs, created_at=iso(later), timestamp=iso(later), carbs=45, _id=doc_id))
    assert r.status_code == 200 and r.json()[0]["_id"] == doc_id, r.text
    r = client.get("/api/v1/treatments.json", headers=UP, params={
        "find[syncIdentifier]": "feed0001", "find[created_at][$gte]": iso(t - 60_000)})
    assert [(d["_id"], d["created_at"], d["carbs"]) for d in r.json()] == [
        (doc_id, iso(later), 45)]
    assert site.node.verify().blocks > 0
    alice = identity(site.node, "alice").id
    vault = site.ctx.svc.vault
    first = verify_proof(dumps_proof(prove_reading(site.node, vault, alice, "carbs", t)),
                         site.node.verifier())
    assert first.reading.grams_tenths == 300  # type: ignore[union-attr]
    moved = verify_proof(dumps_proof(prove_reading(site.node, vault, alice, "carbs", later)),
                         site.node.verifier())
    assert moved.reading.grams_tenths == 450  # type: ignore[union-attr]
    site.ctx.erase(alice, keys_of(site.node, identity(site.node, "alice"), [0]), ["carbs"])
    r = client.get("/api/v1/treatments.json", headers=UP, params={
        "find[syncIdentifier]": "feed0001", "find[created_at][$gte]": iso(t - 60_000)})
    assert r.status_code == 200 and r.json() == []
    for when in (t, later):
        try:
            prove_reading(site.node, vault, alice, "carbs", when)
        except NotFoundError:
            continue
        raise AssertionError("a reading of an erased version is still provable")


def test_a_move_the_ledger_refuses_leaves_no_tag_and_a_retry_moves(  # type: ignore[no-untyped-def]
        client, site, monkeypatch) -> None:
    """A PUT that moves a carb entry in time, whose ``doc.version`` the ledger refuses
    (the patient changed the same document first: ``stale_version``), changes nothing a
    reader or a later upload sees: the new identity's tag and the version's content tag are
    not in the vault, so the retry moves the document instead of being refused as "taken"
    or answered as a repeat."""
    from glucoledger.interop import nsaccept

    svc = site.ctx.svc.nightscout
    vault = site.ctx.svc.vault
    alice_ident = identity(site.node, "alice")
    alice = alice_ident.id
    t = int(time.time() * 1000) - 70 * 60_000
    t -= t % 1000
    carbs = {"eventType": "Carb Correction", "created_at": iso(t), "timestamp": iso(t),
             "enteredBy": "loop://iPhone", "carbs": 30, "syncIdentifier": "feed0002"}
    r = client.post("/api/v1/treatments", json=[carbs], headers=UP)
    assert r.status_code == 200, r.text
    doc_id = r.json()[0]["_id"]
    head = svc._by_id(alice, "treatments", doc_id)
    assert head is not None
    first_ct = vault.tag_owners([head])[head].ct
    later = t + 20 * 60_000
    moved_doc = dict(carbs, created_at=iso(later), timestamp=iso(later), carbs=45, _id=doc_id)
    [outcome] = nsaccept.parse_each("treatments", [moved_doc], int(time.time() * 1000))
    assert isinstance(outcome, nsaccept.Accepted)
    moved_tag = svc._key(alice, "treatments", outcome.doc.key)

    # The patient's own change (version 2: the content as it was) is ordered first, as if
    # her portal's edit raced the uploader's PUT; the PUT's doc.version then makes a stale
    # version 2 and the ledger refuses it.
    record = svc.versions.record
    raced: list[bool] = []

    def racing(*args: Any, **kw: Any) -> None:
        if not raced:
            raced.append(True)
            record(alice, keys_of(site.node, alice_ident, [0]), alice, head, 2, [first_ct])
        record(*args, **kw)

    monkeypatch.setattr(svc.versions, "record", racing)
    r = client.put("/api/v1/treatments", headers=UP, json=moved_doc)
    assert raced and r.status_code == 409, r.text
    assert r.json()["code"] == "stale_version" and "read it again" in r.text, r.text
    monkeypatch.setattr(svc.versions, "record", record)
    # Nothing of the refused change is visible: no tag of the new identity or content ...
    assert vault.tagged([moved_tag]) == set()
    # ... and every reader still sees the entry where it was, as it was.
    query = {"find[syncIdentifier]": "feed0002", "find[created_at][$gte]": iso(t - 60_000)}
    r = client.get("/api/v1/treatments.json", headers=UP, params=query)
    assert [(d["_id"], d["created_at"], d["carbs"]) for d in r.json()] == [(doc_id, iso(t), 30)]
    # The retry is the move, not "another document has that identity", not a repeat.
    r = client.put("/api/v1/treatments", headers=UP, json=moved_doc)
    assert r.status_code == 200 and r.json()[0]["_id"] == doc_id, r.text
    assert "glucoledger" not in r.json()[0], r.json()
    r = client.get("/api/v1/treatments.json", headers=UP, params=query)
    assert [(d["_id"], d["created_at"], d["carbs"]) for d in r.json()] == [
        (doc_id, iso(later), 45)]
    assert vault.tagged([moved_tag]) == {moved_tag}
    _login(client, "alice")
    r = client.get(f"/api/nightscout/history/treatments/{doc_id}")
    assert r.status_code == 200, r.text
    assert [(v["n"], v["by"], v["doc"]["carbs"]) for v in r.json()] == [
        (1, None, 30), (2, alice.hex(), 30),
        (3, identity(site.node, "alice.ns-gw1").id.hex(), 45)]
    assert svc.refusals.of(alice) == []

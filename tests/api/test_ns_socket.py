"""AndroidAPS's v1 NSClient over socket.io, replayed with the real python-socketio client
against a real ``glucoledger serve --demo`` process.

The sequence is AndroidAPS's (plugins/sync/.../nsclient/services/NSClientService.kt):
connect, ``authorize`` with the SHA-1 hex of the secret, ``history: 48``, ``status: true``
(ack ``{read, write, write_treatment}``: NSAuthAck), then ``dbAdd`` (ack: an array whose
first element has the ``_id``: NSAddAck), ``dbUpdate``/``dbRemove`` (ack ``{result:
"success"}``: NSUpdateAck), and ``dataUpdate`` pushes (``sgvs`` with ``mgdl``/``mills``,
``treatments``, ``delta``). Writes are checked through the HTTP routes (the same documents,
versions and ``_id``s); followers through consent: no grant, a summary grant, a raw grant,
and a revoke while connected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio  # type: ignore[import-untyped]

from .payloads import iso
from .test_ns_replays import FOLLOW, SECRET, UP, Server, _grant, _patient, _revoke

READER_SECRET = FOLLOW["api-secret"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("socket") / "node")
    yield s
    s.stop()


class Phone:
    """A socket.io client that records what the server pushes."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        for name in ("connected", "dataUpdate", "announcement"):
            self.sio.on(name, self._recorder(name))
        self.sio.on("disconnect", self._recorder("disconnect"))

    def _recorder(self, name: str) -> Any:
        async def record(*args: Any) -> None:
            self.events.append((name, args[0] if args else None))
        return record

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=20)

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=60)

    def got(self, name: str) -> list[Any]:
        return [d for n, d in self.events if n == name]

    async def wait_for(self, name: str, pred: Any = lambda d: True, seconds: float = 30) -> Any:
        deadline = time.time() + seconds
        while time.time() < deadline:
            hits = [d for d in self.got(name) if pred(d)]
            if hits:
                return hits[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {name} matching in {seconds} s; got {self.events!r:.2000}")


def _auth(secret: str) -> dict[str, Any]:
    # NSClientService.sendAuthMessage
    return {"client": "Android_AAPS", "history": 48, "status": True, "from": 0,
            "secret": secret}


def _now() -> int:
    return int(time.time() * 1000)


def _treatments(srv: Server, **find: str) -> list[dict[str, Any]]:
    r = srv.get("/api/v1/treatments.json", headers=UP,
                params={f"find[{k}]": v for k, v in find.items()})
    assert r.status_code == 200, r.text
    return list(r.json())


def test_androidaps_v1_uploads_edits_and_removes(srv: Server) -> None:
    async def run() -> None:
        aaps = Phone()
        await aaps.connect(srv.url)
        ack = await aaps.call("authorize", _auth(SECRET))
        assert ack == {"read": True, "write": True, "write_treatment": True}
        assert aaps.got("connected") == [None]
        full = await aaps.wait_for("dataUpdate")
        assert "delta" not in full and full["status"]["status"] == "ok"
        sgvs = full["sgvs"]  # the demo's readings, as NSSgv reads them
        assert sgvs and all(isinstance(s["mgdl"], int) and isinstance(s["mills"], int)
                            and len(s["_id"]) == 24 for s in sgvs)
        assert [s["mills"] for s in sgvs] == sorted(s["mills"] for s in sgvs)

        # dbAdd of a carb entry, as CarbsExtension.toJson makes it
        t = _now() - 40 * 60_000
        t -= t % 1000
        carbs = {"eventType": "Carb Correction", "carbs": 10, "notes": "v1 socket",
                 "created_at": iso(t), "isValid": True, "date": t,
                 "enteredBy": "openaps://AndroidAPS"}
        added = await aaps.call("dbAdd", {"collection": "treatments", "data": carbs})
        assert isinstance(added, list) and len(added) == 1 and len(added[0]["_id"]) == 24
        doc_id = added[0]["_id"]
        # the same document over HTTP, with the _id the socket answered
        [seen] = _treatments(srv, _id=doc_id)
        assert (seen["carbs"], seen["notes"]) == (10, "v1 socket")
        # a repeat (AndroidAPS resends after a lost ack) answers the stored one
        again = await aaps.call("dbAdd", {"collection": "treatments", "data": carbs})
        assert again[0]["_id"] == doc_id

        # dbUpdate: the whole object again with the new amount (NSClientService.dbUpdate)
        ack = await aaps.call("dbUpdate", {"collection": "treatments", "_id": doc_id,
                                           "data": dict(carbs, carbs=8)})
        assert ack == {"result": "success"}
        [seen] = _treatments(srv, _id=doc_id)
        assert seen["carbs"] == 8
        s, _ = _patient(srv)
        r = s.get(f"{srv.url}/api/nightscout/history/treatments/{doc_id}", timeout=30)
        assert r.status_code == 200, r.text
        assert [v["doc"]["carbs"] for v in r.json()] == [10, 8]

        # entries and devicestatus, an array in one dbAdd (cgm-remote-monitor takes both)
        n = _now() - 60_000
        entries = [{"type": "sgv", "sgv": 123, "date": n - 300_000, "dateString": iso(n - 300_000),
                    "direction": "Flat", "device": "AndroidAPS-DexcomG6"},
                   {"type": "sgv", "sgv": 125, "date": n, "dateString": iso(n),
                    "direction": "Flat", "device": "AndroidAPS-DexcomG6"}]
        added = await aaps.call("dbAdd", {"collection": "entries", "data": entries})
        assert [len(a["_id"]) for a in added] == [24, 24]
        status = {"device": "openaps://samsung SM-G970F", "created_at": iso(n),
                  "uploaderBattery": 71, "pump": {"battery": {"percent": 60}}}
        added = await aaps.call("dbAdd", {"collection": "devicestatus", "data": status})
        assert len(added) == 1 and len(added[0]["_id"]) == 24
        # the phone's own new readings come back as a delta push
        delta = await aaps.wait_for("dataUpdate", lambda d: d.get("delta") and any(
            s["mills"] == n and s["mgdl"] == 125 for s in d.get("sgvs", [])))
        assert all(s["mills"] != sgvs[0]["mills"] for s in delta["sgvs"])

        # dbRemove: gone for every reader; the versions stay for the patient
        ack = await aaps.call("dbRemove", {"collection": "treatments", "_id": doc_id})
        assert ack["result"] == "success" and ack["n"] == 1
        assert _treatments(srv, _id=doc_id) == []
        removed = await aaps.wait_for("dataUpdate", lambda d: any(
            x.get("_id") == doc_id and x.get("action") == "remove"
            for x in d.get("treatments", [])))
        assert removed["delta"] is True

        # refusals answer as Nightscout's checkConditions, with what to do
        ack = await aaps.call("dbAdd", {"collection": "food", "data": {"name": "apple"}})
        assert ack["result"] == "Wrong collection" and "keeps no food" in ack["message"]
        ack = await aaps.call("dbUpdate", {"collection": "treatments", "data": {"carbs": 1}})
        assert ack["result"] == "Missing _id"
        ack = await aaps.call("dbUpdate", {"collection": "treatments", "_id": "0" * 24,
                                           "data": {"carbs": 1}})
        assert ack["code"] == "not_found" and "dbAdd" in ack["message"]
        # a document that cannot be stored is answered in place, as a POST answers it
        ack = await aaps.call("dbAdd", {"collection": "treatments", "data": "not a document"})
        assert ack[0]["glucoledger"]["stored"] is False
        assert "must be an object" in ack[0]["glucoledger"]["reason"]
        await aaps.sio.disconnect()

    asyncio.run(run())


def test_refusals_change_nothing(srv: Server) -> None:
    async def run() -> None:
        t = _now() - 45 * 60_000
        t -= t % 1000
        carbs = {"eventType": "Carb Correction", "carbs": 7, "created_at": iso(t),
                 "date": t, "enteredBy": "openaps://AndroidAPS", "notes": "refused"}
        # no authorize: Nightscout's "Not authorized" (AndroidAPS restarts its client)
        phone = Phone()
        await phone.connect(srv.url)
        ack = await phone.call("dbAdd", {"collection": "treatments", "data": carbs})
        assert ack["result"] == "Not authorized" and "authorize" in ack["message"]
        await phone.sio.disconnect()
        # a wrong secret: nothing readable or writable, the reason, and the socket closed
        phone = Phone()
        await phone.connect(srv.url)
        ack = await phone.call("authorize", _auth("0" * 40))
        assert ack["read"] is False and ack["write"] is False and ack["error"] is True
        assert ack["code"] == "unauthenticated" and "secret" in ack["message"]
        await phone.wait_for("disconnect", seconds=10)
        assert phone.got("dataUpdate") == []
        assert _treatments(srv, notes="refused") == []

    asyncio.run(run())


def test_follower_through_consent(srv: Server) -> None:
    async def run() -> None:
        # without a grant: the reason (no_grant), audited as a denied read, socket closed
        follower = Phone()
        await follower.connect(srv.url)
        ack = await follower.call("authorize", _auth(READER_SECRET))
        assert ack["read"] is False and ack["code"] == "no_grant", ack
        await follower.wait_for("disconnect", seconds=10)
        assert follower.got("dataUpdate") == []
        # a summary grant does not release readings
        summary = _grant(srv, "summary")
        follower = Phone()
        await follower.connect(srv.url)
        ack = await follower.call("authorize", _auth(READER_SECRET))
        assert ack["read"] is False and ack["code"] == "raw_under_summary", ack
        assert follower.got("dataUpdate") == []
        await follower.wait_for("disconnect", seconds=10)
        _revoke(srv, summary)
        # a raw grant: read, not write; the full set, then what the uploader sends
        grant = _grant(srv, "raw")
        follower = Phone()
        await follower.connect(srv.url)
        ack = await follower.call("authorize", _auth(READER_SECRET))
        assert ack == {"read": True, "write": False, "write_treatment": False}
        full = await follower.wait_for("dataUpdate")
        assert full["sgvs"] and "delta" not in full
        tried = _now() - 20_000
        ack = await follower.call("dbAdd", {"collection": "entries", "data": {
            "type": "sgv", "sgv": 100, "date": tried}})
        assert ack["result"] == "Not permitted" and "API secret" in ack["message"]
        r = srv.get("/api/v1/entries.json", headers=UP, params={
            "find[date]": str(tried)})
        assert r.status_code == 200 and r.json() == []  # the refused write changed nothing
        n = _now() - 30_000
        r = srv.send("POST", "/api/v1/entries", headers=UP, json=[
            {"type": "sgv", "sgv": 187, "date": n, "dateString": iso(n), "direction": "Flat"}])
        assert r.status_code == 200, r.text
        await follower.wait_for("dataUpdate", lambda d: d.get("delta") and any(
            s["mills"] == n and s["mgdl"] == 187 for s in d.get("sgvs", [])))
        # the patient sees the follower's socket reads in her audit trail
        s, _ = _patient(srv)
        audit = s.get(f"{srv.url}/api/audit", timeout=30).json()
        assert "dr-lee" in str(audit)
        # revoked while connected: the next push is a denied read, said, and the end
        _revoke(srv, grant)
        m = _now() - 10_000
        r = srv.send("POST", "/api/v1/entries", headers=UP, json=[
            {"type": "sgv", "sgv": 191, "date": m, "dateString": iso(m), "direction": "Flat"}])
        assert r.status_code == 200, r.text
        ended = await follower.wait_for("announcement")
        assert ended["title"] == "Access ended" and ended["code"] == "revoked", ended
        await follower.wait_for("disconnect", seconds=10)
        assert not any(s["mills"] == m for d in follower.got("dataUpdate")
                       for s in d.get("sgvs", []))
        # every decision on the socket, granted or denied, is in her audit trail
        trail = str(s.get(f"{srv.url}/api/audit", timeout=30).json())
        assert "no_grant" in trail and "raw_under_summary" in trail and "revoked" in trail

    asyncio.run(run())


def test_socket_io_is_served_beside_the_routes(srv: Server, tmp_path: Path) -> None:
    """The Engine.IO handshake (what every socket.io client does first) and the HTTP
    routes on the same port."""
    r = srv.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert r.status_code == 200 and '"sid"' in r.text, r.text
    assert srv.get("/api/v1/status.json").json()["status"] == "ok"


def test_malformed_messages_are_answered_never_a_traceback(srv: Server) -> None:
    """What a client can send that is not what AndroidAPS sends: an answer that says what
    was wrong, the connection alive, and nothing stored or logged as a server failure."""
    async def run() -> None:
        phone = Phone()
        await phone.connect(srv.url)
        for message in (None, [], "secret", {"secret": 12}, {"history": "all"}):
            ack = await phone.call("authorize", message)
            assert ack["read"] is False and ack["code"] == "unauthenticated", (message, ack)
        phone = Phone()
        await phone.connect(srv.url)
        ack = await phone.call("authorize", dict(_auth(SECRET), history=-5))
        assert ack["write"] is True
        for event, data in (("dbAdd", None), ("dbAdd", []), ("dbAdd", {"collection": 3}),
                            ("dbUpdate", {"collection": "treatments", "_id": 5}),
                            ("dbRemove", {"collection": "treatments"}),
                            ("dbUpdate", {"collection": "treatments", "_id": "x" * 24,
                                          "data": "carbs"})):
            ack = await phone.call(event, data)
            assert isinstance(ack, dict) and ack["code"] in ("bad_input", "malformed"), (
                event, data, ack)
            assert "failed unexpectedly" not in str(ack)
        ack = await phone.call("dbAdd", {"collection": "entries", "data": [{"sgv": "x"}] * 3})
        assert len(ack) == 3 and all(a["glucoledger"]["stored"] is False for a in ack)
        assert phone.sio.connected
        await phone.sio.disconnect()

    asyncio.run(run())
    out = srv.server.output()
    assert "serving glucoledger" in out  # the server's own output, read while it runs
    assert "Traceback" not in out


def test_a_follower_socket_gets_only_the_streams_granted(srv: Server) -> None:
    """A raw grant of ``cgm`` alone: the feed holds readings and nothing of treatments,
    device status or profiles, at authorize and in the pushes after."""
    s, csrf = _patient(srv)
    r = s.post(f"{srv.url}/api/grants", headers={"x-csrf-token": csrf}, timeout=30, json={
        "grantee": "dr-lee", "streams": ["cgm"], "view": "raw", "last_days": 14,
        "valid_days": 30})
    assert r.status_code == 201, r.text
    grant = str(r.json()["id"])

    async def run() -> None:
        follower = Phone()
        await follower.connect(srv.url)
        ack = await follower.call("authorize", _auth(READER_SECRET))
        assert ack["read"] is True and ack["write"] is False
        full = await follower.wait_for("dataUpdate")
        assert full["sgvs"]
        assert not {"treatments", "devicestatus", "profiles", "mbgs"} & set(full)
        n = _now() - 15_000
        r = srv.send("POST", "/api/v1/treatments", headers=UP, json=[{
            "eventType": "Carb Correction", "carbs": 12, "created_at": iso(n),
            "enteredBy": "openaps://AndroidAPS"}])
        assert r.status_code == 200, r.text
        r = srv.send("POST", "/api/v1/entries", headers=UP, json=[
            {"type": "sgv", "sgv": 150, "date": n, "dateString": iso(n), "direction": "Flat"}])
        assert r.status_code == 200, r.text
        await follower.wait_for("dataUpdate", lambda d: any(
            x["mills"] == n for x in d.get("sgvs", [])))
        assert all("treatments" not in d for d in follower.got("dataUpdate"))
        await follower.sio.disconnect()

    try:
        asyncio.run(run())
    finally:
        _revoke(srv, grant)

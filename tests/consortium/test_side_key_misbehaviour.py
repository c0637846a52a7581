"""A member that writes junk under its own etcd keys stops no honest node, poisons no final
note, and is named (docs/threat-model.md, "Side keys" and "Cosigned checkpoints").

Live: a real 3-member TLS consortium (devcluster). org-2's node process is stopped and the
test plays org-2 with org-2's own etcd user, node key and keys only, as the audit's scripts
did (audit findings f1, f1b, f2, f3, f4, f9). The follow loop's handling of a failure that
is nobody's input (a bug) is pinned with a stand-in node at the end.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from glucoledger import codec
from glucoledger.ledger.checkpoint import NoteVerifier, SignedNote, parse_note
from glucoledger.ledger.finality import verify_final
from glucoledger.node import devcluster
from glucoledger.node.consortium import ConsortiumNode, Status
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering._gateway import b64
from glucoledger.ordering.etcd_kv import MAX_SIDE_VALUE, EtcdKV

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


def _alive(c: Consortium, i: int) -> bool:
    node = c.state["nodes"][i]
    return devcluster.node_alive(int(node["pid"]), Path(node["data"]))


def _final_note(c: Consortium, i: int) -> bytes:
    db = sqlite3.connect(f"file:{c.folders[i] / 'chain.db'}?mode=ro", uri=True)
    try:
        (raw,) = db.execute("SELECT value FROM meta WHERE key = 'final'").fetchone()
    finally:
        db.close()
    value = codec.decode(bytes(raw))
    assert isinstance(value, bytes)
    return value


def _raw_put(kv: EtcdKV, key: bytes, value: bytes) -> None:
    kv._call("/v3/kv/txn", {"success": [{"request_put": {
        "key": b64(kv.prefix.encode() + key), "value": b64(value)}}]})


def _misbehaving(c: Consortium, i: int, *parts: str) -> bool:
    return any(all(p in m for p in ("'org-2'", *parts)) for m in c.status(i)["misbehaving"])


def _honest_ok(c: Consortium) -> None:
    for i in (0, 1):
        assert _alive(c, i), f"node {i} died"


def test_junk_under_a_member_s_own_keys_stops_no_honest_node(consortium: Consortium) -> None:
    c = consortium
    c.submit(patient_envelopes(2))
    wait_until(c.converged, 30, "the consortium to converge")
    c.kill_node(2)  # from here on org-2 is played by this test
    verifiers = [NoteVerifier(f"org-{i}", c.node_key(i).public) for i in range(3)]
    evil = EtcdKV.from_url(c.etcd_url(2), etcd_chain_key(CHAIN))
    try:
        # f1/f1b: reports and keys every honest loop used to die on.
        _raw_put(evil, b"health/org-2", json.dumps({"ok": False, "height": "x"}).encode())
        _raw_put(evil, b"stored/org-2", b"x")
        height = c.status(0)["height"]
        _raw_put(evil, b"sig/org-2/\xff\xfe", b"x")  # after every height: never read
        # f9: an oversized value at a height the others read.
        _raw_put(evil, f"sig/org-2/{height + 1:020d}".encode(), b"\0" * (MAX_SIDE_VALUE + 1))
        # f2: a note org-2 signed that is not a checkpoint, at the final height.
        bad = SignedNote(b"not a checkpoint\n", ()).cosign(c.node_key(2), "org-2", 0)
        _raw_put(evil, f"sig/org-2/{height:020d}".encode(), bad.encode())
        for i in (0, 1):
            for what in ("health/", "stored/", str(MAX_SIDE_VALUE)):
                wait_until(lambda i=i, what=what: _misbehaving(c, i, what), 20,
                           f"node {i} to name org-2 ({what})")
            wait_until(lambda i=i: any(d["node"] == "org-2" and "not a checkpoint" in d["detail"]
                                       for d in c.status(i)["diverged"]), 20,
                       f"node {i} to report org-2's note")
        c.submit(patient_envelopes(3)[-1:])
        top = wait_until(lambda: c.converged([0, 1]), 30, "finality without org-2")["height"]
        assert top > height
        _honest_ok(c)
        # A key that is not UTF-8 among the heights read (org-2's own range: it can crowd
        # out only its own notes).
        _raw_put(evil, f"sig/org-2/{top:020d}".encode() + b"\xff", b"x")
        for i in (0, 1):
            wait_until(lambda i=i: _misbehaving(c, i, "names no height"), 20,
                       f"node {i} to name org-2's key")

        # A height beyond SQLite's integers (OverflowError before).
        _raw_put(evil, b"health/org-2", b'{"ok": false, "height": 1180591620717411303424}')
        wait_until(lambda: _misbehaving(c, 0, "health/", "1180591620717411303424"), 20,
                   "the huge height named")
        c.submit(patient_envelopes(4)[-1:])
        wait_until(lambda: (c.converged([0, 1]) or {}).get("height", 0) > top, 30,
                   "finality to go on")
        # ... and again after a restart with the junk still there.
        c.kill_node(0, hard=False)
        c.start_node(0)
        c.submit(patient_envelopes(5)[-1:])
        wait_until(lambda: _misbehaving(c, 0, "health/"), 30, "node 0 to name org-2 again")
        _honest_ok(c)
        assert c.status(0)["error"] is None

        # f3: org-2's note carries its valid line plus a junk line in org-0's name. With
        # org-1 down, org-0 needs org-2's note to make the next height final.
        c.kill_node(1, hard=False)
        c.submit(patient_envelopes(6)[-1:], prefer=0)
        h = c.status(0)["height"]
        ours = wait_until(lambda: evil.get(f"sig/org-0/{h:020d}"), 20, "org-0's note")
        text = parse_note(ours).text
        good = SignedNote(text, ()).cosign(c.node_key(2), "org-2", 0)
        junk = ("org-0", verifiers[0].cosigner_key_id, bytes(72))
        evil.put(f"sig/org-2/{h:020d}", SignedNote(text, (junk, good.signatures[0])).encode())
        st = wait_until(lambda: c.status(0)["final_height"] == h and c.status(0), 20,
                        "org-0 to make the height final with org-2")
        assert st["final_signers"] == ["org-0", "org-2"]
        final = _final_note(c, 0)
        assert verify_final(final, verifiers, 2).height == h
        assert sorted(s[0] for s in parse_note(final).signatures) == ["org-0", "org-2"]

        # f3b: org-2 signs a forked checkpoint whose first line is junk named org-0: the
        # report names org-2, not org-0.
        c.start_node(1)
        c.submit(patient_envelopes(7)[-1:])
        h2 = wait_until(lambda: c.converged([0, 1]), 30, "finality with org-1 back")["height"]
        fork = parse_note(wait_until(lambda: evil.get(f"sig/org-0/{h2:020d}"), 10,
                                     "org-0's note")).text
        lines = fork.split(b"\n")
        lines[2] = b"A" * 43 + b"="  # another root
        forked = b"\n".join(lines)
        note = SignedNote(forked, ()).cosign(c.node_key(2), "org-2", 0)
        evil.put(f"sig/org-2/{h2:020d}", SignedNote(forked, (junk, note.signatures[0])).encode())
        for i in (0, 1):
            wait_until(lambda i=i: any(d["node"] == "org-2" and d["detail"] == "different log root"
                                       for d in c.status(i)["diverged"]), 20,
                       f"node {i} to report org-2's fork")
            assert not any(d["node"] == "org-0" for d in c.status(i)["diverged"])

        # A head that is no position: the log stalls with org-2 named; nodes stay up.
        old = evil.get("head/org-2")
        _raw_put(evil, b"head/org-2", b"x")
        for i in (0, 1):
            wait_until(lambda i=i: "member 'org-2' wrote" in (c.status(i)["error"] or ""), 30,
                       f"node {i} to name org-2's head")
        _honest_ok(c)
        # Restarted meanwhile, a node waits at start (its store cannot be checked against a
        # log no one can read), named, instead of exiting at every restart.
        c.kill_node(0, hard=False)
        node = c.state["nodes"][0]
        (Path(node["data"]) / "control.json").unlink(missing_ok=True)
        restarted = time.time()
        node["pid"] = devcluster.start_node(Path(node["data"]), port=int(node.get("port", 0)))
        (c.base / "consortium.json").write_text(json.dumps(c.state))  # so teardown stops it
        wait_until(lambda: c.status(0)["updated"] > restarted
                   and "member 'org-2' wrote" in (c.status(0)["error"] or ""), 30,
                   "node 0 to wait at start, naming org-2")
        time.sleep(3)
        assert _alive(c, 0)
        if old is not None:
            _raw_put(evil, b"head/org-2", old)
        else:
            evil._call("/v3/kv/deleterange", {"key": b64(evil.prefix + "head/org-2")})
        node["control"] = devcluster.wait_controls([Path(node["data"])])[0]
        c.submit(patient_envelopes(8)[-1:])
        wait_until(lambda: (c.converged([0, 1]) or {}).get("height", 0) > h2, 30,
                   "the log to go on once the head is put back")
        _honest_ok(c)
    finally:
        evil.close()


def _stand_in() -> ConsortiumNode:
    c = ConsortiumNode.__new__(ConsortiumNode)
    c.status = Status("org-0")
    c._watch = None
    c._watched = c._watched_log = c._watched_side = -1
    c._seen = 0
    c.node = SimpleNamespace(caught_up=True)  # type: ignore[assignment]
    c.status.height = c.status.final_height = 3
    c.orderer = SimpleNamespace(wait=lambda size, timeout: size)  # type: ignore[assignment]
    c._derive = lambda: None  # type: ignore[method-assign]
    c._publish_notes = lambda: None  # type: ignore[method-assign]
    c.maybe_anchor = lambda: None  # type: ignore[method-assign]
    c._write_status = lambda: None  # type: ignore[method-assign]
    return c


def test_a_bug_in_a_round_is_shown_and_logged_not_fatal(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    c = _stand_in()
    rounds: list[Any] = []

    def broken() -> None:
        rounds.append(1)
        raise KeyError("a bug")

    c._collect = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="glucoledger.consortium"):
        c.step()
        c.step()
    assert len(rounds) == 2  # the loop went on, and retried
    assert c.status.error is not None and "KeyError" in c.status.error
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # the traceback once, not every round
    c._collect = lambda: None  # type: ignore[method-assign]
    c.step()
    assert c.status.error is None

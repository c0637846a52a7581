"""Claims end to end on a real node: ingest, zk.day commitments on the ledger, a claim file
proved with the real toolchain, verified offline with only the node's key and the
verification keys, and every tampering refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from glucoledger.cli.main import run
from glucoledger.errors import GlucoledgerError, MalformedError, RejectedError, VerificationError
from glucoledger.ledger.checkpoint import Checkpoint, NoteVerifier, parse_note
from glucoledger.ledger.tx import SignedTx
from glucoledger.node.ingest import IngestService
from glucoledger.node.proofs import ordered_proof
from glucoledger.node.world import World
from glucoledger.node.zkclaims import ZkClaims, dumps_claim, verify_claim
from glucoledger.node.zkrecipient import open_recipient
from glucoledger.state.zkdays import SEALED_TO_BYTES
from glucoledger.zk.toolchain import Toolchain

from .helpers import D0, DAY, NOW, ingest_days

ALICE = [[120, 130, 140, 150, 160, 170, 180, 100, 90, 60],  # 9 of 10 in range
         [110, 115, 181, 200, 140, 145, 150, 155, 160, 165],
         [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]]
BOB = [[200, 210, 220, 230, 240, 250, 260, 270, 280, 290]] * 3


def _ingest(world: World, ingest: IngestService, name: str, days: list[list[int]],
            serial: str, d0: int = D0) -> bytes:
    """Her readings (10 per day from d0, one minute into each five-minute slot); her id."""
    return ingest_days(world, ingest, name, serial, days, d0=d0, offset_ms=60_000)


def _prove(world: World, zk: ZkClaims, patient: bytes, words: str, days: int,
           now: int = NOW) -> dict[str, object]:
    """She signs the disclosure (her own key), then her node proves under it."""
    key = next(p.key for p in map(world.patient, ("alice", "bob")) if p.id == patient)
    return zk.prove_claim(patient, zk.disclose(patient, [key], words, days, now).id)


@pytest.fixture
def zk(world: World, ingest: IngestService, tc: Toolchain,
       monkeypatch: pytest.MonkeyPatch) -> ZkClaims:
    monkeypatch.setenv("TZ", "UTC")
    return ZkClaims(world.node, ingest.vault, tc)


def test_claim_file_verifies_offline_and_reveals_nothing(
        world: World, ingest: IngestService, zk: ZkClaims, tc: Toolchain) -> None:
    alice = _ingest(world, ingest, "alice", ALICE, "SN-A")
    doc = _prove(world, zk, alice, "tir>=90", 3)  # 27 of 30 in range
    data = dumps_claim(doc)
    verifier = NoteVerifier.parse(world.node.verifier().vkey())
    result = verify_claim(data, verifier, tc.keys())
    assert (result.claim, result.days, result.start_ms) == ("tir>=90", 3, D0)
    assert result.end_ms == D0 + 2 * DAY + 10 * 300_000
    assert "tir>=90" in result.describe() and str(result.checkpoint_size) in result.describe()
    # with the checkpoint the verifier holds; another checkpoint is refused
    verify_claim(data, verifier, tc.keys(), checkpoint=doc["checkpoint"].encode())
    with pytest.raises(VerificationError, match="another checkpoint"):
        verify_claim(data, verifier, tc.keys(), checkpoint=b"other\n")
    # The file reveals no reading time or value: only the period's window bounds.
    text = data.decode()
    envelopes = [SignedTx.decode(base64.b64decode(w["commit"])) for w in doc["windows"]]
    for d, values in enumerate(ALICE):
        for i in range(len(values)):
            assert str(D0 + d * DAY + i * 300_000 + 60_000) not in text
    for env in envelopes:
        assert set(env.tx.body) == {"patient", "start", "end", "slots", "per", "commit"}
    signed = SignedTx.decode(base64.b64decode(doc["disclosure"]["commit"]))
    assert signed.tx.type == "zk.disclose" and signed.tx.account == alice
    body = dict(signed.tx.body)
    sealed = body.pop("to")  # to whom: sealed for her node (test_recipient.py)
    assert body == {"claim": "tir>=90", "start": D0, "end": result.end_ms, "days": 3}
    assert open_recipient(zk.vault, alice, signed.tx.body) == ""  # nobody named
    assert len(sealed) == SEALED_TO_BYTES
    # one commitment per day, recorded once: a second proof reuses them
    again = _prove(world, zk, alice, "tbr54=0", 3)
    assert [w["commit"] for w in again["windows"]] == [w["commit"] for w in doc["windows"]]
    verify_claim(dumps_claim(again), verifier, tc.keys())


def test_false_claims_and_tampering_are_refused(
        world: World, ingest: IngestService, zk: ZkClaims, tc: Toolchain) -> None:
    alice = _ingest(world, ingest, "alice", ALICE, "SN-A")
    bob = _ingest(world, ingest, "bob", BOB, "SN-B")
    with pytest.raises(RejectedError) as exc:
        _prove(world, zk, alice, "tir>=95", 3)
    assert exc.value.code == "claim_false"
    doc_disclosure = zk.disclose(alice, [world.patient("alice").key], "tir>=90", 3, NOW).id
    doc = zk.prove_claim(alice, doc_disclosure)
    theirs = _prove(world, zk, bob, "tir>=0", 3)
    verifier = NoteVerifier.parse(world.node.verifier().vkey())

    def refused(edited: dict[str, object]) -> None:
        with pytest.raises(GlucoledgerError):
            verify_claim(dumps_claim(edited), verifier, tc.keys())

    refused({**doc, "claim": "tir>=95"})  # the words: the verifier's inputs change
    refused({**doc, "windows": [theirs["windows"][0], *doc["windows"][1:]]})  # bob's day
    refused({**doc, "patient": bob.hex()})
    refused({**doc, "patient": "zz" * 32})  # not hex: refused, not a crash (ValueError)
    # upper-case hex names the same patient: still hers
    verify_claim(dumps_claim({**doc, "patient": doc["patient"].upper()}), verifier, tc.keys())
    refused({**doc, "windows": doc["windows"][1:]})  # a shorter, shifted period
    refused({**doc, "windows": [doc["windows"][1], doc["windows"][0], doc["windows"][2]]})
    steps = json.loads(json.dumps(doc["proofs"]))
    steps["steps"][1]["acc"] = steps["steps"][0]["acc"]
    refused({**doc, "proofs": steps})
    # the patient's disclosure travels with the proof: another claim's, another patient's,
    # or none is refused
    other = zk.disclose(alice, [world.patient("alice").key], "tbr54<=50", 3, NOW)
    bobs = zk.disclose(bob, [world.patient("bob").key], "tir>=90", 3, NOW)
    again = zk.prove_claim(alice, doc_disclosure)  # at a checkpoint that holds both
    verify_claim(dumps_claim(again), verifier, tc.keys())
    size = Checkpoint.parse_body(parse_note(again["checkpoint"].encode()).text).size
    for d in (other, bobs):  # with a valid inclusion proof at the claim's checkpoint
        swapped = {**ordered_proof(world.node, d.index),
                   "commit": base64.b64encode(world.node.store.tx_at(d.index).envelope
                                              ).decode(),
                   "at_checkpoint": [base64.b64encode(h).decode()
                                     for h in world.node.inclusion_proof(d.index, size)]}
        with pytest.raises(VerificationError, match="did not authorize"):
            verify_claim(dumps_claim({**again, "disclosure": swapped}), verifier, tc.keys())
    refused({**doc, "disclosure": doc["windows"][0]})  # a zk.day is not a disclosure
    refused({k: v for k, v in doc.items() if k != "disclosure"})
    with pytest.raises(GlucoledgerError):
        verify_claim(dumps_claim(doc)[:-2] + b" \n", verifier, tc.keys())
    # a file of an older format (v2: a mean claim there proved no coverage) says so
    for old in ("glucoledger/zk-claim/v1", "glucoledger/zk-claim/v2"):
        with pytest.raises(MalformedError, match="older format.*new proof"):
            verify_claim(dumps_claim({**doc, "type": old}), verifier, tc.keys())


def test_a_day_is_committed_once(world: World, ingest: IngestService, zk: ZkClaims) -> None:
    alice = _ingest(world, ingest, "alice", ALICE, "SN-A")
    (start, end), = zk.period(alice, 1, NOW)
    rec = zk.commit_window(alice, start, end)
    body = {"patient": alice, "start": start, "end": end, "slots": 10, "per": 10,
            "commit": bytes(32)}
    with pytest.raises(RejectedError) as exc:
        world.node.send("zk.day", body, zk.account, [world.node.node_key])
    assert exc.value.code == "window_committed"
    assert zk.record(alice, start) == rec


def test_cli_prove_and_verify_claim(world: World, ingest: IngestService, zk: ZkClaims,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = world.node.now_ms()
    d0 = now - now % DAY - 3 * DAY  # the last 3 whole UTC days, by the node's own clock
    _ingest(world, ingest, "alice", ALICE, "SN-A", d0)
    data = str(world.node.data_dir)
    vkey = world.node.verifier().vkey()
    ingest.vault.close()
    world.node.close()
    out = tmp_path / "claim.json"
    assert run(["zk-commit", "--patient", "alice", "--days", "4", "--profile", "test",
                "--data", data]) == 0
    assert "3 of 4 day(s) committed" in capsys.readouterr().out
    assert run(["prove-claim", "--patient", "alice", "--claim", "tir>=99", "--days", "3",
                "--profile", "test", "--out", str(out), "--data", data]) == 1
    printed = capsys.readouterr()
    assert "(claim_false)" in printed.err and "Traceback" not in printed.err
    assert not out.exists()
    assert run(["prove-claim", "--patient", "alice", "--claim", "mean in 100..150",
                "--days", "3", "--profile", "test", "--out", str(out), "--data", data]) == 0
    assert run(["verify-claim", str(out), "--node-key", vkey, "--profile", "test"]) == 0
    printed = capsys.readouterr()
    assert "valid" in printed.out and "mean in 100..150 over 3 day(s)" in printed.out
    for value in {v for day in ALICE for v in day}:
        assert f" {value} " not in printed.out.replace(",", " ")
    out.write_text(out.read_text().replace("mean in 100..150", "mean in 100..120"))
    assert run(["verify-claim", str(out), "--node-key", vkey, "--profile", "test"]) == 3
    assert run(["verify-claim", str(tmp_path / "none.json"), "--node-key", vkey,
                "--profile", "test"]) == 2
    assert "Traceback" not in capsys.readouterr().err

"""The issue's must-hold properties, against real etcd members and node processes."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from glucoledger import crypto
from glucoledger.errors import GlucoledgerError
from glucoledger.ledger.log import encode_cut, encode_tx_entry
from glucoledger.ledger.tx import Signature, SignedTx, Transaction, sign
from glucoledger.node import control
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.state.accounts_model import account_id, single_key_policy

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


@pytest.mark.slow
def test_crash_under_load_loses_nothing_and_converges(consortium: Consortium) -> None:
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        k = 0
        while not stop.is_set():
            batch = patient_envelopes(20)
            for _ in range(60):  # bounded retries of the same envelopes
                try:
                    receipts = consortium.submit(batch, prefer=k % 3)
                    break
                except GlucoledgerError as exc:
                    errors.append(exc.message)
                    time.sleep(0.2)
            else:
                raise AssertionError("load could not submit for 12 s")
            assert all(r["code"] == "ok" for r in receipts), receipts
            acked.extend(r["tx_hash"] for r in receipts)
            k += 1

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    time.sleep(1.5)
    etcd = consortium.etcd
    # Each window outlasts the orderer's 5 s deadline: a node whose own etcd member is down
    # (the only one that takes its certificates) answers 503 after it, and the client
    # moves on to the next node, as a client would.
    window = 8.0
    etcd.kill_member(1)  # SIGKILL
    time.sleep(window)
    n1 = len(acked)
    consortium.kill_node(2)  # SIGKILL
    time.sleep(window)
    n2 = len(acked)
    etcd.restart_member(1)
    consortium.start_node(2)
    time.sleep(window)
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    assert n1 > 0 and n2 > n1 and len(acked) > n2, "the load stopped during the failures"
    top = wait_until(consortium.converged, 60, "all nodes at one final checkpoint")
    assert top["final_height"] == top["height"]
    for i in range(3):
        counts = consortium.ok_counts(i, acked)
        doubled = [h for h, c in counts.items() if c != 1]
        assert set(counts.values()) == {1}, f"node {i}: {doubled[:3]}"
    roots = {consortium.status(i)["final_root"] for i in range(3)}
    assert len(roots) == 1


def test_altered_store_is_detected_refuses_and_is_reported(consortium: Consortium) -> None:
    for _ in range(3):
        consortium.submit(patient_envelopes(5))
    wait_until(consortium.converged, 30, "convergence")
    consortium.kill_node(2, hard=False)
    consortium.flip_byte(2, "txs", "idx", "envelope", "height = 2")
    st, reports = consortium.damaged_and_reported(2)
    assert "block 2" in st["refusing"]
    for rep in reports:
        assert rep["height"] == 2
        assert rep["our_root"] != rep["their_root"] and len(rep["our_root"]) == 64
    # It signs nothing new: the others go on and finalize without it.
    before = consortium.status(0)["height"]
    consortium.submit(patient_envelopes(5))
    wait_until(lambda: (c := consortium.converged([0, 1])) and c["height"] > before, 30,
               "the healthy pair to converge")
    # It derived nothing since it started: its status keeps the height of its store.
    assert consortium.status(2)["height"] == st["height"] < consortium.status(0)["height"]
    assert "org-2" not in consortium.status(0)["final_signers"]
    with pytest.raises(GlucoledgerError, match="refuses"):
        control.submit(consortium.urls[2], patient_envelopes(1), consortium.node_key(2))


def test_forged_transactions_injected_into_etcd_are_rejected_alike(
        consortium: Consortium) -> None:
    k = crypto.generate()
    pol = single_key_policy(k.public)
    aid = account_id("patient", pol)
    create = sign(Transaction(CHAIN, "account.create", {"kind": "patient", "policy": pol}, aid, 0),
                  [k])
    k2 = crypto.generate()
    update = sign(Transaction(CHAIN, "account.update",
                              {"policy": single_key_policy(k2.public)}, aid, 1), [k])
    r = consortium.submit([create.raw, update.raw])
    assert [x["code"] for x in r] == ["ok", "ok"]
    wait_until(consortium.converged, 30, "convergence")
    state_before = [_state(consortium, i) for i in range(3)]
    forged_tx = Transaction(CHAIN, "account.update", {"policy": pol}, aid, 2)
    forged = SignedTx.create(forged_tx, [Signature(k2.public, bytes(64))])  # bad signature
    orderer = EtcdOrderer.from_url(consortium.etcd_url(), etcd_chain_key(CHAIN))
    try:
        height = r[0]["height"] + 1
        orderer.append([encode_tx_entry(forged.raw), encode_tx_entry(update.raw),  # replay
                        encode_cut(height, int(time.time() * 1000))])
    finally:
        orderer.close()
    wait_until(lambda: (c := consortium.converged()) and c["height"] >= height, 30,
               "convergence after the injection")
    for i in range(3):
        db = sqlite3.connect(f"file:{consortium.folders[i] / 'chain.db'}?mode=ro", uri=True)
        rows = db.execute("SELECT result FROM txs WHERE height = ? ORDER BY idx",
                          (height,)).fetchall()
        db.close()
        codes = [bytes(x[0]) for x in rows]
        assert b"bad_signature" in codes[0] and b"bad_nonce" in codes[1], (i, codes)
    assert [_state(consortium, i) for i in range(3)] == state_before


def _state(consortium: Consortium, i: int) -> list[tuple[str, bytes]]:
    db = sqlite3.connect(f"file:{consortium.folders[i] / 'chain.db'}?mode=ro", uri=True)
    try:
        return [(k, bytes(v)) for k, v in db.execute("SELECT key, value FROM state ORDER BY key")]
    finally:
        db.close()


def test_quorum_loss_stops_appends_with_a_clear_error_then_resumes(
        consortium: Consortium) -> None:
    assert all(x["code"] == "ok" for x in consortium.submit(patient_envelopes(3)))
    etcd = consortium.etcd
    etcd.kill_member(1)
    etcd.kill_member(2)
    start = time.monotonic()
    with pytest.raises(GlucoledgerError, match="quorum"):
        control.submit(consortium.urls[0], patient_envelopes(3), consortium.node_key(0),
                       timeout=40)
    assert time.monotonic() - start < 30
    etcd.restart_member(1)
    etcd.restart_member(2)
    etcd.wait_healthy(30)
    receipts = wait_until(lambda: consortium.submit(patient_envelopes(3)), 30, "appends")
    assert all(x["code"] == "ok" for x in receipts)
    wait_until(consortium.converged, 30, "convergence")

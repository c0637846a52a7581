"""Anchoring a final checkpoint on an in-process Ethereum chain (eth-tester, py-evm)."""

from __future__ import annotations

import pytest

from glucoledger import codec
from glucoledger.errors import ConsistencyError
from glucoledger.ledger.finality import MemberSchedule, verify_final
from glucoledger.node import control
from glucoledger.node.anchor import Anchorer, connect, record_tx, verify_anchor
from glucoledger.node.genesis_file import Genesis, member_of

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until

pytest.importorskip("eth_tester", reason="anchoring tests need: pip install 'web3[tester]'")


def test_final_checkpoint_anchored_recorded_and_verified(consortium: Consortium) -> None:
    consortium.submit(patient_envelopes(5))
    wait_until(consortium.converged, 30, "convergence")
    import urllib.request

    with urllib.request.urlopen(consortium.urls[0] + "/checkpoint?final=1", timeout=5) as r:
        note = r.read()
    genesis = Genesis.load(consortium.base / "genesis.json")
    members, threshold = genesis.verifiers(), genesis.threshold
    w3 = connect("tester")
    receipt = Anchorer(w3).anchor(note, MemberSchedule.fixed(members, threshold))
    _, wallet = member_of(consortium.folders[0])
    stx = record_tx(CHAIN, receipt, wallet.load("org"), anchor_nonce=0)
    [r] = control.submit(consortium.urls[0], [stx.raw], consortium.node_key(0))
    assert r["code"] == "ok", r
    # The record is on the ledger; check it against the chain and the cosigned checkpoint.
    import sqlite3

    db = sqlite3.connect(f"file:{consortium.folders[1] / 'chain.db'}?mode=ro", uri=True)
    wait_until(lambda: db.execute("SELECT 1 FROM state WHERE key LIKE 'anchor/%'").fetchone(),
               20, "the anchor record on node 1")
    (raw,) = db.execute("SELECT value FROM state WHERE key LIKE 'anchor/%'").fetchone()
    db.close()
    record = codec.decode(bytes(raw))
    cp = verify_anchor(w3, record, verify_final(note, members, threshold))
    assert cp.height == receipt.height
    with pytest.raises(ConsistencyError):
        verify_anchor(w3, {**record, "block_number": record["block_number"] + 1}, cp)
    # Submitting the same envelope again is deduplicated by its hash.
    [again] = control.submit(consortium.urls[1], [stx.raw], consortium.node_key(1))
    assert again["code"] == "ok"  # the receipt names the accepted first occurrence

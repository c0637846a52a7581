"""A removed member that still holds a working etcd user orders nothing, on a real
consortium (3 etcd members with TLS, client certificates and auth; 3 node processes).

The node holding etcd's root (org-0) is down when org-2's removal takes effect, so nobody
deletes org-2's etcd user: it can still put batches under its own keys, through the append
protocol. Every node reads who wrote each batch from its etcd key and counts an entry only
when its writer is a member in force at the open height (``Node._counted``,
``state.governance.writers_in_force``): org-2's transaction and its cut, dated tomorrow, are
skipped alike by every node, so nothing is ordered and no node stops on the cut. A member
in force is still ordered, and org-0, started again, derives the same blocks and deletes
org-2's user.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from glucoledger.ledger.log import encode_cut, encode_tx_entry
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import EtcdOrderer

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until
from .test_removed_member import GONE, remove_member

ROOT = 0  # org-0 holds etcd's root (etcd-admin/)


def _stored(c: Consortium, i: int, envelope: bytes) -> int:
    db = sqlite3.connect(f"file:{c.folders[i] / 'chain.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM txs WHERE envelope = ?",
                              (envelope,)).fetchone()[0])
    finally:
        db.close()


def test_a_removed_member_with_a_live_etcd_user_orders_nothing(
        consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(1)))
    wait_until(c.converged, 30, "convergence")
    c.kill_node(ROOT)
    h = remove_member(c, tmp_path)
    wait_until(lambda: c.status(1)["height"] >= h - 1, 30, "org-1 at the removal")
    admin = c.etcd_admin(ROOT)
    try:
        assert "member:org-2" in admin.users()  # nobody revoked it: the hole this closes
    finally:
        admin.close()
    # org-2 appends with its own credentials: a transaction and a cut from the future.
    [mallory_tx] = patient_envelopes(1)
    orderer = EtcdOrderer.from_url(c.etcd_url(GONE), etcd_chain_key(CHAIN))
    try:
        assert orderer.writer == "org-2"
        open_height = c.status(1)["height"] + 1
        pos = orderer.append([encode_tx_entry(mallory_tx),
                              encode_cut(open_height, int(time.time() * 1000) + 86_400_000)])
    finally:
        orderer.close()
    # A member in force is ordered after it; org-2's entries are not.
    [honest] = patient_envelopes(1)
    receipt = c.submit([honest], prefer=1)[0]
    assert receipt["code"] == "ok", receipt
    assert receipt["height"] >= open_height
    assert _stored(c, 1, honest) == 1 and _stored(c, 1, mallory_tx) == 0
    st = c.status(1)
    assert st["refusing"] is None, st["refusing"]
    log = (c.folders[1] / "node.log").read_text()
    assert f"log position {pos}: skipped 1 entries of org-2, not a member in force" in log
    # The root holder comes back: the same blocks, and org-2's etcd user goes.
    c.start_node(ROOT)
    wait_until(lambda: c.converged([0, 1]), 60, "org-0 and org-1 to converge")
    assert _stored(c, ROOT, honest) == 1 and _stored(c, ROOT, mallory_tx) == 0
    admin = c.etcd_admin(ROOT)
    try:
        wait_until(lambda: "member:org-2" not in admin.users(), 30, "org-2's etcd user gone")
    finally:
        admin.close()

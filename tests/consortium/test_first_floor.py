"""One member's compaction floor stops no node (audit #8: ``first/org-2 = 10^12``, written
by org-2 under its own etcd user, stopped every reader with "compacted away", naming
nobody). On a real TLS consortium with etcd access control: the honest members keep
ordering and finalizing; only org-2's own later entries are refused, naming org-2."""

from __future__ import annotations

import pytest

from glucoledger.errors import OrderingError
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.ordering.etcd_kv import EtcdKV

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


def test_one_members_floor_stops_no_node(consortium: Consortium) -> None:
    c = consortium
    assert all(r["code"] == "ok" for r in c.submit(patient_envelopes(1)))
    wait_until(c.converged, 30, "convergence")
    key = etcd_chain_key(CHAIN)
    evil = EtcdKV.from_url(c.etcd_url(2), key)
    try:
        evil.put("first/org-2", str(10**12).encode())  # its own key; nothing deleted
    finally:
        evil.close()
    with EtcdOrderer.from_url(c.etcd_url(0), key, writer="org-0") as o:
        assert o.first() == 0  # a floor beyond the log counts nowhere
    before = c.status(0)["height"]
    receipts = c.submit(patient_envelopes(2), prefer=0)
    assert all(r["code"] == "ok" for r in receipts), receipts
    wait_until(lambda: (s := c.converged()) and s["height"] > before, 30,
               "the honest members' block, final everywhere")
    for i in range(3):
        st = c.status(i)
        assert st["error"] is None and st["refusing"] is None, st
    # org-2's own entries from now on are what readers refuse, naming org-2.
    with EtcdOrderer.from_url(c.etcd_url(2), key, writer="org-2") as evil_log:
        at = evil_log.append([b"\x02junk"])
    with EtcdOrderer.from_url(c.etcd_url(1), key, writer="org-1") as o, \
            pytest.raises(OrderingError, match="member 'org-2' recorded its compaction floor"):
        o.read(at)
    wait_until(lambda: "member 'org-2'" in (c.status(0)["error"] or ""), 20,
               "org-0 naming org-2")

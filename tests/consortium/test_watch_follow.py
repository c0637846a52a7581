"""Consortium nodes follow etcd by watch: idle, they send etcd no reads at all (issue 16).

The count is etcd's own: ``grpc_server_handled_total`` for KV Range and Txn on every member's
/metrics (the JSON gateway's requests are served by the same gRPC server). Polling nodes
(the loop before the watch) read several times a second each, so this fails on them.
"""

from __future__ import annotations

import http.client
import re
import time
from urllib.parse import urlsplit

from glucoledger.node import control
from glucoledger.ordering.etcd import TlsFiles

from .conftest import Consortium, patient_envelopes, wait_until

_KV_CALL = re.compile(
    r'^grpc_server_handled_total\{[^}]*grpc_method="(Range|Txn)"[^}]*'
    r'grpc_service="etcdserverpb\.KV"[^}]*\}\s+(\d+(?:\.\d+)?(?:e\+\d+)?)', re.M)


def _kv_calls(c: Consortium) -> int:
    """Range + Txn requests every etcd member has served so far (each asked with its own
    organization's certificate: the only one its client port accepts)."""
    total = 0
    for i, m in enumerate(c.etcd.members):
        ctx = TlsFiles.in_dir(str(c.folders[i] / "tls")).context()
        u = urlsplit(m.client_url)
        conn = http.client.HTTPSConnection(u.hostname or "", u.port, context=ctx, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        found = _KV_CALL.findall(text)
        assert found, "etcd's /metrics has no grpc_server_handled_total for KV"
        total += sum(int(float(n)) for _, n in found)
    return total


def _own_counts(c: Consortium) -> list[dict[str, int]]:
    """Each node's own count of its etcd requests by kind (its signed status)."""
    return [control.get_status(url, c.node_key(i))["etcd_requests"]
            for i, url in enumerate(c.urls)]


def test_idle_nodes_send_etcd_nothing_and_wake_on_the_next_transaction(
        consortium: Consortium) -> None:
    consortium.submit(patient_envelopes(5))
    first = wait_until(consortium.converged, 60, "the nodes to converge")
    time.sleep(3)  # the last notes and reports settle
    before = _kv_calls(consortium)
    own_before = _own_counts(consortium)
    time.sleep(6)  # several of the old loop's rounds (5 a second a node), a few idle rounds
    idle = _kv_calls(consortium) - before
    assert idle == 0, f"idle nodes sent etcd {idle} reads in 6 s (they should watch)"
    assert _own_counts(consortium) == own_before  # the nodes' own counts agree
    # The watch wakes them: new transactions become final on all three, no polling needed.
    consortium.submit(patient_envelopes(5))
    later = wait_until(lambda: (s := consortium.converged()) and s["height"] > first["height"]
                       and s, 60, "the next block to become final on all nodes")
    assert later["final_height"] > first["final_height"]
    served = _kv_calls(consortium) - before
    assert served > 0  # and the counter does count the nodes' reads
    # What the benchmark reports (bench.consortium): each node counted the log reads, note
    # reads and writes it made, the one it submitted to its append, and etcd served at least
    # all of them (it also counts a few requests the nodes do not, the watch's first read).
    own = [{k: v - b[k] for k, v in a.items()} for a, b in zip(
        _own_counts(consortium), own_before, strict=True)]
    assert all(o["log reads"] > 0 and o["side reads"] > 0 and o["side writes"] > 0
               for o in own), own
    assert sum(o["appends"] for o in own) >= 1, own
    assert 0 < sum(sum(o.values()) for o in own) <= served, (own, served)

"""A chain on state rule set 5: its members write the etcd log's batches compressed.

The members' own orderers read the log as always (they converge on one final root); what
etcd holds is checked raw, as a member's credentials read it.
"""

from __future__ import annotations

from pathlib import Path

from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd_kv import EtcdKV
from glucoledger.state.accounts import rules

from ..servers import local_consortium
from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


def _batch_versions(c: Consortium) -> dict[str, int]:
    """Each batch key's pack version byte (0x01 plain, 0x02 compressed)."""
    kv = EtcdKV.from_url(c.etcd_url(), etcd_chain_key(CHAIN))
    try:
        return {key: value[0] for key, value in kv.scan("batch/").items()}
    finally:
        kv.close()


def test_members_of_a_rule_set_5_chain_write_compressed_batches(tmp_path: Path) -> None:
    with local_consortium(tmp_path / "c", rules=5) as state:
        _writes_compressed(Consortium(tmp_path / "c", state))


def _writes_compressed(consortium: Consortium) -> None:
    consortium.submit(patient_envelopes(4))
    first = wait_until(consortium.converged, 60, "the nodes to converge")
    for i in range(3):  # each member takes part, so each one's writer is seen
        consortium.submit(patient_envelopes(3), prefer=i)
    wait_until(lambda: (s := consortium.converged()) and s["final_height"] > first["height"]
               and s, 60, "every member final past the new blocks")
    versions = _batch_versions(consortium)
    writers = {key.split("/")[0] for key, v in versions.items() if v == 2}
    # The genesis was written before any member knew the chain's rules: plain. Every batch a
    # member wrote after deriving it is compressed, and all three members wrote some.
    assert sorted(v for v in versions.values() if v != 2) == [1], versions
    assert len(writers) == 3, versions
    consortium.kill_node(0, hard=False)
    from glucoledger.node.service import Node

    with Node(consortium.folders[0], workers=1) as node:
        assert rules(node.state) == 5

"""A member's own notes (``sig/<name>/<height>``) do not pile up in etcd: once a height is
final, the notes far enough below it are deleted, in groups of ``_GC_EVERY`` (each delete is a
write through etcd's Raft log, so one a block was a steady cost under load)."""

from __future__ import annotations

from glucoledger.node.consortium import _GC_EVERY, _KEEP_SIGS
from glucoledger.node.service import etcd_chain_key
from glucoledger.ordering.etcd_kv import EtcdKV

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


def _note_heights(c: Consortium, member: str) -> list[int]:
    kv = EtcdKV.from_url(c.etcd_url(0), etcd_chain_key(CHAIN))  # as member 0 reads them
    try:
        return sorted(int(height) for height in kv.scan(f"sig/{member}/"))
    finally:
        kv.close()


def test_own_notes_below_the_final_height_are_deleted_in_groups(consortium: Consortium) -> None:
    c = consortium
    blocks = _KEEP_SIGS + 2 * _GC_EVERY + 2
    for k, envelope in enumerate(patient_envelopes(blocks)):
        c.submit([envelope], prefer=k % 3)  # one block each: every submit closes its own
    top = wait_until(lambda: (s := c.converged()) and s["final_height"] >= blocks and s, 60,
                     f"{blocks} final blocks on every member")
    final = top["final_height"]
    for member in ("org-0", "org-1", "org-2"):
        heights = wait_until(lambda m=member: (h := _note_heights(c, m))
                             and h[0] > final - _KEEP_SIGS - _GC_EVERY and h, 30,
                             f"{member}'s old notes deleted")
        assert heights[0] > 0, heights  # some were deleted
        # Every note from the kept ones up is still there (peers may still need them).
        assert set(range(final - _KEEP_SIGS, final + 1)) <= set(heights), heights

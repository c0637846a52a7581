"""Benchmark of the RFC 9162 log tree (glucoledger.ledger.merkle) against pymerkle.

What is measured, in one run over the same ``n`` leaves (leaf i is ``i`` as 8 big-endian bytes):
- ``ours_appends_per_s``: ``CompactTree.append(leaf_hash(data))``, leaf hashing included; the
  frontier only, as the orderer keeps it.
- ``ours_stored_appends_per_s``: the same, plus keeping every completed node in a MemoryNodes,
  which is what pymerkle's in-memory tree does too (it keeps every node).
- ``pymerkle_appends_per_s``: ``InmemoryTree("sha256").append_entry(data)``. With SHA-256 and
  its default "security" mode pymerkle hashes leaves as SHA-256(0x00 || d) and nodes as
  SHA-256(0x01 || l || r) over the same left-heavy shape, i.e. RFC 9162 2.1.1;
  ``roots_match`` is 1.0 when its root equals ours, which it should.
- ``proofs_per_s``: inclusion proofs generated from the MemoryNodes and verified against the
  root, for a deterministic spread of leaf indices.
- ``ratio_appends`` = ours / pymerkle (frontier only); ``ratio_stored_appends`` likewise
  with node storage.

pymerkle is a test extra; without it the pymerkle numbers are NaN.
"""

from __future__ import annotations

import json
import math
import time

from ..ledger.merkle import CompactTree, MemoryNodes, inclusion_proof, leaf_hash, verify_inclusion
from ..runtime import interruptible
from .common import count_arg, print_load

__all__ = ["bench_merkle"]

#: Enough proofs for a stable rate without making a large-n run proof-bound.
_MAX_PROOFS = 20_000


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def bench_merkle(n: int = 100_000) -> dict[str, float]:
    """Time appends (ours and pymerkle's) and proofs over ``n`` leaves; return rates per second."""
    if n < 1:
        raise ValueError("benchmark needs at least one leaf")
    data = [i.to_bytes(8, "big") for i in range(n)]

    tree = CompactTree()
    start = time.perf_counter()
    for d in data:
        tree.append(leaf_hash(d))
    ours_s = time.perf_counter() - start
    root = tree.root()

    stored = CompactTree()
    nodes = MemoryNodes()
    start = time.perf_counter()
    for d in data:
        nodes.add(stored.append(leaf_hash(d)))
    stored_s = time.perf_counter() - start

    proofs = min(n, _MAX_PROOFS)
    # A fixed stride coprime with most n visits indices all over the tree, no randomness.
    indices = [(i * 7_919) % n for i in range(proofs)]
    hashes = [leaf_hash(data[i]) for i in indices]
    start = time.perf_counter()
    for index, h in zip(indices, hashes, strict=True):
        verify_inclusion(h, index, n, inclusion_proof(nodes, index, n), root)
    proofs_s = time.perf_counter() - start

    pm_rate, roots_match = _bench_pymerkle(data, root)
    ours_rate = _rate(n, ours_s)
    stored_rate = _rate(n, stored_s)
    return {
        "n": float(n),
        "ours_appends_per_s": ours_rate,
        "ours_stored_appends_per_s": stored_rate,
        "pymerkle_appends_per_s": pm_rate,
        "ratio_appends": ours_rate / pm_rate,
        "ratio_stored_appends": stored_rate / pm_rate,
        "proofs_per_s": _rate(proofs, proofs_s),
        "proofs": float(proofs),
        "roots_match": roots_match,
        "stored_nodes": float(len(nodes)),
    }


def _bench_pymerkle(data: list[bytes], root: bytes) -> tuple[float, float]:
    """(appends per second, 1.0 if its root equals ``root`` else 0.0); NaN without pymerkle."""
    try:
        from pymerkle import InmemoryTree  # type: ignore[import-untyped]
    except ImportError:
        return math.nan, math.nan
    tree = InmemoryTree(algorithm="sha256")  # default: 0x00/0x01 prefixes, as RFC 9162
    start = time.perf_counter()
    for d in data:
        tree.append_entry(d)
    seconds = time.perf_counter() - start
    return _rate(len(data), seconds), 1.0 if tree.get_root() == root else 0.0


def main(argv: list[str] | None = None) -> None:
    n = count_arg(argv, __doc__, 100_000, "leaves appended by each tree")
    print_load("start")
    print(json.dumps(bench_merkle(n), indent=2))
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

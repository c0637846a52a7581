"""Smoke test of the Merkle benchmark: it runs and reports numbers; timings are not asserted."""

from __future__ import annotations

import math

from glucoledger.bench.merkle import bench_merkle


def test_bench_merkle_smoke() -> None:
    result = bench_merkle(n=500)
    for key in (
        "ours_appends_per_s",
        "ours_stored_appends_per_s",
        "pymerkle_appends_per_s",
        "ratio_appends",
        "ratio_stored_appends",
        "proofs_per_s",
    ):
        assert result[key] > 0 and not math.isnan(result[key]), key
    assert result["stored_nodes"] == 2 * 500 - (500).bit_count()
    # pymerkle's SHA-256 tree with its default 0x00/0x01 prefixes is RFC 9162 2.1.1.
    assert result["roots_match"] == 1.0

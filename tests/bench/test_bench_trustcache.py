"""Smoke test of the trust cache benchmark: it runs and reports numbers; timings are not
asserted."""

from __future__ import annotations

import math

from glucoledger.bench.trustcache import run


def test_bench_trustcache_smoke() -> None:
    result = run(limit=64, puts=500)
    assert result["limit"] == 64
    for key in ("put_us", "plain_dict_put_us", "ratio"):
        assert result[key] > 0 and not math.isnan(result[key]), key

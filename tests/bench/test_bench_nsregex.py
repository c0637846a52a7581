"""Smoke test of the find regular-expression benchmark: it runs and reports; no timing is
asserted."""

from __future__ import annotations

from glucoledger.bench.nsregex import ATTACKS, CLIENTS, at_the_bound, bench_nsregex


def test_bench_nsregex_smoke() -> None:
    result = bench_nsregex(values=2, re_timeout=2.0, re_lengths=(8,), bound_lengths=(),
                           gil_seconds=0.1, gil_re_chars=12)
    rows = {r["pattern"]: r for r in result["re2"]}
    assert all("refused" not in rows[p] for p in CLIENTS)  # what clients send runs
    assert "refused" in rows["/(a)\\1/"] and "refused" in rows["/(?=a)a/"]
    assert all(0 < r["program"] <= result["max_program"] for r in rows.values()
               if "refused" not in r)
    assert result["python_re"][0]["pattern"] == ATTACKS[0]
    assert {"gil_share_re2", "gil_share_python_re"} <= result.keys()


def test_a_query_at_the_bound_is_refused() -> None:
    row = at_the_bound("/(a|a)*x/", 256)
    assert row["refused"] is True and row["notes"] > 0

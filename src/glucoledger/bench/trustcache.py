"""Benchmark: a full trust cache's put, against a plain dict dropping its oldest entry.

A long-running node (``serve``, a consortium member) fills its ``TrustCache`` (65,536
entries each for verified signatures, own envelopes and decoded envelopes) within minutes
under load; from then on every put drops the oldest entry. ``ledger.trust._Bounded`` does
that with ``OrderedDict.popitem(last=False)``. The baseline, measured in the same run, is
what it did before: a plain ``dict`` and ``d.pop(next(iter(d)))``, whose ``next(iter(d))``
walks past every slot earlier drops emptied until a resize compacts the table.

Run: ``python -m glucoledger.bench.trustcache [--limit 65536] [--puts 200000]``. Printed,
not asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import time

from ..ledger.trust import _DEFAULT_LIMIT, _Bounded
from ..runtime import interruptible
from .common import print_load

__all__ = ["main", "run"]


class _PlainDict:
    """The baseline: the same put over a plain dict (the code before 2026-12-05)."""

    def __init__(self, limit: int) -> None:
        self._d: dict[bytes, object] = {}
        self._limit = limit

    def put(self, key: bytes, value: object = None) -> None:
        if len(self._d) >= self._limit and key not in self._d:
            self._d.pop(next(iter(self._d)))
        self._d[key] = value


def _keys(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


def _steady_put_us(cache: _Bounded | _PlainDict, keys: list[bytes], limit: int) -> float:
    """Microseconds a put once the cache is full (it is filled first, untimed)."""
    for k in keys[:limit]:
        cache.put(k)
    rest = keys[limit:]
    t = time.perf_counter()
    for k in rest:
        cache.put(k)
    return (time.perf_counter() - t) / len(rest) * 1e6


def run(limit: int = _DEFAULT_LIMIT, puts: int = 200_000) -> dict[str, float]:
    keys = _keys(limit + puts)
    ours = _steady_put_us(_Bounded(limit), keys, limit)
    plain = _steady_put_us(_PlainDict(limit), keys, limit)
    return {"limit": limit, "put_us": ours, "plain_dict_put_us": plain,
            "ratio": ours / plain}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=_DEFAULT_LIMIT, help="entries a cache holds")
    ap.add_argument("--puts", type=int, default=200_000, help="puts timed once it is full")
    args = ap.parse_args(argv)
    print_load("start")
    r = run(args.limit, args.puts)
    print(f"a full cache of {r['limit']:,} entries: {r['put_us']:.2f} us a put "
          f"(plain dict, same run: {r['plain_dict_put_us']:.2f} us): {r['ratio']:.3f}x")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

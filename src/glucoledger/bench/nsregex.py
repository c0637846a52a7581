"""Benchmark: Nightscout ``find`` regular expressions, worst cases, RE2 against Python's ``re``.

For each pattern (the audit's attacks, what clients send, and the largest programs the limits
let through): whether ``parse_query`` accepts it (else the start of its refusal), the RE2
program size, the compile time, and the slowest search over adversarial values (``a`` and
``ab`` repeated, random ``ab``, 256 and 2,000 characters: a treatment's eventType/enteredBy
and the longest note). Per microsecond of search, bytes of value: the bound is a constant
times the program size per byte.

Then a whole query at the bound: ``select`` over notes of 256 and 2,000 random ``ab``
characters, as many as it takes for the per-query bound (``MAX_REGEX_STEPS``) to refuse the
query; the seconds that took and how many notes were searched: the most regular-expression
work one request can cause.

Then what Python's ``re`` (the engine before) takes on the same patterns over short values of
``a``, in a child process stopped after ``--re-timeout`` s, to show the growth RE2 removes.

Last, whether a search lets other threads run: a thread counts in a loop while another runs
searches over a second; the count relative to the count alone (RE2 lets go of the GIL, so
near 1 on a machine with a free core; Python's ``re`` does not, so near 0).

    python -m glucoledger.bench.nsregex [--values 50] [--re-timeout 5]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from typing import Any

from ..errors import MalformedError
from ..interop.nsquery import MAX_PROGRAM, MAX_REGEX_STEPS, Found, Regex, parse_query, select
from ..runtime import interruptible

__all__ = ["ATTACKS", "CLIENTS", "LARGEST", "at_the_bound", "bench_nsregex", "gil_share",
           "main", "python_re"]

#: The audit's patterns and the classic ReDoS shapes.
ATTACKS: tuple[str, ...] = (
    "/(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*x/", "/" + ".*" * 12 + "x/", "/(a|a)*x/", "/(a|aa)*x/",
    "/(a+)+x/", "/(x+x+)+y/", "/^(a|a?)+x$/", "/(a)\\1/", "/(?=a)a/", "/.{500}/")
#: What clients send (tests/api/test_ns_regex.py names the sources).
CLIENTS: tuple[str, ...] = ("/basal/i", "/exerc/i", "/Sensor Start|Sensor Change/",
                            "/openaps:\\/\\//", "/^Temp/i", "/Temp.*/")
#: Near the limits: large programs and patterns that defeat RE2's DFA cache.
LARGEST: tuple[str, ...] = ("/.*a.{110}/", "/(?s)(?:.?){120}/", "/[ab]*a[ab]{240}/",
                            "/(?i)(?:[ab].?){110}x/", "/(?:a|b|.){120}c/",
                            "/(?i)" + "ab" * 124 + "/", "/(?s)(?:[ab].?){110}x/")


def _values(n: int, count: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    fixed = ["a" * n, ("ab" * n)[:n], ("a" * (n - 1)) + "b"]
    return fixed + ["".join(rnd.choice("ab") for _ in range(n)) for _ in range(count)]


def _one(value: str, values: dict[int, list[str]]) -> dict[str, Any]:
    row: dict[str, Any] = {"pattern": value if len(value) <= 48 else value[:45] + "..."}
    start = time.perf_counter()
    try:
        [cond] = parse_query("treatments", [("find[notes]", value)]).where
    except MalformedError as exc:
        row["refused"] = exc.message[:70]
        return row
    row["compile_ms"] = round((time.perf_counter() - start) * 1e3, 3)
    pattern = cond.pattern
    assert isinstance(pattern, Regex)
    row["program"] = int(pattern.compiled.programsize)
    for n, texts in values.items():
        worst = 0.0
        for text in texts:
            t = time.perf_counter()
            pattern.search(text)
            worst = max(worst, time.perf_counter() - t)
        row[f"worst_us_{n}"] = round(worst * 1e6, 1)
    return row


def _accepted(value: str) -> bool:
    try:
        parse_query("treatments", [("find[notes]", value)])
    except MalformedError:
        return False
    return True


def at_the_bound(value: str, n: int, seed: int = 11) -> dict[str, Any]:
    """``select`` with ``value`` on notes of ``n`` random ``ab`` characters until the step
    bound refuses it: seconds, notes searched."""
    query = parse_query("treatments", [("find[notes]", value)])
    [cond] = query.where
    assert cond.pattern is not None
    count = MAX_REGEX_STEPS // (cond.pattern.size * (n + 1)) + 1
    rnd = random.Random(seed)
    docs = [Found("treatments", f"Note|{i}", i, {"eventType": "Note", "notes": "".join(
        rnd.choice("ab") for _ in range(n))}) for i in range(count)]
    start = time.perf_counter()
    try:
        select(docs, query)
        refused = False
    except MalformedError:
        refused = True
    return {"pattern": value, "chars": n, "notes": count - 1, "refused": refused,
            "seconds": round(time.perf_counter() - start, 3)}


_RE_CHILD = """
import re, sys, time
pattern, flags, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = re.compile(pattern, re.I if "i" in flags else 0)
t = time.perf_counter(); c.search("a" * n); print(time.perf_counter() - t)
"""


def python_re(value: str, n: int, timeout: float) -> float | None:
    """Seconds Python's ``re`` takes to search ``"a" * n`` for ``value`` (``/src/flags``), in
    a child process; None when it ran past ``timeout`` (stopped)."""
    src, _, flags = value[1:].rpartition("/")
    try:
        out = subprocess.run([sys.executable, "-c", _RE_CHILD, src, flags, str(n)],
                             capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError:
        return float("nan")
    return float(out.stdout)


def gil_share(search: Any, texts: list[str], seconds: float = 1.0) -> float:
    """A counting thread's rate while another thread runs ``search`` over ``texts`` for
    ``seconds``, relative to its rate alone."""
    def count(stop: float) -> int:
        n = 0
        while time.perf_counter() < stop:
            n += 1
        return n

    alone = count(time.perf_counter() + seconds)
    done = threading.Event()

    def work() -> None:
        while not done.is_set():
            for t in texts:
                search(t)
                if done.is_set():
                    return

    worker = threading.Thread(target=work)
    worker.start()
    during = count(time.perf_counter() + seconds)
    done.set()
    worker.join()
    return during / alone if alone else float("nan")


def bench_nsregex(values: int = 50, re_timeout: float = 5.0,
                  re_lengths: tuple[int, ...] = (16, 20, 24, 28),
                  bound_lengths: tuple[int, ...] = (256, 2000),
                  gil_seconds: float = 1.0, gil_re_chars: int = 22) -> dict[str, Any]:
    texts = {n: _values(n, values) for n in (256, 2000)}
    rows = [_one(v, texts) for v in (*ATTACKS, *CLIENTS, *LARGEST)]
    bound = [at_the_bound(v, n) for v in (*LARGEST, "/(a|aa)*x/", "/exerc/i")
             if _accepted(v) for n in bound_lengths]
    old = []
    for value in ATTACKS[:6]:
        times: dict[str, Any] = {"pattern": value}
        for n in re_lengths:
            took = python_re(value, n, re_timeout)
            times[f"re_s_{n}"] = "timeout" if took is None else round(took, 4)
            if took is None:
                break
        old.append(times)
    [cond] = parse_query("treatments", [("find[notes]", "/.*a.{110}/")]).where
    assert cond.pattern is not None
    slow = cond.pattern.search
    import re

    backtracking = re.compile("(x+x+)+y")
    return {"max_program": MAX_PROGRAM, "max_regex_steps": MAX_REGEX_STEPS, "re2": rows,
            "at_the_bound": bound, "python_re": old,
            "gil_share_re2": round(gil_share(slow, texts[2000][:20], gil_seconds), 2),
            "gil_share_python_re": round(gil_share(backtracking.search, ["x" * gil_re_chars],
                                                   gil_seconds), 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--values", type=int, default=50, help="random values per length")
    ap.add_argument("--re-timeout", type=float, default=5.0,
                    help="seconds before a Python re search is stopped")
    args = ap.parse_args(argv)
    result = bench_nsregex(args.values, args.re_timeout)
    for row in result["re2"]:
        print(json.dumps(row))
    for row in (*result["at_the_bound"], *result["python_re"]):
        print(json.dumps(row))
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("re2", "at_the_bound", "python_re")}))


if __name__ == "__main__":
    interruptible(main)

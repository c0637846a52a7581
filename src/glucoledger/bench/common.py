"""What every benchmark shares: ports, the machine's load, and the same-run baselines.

- Ports: ``--port N`` (one server) and ``--port-range A-B`` (a benchmark that binds several
  things takes them from the range, in order, skipping ports something else holds). Nothing
  binds outside what the user named; without either option a benchmark binds free ports
  the kernel picks (port 0). A range too small or full raises ``InputError`` saying so.
- Load: ``machine_load()`` is ``os.getloadavg()`` and the CPU count, printed at the start and
  the end of every run: a figure taken while the machine was busy is read as such.
- Signature ceiling: Ed25519 verifications per second with every core busy (best of three
  tries), measured in the same run with ``cryptography`` (OpenSSL) and, when it is
  installed, PyNaCl (libsodium): the most signed transactions any node could check here,
  before any other work. These are measurements of the libraries themselves, so this
  module imports them directly; the product reaches primitives only through
  ``glucoledger.crypto``.
- The plain store: ``bench.plainstore``.
- Packages a benchmark needs beyond the product's (psutil, py_ecc: the test extra):
  ``require`` checks them before any work, and a missing one is named with its pip command.

Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib
import multiprocessing as mp
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..runtime import describe_build

__all__ = ["Ports", "add_port_args", "best_ceiling", "count_arg", "machine_load",
           "parse_port_range", "port_is_free", "print_ceiling", "print_load", "require",
           "signature_ceiling"]


def parse_port_range(text: str) -> range:
    """``"27500-27599"`` -> range(27500, 27600); InputError on anything else."""
    lo, sep, hi = text.partition("-")
    if not sep or not lo.strip().isdecimal() or not hi.strip().isdecimal():
        raise InputError(f"port range {text!r}: write it as FIRST-LAST, e.g. 27500-27599")
    a, b = int(lo), int(hi)
    if not 1 <= a <= b <= 65535:
        raise InputError(f"port range {text!r}: need 1 <= FIRST <= LAST <= 65535")
    return range(a, b + 1)


def count_arg(argv: list[str] | None, doc: str | None, default: int, what: str) -> int:
    """The one optional positional count a benchmark takes (``bench.ledger 20000``):
    ``default`` without it; a usage message and exit 2 for anything but a positive whole
    number. ``doc``: the module's docstring, whose first line describes the command."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("n", type=int, nargs="?", default=default,
                    help=f"{what} (default {default:,})")
    n: int = ap.parse_args(argv).n
    if n < 1:
        ap.error("n must be at least 1")
    return n


def require(module: str, package: str, purpose: str) -> None:
    """Stop before any work, with the pip command, when ``module`` cannot be imported: the
    benchmarks measure with packages ``pip install .`` does not bring (the test extra)."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise SystemExit(f"this benchmark needs {package} ({purpose}), which is not installed: "
                         f"pip install '{package}', or from a clone pip install -e '.[test]'"
                         ) from None


def add_port_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--port", type=int, default=0,
                    help="bind this one loopback port first (default: any free port)")
    ap.add_argument("--port-range", default="",
                    help="take every port this benchmark binds from FIRST-LAST")


def port_is_free(port: int) -> bool:
    """Whether a loopback TCP port can be bound now (benchmarks and tests pick by it)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Ports:
    """Hands out loopback ports: ``port`` first (if given), then free ones of ``span``.

    With neither, ``take()`` returns 0 (the server binds what the kernel picks).
    """

    port: int = 0
    span: range | None = None

    def __post_init__(self) -> None:
        self._given: set[int] = set()

    @classmethod
    def from_args(cls, port: int = 0, port_range: str = "") -> Ports:
        return cls(port, parse_port_range(port_range) if port_range else None)

    @property
    def fixed(self) -> bool:
        return bool(self.port or self.span)

    def take(self) -> int:
        if self.port and self.port not in self._given:
            self._given.add(self.port)
            return self.port
        if self.span is None:
            if self.port:
                raise InputError(f"this benchmark binds more than one port: give --port-range "
                                 f"instead of (or as well as) --port {self.port}")
            return 0
        for p in self.span:
            if p not in self._given and port_is_free(p):
                self._given.add(p)
                return p
        raise InputError(f"no free port left in {self.span.start}-{self.span.stop - 1}: "
                         "widen --port-range or stop what holds those ports")

    def take_bound(self) -> int:
        """Like ``take`` but never 0: a free port the kernel picks when none was named
        (for a server in another process, whose port this one must know)."""
        p = self.take()
        if p:
            return p
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        return port

    def block(self, n: int) -> int:
        """The first of ``n`` consecutive free ports of the range (for ``devcluster.up``)."""
        if self.span is None:
            if self.port:
                return self.port
            raise ValueError("block() needs a port range")
        ports = list(self.span)
        for k in range(len(ports) - n + 1):
            run = ports[k:k + n]
            if all(p not in self._given and port_is_free(p) for p in run):
                self._given.update(run)
                return run[0]
        raise InputError(f"no {n} consecutive free ports in {self.span.start}-"
                         f"{self.span.stop - 1}: widen --port-range")


def machine_load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"load_1m": one, "load_5m": five, "load_15m": fifteen,
            "cpus": float(os.cpu_count() or 1)}


def print_load(when: str) -> dict[str, float]:
    m = machine_load()
    busy = m["load_1m"] / m["cpus"]
    print(f"machine load at {when}: {m['load_1m']:.2f} {m['load_5m']:.2f} "
          f"{m['load_15m']:.2f} (1/5/15 min) on {m['cpus']:.0f} CPUs"
          f"{'  -- busy: compare ratios, not absolute figures' if busy > 0.5 else ''}")
    if when == "start":
        print(describe_build())
    return m


# --- the signature ceiling ------------------------------------------------------------------

def _libraries() -> Iterator[str]:
    yield "cryptography"
    try:
        import nacl.signing  # noqa: F401
    except ImportError:
        return
    yield "pynacl"


def _verifier(lib: str, n: int) -> tuple[Any, list[tuple[bytes, bytes]]]:
    msgs = [i.to_bytes(8, "big") * 8 for i in range(n)]  # 64-byte messages, all distinct
    if lib == "cryptography":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        k = Ed25519PrivateKey.generate()
        pub = k.public_key()
        return pub.verify, [(k.sign(m), m) for m in msgs]
    import nacl.signing

    sk = nacl.signing.SigningKey.generate()
    vk = sk.verify_key
    return (lambda s, m: vk.verify(m, s)), [(sk.sign(m).signature, m) for m in msgs]


def _verify_timed(lib: str, n: int, start_at: float) -> tuple[float, float]:
    """In a worker: prepare ``n`` signatures, wait for ``start_at``, verify them all."""
    verify, items = _verifier(lib, n)
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.time()
    for sig, msg in items:
        verify(sig, msg)
    return t0, time.time()


def signature_ceiling(n: int = 3000, repeat: int = 3) -> dict[str, float]:
    """Ed25519 verifies/s on one core and on every core at once, per library, measured now.

    ``<lib>_verify_one_core`` and ``<lib>_verify_all_cores`` (the ceiling: ``cpus`` processes
    verifying together, total over the wall time from the common start to the last finish),
    each the best of ``repeat`` tries: a ceiling is what the machine can do, and on a shared
    machine a single try mostly measures the neighbours.
    """
    cpus = os.cpu_count() or 1
    out: dict[str, float] = {"cpus": float(cpus)}
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(cpus, mp_context=ctx) as pool:
        list(pool.map(time.sleep, [0.0] * cpus))  # start the workers outside the timing
        for lib in _libraries():
            one = every = 0.0
            for _ in range(max(1, repeat)):
                t0, t1 = pool.submit(_verify_timed, lib, n, time.time() + 0.2).result()
                one = max(one, n / (t1 - t0))
                start_at = time.time() + 0.5
                ends = [f.result() for f in [pool.submit(_verify_timed, lib, n, start_at)
                                             for _ in range(cpus)]]
                every = max(every, n * cpus / (max(e for _, e in ends) - start_at))
            out[f"{lib}_verify_one_core"] = one
            out[f"{lib}_verify_all_cores"] = every
    return out


def print_ceiling(c: dict[str, float]) -> None:
    for lib in ("cryptography", "pynacl"):
        if f"{lib}_verify_one_core" in c:
            print(f"baseline: Ed25519 verify ({lib}): {c[f'{lib}_verify_one_core']:,.0f}/s on "
                  f"one core, {c[f'{lib}_verify_all_cores']:,.0f}/s on {c['cpus']:.0f} cores "
                  "(the signature ceiling)")
    if "pynacl_verify_one_core" not in c:
        print("baseline: PyNaCl is not installed: no libsodium ceiling this run")


def best_ceiling(c: dict[str, float]) -> float:
    """The highest all-core verify rate measured (libsodium's when PyNaCl is installed)."""
    return max(v for k, v in c.items() if k.endswith("_verify_all_cores"))

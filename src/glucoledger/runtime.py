"""How a long-running glucoledger process (``serve``, its HTTP workers, a consortium
member) sets up the interpreter: one way, in one place. And which of the core's modules
this interpreter runs compiled (``setup.py``)."""

from __future__ import annotations

import gc
import importlib
from importlib.machinery import EXTENSION_SUFFIXES

from ._compiled import MODULES

__all__ = ["GC_THRESHOLDS", "compiled_modules", "describe_build", "long_running_gc"]

#: The cyclic collector's thresholds (youngest generation every 20,000 allocations, not 700).
GC_THRESHOLDS = (20_000, 20, 20)


def long_running_gc() -> None:
    """Tune the cyclic garbage collector for a process that lives for days, allocates many
    short-lived containers a request or transaction (decoded envelopes, bodies, state
    records, JSON documents), and keeps large caches (decoded envelopes, rendered
    Nightscout documents, verified signatures).

    Call it once setup is done. What was loaded by then (modules, the state read from the
    store, the app) is frozen out of every later collection, and the youngest generation
    is collected every 20,000 allocations. With the defaults, about 5 % of a member's replay
    went to collections that found next to nothing (reference counting frees those
    objects), and the full collections that walked the caches were a server's slowest
    requests: p99 of Nightscout uploads 86-89 ms with the defaults, 38-50 ms after
    (README, Performance). Memory is freed as before; cycles live a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def compiled_modules() -> list[str]:
    """The modules of ``_compiled.MODULES`` this interpreter loaded as C extensions (a wheel
    built by ``pip install .`` with a C compiler); the others run as Python."""
    found = []
    for name in MODULES:
        path = importlib.import_module(name).__file__ or ""
        if path.endswith(tuple(EXTENSION_SUFFIXES)):
            found.append(name)
    return found


def describe_build() -> str:
    """One line for benchmarks and ``glucoledger --version``: compiled or pure Python."""
    found = compiled_modules()
    if len(found) == len(MODULES):
        return f"compiled core: all {len(MODULES)} modules (mypyc)"
    if not found:
        return ("pure-Python core: an editable install, GLUCOLEDGER_PURE=1 or no C compiler "
                "at install (README, Performance)")
    return f"compiled core: {len(found)} of {len(MODULES)} modules ({', '.join(found)})"

"""How a glucoledger process sets up the interpreter, one way, in one place: a command's
entry (the command line, a benchmark) ends a Ctrl-C as "aborted" (``interruptible``); a
long-running process (``serve``, its HTTP workers, a consortium member) tunes the
collector (``long_running_gc``). And which of the core's modules this interpreter runs
compiled (``setup.py``)."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any

from ._compiled import MODULES

__all__ = ["EXIT_INTERRUPTED", "GC_THRESHOLDS", "abort_on_unraisable_interrupt",
           "compiled_modules", "describe_build", "interruptible", "long_running_gc"]

#: The exit code of a command the user interrupted (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def abort_on_unraisable_interrupt() -> None:
    """Make a Ctrl-C that lands where Python cannot raise it end the process as any other
    Ctrl-C does: "aborted", exit 130.

    Such a KeyboardInterrupt (in a weakref callback, as importlib's module locks use while
    a command's modules load, or in a finalizer) goes to ``sys.unraisablehook``, whose
    default prints "Exception ignored in ..." with a traceback, and the command carries on
    as if nothing was pressed (a CI run caught exactly that). The exit is ``os._exit``: the
    exception cannot be raised from there, and nothing is lost by skipping the clean-up,
    since every write a command makes is atomic and survives a kill -9. Any other
    unraisable exception goes to the hook that was there before."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            try:
                sys.stderr.write("aborted\n")
                sys.stderr.flush()
            finally:
                os._exit(EXIT_INTERRUPTED)
        previous(unraisable)

    sys.unraisablehook = hook


def interruptible(main: Callable[[], object]) -> None:
    """Run a command's entry (``main`` imports what it needs, so a Ctrl-C while the modules
    load is caught too): a Ctrl-C at any moment ends in "aborted" and exit 130, after the
    clean-up of every ``finally`` on the way out (a benchmark stops the servers it
    started), never in a Python traceback; output cut short by its reader (``| head``)
    ends it quietly, exit 1."""
    abort_on_unraisable_interrupt()
    try:
        main()
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as `cat` does;
        # what is left in stdout's buffer goes nowhere instead of failing again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


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

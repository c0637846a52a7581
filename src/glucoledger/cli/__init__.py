"""glucoledger.cli: the ``glucoledger`` command (``main.py``: parse, call the node, render)."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["entry", "abort_on_unraisable_interrupt"]

_INTERRUPTED = 130  # common.EXIT_INTERRUPTED, which cannot be imported before the hook is in


def abort_on_unraisable_interrupt() -> None:
    """Make a Ctrl-C that lands where Python cannot raise it end the command as any other
    Ctrl-C does: "aborted", exit 130.

    Such a KeyboardInterrupt (in a weakref callback, as importlib's module locks use while
    the command's modules load, or in a finalizer) goes to ``sys.unraisablehook``, whose
    default prints "Exception ignored in ..." with a traceback, and the command carries on
    as if nothing was pressed (a CI run caught exactly that). The exit is ``os._exit``: the
    exception cannot be raised from there, and nothing is lost by skipping the clean-up,
    since every write the command makes is atomic and survives a kill -9. Any other
    unraisable exception goes to the hook that was there before."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            try:
                sys.stderr.write("aborted\n")
                sys.stderr.flush()
            finally:
                os._exit(_INTERRUPTED)
        previous(unraisable)

    sys.unraisablehook = hook


def entry() -> None:
    """The console script (and ``python -m glucoledger``): ``main.main``, where a Ctrl-C
    while the command's modules load (the first second or so) ends as an interrupted command
    does (``aborted``, exit 130: ``common.EXIT_INTERRUPTED``), not in a Python traceback."""
    abort_on_unraisable_interrupt()
    try:
        from .main import main
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        raise SystemExit(_INTERRUPTED) from None
    main()

"""glucoledger.cli: the ``glucoledger`` command (``main.py``: parse, call the node, render)."""

from __future__ import annotations

from ..runtime import interruptible

__all__ = ["entry"]


def _main() -> None:
    from .main import main  # inside: a Ctrl-C while the modules load is caught as well

    main()


def entry() -> None:
    """The console script (and ``python -m glucoledger``): ``main.main`` under
    ``runtime.interruptible``, so that a Ctrl-C while the command's modules load (the first
    second or so), or where Python cannot raise it, ends as an interrupted command does
    (``aborted``, exit 130: ``common.EXIT_INTERRUPTED``), not in a Python traceback."""
    interruptible(_main)

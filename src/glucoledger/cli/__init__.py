"""glucoledger.cli: the ``glucoledger`` command (``main.py``: parse, call the node, render)."""

from __future__ import annotations

import sys

__all__ = ["entry"]


def entry() -> None:
    """The console script (and ``python -m glucoledger``): ``main.main``, where a Ctrl-C
    while the command's modules load (the first second or so) ends as an interrupted command
    does (``aborted``, exit 130: ``common.EXIT_INTERRUPTED``), not in a Python traceback."""
    try:
        from .main import main
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        raise SystemExit(130) from None
    main()

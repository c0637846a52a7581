"""The ``glucoledger`` command: parse, call the node, render. No business rules here.

Every command takes ``--data DIR`` (or GLUCOLEDGER_DATA; default: the per-user data folder).
Errors are caught once, in ``main``: a message a person can act on and a non-zero exit code
(2: bad input, 3: verification failed, 4: permission denied, 1: anything else).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .. import __version__
from ..errors import GlucoledgerError, InputError, PermissionDeniedError, VerificationError
from ..files import storage_error
from . import (
    bench_cmd,
    consent_cmds,
    consortium_cmds,
    data_cmds,
    demo,
    device_cmds,
    ledger_cmds,
    research_cmds,
    server_cmds,
    zk_cmds,
)
from .common import (
    EXIT_BAD_INPUT,
    EXIT_DENIED,
    EXIT_INTERRUPTED,
    EXIT_OTHER,
    EXIT_VERIFICATION,
    console,
    err_console,
)

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="glucoledger",
    help="A patient-controlled, tamper-evident ledger and encrypted vault for diabetes data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog="Example: glucoledger demo --data ./story; glucoledger verify --data ./story",
)


def _version(value: bool) -> None:
    if value:
        from ..runtime import describe_build
        console.print(f"glucoledger {__version__}\n{describe_build()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """A patient-controlled, tamper-evident ledger and encrypted vault for diabetes data.

    Exit codes: 0 success, 2 bad input, 3 verification failed, 4 permission denied, 1 other.
    """


ledger_cmds.register(app)
demo.register(app)
bench_cmd.register(app)
data_cmds.register(app)
consent_cmds.register(app)
consortium_cmds.register(app)
server_cmds.register(app)
research_cmds.register(app)
zk_cmds.register(app)
app.add_typer(device_cmds.device_app, name="device")


#: Reason codes that mean the input was wrong, whichever layer noticed (a transaction the
#: state machine refused as malformed is still bad input: exit 2, not 1 or 4).
_BAD_INPUT_CODES = frozenset({"bad_input", "malformed", "out_of_range", "too_large"})


#: Reason codes of a damaged or inconsistent node folder, whichever command met it: exit 3,
#: as ``verify`` does (a chain.db that is not SQLite, a store that does not load, a log
#: shorter than, missing under, or of another history than its store; a vault ahead of it;
#: a vault gone while the ledger commits batches; a node.json of another chain).
_DAMAGE_CODES = frozenset({"damaged_store", "short_log", "other_log", "missing_log",
                           "vault_ahead", "missing_vault", "other_chain"})


def _exit_code(exc: GlucoledgerError) -> int:
    if isinstance(exc, InputError) or exc.code in _BAD_INPUT_CODES:
        return EXIT_BAD_INPUT
    if isinstance(exc, VerificationError) or exc.code in _DAMAGE_CODES:
        return EXIT_VERIFICATION
    if isinstance(exc, PermissionDeniedError):
        return EXIT_DENIED
    return EXIT_OTHER


def _click_exception_type() -> type[Exception]:
    """The ``ClickException`` class typer really raises.

    typer 0.2x carries its own copy of click (``typer._click``), so ``import click`` names a
    different class that never matches. The public ``typer.BadParameter`` descends from the
    right one whichever copy is in use; find it there instead of importing a private module.
    """
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException" and issubclass(cls, Exception):
            return cls
    raise RuntimeError(  # pragma: no cover - every typer release so far
        "typer.BadParameter does not descend from a ClickException")


_CLICK_EXCEPTION = _click_exception_type()


def _usage_error(exc: Exception) -> int:
    """Print click's own rendering (usage, a hint, one ``Error:`` line) and return its code."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:  # pragma: no cover - every ClickException has show()
        err_console.print(f"error: {exc}")
    code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
    return code if isinstance(code, int) else EXIT_BAD_INPUT


def _said(code: int) -> int:
    """``code``, having said "aborted" when it is the interrupted one: typer turns a
    KeyboardInterrupt raised in a command (Ctrl-C while it works, not while it loads) into
    its exit code 130 without a word (``typer.core``: ``raise Exit(130)``), and no command
    of ours exits 130 otherwise."""
    if code == EXIT_INTERRUPTED:
        err_console.print("aborted")
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` and return the exit code; never raises, never a traceback.

    The exit codes are the README's table: 0 success, 2 bad input (usage errors included),
    3 verification failed, 4 permission denied, 1 anything else, 130 interrupted. An
    unexpected exception (a bug) prints one line naming its type, not its message (which
    could carry data), and exits 1; ``GLUCOLEDGER_DEBUG=1`` re-raises it for a developer.
    """
    try:
        rv = app(args=argv, prog_name="glucoledger", standalone_mode=False)
        return _said(rv if isinstance(rv, int) else 0)
    except GlucoledgerError as exc:
        err_console.print(f"[bold red]error[/] ({exc.code}): {exc.message}", soft_wrap=True,
                          markup=True, highlight=False)
        return _exit_code(exc)
    except typer.Exit as exc:
        return _said(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt, EOFError):
        err_console.print("aborted")
        return EXIT_INTERRUPTED
    except _CLICK_EXCEPTION as exc:
        return _usage_error(exc)
    except OSError as exc:
        err = storage_error(exc, exc.filename or "a file", "running the command")
        err_console.print(f"[bold red]error[/] ({err.code}): {err.message}", soft_wrap=True)
        return EXIT_OTHER
    except Exception as exc:  # a bug: say so in one line, keep the traceback for developers
        if os.environ.get("GLUCOLEDGER_DEBUG") == "1":
            raise
        err_console.print(f"[bold red]unexpected error[/] ({type(exc).__name__}): this is a bug "
                          "in glucoledger; run again with GLUCOLEDGER_DEBUG=1 for the details "
                          "and report them", soft_wrap=True)
        return EXIT_OTHER


def _tolerant_output() -> None:
    """A locale whose encoding cannot show a character the output holds (the C locale
    without UTF-8 coercion is ASCII; latin-1 terminals) gets "?" for it, not a crash at the
    first "…" after the work was done."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="replace")


def main() -> None:
    """The ``glucoledger`` console script."""
    _tolerant_output()
    sys.exit(run())

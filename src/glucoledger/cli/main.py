"""The ``glucoledger`` command: parse, call the node, render. No business rules here.

Every command takes ``--data DIR`` (or GLUCOLEDGER_DATA; default: the per-user data folder).
Errors are caught once, in ``main``: a message a person can act on and a non-zero exit code
(2: bad input, 3: verification failed, 4: permission denied, 1: anything else).
"""

from __future__ import annotations

import sys

import typer

from ..errors import GlucoledgerError, InputError, PermissionDeniedError, VerificationError
from . import (
    bench_cmd,
    consent_cmds,
    consortium_cmds,
    data_cmds,
    demo,
    ledger_cmds,
    research_cmds,
    server_cmds,
)
from .common import err_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="glucoledger",
    help="A patient-controlled, tamper-evident ledger and encrypted vault for diabetes data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


ledger_cmds.register(app)
demo.register(app)
bench_cmd.register(app)
data_cmds.register(app)
consent_cmds.register(app)
consortium_cmds.register(app)
server_cmds.register(app)
research_cmds.register(app)


def _exit_code(exc: GlucoledgerError) -> int:
    if isinstance(exc, InputError):
        return 2
    if isinstance(exc, VerificationError):
        return 3
    if isinstance(exc, PermissionDeniedError):
        return 4
    return 1


def main() -> None:
    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except GlucoledgerError as exc:
        err_console.print(f"[bold red]error[/] ({exc.code}): {exc.message}")
        sys.exit(_exit_code(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


"""``glucoledger bench``: the benchmark suite, figures and ratios measured in one run."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import console, table

__all__ = ["register"]


def bench(
    quick: Annotated[bool, typer.Option(help="Smaller sizes, for a smoke run.")] = False,
) -> None:
    """Measure the ledger against plain SQLite and pymerkle on this machine, now.

    Example: glucoledger bench --quick
    """
    from ..bench import ledger as ledger_bench
    from ..runtime import long_running_gc

    long_running_gc()  # the node's process as `serve` and `glucoledger node` run it
    results = ledger_bench.run_all(quick=quick, echo=console.print)
    rows = [[name, f"{value:,.2f}"] for name, value in results.items()]
    console.print(table("benchmark", ["figure", "value"], rows))


def register(app: typer.Typer) -> None:
    app.command()(bench)

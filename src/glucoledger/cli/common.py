"""What every command module shares: consoles, the --data option, opening a node."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..node.ingest import open_vault
from ..node.service import Node
from ..vault.store import Vault

__all__ = ["DataOpt", "console", "data_dir", "err_console", "open_node", "open_node_and_vault",
           "progress", "table"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def default_data_dir() -> Path:
    env = os.environ.get("GLUCOLEDGER_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "glucoledger"


DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="The node's folder (default: $GLUCOLEDGER_DATA or "
                 "~/.local/share/glucoledger).", show_default=False),
]


def data_dir(value: Path | None) -> Path:
    return value if value is not None else default_data_dir()


@contextmanager
def open_node(value: Path | None) -> Iterator[Node]:
    node = Node(data_dir(value))
    try:
        yield node
    finally:
        node.close()


@contextmanager
def open_node_and_vault(value: Path | None) -> Iterator[tuple[Node, Vault]]:
    """The node and its vault, both closed on the way out."""
    with open_node(value) as node:
        vault = open_vault(node)
        try:
            yield node, vault
        finally:
            vault.close()


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    return t


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                    "{task.total}"), TimeRemainingColumn(), console=err_console, transient=True)

"""What every command module shares: consoles, the --data option, opening a node."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .. import runtime
from ..errors import InputError, TooLargeError
from ..files import atomic_write, storage_error
from ..glucose.readings import STREAMS, parse_time
from ..node.service import Node
from ..node.services import NodeServices
from ..vault.store import Vault

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_DENIED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_VERIFICATION",
    "FORMATS",
    "MAX_TEXT_BYTES",
    "ID_CHARS",
    "DataOpt",
    "FormatOpt",
    "JsonOpt",
    "choice",
    "confirm_destruction",
    "console",
    "data_dir",
    "emit",
    "err_console",
    "in_file",
    "local_iso",
    "local_iso_ms",
    "open_node",
    "open_node_and_vault", "open_services",
    "out_file",
    "parse_when",
    "ask_secret",
    "audit_rows",
    "humanize",
    "plural",
    "print_json",
    "progress",
    "read_text",
    "records_table",
    "table",
]

#: The README's exit-code table, one name per row (tests/cli/test_usage.py checks it row by row).
EXIT_OK = 0
EXIT_OTHER = 1
EXIT_BAD_INPUT = 2
EXIT_VERIFICATION = 3
EXIT_DENIED = 4
EXIT_INTERRUPTED = runtime.EXIT_INTERRUPTED  # the one value, for the entry's own handler

#: The last millisecond of year 9999: later times cannot be shown as dates.
MAX_TIME_MS = 253_402_300_799_999

# soft_wrap: messages are never broken by the console (a command to copy stays on one line;
# the terminal wraps, between words); tables still fit the width.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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
#: The versions a ``gov.upgrade`` moves a chain to (``glucoledger upgrade``, ``consortium
#: propose upgrade``); neither given: the newest of each the chain is not on yet.
RulesOpt = Annotated[int | None, typer.Option(
    "--rules", help="The state rule set to move to (default: the newest).", min=1, max=99)]
AccessRecordsOpt = Annotated[int | None, typer.Option(
    "--access-records", help="The access record format to move to (default: the newest).",
    min=1, max=99)]


def _check_out_file(value: Path | None) -> Path | None:
    """An output file's folder must exist and the file must not be a folder (exit 2 if not)."""
    if value is None:
        return None
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; give a file name inside it")
    parent = value.parent if str(value.parent) else Path(".")
    if not parent.is_dir():
        raise typer.BadParameter(f"folder {parent} does not exist; create it or choose another")
    return value


def in_file(help: str, *, option: str | None = None) -> Any:
    """A file to read: it must exist, be a file and be readable, or the command exits 2."""
    kw: dict[str, Any] = {"help": help, "exists": True, "file_okay": True, "dir_okay": False,
                          "readable": True, "resolve_path": False}
    if option is None:
        return typer.Argument(**kw)
    return typer.Option(option, **kw)


def out_file(help: str, *, option: str | None = "--out") -> Any:
    """A file to write: its folder must exist and it must not be a folder (exit 2 if not).

    ``option=None``: a positional argument instead of an option."""
    if option is None:
        return typer.Argument(help=help, dir_okay=False, callback=_check_out_file)
    return typer.Option(option, help=help, dir_okay=False, callback=_check_out_file)


#: The largest text file a command reads (a day of readings is ~30 KB; an ingest file at its
#: limit of 10,000 items a stream, a few MB): more is the wrong file (an image, a disk,
#: /dev/zero), refused before it fills the memory.
MAX_TEXT_BYTES: Final = 64 << 20


def read_text(path: Path, what: str) -> str:
    """A user's text file as text (newlines as ``open`` reads them); binary, unreadable or
    oversized (``MAX_TEXT_BYTES``) content is bad input, said so."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise TooLargeError(f"{path} is larger than {MAX_TEXT_BYTES >> 20} MiB: not the "
                                f"{what}? (split a large file into smaller ones)")
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a UTF-8 text file; give the {what}") from None
    except OSError as exc:
        raise storage_error(exc, path, f"reading the {what}") from None


def data_dir(value: Path | None) -> Path:
    return value if value is not None else default_data_dir()


@contextmanager
def open_node(value: Path | None) -> Iterator[Node]:
    with open_services(value) as services:
        yield services.node


@contextmanager
def open_services(value: Path | None) -> Iterator[NodeServices]:
    """The node in ``--data`` and its services (``node/services.py``, the one composition
    root), all closed on the way out."""
    with NodeServices.open(data_dir(value)) as services:
        yield services


@contextmanager
def open_node_and_vault(value: Path | None) -> Iterator[tuple[Node, Vault]]:
    """The node and its vault, both closed on the way out."""
    with open_services(value) as services:
        yield services.node, services.vault


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one array of objects) "
                                      "instead of a table, for scripts.")]


def print_json(doc: Any) -> None:
    """Machine-readable output on stdout: plain JSON, no colour, no wrapping."""
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))


#: How many hex digits of an id the CLI shows; every command taking an id accepts any unique
#: start of it (as git does), so what is shown can be typed back.
ID_CHARS = 12

FORMATS = ("table", "json", "csv")


def choice(*allowed: str) -> Any:
    """A typer callback refusing values outside ``allowed`` as a usage error (exit 2)."""
    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
        return value
    return check


def _check_streams(value: str | None) -> str | None:
    if value is None:
        return None
    bad = [x for x in value.split(",") if x not in STREAMS]
    if bad or not value:
        raise typer.BadParameter(f"{', '.join(bad) or 'nothing'} is not a stream; use a "
                                 f"comma-separated list of {', '.join(STREAMS)}")
    return value


def streams_opt(default_help: str = "Comma-separated streams") -> Any:
    """A ``--streams`` option checked against the stream names before anything is sent."""
    return typer.Option("--streams", help=f"{default_help} ({', '.join(STREAMS)}).",
                        callback=_check_streams)


FormatOpt = Annotated[str, typer.Option("--format", help="table (for people), json or csv.",
                                        callback=choice(*FORMATS))]


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 batch``, ``2 batches``: counts that read as English."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def local_iso(ms: int) -> str:
    """Epoch ms as local ISO 8601 to the second, with the offset (``2026-01-02T08:05:00+01:00``).

    Times the platform cannot represent are shown as epoch ms rather than raising.
    """
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone().isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def local_iso_ms(ms: int) -> str:
    """Epoch ms as local ISO 8601 to the millisecond, with the offset."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone().isoformat(
            timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def parse_when(text: str, option: str) -> int:
    """A time a person typed: epoch ms (digits) or ISO 8601 with an offset. Exit 2 if not."""
    if text.isdecimal():
        value = int(text)
    else:
        try:
            value = parse_time(text)[0]
        except InputError as exc:
            raise InputError(f"{option}: {exc.message}") from None
    if not 0 <= value <= MAX_TIME_MS:
        raise InputError(f"{option}: {text} is outside years 1970 to 9999")
    return value


def confirm_destruction(yes: bool, what: str, word: str) -> None:
    """Ask the person to type ``word`` before something irreversible, unless ``--yes``.

    Without a terminal on stdin (a script, a pipe) it refuses rather than guess: exit 2.
    """
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():  # (None: stdin closed)
        raise InputError(f"{what} Not asking without a terminal: add --yes to confirm.")
    err_console.print(f"{what} Type [bold]{word}[/] to go on:", end=" ")
    answer = sys.stdin.readline().strip()
    if answer != word:
        raise InputError(f"you typed {answer!r}, not {word!r}: nothing was changed")


def ask_secret(prompt: str, *, again: bool = False, instead: str = "") -> str:
    """A secret typed by the person, never echoed (``again``: asked twice, must match).

    Where nobody can answer (stdin closed, or not a terminal and at its end) it refuses with
    what to do (exit 2; ``instead``: another way, e.g. ", or give --password-env VAR"); a
    Ctrl-C at the prompt stays "aborted"."""
    if sys.stdin is None:
        raise InputError(f"cannot ask for the {prompt}: stdin is closed; run the command in a "
                         f"terminal{instead}")
    if not sys.stdin.isatty():
        # A script's pipe (one line an answer), never /dev/tty behind it: getpass would try
        # that first, and where it opens without being a terminal it read whatever came.
        lines = [sys.stdin.readline() for _ in range(2 if again else 1)]
        if not lines[0]:
            raise InputError(f"no {prompt} was given: stdin is not a terminal and ended; run "
                             f"the command in a terminal{instead}")
        first, *rest = (line.rstrip("\r\n") for line in lines)
        if again and rest != [first]:
            raise InputError(f"the two {prompt}s differ (give it twice, a line each): nothing "
                             "was changed")
        return first
    try:
        first = str(typer.prompt(prompt, hide_input=True))
        if again and str(typer.prompt("again", hide_input=True)) != first:
            raise InputError(f"the two {prompt}s differ: nothing was changed")
    except typer.Abort:
        if sys.stdin.isatty():
            raise
        raise InputError(f"no {prompt} was given: stdin is not a terminal and ended; run the "
                         f"command in a terminal{instead}") from None
    return first


# An id may come marked as one ("id 8543952f7ac3", Registry.label's form for an id with
# no name): the mark goes with the hex when a name replaces it.
_HEX = re.compile(r"\b(?:id )?([0-9a-f]{8,64})\b")


def humanize(text: str, names: dict[bytes, str]) -> str:
    """``text`` with every id (or id prefix of 8+ hex digits) of a named account replaced by
    its name: "patient 8543952f7ac36a2d has granted you nothing" -> "patient alice has ...".
    Other hex (hashes, unnamed ids) is left as it is."""
    by_hex = {k.hex(): v for k, v in names.items()}

    def name(m: re.Match[str]) -> str:
        h = m.group(1)
        hits = {v for k, v in by_hex.items() if k.startswith(h)}
        return hits.pop() if len(hits) == 1 else m.group(0)
    return _HEX.sub(name, text)


#: Audit events and outcomes in words (node/audit.py kinds and outcome codes).
_EVENTS = {"access": "read", "emergency": "emergency access opened",
           "emergency_request": "emergency requested", "emergency_decision": "emergency decided",
           "refused": "refused attempt", "erase": "erasure",
           "zk_disclosure": "proof disclosed", "zk_withdrawal": "disclosure withdrawn"}
_OUTCOMES = {"permit": "granted", "deny": "denied"}


def audit_rows(trail: Sequence[Any], names: dict[bytes, str]) -> list[list[str]]:
    """The audit trail as rows: when (local ISO), block, event, who, outcome, what, tx.
    Emergencies are marked once, in words; names replace ids; nothing is cut."""
    rows = []
    for e in trail:
        event = _EVENTS.get(e.kind, e.kind.replace("_", " "))
        if e.emergency and "emergency" not in event:
            event = f"{event} (emergency)"
        outcome = _OUTCOMES.get(e.outcome, e.outcome)
        if e.reason:
            outcome += f" ({e.reason.replace('_', ' ')})"
        rows.append([local_iso(e.time_ms), str(e.height), event,
                     names.get(e.who, e.who.hex()[:ID_CHARS]), outcome,
                     humanize(e.detail, names), e.tx_hash.hex()[:ID_CHARS]])
    return rows


def records_table(records: Sequence[Any], history: Sequence[Any] = ()
                  ) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Readings as columns, rows (for table and CSV) and documents (for JSON).

    Every row starts with the local ISO time (to the ms) and the exact epoch ms, which is
    what ``prove-reading --time`` takes. ``history`` (the patient's own read: earlier
    versions of edited Nightscout documents, deleted ones) follows, with a ``current``
    column saying which rows count (False: kept and provable, but superseded).
    """
    docs: list[dict[str, Any]] = []
    keys: list[str] = []
    for r in [*records, *history]:
        value = dict(r.to_value())
        ms = int(getattr(r, "time_ms", 0))
        doc = {"time": local_iso_ms(ms), "time_ms": ms, "stream": type(r).TYPE}
        if history:
            doc["current"] = len(docs) < len(records)
        for k, v in value.items():
            if k in ("time", "time_ms", "t"):
                continue
            doc[k] = v
            if k not in keys:
                keys.append(k)
        docs.append(doc)
    cols = ["time", "time_ms", "stream", *(["current"] if history else []), *keys]
    rows = [["" if d.get(c) is None else str(d.get(c)) for c in cols] for d in docs]
    return cols, rows, docs


def emit(fmt: str, out: Path | None, cols: list[str], rows: list[list[str]], title: str,
         docs: list[dict[str, Any]]) -> None:
    """Write rows as a table, JSON or CSV to ``out`` (atomically) or to stdout."""
    if fmt == "json":
        text = json.dumps(docs, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        text = buf.getvalue()
    elif out is None:
        console.print(table(title, cols, rows))
        return
    else:
        rec = Console(file=io.StringIO(), width=200, highlight=False, color_system=None)
        rec.print(table(title, cols, rows))
        text = rec.file.getvalue()  # type: ignore[attr-defined]
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(out, text.encode())


#: A table column is never narrower than its longest word up to this many characters (a time,
#: a name, a 12-digit id stay whole); longer words fold rather than end in an ellipsis.
_WORD = 25


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    """A table for people: cells wrap between words; nothing is replaced by an ellipsis."""
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        words = [w for r in rows for w in str(r[i]).split()] + c.split()
        longest = max((len(w) for w in words), default=1)
        t.add_column(c, overflow="fold", min_width=min(longest, _WORD))
    for r in rows:
        t.add_row(*r)
    return t


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                    "{task.total}"), TimeRemainingColumn(), console=err_console, transient=True)

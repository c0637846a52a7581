"""Every command, every ordinary mistake: exit 2 (or the documented code), one message, no
traceback.

The table is built from the command tree itself (``typer.main.get_command``), so a command
added later is covered without editing this file; ``SAMPLE`` only supplies values a human
would type for required parameters. Runs in-process through ``cli.main.run`` (the same
function the console script calls) because a subprocess per case would take minutes; the
end-to-end path in ``test_user_path.py`` uses real processes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from glucoledger.cli import common
from glucoledger.cli.main import app, run

ROOT = typer.main.get_command(app)

#: Commands that run until stopped, or for minutes, with only optional parameters: the
#: no-argument case would start them, so it is not run for these (their mistakes still are).
LONG_RUNNING = {"serve", "node", "bench", "demo", "cluster up", "simulate", "init", "zk-setup",
                "consortium status", "cluster down"}

#: Path parameters that name a folder or a file to be written, by option name.
FOLDERS = {"--data", "--dir", "--keys", "--admin"}
OUTPUTS = {"--out", "out"}

#: File parameters for which any bytes are valid input (a firmware image).
BINARY_OK = {"image"}

#: Values a person would type for a required string parameter, by name.
SAMPLE = {"--patient": "alice", "patient": "alice", "--to": "dr-lee", "--as": "dr-lee",
          "--trusted": "rosa", "--clinician": "dr-lee", "--device": "CGM-1", "name": "alice",
          "--name": "org2", "reader": "dr-lee", "--grant": "abc1", "--time": "1700000000000",
          "--model": "G7", "--version": "1.0.0", "--node-key": "node+1234+AAAA",
          "--stream": "cgm", "--member": "org1", "--orderer": "etcd://127.0.0.1:24999",
          "--endpoint": "http://127.0.0.1:24998", "--genesis": "genesis.json"}


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    cmd: Any

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def params(self) -> list[Any]:
        return [p for p in self.cmd.params if p.name != "help"]


def _walk(c: Any, path: tuple[str, ...] = ()) -> Iterator[Command]:
    if hasattr(c, "commands"):
        for n, sub in sorted(c.commands.items()):
            yield from _walk(sub, (*path, n))
    else:
        yield Command(path, c)


COMMANDS = list(_walk(ROOT))
IDS = [c.name for c in COMMANDS]


def _is_option(p: Any) -> bool:
    """An option (not an argument), whichever copy of click typer uses."""
    return getattr(p, "param_type_name", "") == "option"


def _flag(p: Any) -> str:
    return str(p.opts[0]) if _is_option(p) else str(p.name or "")


def _is_path(p: Any) -> bool:
    return "Path" in type(p.type).__name__


def _is_number(p: Any) -> bool:
    return type(p.type).__name__ in {"IntParamType", "FloatParamType", "IntRange", "FloatRange"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("usage")
    text = d / "input.json"
    text.write_text('{"stream": "cgm"}\n')
    binary = d / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    (d / "out").mkdir()
    node = d / "node"
    for args in (["init"], ["account", "create", "rosa", "--kind", "trusted"],
                 ["account", "create", "alice", "--kind", "patient", "--trusted", "rosa"],
                 ["account", "create", "bob", "--kind", "clinician"]):
        assert run([*args, "--data", str(node)]) == 0, args
    other = d / "other"
    assert run(["init", "--data", str(other), "--chain", "another/chain"]) == 0
    assert run(["checkpoint", "--data", str(other), "--out", str(d / "foreign.txt")]) == 0
    return {"dir": d, "text": text, "binary": binary, "node": node}


def _value(p: Any, files: dict[str, Path], file: Path | None = None) -> str:
    flag = _flag(p)
    if _is_path(p):
        if flag in FOLDERS:
            return str(files["node"])
        if flag in OUTPUTS:
            return str(files["dir"] / "out" / "result.txt")
        return str(file or files["text"])
    if _is_number(p):
        lo = getattr(p.type, "min", None)
        return str(lo if lo is not None else 1)
    choices = getattr(p.type, "choices", None)
    if choices:
        return str(next(iter(choices)))
    return SAMPLE.get(flag, "x")


def _args(c: Command, files: dict[str, Path], *, drop: Any | None = None,
          override: tuple[Any, str] | None = None) -> list[str]:
    """The command with every required parameter (and ``--data``) filled in."""
    args = list(c.path)
    for p in c.params():
        if p is drop:
            continue
        if override is not None and p is override[0]:
            value = override[1]
        elif p.required or _flag(p) == "--data":
            value = _value(p, files)
        else:
            continue
        args += [_flag(p), value] if _is_option(p) else [value]
    return args


def _call(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    os.environ["COLUMNS"] = "200"
    code = run(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (args, err)
    assert "unexpected error" not in err, (args, err)
    return code, out, err


def _assert_usage_error(args: list[str], code: int, err: str) -> None:
    assert code == common.EXIT_BAD_INPUT, (args, code, err)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, (args, err)  # one message
    assert "Usage: glucoledger" in err, (args, err)  # and the command's usage


def test_every_command_is_in_the_table() -> None:
    assert len(COMMANDS) > 40
    names = set(IDS)
    for expected in ("grant", "read", "readings", "device register", "device bind",
                     "device list", "device revoke", "account create", "erase",
                     "consortium propose", "consortium cosign", "consortium submit",
                     "research join", "research mine", "research withdraw"):
        assert expected in names, expected


#: Commands that list things: each takes ``--json`` (``read`` and ``readings`` take
#: ``--format json``), issue 13 "``--json`` on every listing command".
LISTINGS = {"account list", "audit", "batches", "blocks", "device list", "grants",
            "research mine"}
FORMATTED = {"read", "readings"}


def test_every_listing_command_takes_json() -> None:
    by_name = {c.name: c for c in COMMANDS}
    listing_like = {n for n in by_name if n.endswith((" list", " mine")) or n in LISTINGS}
    assert listing_like <= LISTINGS, listing_like - LISTINGS
    for name in LISTINGS:
        assert "--json" in {_flag(p) for p in by_name[name].params()}, name
    for name in FORMATTED:
        (fmt,) = [p for p in by_name[name].params() if _flag(p) == "--format"]
        assert "json" in common.FORMATS and "json" in fmt.help, name


@pytest.mark.parametrize("c", COMMANDS, ids=IDS)
def test_no_arguments(c: Command, files: dict[str, Path],
                      capsys: pytest.CaptureFixture[str]) -> None:
    required = [p for p in c.params() if p.required]
    if not required and c.name in LONG_RUNNING:
        pytest.skip(f"{c.name} without arguments runs until stopped or for minutes")
    args = [*c.path, "--data", str(files["dir"] / "empty")] if any(
        _flag(p) == "--data" for p in c.params()) else list(c.path)
    code, _, err = _call(args, capsys)
    if required:
        _assert_usage_error(args, code, err)
    else:  # nothing required: either it works or it says what is missing, in one message
        assert code in (0, 1, 2), (args, code, err)
        if code:
            assert len([ln for ln in err.splitlines() if ln.strip()]) >= 1


@pytest.mark.parametrize("c", COMMANDS, ids=IDS)
def test_missing_option(c: Command, files: dict[str, Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    required = [p for p in c.params() if p.required]
    if not required:
        pytest.skip("no required parameter")
    for p in required:
        args = _args(c, files, drop=p)
        code, _, err = _call(args, capsys)
        _assert_usage_error(args, code, err)
        assert (p.name or "").replace("_", "-").lower() in err.lower() or _flag(p) in err, err


@pytest.mark.parametrize("c", COMMANDS, ids=IDS)
def test_unknown_option(c: Command, files: dict[str, Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    args = [*_args(c, files), "--no-such-option"]
    code, _, err = _call(args, capsys)
    _assert_usage_error(args, code, err)
    assert "--no-such-option" in err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _call(["no-such-command"], capsys)
    _assert_usage_error(["no-such-command"], code, err)


@pytest.mark.parametrize("c", COMMANDS, ids=IDS)
def test_every_number_is_bounded_and_checked(c: Command, files: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    numbers = [p for p in c.params() if _is_number(p)]
    if not numbers:
        pytest.skip("no number parameter")
    for p in numbers:
        assert "Range" in type(p.type).__name__, f"{c.name} {_flag(p)} has no range"
        lo, hi = getattr(p.type, "min", None), getattr(p.type, "max", None)
        assert lo is not None and hi is not None, f"{c.name} {_flag(p)} needs both bounds"
        bad = ["abc", "1e999x", str(lo - 1), str(hi + 1)]
        if hi < 2**31:
            bad.append("99999999999")
        for text in bad:
            args = _args(c, files, override=(p, text))
            code, _, err = _call(args, capsys)
            _assert_usage_error(args, code, err)


@pytest.mark.parametrize("c", COMMANDS, ids=IDS)
def test_files_missing_directory_and_binary(c: Command, files: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths = [p for p in c.params() if _is_path(p) and _flag(p) not in FOLDERS]
    if not paths:
        pytest.skip("no file parameter")
    for p in paths:
        if _flag(p) in OUTPUTS:  # a file to write: its folder must exist and it is no folder
            for bad in (files["dir"] / "no-such-folder" / "x.txt", files["dir"]):
                args = _args(c, files, override=(p, str(bad)))
                code, _, err = _call(args, capsys)
                _assert_usage_error(args, code, err)
            continue
        for bad in (files["dir"] / "missing.json", files["dir"]):
            args = _args(c, files, override=(p, str(bad)))
            code, _, err = _call(args, capsys)
            _assert_usage_error(args, code, err)
        if p.name in BINARY_OK:
            continue
        args = _args(c, files, override=(p, str(files["binary"])))
        code, _, err = _call(args, capsys)
        assert code in (common.EXIT_OTHER, common.EXIT_BAD_INPUT, common.EXIT_VERIFICATION,
                        common.EXIT_DENIED), (args, code, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error ("), (args, err)


@pytest.mark.parametrize("c", COMMANDS, ids=IDS)
def test_every_option_has_help_and_every_command_an_example(c: Command) -> None:
    for p in c.params():
        if _is_option(p):
            assert p.help, f"{c.name} {_flag(p)} has no help text"
    assert c.cmd.help and "Example" in c.cmd.help, f"{c.name} has no example in its help"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _call(["--version"], capsys)
    assert code == 0 and re.fullmatch(
        r"glucoledger \d+\.\d+\.\d+\n(compiled|pure-Python) core: [^\n]+\n", out), out


def test_readme_exit_code_table_row_by_row(files: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """README: 0 success, 2 bad input, 3 verification failed, 4 permission denied, 1 other."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {int(n): what for n, what in re.findall(
        r"(\d) (success|bad input|verification failed|permission denied|other)", readme)}
    assert rows == {0: "success", 2: "bad input", 3: "verification failed",
                    4: "permission denied", 1: "other"}
    node = str(files["node"])
    checks = {
        0: ["verify", "--data", node],
        2: ["blocks", "--last", "abc", "--data", node],
        3: ["verify", "--data", node, "--from-checkpoint", str(files["dir"] / "foreign.txt")],
        4: ["read", "--as", "bob", "--patient", "alice", "--data", node],
        1: ["verify", "--data", str(files["dir"] / "not-a-node")],
    }
    assert set(checks) == set(rows)
    for code, args in checks.items():
        got, _, err = _call(args, capsys)
        assert got == code, (rows[code], args, got, err)


#: The mistakes the issue lists (each once ended in a traceback or a wrong exit code):
#: arguments (``{node}``, ``{dir}``, ``{text}`` filled in), exit code, words the message has.
ISSUE_CASES = [
    ([], 2, "Usage: glucoledger"),
    (["grant", "--patient", "alice"], 2, "Missing option '--to'"),
    (["no-such-command"], 2, "No such command"),
    (["read", "--as", "bob", "--patient", "alice", "--last-days", "abc"], 2, "not a valid"),
    (["read", "--as", "bob", "--patient", "alice", "--json"], 2, "No such option"),
    (["revoke", "--patient", "alice", "--grant", "13d94ff", "--data", "{node}"], 2,
     "no grant of this patient starts with 13d94ff"),
    (["revoke", "--patient", "alice", "--grant", "zz", "--data", "{node}"], 2,
     "at least 4 of its hex digits"),
    (["verify-proof", "{dir}/missing.json", "--node-key", "k"], 2, "does not exist"),
    (["verify", "--data", "{node}", "--from-checkpoint", "/nonexistent"], 2, "does not exist"),
    (["verify", "--data", "{text}"], 1, "point --data at a node folder"),
    (["batches", "--data", "{node}"], 2, "Missing option '--patient'"),
    (["report", "--patient", "alice", "--out", "{dir}/nodir/r.html", "--data", "{node}"], 2,
     "does not exist"),
    (["grant", "--patient", "alice", "--to", "bob", "--valid-days", "99999999", "--data",
      "{node}"], 2, "--valid-days"),
    (["grant", "--patient", "alice", "--to", "bob", "--last-days", "-5", "--data", "{node}"], 2,
     "--last-days"),
    (["grant", "--patient", "alice", "--to", "bob", "--last-days", "0", "--data", "{node}"], 2,
     "--last-days"),
    (["grant", "--patient", "alice", "--to", "bob", "--view", "full", "--data", "{node}"], 2,
     "'full' is not one of raw, summary"),
    (["grant", "--patient", "alice", "--to", "bob", "--streams", "cgm,foo", "--data",
      "{node}"], 2, "foo is not a stream"),
    (["grant", "--patient", "alice", "--to", "nobody", "--data", "{node}"], 1,
     "no account named 'nobody'"),
    (["read", "--as", "bob", "--patient", "alice", "--streams", "bogus", "--data", "{node}"], 2,
     "bogus is not a stream"),
    (["prove-reading", "--patient", "alice", "--time", "yesterday", "--out", "{dir}/p.json",
      "--data", "{node}"], 2, "not ISO 8601"),
    (["ingest", "{binary}", "--patient", "alice", "--device", "CGM-1", "--data", "{node}"], 2,
     "not a UTF-8 text file"),
    (["erase", "--patient", "alice", "--stream", "cgm", "--data", "{node}"], 2, "--yes"),
]


@pytest.mark.parametrize(("args", "code", "words"), ISSUE_CASES,
                         ids=[" ".join(a[:2]) or "(none)" for a, _, _ in ISSUE_CASES])
def test_the_mistakes_of_the_issue(args: list[str], code: int, words: str,
                                   files: dict[str, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    filled = [a.format(node=files["node"], dir=files["dir"], text=files["text"],
                       binary=files["binary"]) for a in args]
    got, out, err = _call(filled, capsys)
    assert got == code, (filled, got, out, err)
    assert words in out + err, (filled, out, err)

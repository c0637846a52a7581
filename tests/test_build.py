"""setup.py: a wheel build compiles the core's hot modules (src/glucoledger/_compiled.py)
with mypyc, and a machine whose C compiler fails still gets a working, pure-Python install.

Real builds: ``pip wheel`` in an isolated build environment (setuptools and mypy from the
package index, as ``pip install .`` does), once with the machine's compiler and once with a
compiler that fails. What the compiled modules do is tested by CI running the core's tests
on an installed wheel (.ci/run, after the Quick start's test command).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from glucoledger._compiled import MODULES
from tests.builds import STATE_COMPILED

ROOT = Path(__file__).resolve().parents[1]


def test_every_listed_module_is_a_source_file() -> None:
    for name in MODULES:
        assert (ROOT / "src" / (name.replace(".", "/") + ".py")).is_file(), name


#: What an earlier build left in the tree's build/ (pip builds in the source tree): an
#: extension of a module no longer compiled, which must not ship in the next wheel.
STALE = (f"build/lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}/glucoledger/"
         f"names{EXTENSION_SUFFIXES[0]}")


def _wheel(tmp_path: Path, **env: str) -> tuple[set[str], str]:
    if shutil.which("cc") is None and "CC" not in env:
        pytest.skip("no C compiler on this machine (.ci/run installs gcc)")
    out = tmp_path / "wheel"
    src = tmp_path / "src"  # a copy: the build writes build/ and egg-info into its tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "test-artifacts", "node_modules", "__pycache__",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.so"))
    (src / STALE).parent.mkdir(parents=True)
    (src / STALE).write_bytes(b"an extension an earlier build left")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w",
                        str(out), str(src)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = out.glob("glucoledger-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist()), r.stdout + r.stderr


def _extension(names: set[str], module: str) -> bool:
    stem = module.replace(".", "/") + "."
    return any(n.startswith(stem) and n.endswith(".so") for n in names)


def test_a_wheel_compiles_every_listed_module(tmp_path: Path) -> None:
    names, _ = _wheel(tmp_path)
    assert all(_extension(names, m) for m in MODULES), sorted(n for n in names if ".so" in n)
    assert all(m.replace(".", "/") + ".py" in names for m in MODULES)  # the source too
    assert not [n for n in names if n.startswith("glucoledger/names.")
                and not n.endswith(".py")]  # nothing stale from build/


def test_a_failing_compiler_installs_pure_python_and_says_so(tmp_path: Path) -> None:
    names, log = _wheel(tmp_path, CC="false", LDSHARED="false")
    assert not [n for n in names if n.endswith(".so")]  # all or nothing, never a part
    assert all(m.replace(".", "/") + ".py" in names for m in MODULES)
    assert "glucoledger: the C compiler could not build the compiled modules" in log


def _declared_fields(tree: ast.Module, name: str) -> list[str]:
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    return [s.target.id for s in cls.body if isinstance(s, ast.AnnAssign)
            and isinstance(s.target, ast.Name) and "ClassVar" not in ast.unparse(s.annotation)]


def test_the_compiled_modules_dataclasses_have_the_fields_their_source_declares() -> None:
    """mypyc (2.4) lists every class attribute of a compiled class in its
    ``__annotations__``: a ``ClassVar`` without its wrapper, a plain ``WIRE = {...}`` with
    its inferred type. ``dataclass`` would take either for a field, silently, so a compiled
    module declares no class constant on a dataclass (``state.machine.wire_names`` keeps
    the state machine's beside it). Run on both builds (.ci/run)."""
    for name in MODULES:
        module = importlib.import_module(name)
        source = (ROOT / "src" / (name.replace(".", "/") + ".py")).read_text()
        tree = ast.parse(source)
        assert "ClassVar" not in source, f"{name}: no ClassVar in a compiled module"
        for obj in vars(module).values():
            if (dataclasses.is_dataclass(obj) and isinstance(obj, type)
                    and obj.__module__ == name):
                own = [f.name for f in dataclasses.fields(obj)]
                assert own == _declared_fields(tree, obj.__name__), (name, obj.__name__)


@pytest.mark.skipif(not STATE_COMPILED, reason="the same build on both sides: nothing to compare")
def test_a_chain_either_build_writes_verifies_with_the_other(tmp_path: Path) -> None:
    """A consortium's members may run either build: the pure source's chain (the demo's
    every kind of transaction, refusals included) re-derives to the same blocks on the
    compiled wheel, and the wheel's on the source."""
    pure = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    builds = {"source": pure, "wheel": {k: v for k, v in os.environ.items()
                                        if k != "PYTHONPATH"}}

    def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "glucoledger", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)

    assert "pure-Python core" in run(["--version"], builds["source"]).stdout
    assert "compiled core: all" in run(["--version"], builds["wheel"]).stdout
    for writer, reader in (("source", "wheel"), ("wheel", "source")):
        data = tmp_path / writer
        for args, env in ((["demo", "--data", str(data)], builds[writer]),
                          (["verify", "--data", str(data)], builds[reader])):
            r = run(args, env)
            assert r.returncode == 0, (writer, args[0], r.stdout[-2000:], r.stderr[-2000:])
        assert "OK:" in r.stdout and "rejected" in r.stdout, r.stdout[-2000:]

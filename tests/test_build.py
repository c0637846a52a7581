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


def test_no_compiled_class_aliases_a_method() -> None:
    """``__str__ = __repr__`` in a compiled class body looks the method up in a namespace
    mypyc never filled: the KeyError stays pending and a later, unrelated call raises it
    (seen as a SystemError in cryptography's key classes). Write a method that calls the
    other."""
    for name in MODULES:
        tree = ast.parse((ROOT / "src" / (name.replace(".", "/") + ".py")).read_text())
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name):
                    assert stmt.value.id not in methods, (
                        f"{name}.{cls.name}: {ast.unparse(stmt)} aliases a method")


def _written_inits(name: str) -> list[tuple[type, ast.FunctionDef]]:
    """The dataclasses of compiled module ``name`` that write their own ``__init__``
    (``init=False``), with that function's source."""
    module = importlib.import_module(name)
    tree = ast.parse((ROOT / "src" / (name.replace(".", "/") + ".py")).read_text())
    out = []
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        obj = getattr(module, cls.name, None)
        if not (dataclasses.is_dataclass(obj) and isinstance(obj, type)):
            continue
        inits = [f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
        if obj.__dataclass_params__.init:  # type: ignore[attr-defined]
            assert not inits, f"{name}.{cls.name}: a written __init__ needs init=False"
            continue
        assert len(inits) == 1, f"{name}.{cls.name}: init=False, but no __init__ written"
        out.append((obj, inits[0]))
    return out


def _assigned(init: ast.FunctionDef) -> list[str]:
    """The attributes ``init`` sets: ``object.__setattr__(self, "x", ...)`` or ``self.x = ...``."""
    out = []
    for node in ast.walk(init):
        if (isinstance(node, ast.Call) and ast.unparse(node.func) == "object.__setattr__"
                and isinstance(node.args[1], ast.Constant)):
            out.append(node.args[1].value)
        elif isinstance(node, ast.Assign):
            out += [t.attr for t in node.targets if isinstance(t, ast.Attribute)
                    and ast.unparse(t.value) == "self"]
    return out


def test_a_compiled_dataclass_that_writes_its_init_takes_and_sets_every_field() -> None:
    """mypyc compiles a dataclass's methods written in the source, but ``__init__`` made by
    ``dataclass`` stays interpreted (a Python frame a construction: about 1 us against 0.08
    for a written one). The classes built once a transaction write theirs (``init=False``);
    this holds each to what ``dataclass`` would have made: the init fields as parameters in
    order, with their defaults, and every field (init fields or not) set exactly once."""
    checked = 0
    for name in MODULES:
        module = importlib.import_module(name)
        for obj, init in _written_inits(name):
            where = f"{name}.{obj.__name__}"
            fields = dataclasses.fields(obj)
            wanted = [f for f in fields if f.init]
            params = init.args.args[1:]
            assert [p.arg for p in params] == [f.name for f in wanted], where
            assert not (init.args.vararg or init.args.kwonlyargs or init.args.kwarg), where
            defaults = dict(zip([p.arg for p in params][len(params) - len(init.args.defaults):],
                                init.args.defaults, strict=True))
            for f in wanted:
                if f.default is dataclasses.MISSING:
                    assert f.name not in defaults, f"{where}.{f.name} has no default"
                else:
                    given = eval(ast.unparse(defaults[f.name]), vars(module))  # noqa: S307
                    assert given is f.default or (type(given) is type(f.default)
                                                  and given == f.default), f"{where}.{f.name}"
            assert sorted(_assigned(init)) == sorted(f.name for f in fields), where
            checked += 1
    assert checked >= 13  # the per-transaction classes named in _compiled.py (13 today)

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

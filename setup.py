"""The wheel build: pyproject.toml holds the metadata; this file adds the compiled modules.

``pip install .`` (a wheel) compiles the modules ``src/glucoledger/_compiled.py`` lists with
mypyc, the compiler that ships with mypy: the same typed source as C extensions; commit and
`verify` ran 1.2-1.4x as fast as the same code in Python (README, Performance). An editable
install (``pip install -e .``, where edits must take effect) and ``GLUCOLEDGER_PURE=1``
build none. Without a C compiler or Python's headers the build says so and installs the
pure-Python modules, which give the same results: no compiled module is needed for
anything to work, and no partial set is ever installed.
"""

from __future__ import annotations

import os
import runpy
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def _warn(message: str) -> None:
    print(f"glucoledger: {message}; installing the pure-Python modules (same results, "
          "slower; README, Performance)", file=sys.stderr)


def _compiled() -> list[Any]:
    if "bdist_wheel" not in sys.argv or os.environ.get("GLUCOLEDGER_PURE") == "1":
        return []
    names = runpy.run_path(str(HERE / "src" / "glucoledger" / "_compiled.py"))["MODULES"]
    paths = ["src/" + name.replace(".", "/") + ".py" for name in names]
    # The build environment holds setuptools and mypy only: the packages the modules import
    # (cbor2, cryptography, PyNaCl) are typed Any there, which compiles to the same checks
    # as the interpreter's. `mypy --strict src` in CI checks the types against them.
    flags = ["--ignore-missing-imports", "--no-warn-return-any", "--no-warn-unused-ignores"]
    try:
        from mypyc.build import mypycify
        return list(mypycify([*flags, *paths], opt_level="3"))
    except (Exception, SystemExit) as exc:  # mypy missing or refusing the source
        _warn(f"mypyc could not translate the compiled modules ({exc})")
        return []


class _BuildExt(build_ext):
    """build_ext that falls back to pure Python as a whole when the C compiler fails."""

    def run(self) -> None:
        # pip builds in the source tree: what an earlier build left in build/ (a module since
        # dropped from the list, or the whole set before a failed compile) would otherwise
        # ship in this wheel and shadow the source it was compiled from.
        for path in Path(self.build_lib).rglob("*"):
            if path.name.endswith(tuple(EXTENSION_SUFFIXES)):
                path.unlink()
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python.h
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            _warn(f"the C compiler could not build the compiled modules ({exc})")


setup(ext_modules=_compiled(), cmdclass={"build_ext": _BuildExt})

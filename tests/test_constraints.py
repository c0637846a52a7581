"""Dependencies are pinned: bounds on both sides in pyproject.toml, exact versions in
constraints.txt (what the suite ran with), and CI installs with those constraints."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


#: Extras the tests do not install (the slow UVA/Padova simulator adapter).
NOT_TESTED = {"sim"}


def _requirements(*, tested_only: bool = False) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for name, extra in project["optional-dependencies"].items():
        if not (tested_only and name in NOT_TESTED):
            reqs += [Requirement(r) for r in extra]
    return reqs


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_dependency_has_a_lower_and_an_upper_bound() -> None:
    for req in _requirements():
        ops = {s.operator for s in req.specifier}
        assert ops & {">=", ">", "~=", "=="}, f"{req} has no lower bound"
        assert ops & {"<", "<=", "~=", "=="}, f"{req} has no upper bound"


def test_every_pin_is_inside_the_bounds() -> None:
    pins = _pins()
    for req in _requirements(tested_only=True):
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_the_suite_runs_with_the_pinned_versions() -> None:
    """The direct dependencies installed now are the pinned ones (else regenerate the file)."""
    pins = _pins()
    for req in _requirements(tested_only=True):
        name = canonicalize_name(req.name)
        if name not in pins:
            continue
        installed = Version(metadata.version(req.name))
        assert installed == pins[name], (f"{req.name} {installed} is installed but "
                                         f"constraints.txt pins {pins[name]}")


def test_ci_installs_with_the_constraints_and_runs_ruff_and_mypy() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip install [^\n]*-c constraints\.txt", ci)
    assert "PIP_CONSTRAINT=" in ci  # the README's own install command is constrained too
    assert "ruff check src tests" in ci and "mypy --strict src" in ci

"""Imports point inward (STYLE.md practice 1 and 10): the service layer and the core never
import the HTTP edge. Checked on the source text with ``ast``, so a lazy import inside a
function counts as much as one at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "glucoledger"
INNER = ["node", "ordering", "ledger", "state", "crypto", "vault"]


def _imports(path: Path, root: Path = SRC.parent) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return out


@pytest.mark.parametrize("package", INNER)
def test_inner_packages_do_not_import_the_http_edge(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules found under {package}: the check would prove nothing"
    bad = [f"{f.relative_to(SRC)}:{line} imports {name}" for f in files
           for line, name in _imports(f)
           if name == "glucoledger.api" or name.startswith("glucoledger.api.")]
    assert not bad, "the service layer reaches into the HTTP edge:\n" + "\n".join(bad)


def test_the_checker_sees_a_relative_import_of_api(tmp_path: Path) -> None:
    # The same resolution, on a module that does import api: the test can fail.
    probe = tmp_path / "glucoledger" / "node" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..api.auth import x\n")
    assert "glucoledger.api.auth" in [n for _, n in _imports(probe, tmp_path)]

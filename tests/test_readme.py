"""The README's Quick start is exactly two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def test_two_commands() -> None:
    blocks = quick_start()
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    assert "glucoledger demo" in blocks[0]
    assert "pytest" in blocks[1] and ".[test]" in blocks[1]


def test_ci_runs_the_readme_test_command() -> None:
    assert quick_start()[1] in (ROOT / ".ci" / "run").read_text()

"""The README's one-machine walk-through ("Run a consortium between three organizations"),
run as written: `cluster up`, rotating org-1's TLS certificate authority by governance, and
replacing org-2 after it lost its folder. Only the folder and the ports change (this run's
``GLUCOLEDGER_TEST_PORTS``), and ``glucoledger`` is this interpreter's module."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from glucoledger.node import devcluster

from .conftest import ports_in_range, require_etcd

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- walkthrough -->\n```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_block_is_there_and_covers_rotation_and_replacement() -> None:
    lines = walkthrough()
    assert lines[0].startswith("D=") and lines[-1] == "glucoledger cluster down --dir $D"
    joined = "\n".join(lines)
    for step in ("cluster up", "consortium rotate-cert", "propose rotate-cert",
                 "cluster restart-etcd", "consortium rejoin", "cluster start-node",
                 "propose member-remove"):
        assert step in joined, step


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    require_etcd()
    d = tmp_path / "demo"
    port = ports_in_range(9 + 2)
    script = ["set -euo pipefail", f"glucoledger() {{ {shlex.quote(sys.executable)} -m "
              "glucoledger \"$@\"; }"]
    for line in walkthrough():
        if line.startswith("D="):
            line = f"D={shlex.quote(str(d))}"
        elif line.startswith("glucoledger cluster up"):
            line += f" --base-port {port}"
        script.append(f"echo '+ {line.replace(chr(39), '')}'")
        script.append(line)
    env = {**os.environ, "COLUMNS": "400"}
    try:
        done = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                              timeout=devcluster.patience(400), env=env, check=False)
    finally:
        if (d / "consortium.json").exists():  # a failed step: stop what it started
            devcluster.down(d)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    receipts = re.findall(r"block \d+ index \d+: (\w+)", out)
    assert receipts == ["ok", "ok", "ok"], out[-4000:]  # rotation, threshold, removal
    # The last status (org-1's, after the removal): org-2 is no longer a member.
    assert re.search(r'"members": \[\s*"org-0",\s*"org-1"\s*\]', out), out[-4000:]
    assert out.count("restarted etcd") == 3
    assert "verified and stored" in out
    assert "org-2: control" in out

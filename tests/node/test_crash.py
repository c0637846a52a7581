"""kill -9 at random moments while appending: after restart, verify passes and every
acknowledged transaction is there, exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glucoledger.node.service import Node, verify_folder

WORKER = Path(__file__).with_name("crash_worker.py")


def _trial(folder: Path, seed: int) -> int:
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(folder), str(rng.choice([1, 5, 50]))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    time.sleep(rng.uniform(0.02, 0.4))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    acked = [line.split()[1] for line in out.splitlines() if line.startswith("ack ")
             and len(line.split()) == 2 and len(line.split()[1]) == 64]
    with Node(folder, workers=1) as node:
        node.sync()
        for h in acked:
            found = node.store.find_results([bytes.fromhex(h)]).get(bytes.fromhex(h), [])
            assert len(found) == 1, f"acknowledged transaction {h[:16]} is missing or doubled"
    verify_folder(folder, workers=1)
    return len(acked)


def _run(tmp_path: Path, trials: int) -> None:
    folder = tmp_path / "node"
    Node.init(folder, workers=1).close()
    total = 0
    for seed in range(trials):
        total += _trial(folder, seed)
    assert total > 0, "the worker acknowledged nothing in any trial: the test proved nothing"


def test_kill9_while_appending_quick(tmp_path: Path) -> None:
    _run(tmp_path, 5)


@pytest.mark.slow
def test_kill9_while_appending_50_trials(tmp_path: Path) -> None:
    _run(tmp_path, 50)

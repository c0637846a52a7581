"""status.json is rewritten when it would say something new, and at least every heartbeat."""

from __future__ import annotations

import json
import time
from pathlib import Path

from glucoledger.node.consortium import Status, StatusFile


def test_status_is_written_on_change_and_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    out = StatusFile(path, heartbeat=3600.0)
    status = Status("org-a")
    assert out.write(status)  # the first round always writes
    first = json.loads(path.read_text())
    assert first["name"] == "org-a" and first["updated"] > 0
    mtime = path.stat().st_mtime_ns

    assert not out.write(status)  # nothing new: the file is left as it is
    assert path.stat().st_mtime_ns == mtime and json.loads(path.read_text()) == first

    status.final_height = 7
    assert out.write(status)
    assert json.loads(path.read_text())["final_height"] == 7

    status.diverged.append({"member": "org-b", "height": 7})  # a list changed in place
    assert out.write(status)
    assert json.loads(path.read_text())["diverged"] == [{"member": "org-b", "height": 7}]
    assert not out.write(status)
    assert not (tmp_path / "status.json.tmp").exists()


def test_an_unchanged_status_is_rewritten_after_the_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    out = StatusFile(path, heartbeat=0.05)
    status = Status("org-a")
    assert out.write(status)
    before = json.loads(path.read_text())["updated"]
    assert not out.write(status)
    time.sleep(0.06)
    assert out.write(status)  # the loop is alive: ``updated`` moves on
    assert json.loads(path.read_text())["updated"] > before

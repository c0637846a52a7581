"""Output in a locale that is not UTF-8: characters it cannot show are replaced, never a
crash after the work was done (the C locale without UTF-8 coercion is ASCII)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .test_cli import run


def test_verify_and_listings_in_an_ascii_locale(tmp_path: Path) -> None:
    d = tmp_path / "clinic"
    assert run("init", "--data", str(d)).returncode == 0
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONIOENCODING", "PYTHONUTF8") and not k.startswith("LC_")}
    env.update({"PYTHONPATH": os.pathsep.join(sys.path), "LC_ALL": "C", "LANG": "C",
                "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"})
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdout.encoding)"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().lower() in ("ascii", "ansi_x3.4-1968"), probe.stdout
    for args in (["verify"], ["blocks"], ["account", "list"]):
        r = subprocess.run([sys.executable, "-m", "glucoledger", *args, "--data", str(d)],
                           env=env, capture_output=True, timeout=300, check=False)
        err = r.stderr.decode("ascii", "replace")
        assert r.returncode == 0, (args, err)
        assert b"unexpected error" not in r.stderr and b"Traceback" not in r.stderr
    assert b"OK" in subprocess.run(
        [sys.executable, "-m", "glucoledger", "verify", "--data", str(d)], env=env,
        capture_output=True, timeout=300, check=False).stdout

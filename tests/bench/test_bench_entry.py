"""What a person typing a benchmark's command gets: a Ctrl-C while it runs ends in
"aborted" and exit 130 (``runtime.interruptible``; its ``finally`` clean-up runs on the way
out), and a wrong argument in a usage message, never a Python traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from glucoledger.runtime import EXIT_INTERRUPTED

#: Unbuffered, as a person watching a benchmark sees its lines: its first line then says the
#: work has begun, and a closed pipe is met while it runs, not only at exit.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}


def test_ctrl_c_while_a_benchmark_runs_says_aborted() -> None:
    # a run far longer than the test: the interrupt lands in the middle of the work
    with subprocess.Popen([sys.executable, "-m", "glucoledger.bench.merkle", "20000000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=ENV) as p:
        try:
            assert p.stdout is not None
            first = p.stdout.readline()  # the modules are loaded, the work begins
            assert first.startswith("machine load at start"), first
            time.sleep(0.5)
            p.send_signal(signal.SIGINT)
            _out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    assert (p.returncode, err) == (EXIT_INTERRUPTED, "aborted\n"), (p.returncode, err)


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    """``| head``: the reader closes the pipe; Python said BrokenPipeError with a traceback."""
    r = subprocess.run(f'"{sys.executable}" -m glucoledger.bench.merkle 2000 | head -c 1',
                       shell=True, capture_output=True, text=True, timeout=120, env=ENV,
                       check=False)
    assert r.stdout == "m" and r.stderr == "", r


@pytest.mark.parametrize("module", ["ledger", "merkle"])
@pytest.mark.parametrize("argument", ["twenty", "0"])
def test_a_wrong_count_gets_a_usage_message(module: str, argument: str) -> None:
    """These two took ``int(sys.argv[1])``: "twenty" ended in a ValueError's traceback."""
    r = subprocess.run([sys.executable, "-m", f"glucoledger.bench.{module}", argument],
                       capture_output=True, text=True, timeout=60, env=ENV, check=False)
    assert r.returncode == 2 and "usage:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == "", r


@pytest.mark.parametrize(("module", "hidden", "package"), [
    ("consortium", "psutil", "psutil"), ("ingest", "psutil", "psutil"),
    ("server", "psutil", "psutil"), ("zk", "py_ecc", "py-ecc")])
def test_a_missing_measuring_package_is_named_before_any_work(module: str, hidden: str,
                                                               package: str) -> None:
    """``pip install .`` brings no psutil or py_ecc (the test extra does): the benchmark
    that measures with one said ModuleNotFoundError with a traceback, minutes in."""
    run = ("import runpy, sys; sys.modules[sys.argv[1]] = None; sys.argv = sys.argv[2:]; "
           "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
    r = subprocess.run([sys.executable, "-c", run, hidden, f"glucoledger.bench.{module}"],
                       capture_output=True, text=True, timeout=120, env=ENV, check=False)
    assert r.returncode == 1 and r.stdout == "", r
    assert f"needs {package}" in r.stderr and f"pip install '{package}'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr

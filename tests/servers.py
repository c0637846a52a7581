"""Loopback servers for tests: free ports, ``glucoledger serve`` processes, uvicorn threads,
etcd members and local consortia.

Every test that binds a port takes it from here, so one environment variable keeps a run
inside its own range on a machine shared by several runs: ``GLUCOLEDGER_TEST_PORTS=lo-hi``.
Without it a single port is the system's choice and a run of consecutive ports (an etcd
cluster, a consortium) is drawn from ``DEFAULT_RANGE``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from glucoledger.bench.common import parse_port_range, port_is_free
from glucoledger.errors import GlucoledgerError
from glucoledger.node import devcluster
from glucoledger.ordering.cluster import ClusterError, EtcdCluster, find_etcd

__all__ = ["DEFAULT_RANGE", "ServeProcess", "UvicornThread", "cli_env", "free_port", "free_ports",
           "local_consortium", "port_range", "require_etcd", "start_etcd", "wait_until"]

SRC = Path(__file__).resolve().parents[1] / "src"
DEFAULT_RANGE = (27100, 27199)


def port_range() -> tuple[int, int] | None:
    """``GLUCOLEDGER_TEST_PORTS`` as ``(lo, hi)`` (parsed as the benchmarks' ``--port-range``),
    or None when unset."""
    span = os.environ.get("GLUCOLEDGER_TEST_PORTS")
    if not span:
        return None
    ports = parse_port_range(span)
    return ports.start, ports.stop - 1


def free_port() -> int:
    """A free loopback port: one of ``GLUCOLEDGER_TEST_PORTS`` in random order, or the
    system's choice when the variable is unset."""
    span = port_range()
    if span is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    lo, hi = span
    for port in random.sample(range(lo, hi + 1), hi - lo + 1):
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports in ``GLUCOLEDGER_TEST_PORTS`` (or
    ``DEFAULT_RANGE``), for servers that take a base port and count up from it."""
    lo, hi = port_range() or DEFAULT_RANGE
    starts = list(range(lo, hi - count + 2))
    random.Random(os.getpid() ^ time.time_ns()).shuffle(starts)
    for start in starts:
        if all(port_is_free(p) for p in range(start, start + count)):
            return start
    raise RuntimeError(f"no {count} consecutive free ports in {lo}-{hi}")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m glucoledger`` child: this checkout's sources first."""
    path = os.pathsep.join([str(SRC), *sys.path])
    return {**os.environ, "PYTHONPATH": path, **extra}


class ServeProcess:
    """``glucoledger serve`` (``--demo`` by default) in its own process on a free port;
    ready once ``ready`` answers 200. ``stop()`` interrupts it and returns its output.

    ``env``: variables added to its environment. ``stop_signal``: what ``stop`` sends first
    (SIGINT as a person's Ctrl-C; SIGTERM as a service manager). ``GLUCOLEDGER_TEST_SERVE_ARGS``
    (e.g. ``--workers 2``) is added to the arguments unless they already name ``--workers``."""

    def __init__(self, folder: Path, *extra: str, demo: bool = True,
                 ready: str = "/api/status", timeout: float = 120,
                 output: bool = True, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGINT) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_signal = stop_signal
        more = os.environ.get("GLUCOLEDGER_TEST_SERVE_ARGS", "").split()
        args = [sys.executable, "-m", "glucoledger", "serve", *(["--demo"] if demo else []),
                "--data", str(folder), "--port", str(self.port), *extra,
                # e.g. "--workers 2": the same tests through HTTP worker processes
                *([] if "--workers" in extra else more)]
        # A file, not a pipe: a chatty server never blocks on a full pipe nobody reads.
        self._log = tempfile.TemporaryFile() if output else None
        self.proc = subprocess.Popen(args, stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, env=cli_env(**(env or {})))
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.stop()
                raise RuntimeError(f"the server did not start: {out[-2000:]}")
            time.sleep(0.3)

    def output(self) -> str:
        """What the process has written so far (empty if discarded). Read with ``pread``: the
        process shares the file's offset, and moving it would make it write over its log."""
        if self._log is None or self._log.closed:
            return ""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def stop(self, wait: float = 30) -> str:
        """``stop_signal``, then SIGKILL after ``wait`` s; the process's output (empty if
        discarded). Stopping twice is harmless."""
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        out = self.output()
        if self._log is not None:
            self._log.close()
        return out


class UvicornThread:
    """An ASGI app served by uvicorn in a daemon thread on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def require_etcd() -> None:
    """Skip, saying what to install, where etcd is missing."""
    try:
        find_etcd()
    except ClusterError:
        pytest.skip("etcd not installed: apt-get install etcd-server")


def start_etcd(folder: Path, base_port: int | None = None, ids: Any = None, *,
               members: int = 1) -> EtcdCluster:
    """A real etcd cluster of ``members`` on free ports (two each; or from ``base_port``),
    started and healthy; the caller stops it. Skips where etcd is not installed."""
    require_etcd()
    base = free_ports(2 * members) if base_port is None else base_port
    cluster = EtcdCluster(members, folder, base, ids)
    cluster.start()
    try:
        cluster.wait_healthy(devcluster.patience(30))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def local_consortium(base: Path, members: int = 3, *, tls: bool = True, rules: int = 2,
                     access_records: int = 2) -> Iterator[dict[str, Any]]:
    """A real local consortium (``members`` etcd members and ``glucoledger node``
    processes, devcluster.up) on free ports; its state, torn down afterwards. ``rules``,
    ``access_records``: the chain's versions (older ones: a chain founded before them)."""
    require_etcd()
    state = devcluster.up(base, members, base_port=free_ports(3 * members + 2), tls=tls,
                          rules=rules, access_records=access_records)
    try:
        yield state
    finally:
        devcluster.down(base)


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` until truthy; ``timeout`` is stretched on a busy machine
    (``devcluster.patience``), so a slow start-up does not read as a failure."""
    timeout = devcluster.patience(timeout)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (GlucoledgerError, OSError, ValueError):
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")

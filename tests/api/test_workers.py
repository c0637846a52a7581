"""``glucoledger serve --workers 2`` (api/workers.py) as a real process tree, over real TCP.

Which worker answers is in ``x-glucoledger-worker`` (only with GLUCOLEDGER_WORKER_HEADER=1,
set here); a client keeps its keep-alive connection, so a client "on worker 1" sends every
request through worker 1. The security state lives in the ordering process only, so:
a session opened through one worker works through the other (and its CSRF token is checked
there), an RFC 9421 request replayed through the other worker is refused, failed logins
through both workers count against one address, and a refused request changes nothing.
The last test kills a worker: the node stops as a whole (fail-stop), leaving no process.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glucoledger.crypto.httpsig import sign_request
from glucoledger.node.keystore import Wallet, load_master_key

from ..servers import ServeProcess
from .conftest import free_port

UPLOADER = hashlib.sha1(b"alice-uploader-secret").hexdigest()


class Tree:
    """``serve --demo --workers 2`` on a free port; the operator's wallet for keys."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server = ServeProcess(folder, "--insecure-cookies", "--workers", "2",
                                   env={"GLUCOLEDGER_WORKER_HEADER": "1"}, timeout=180)
        self.proc, self.port, self.url = self.server.proc, self.server.port, self.server.url
        self.wallet = Wallet(folder, load_master_key(folder))
        self.clients: list[httpx.Client] = []

    def workers(self) -> list[int]:
        """The worker processes' pids (the children of the ordering process)."""
        import psutil  # type: ignore[import-untyped]

        return [c.pid for c in psutil.Process(self.proc.pid).children()]

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.stop()

    def on(self, worker: int, addr: str = "127.0.0.1") -> httpx.Client:
        """A keep-alive client whose connection is served by ``worker``."""
        for _ in range(64):
            c = httpx.Client(base_url=self.url, timeout=30,
                             transport=httpx.HTTPTransport(local_address=addr))
            r = c.get("/api/v1/status.json")
            if r.headers.get("x-glucoledger-worker") == str(worker):
                self.clients.append(c)
                return c
            c.close()
        raise AssertionError(f"64 connections and none served by worker {worker}")

    def signed_headers(self, who: str, method: str, path: str, body: bytes = b""
                       ) -> dict[str, str]:
        key = self.wallet.load(who if who == "org" else f"{who}.1")
        h = {"content-type": "application/json"} if body else {}
        h.update(sign_request(key, method=method, url=self.url + path, body=body,
                              nonce=secrets.token_hex(12)))
        return h


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    t = Tree(tmp_path_factory.mktemp("workers") / "node")
    try:
        yield t
    finally:
        t.stop()


def _grants(tree: Tree) -> Any:
    c = tree.on(0)
    r = c.get("/api/grants", headers=tree.signed_headers("alice", "GET", "/api/grants"))
    assert r.status_code == 200, r.text
    return r.json()


def test_two_worker_processes_answer_and_hold_no_node(tree: Tree) -> None:
    seen = {tree.on(w).get("/api/status").headers["x-glucoledger-worker"] for w in (0, 1)}
    assert seen == {"0", "1"}
    pids = tree.workers()
    assert len(pids) == 2
    import psutil

    for pid in pids:  # a worker opens neither the chain nor the vault nor the wallet
        files = [f.path for f in psutil.Process(pid).open_files()]
        assert not [f for f in files if f.startswith(str(tree.folder))], files


def _peer_socket_option(pid: int, fd: int, level: int, option: int) -> int:
    """``getsockopt`` on descriptor ``fd`` of process ``pid`` (pidfd_getfd, Linux 5.6)."""
    import ctypes
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd on x86-64 and arm64
        if got < 0:
            err = ctypes.get_errno()
            pytest.skip(f"pidfd_getfd is not allowed here ({os.strerror(err)})")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=got) as s:
        return s.getsockopt(level, option)


def test_a_worker_answers_without_waiting_for_delayed_acks(tree: Tree) -> None:
    """Each connection a worker accepts has TCP_NODELAY, as uvicorn's own sockets do.

    Without it an answer's second write (the body after the head) waited for the client's
    delayed ACK: 44 ms a request on a keep-alive connection. Read from the worker's own
    descriptor for the connection this test holds open (its local port names it)."""
    import socket

    import psutil

    c = tree.on(0)
    local = c.get("/api/v1/status.json")  # the connection is open and served by worker 0
    assert local.status_code == 200
    worker = next(pid for pid in tree.workers() if any(
        conn.laddr and conn.laddr.port == tree.port and conn.status == "ESTABLISHED"
        for conn in psutil.Process(pid).net_connections("tcp")))
    accepted = [conn for conn in psutil.Process(worker).net_connections("tcp")
                if conn.laddr and conn.laddr.port == tree.port
                and conn.status == "ESTABLISHED"]
    assert accepted
    for conn in accepted:
        assert _peer_socket_option(worker, conn.fd, socket.IPPROTO_TCP,
                                   socket.TCP_NODELAY) == 1, conn


def test_a_session_opened_on_one_worker_works_on_the_other(tree: Tree) -> None:
    a, b = tree.on(0), tree.on(1)
    r = a.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]
    b.cookies.update(a.cookies)
    me = b.get("/api/me")
    assert me.status_code == 200 and me.json()["name"] == "alice", me.text
    assert me.headers["x-glucoledger-worker"] == "1"
    before = _grants(tree)
    # A state change through worker 1 needs the CSRF token worker 0's login returned.
    body = {"grantee": "dr-kim", "streams": ["cgm"], "view": "summary", "last_days": 7,
            "valid_days": 7}
    wrong = b.post("/api/grants", json=body, headers={"x-csrf-token": "not-the-token"})
    assert wrong.status_code == 401, wrong.text
    assert _grants(tree) == before  # refused: nothing changed
    ok = b.post("/api/grants", json=body, headers={"x-csrf-token": csrf})
    assert ok.status_code == 201, ok.text
    assert len(_grants(tree)) == len(before) + 1
    # Logging out through worker 0 ends the session for worker 1 too.
    assert a.delete("/api/session", headers={"x-csrf-token": csrf}).status_code in (200, 204)
    assert b.get("/api/me").status_code == 401


def test_a_signed_request_replayed_through_the_other_worker_is_refused(tree: Tree) -> None:
    body = json.dumps({"grantee": "dr-kim", "streams": ["cgm"], "view": "summary",
                       "last_days": 3, "valid_days": 3}).encode()
    h = tree.signed_headers("alice", "POST", "/api/grants", body)
    before = _grants(tree)
    first = tree.on(0).post("/api/grants", content=body, headers=h)
    assert first.status_code == 201, first.text
    again = tree.on(1).post("/api/grants", content=body, headers=h)
    assert again.status_code == 401, again.text
    assert again.headers["x-glucoledger-worker"] == "1"
    assert "nonce" in again.json()["message"].lower() or "replay" in again.json()["message"]
    assert len(_grants(tree)) == len(before) + 1  # the replay changed nothing


def test_login_backoff_counts_failures_through_every_worker(tree: Tree) -> None:
    addr = "127.0.0.77"  # this test's own client address
    a, b = tree.on(0, addr), tree.on(1, addr)
    codes = []
    for i in range(6):  # LOGIN_FAILS (5) free failures, alternating workers, then waits
        c = a if i % 2 == 0 else b
        codes.append(c.post("/api/session", json={"name": "alice",
                                                  "password": f"wrong-{i}"}).status_code)
    assert codes[:5] == [401] * 5, codes
    for c in (a, b):  # both workers now refuse this address, even the right password
        r = c.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
        assert r.status_code == 429, (r.status_code, r.text)
        assert int(r.headers["retry-after"]) >= 1
    # Another address is not slowed down (backoff per address, never per name).
    ok = tree.on(1, "127.0.0.78").post("/api/session", json={
        "name": "alice", "password": "alice-demo-password"})
    assert ok.status_code == 200, ok.text


def test_a_nightscout_upload_checked_by_one_worker_repeats_through_the_other(
        tree: Tree) -> None:
    now = int(time.time() * 1000) - 60_000
    docs = [{"type": "sgv", "sgv": 111, "date": now, "direction": "Flat"},
            {"type": "sgv", "sgv": 5000, "date": now - 300_000}]  # no sensor reading
    h = {"api-secret": UPLOADER}
    first = tree.on(0).post("/api/v1/entries", json=docs, headers=h)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert len(answer) == 2 and answer[0]["sgv"] == 111
    assert answer[1]["glucoledger"]["stored"] is False
    retry = tree.on(1).post("/api/v1/entries", json=docs, headers=h)
    assert retry.status_code == 200 and retry.json()[0]["_id"] == answer[0]["_id"]
    got = tree.on(1).get("/api/v1/entries.json", params={"count": "5"}, headers=h).json()
    assert [d["sgv"] for d in got if d.get("_id") == answer[0]["_id"]] == [111]
    # A read token may not upload, whichever worker checked the body first.
    reader = hashlib.sha1(b"drlee-follow-0123456789").hexdigest()
    refused = tree.on(0).post("/api/v1/entries", json=docs[:1], headers={"api-secret": reader})
    assert refused.status_code == 403, refused.text


def test_zz_a_dead_worker_stops_the_whole_node(tree: Tree) -> None:
    pids = tree.workers()
    os.kill(pids[0], signal.SIGKILL)
    assert tree.proc.wait(30) != 0  # fail-stop, so the service manager restarts all of it
    deadline = time.time() + 15
    import psutil

    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
              for p in pids[1:]) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids[1:])
    assert "HTTP worker 0 exited" in tree.server.output()


def test_serve_workers_on_a_taken_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    import socket

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    folder = tmp_path / "node"
    subprocess.run([sys.executable, "-m", "glucoledger", "init", "--data", str(folder)],
                   check=True, capture_output=True, env=env, timeout=180)
    held = socket.socket()
    held.bind(("127.0.0.1", free_port()))
    held.listen(1)
    try:
        r = subprocess.run([sys.executable, "-m", "glucoledger", "serve", "--data", str(folder),
                            "--port", str(held.getsockname()[1]), "--workers", "2"],
                           capture_output=True, text=True, env=env, timeout=180)
    finally:
        held.close()
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "cannot listen on" in out and "choose another --port" in out, out
    assert "Traceback" not in out


def test_workers_leave_when_the_ordering_process_is_killed(tmp_path: Path) -> None:
    import psutil

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    folder = tmp_path / "node"
    subprocess.run([sys.executable, "-m", "glucoledger", "init", "--data", str(folder)],
                   check=True, capture_output=True, env=env, timeout=180)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "glucoledger", "serve", "--data",
                             str(folder), "--port", str(port), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).is_success:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, "serve did not start"
            time.sleep(0.3)
        kids = [c.pid for c in psutil.Process(proc.pid).children()]
        assert len(kids) == 2
    finally:
        proc.kill()  # SIGKILL: no goodbye to the workers
        proc.wait(10)

    def alive() -> list[int]:
        return [k for k in kids if psutil.pid_exists(k)
                and psutil.Process(k).status() != psutil.STATUS_ZOMBIE]

    deadline = time.time() + 20  # even a worker that served no request sees the channel close
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    assert alive() == []

"""Door limits against a real server (``glucoledger serve --demo`` in its own process, attacked
over TCP from distinct loopback addresses, tests/servers.py): the audit's three floods.

- Concurrent wrong passwords from one address: the backoff counts each attempt before its
  Argon2id check, so a burst of 40 meets the count the first five raised (5 checked, the
  rest 429 with ``Retry-After``), and concurrent checks from many addresses are bounded
  (``Argon2Gate``): the server's peak memory stays near its start, not +64 MiB per caller.
- The security log from unauthenticated floods: bounded files, a per-address cap with a
  summary line, tail reads, and the patient's own refusals kept apart from the noise.
- Refused follower reads: one ledger record per identical denial and window, repeats
  answered from memory (and counted), and a per-credential read budget (429, off-ledger).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..servers import ServeProcess

SIDE_FILES = ("passwords.json", "enrolment.json", "addressbook.json", "nightscout.json",
              "reader_invites.json", "recovery.json")


class Server(ServeProcess):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "--insecure-cookies", output=False)
        self._clients: list[httpx.Client] = []
        self.started_mb = self.peak_rss_mb()

    def client(self, addr: str = "127.0.0.1", timeout: float = 120) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=timeout,
                         transport=httpx.HTTPTransport(local_address=addr))
        self._clients.append(c)
        return c

    def stop(self, wait: float = 20) -> str:
        for c in self._clients:
            c.close()
        return super().stop(wait)

    def footprint(self) -> tuple[Any, ...]:
        return tuple(hashlib.sha256((self.folder / f).read_bytes()).hexdigest()
                     if (self.folder / f).exists() else None for f in SIDE_FILES)

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (VmHWM), in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc status")

    def log_size(self) -> int:
        return int(self.client().get("/api/status").json()["log_size"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("door") / "node")
    try:
        yield srv
    finally:
        srv.stop()


def _burst(srv: Server, addrs: list[str], name: str) -> list[httpx.Response]:
    """One wrong-password login per address in ``addrs``, all sent at the same moment."""
    go = threading.Event()
    out: list[httpx.Response] = []
    mu = threading.Lock()
    clients = [srv.client(a) for a in addrs]

    def one(i: int, c: httpx.Client) -> None:
        go.wait()
        r = c.post("/api/session", json={"name": name, "password": f"wrong-guess-{i:04d}"})
        with mu:
            out.append(r)

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    go.set()
    for t in threads:
        t.join(180)
    return out


# --- 1. login backoff race and Argon2 memory ------------------------------------------------
def test_a_burst_of_concurrent_guesses_from_one_address_meets_the_backoff(server: Server
                                                                          ) -> None:
    before = server.footprint()
    answers = _burst(server, ["127.0.0.77"] * 40, "dr-kim")
    codes = Counter(r.status_code for r in answers)
    assert codes[401] == 5, codes  # the five free tries, and not one more checked
    assert codes[429] == 35, codes
    for r in answers:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert "wait" in r.json()["message"] or "try again" in r.json()["message"]
    r = server.client("127.0.0.77").post("/api/session", json={
        "name": "dr-kim", "password": "dr-kim-demo-password"})
    assert r.status_code == 429 and "recovery code" in r.json()["message"], r.text
    # the owner, from her own address, is not slowed down by the attacker's count
    r = server.client("127.0.0.78").post("/api/session", json={
        "name": "dr-kim", "password": "dr-kim-demo-password"})
    assert r.status_code == 200, r.text
    assert server.footprint() == before  # refused logins changed nothing


def test_concurrent_argon2_checks_are_bounded(server: Server) -> None:
    """60 wrong passwords at once from 60 addresses (none throttled by the backoff): without
    a bound each holds 64 MiB at once (the audit: 197 MB -> 2.1 GB); with it the peak grows
    by at most the gate's slots x 64 MiB (4 at most), and every answer is a 401 (checked) or
    a 429 with Retry-After (not checked, not counted)."""
    start = server.started_mb
    answers = _burst(server, [f"127.0.3.{i}" for i in range(1, 61)], "alice")
    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {401, 429} and codes[401] >= 2, codes
    for r in answers:
        if r.status_code == 429:
            assert r.json()["code"] == "busy" and int(r.headers["retry-after"]) >= 1
            assert "try again" in r.json()["message"]
    grew = server.peak_rss_mb() - start  # against the peak before any login at all
    assert grew < 4 * 64 + 100, f"peak RSS grew {grew:.0f} MB under 60 concurrent logins"

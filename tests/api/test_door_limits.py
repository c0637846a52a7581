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
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glucoledger.node.demo_site import DEMO_READER_TOKEN

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
    assert any("recovery code" in r.json()["message"] for r in answers)
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


# --- 2. the security log under a flood of unauthenticated requests --------------------------
def _flood(url: str, addrs: list[str], per_addr: int, path: str) -> Counter[int]:
    codes: Counter[int] = Counter()
    mu = threading.Lock()

    def worker(addr: str) -> None:
        with httpx.Client(base_url=url, timeout=60,
                          transport=httpx.HTTPTransport(local_address=addr)) as c:
            for _ in range(per_addr):
                status = c.get(path).status_code
                with mu:
                    codes[status] += 1

    threads = [threading.Thread(target=worker, args=(a,)) for a in addrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return codes


FLOOD_PATH = "/api/v2/authorization/request/" + "x" * 170  # logged up to 200 characters


def test_a_flood_of_401s_from_one_address_writes_a_few_lines(server: Server) -> None:
    """The audit's flood (20,000 401s grew security.log from 15 KB to 8.6 MB): 2,000 401s from
    one address, 8 connections at once, write at most the cap (30 a minute per address and
    kind of refusal); the rest are counted for one summary line at the interval's end."""
    path = server.folder / "security.log"
    before = len(path.read_text().splitlines()) if path.exists() else 0
    codes = _flood(server.url, ["127.0.0.9"] * 8, 250, FLOOD_PATH)
    assert codes == Counter({401: 2000})
    lines = [json.loads(x) for x in path.read_text().splitlines()[before:]]
    mine = [e for e in lines if e["remote"] == "127.0.0.9"]
    assert 1 <= len(mine) <= 30, len(mine)
    assert all(e["code"] == "unauthenticated" for e in mine)


def test_the_patients_refusals_outlive_rotation_and_floods_are_summarized(
        tmp_path: Path) -> None:
    """A real server (uvicorn over TCP) whose security log is small (64 KiB, 2 older files,
    30 a second per address): a wrong password for alice's name, then floods from 40
    addresses that rotate the main log many times over. The files stay bounded; alice's
    refusal is still in her audit trail (GET /api/audit); every refusal of a one-address
    flood is accounted for, written or counted in its summary line."""
    from glucoledger.node.people import SecurityLog

    from .conftest import Served, Site

    site = Site(tmp_path / "node", secure=False)
    log = SecurityLog(site.node.data_dir, max_bytes=64 << 10, keep=2, cap=30, every=1.0)
    site.ctx.seclog = log
    srv = Served(site.app)
    try:
        with httpx.Client(base_url=srv.url, timeout=60,
                          transport=httpx.HTTPTransport(local_address="127.0.0.21")) as c:
            r = c.post("/api/session", json={"name": "alice", "password": "not-her-password"})
            assert r.status_code == 401
            alice = httpx.Client(base_url=srv.url, timeout=60)
            r = alice.post("/api/session", json={"name": "alice",
                                                 "password": "alice-demo-password"})
            assert r.status_code == 200
        assert _flood(srv.url, [f"127.0.5.{i}" for i in range(1, 41)], 60, FLOOD_PATH) == \
            Counter({401: 2400})
        time.sleep(1.1)
        assert _flood(srv.url, ["127.0.6.1"] * 4, 100, FLOOD_PATH) == Counter({401: 400})
        time.sleep(1.1)
        audit = alice.get("/api/audit")  # a read: writes the summaries of ended intervals
        assert audit.status_code == 200
        refused = [e for e in audit.json() if e["kind"] == "refused"]
        assert any("127.0.0.21" in str(e.get("detail")) for e in refused), refused
        files = sorted(site.node.data_dir.glob("security.log*"))
        assert len(files) == 3 and all(f.stat().st_size <= 64 << 10 for f in files)
        lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
        flood = [e for e in lines if e["remote"] == "127.0.6.1"]
        assert sum(e.get("count", 1) for e in flood) == 400
        assert [e["code"] for e in flood].count("refusals_suppressed") >= 1
        alice.close()
    finally:
        srv.stop()
        site.close()


# --- 3. refused follower reads ---------------------------------------------------------------
def _reads(c: httpx.Client, n: int) -> list[httpx.Response]:
    return [c.get(f"/api/v1/treatments.json?token={DEMO_READER_TOKEN}") for _ in range(n)]


def test_repeated_denials_are_one_ledger_record_and_reads_have_a_budget(server: Server
                                                                        ) -> None:
    """dr-lee's reader token (no grant from alice): the first refused read is ordered and
    audited; identical repeats are answered 403 from it, with no new transaction; a grant
    ends that at once (the next read is permitted), its revocation is a new denial, and past
    the credential's read budget reads are answered 429 with Retry-After, off the ledger.
    The audit's run (300 refused reads: +300 transactions) now adds at most one."""
    follower = server.client("127.0.0.31")
    alice = server.client("127.0.0.32")
    r = alice.post("/api/session", json={"name": "alice", "password": "alice-demo-password"})
    assert r.status_code == 200, r.text
    csrf = {"x-csrf-token": r.json()["csrf"]}
    h0 = server.log_size()
    first = _reads(follower, 5)
    assert [x.status_code for x in first] == [403] * 5
    assert {x.json()["code"] for x in first} == {"no_grant"}
    assert "ask the patient for a grant" in first[0].json()["message"]
    assert "(repeat 4 of a request denied at" in first[-1].json()["message"]
    assert "not recorded again until" in first[-1].json()["message"]
    assert server.log_size() == h0 + 1  # one access record for five refused reads

    # a grant covering treatments ends the collapse: the very next read is permitted
    g = alice.post("/api/grants", headers=csrf, json={
        "grantee": "dr-lee", "streams": ["insulin"], "view": "raw",
        "last_days": 14, "valid_days": 30})
    assert g.status_code == 201, g.text
    ok = _reads(follower, 1)[0]
    assert ok.status_code == 200, ok.text
    # revoked: a new reason, a new record; then its repeats collapse too
    assert alice.delete(f"/api/grants/{g.json()['id']}", headers=csrf).status_code == 200
    h1 = server.log_size()
    again = _reads(follower, 3)
    assert [x.json()["code"] for x in again] == ["revoked"] * 3
    assert server.log_size() == h1 + 1

    # the audit's spam: 300 refused reads in a row
    spam = _reads(follower, 300)
    codes = Counter(x.status_code for x in spam)
    assert codes[429] >= 150 and set(codes) == {403, 429}, codes
    limited = next(x for x in spam if x.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert "wait" in limited.json()["message"] and "nothing recorded" in limited.json()["message"]
    assert server.log_size() == h1 + 1  # not one more transaction

    # alice sees it: the ordered denials on her ledger trail, the repeats as door refusals
    trail = alice.get("/api/audit").json()
    assert [e["reason"] for e in trail if e["kind"] == "access" and e["outcome"] == "deny"
            and e["requester_name"] == "dr-lee"] == ["revoked", "no_grant"]
    repeats = [e for e in trail if e["kind"] == "refused" and "not recorded again"
               in str(e.get("detail")) + str(e.get("reason"))]
    assert repeats, [e for e in trail if e["kind"] == "refused"][:3]

"""kill -9 at random points of init, serve --demo seeding, ingest and simulate.

After each kill the folder must be absent, or a working node (verify OK), or resumable by
rerunning the same command, which then neither loses nor doubles a reading. Each trial
checks that the kill landed while the command ran (otherwise it proved nothing).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from glucoledger import codec
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.people import Passwords
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import verify_vault

from ..cli.test_cli import run
from ..servers import cli_env, free_port
from .helpers import add_uploads, make_node
from .test_idempotent_ingest import write_jsonl

pytestmark = pytest.mark.slow


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "glucoledger", *args],
                            env=cli_env(COLUMNS="200"), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_after(proc: subprocess.Popen[str], delay: float) -> bool:
    """kill -9 after ``delay`` s; True if the process was still running then."""
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _timed(*args: str) -> float:
    """Seconds a whole run of the command takes: the kills land at random points of such a
    run (the faster of two runs, so a cold first start does not push every kill too late)."""
    began = time.monotonic()
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - began


def _readings(folder: Path, *, unordered_ok: bool = False
              ) -> Counter[tuple[bytes, str, int, bytes]]:
    """Every committed record of the folder, by (uploader, stream, time, encoding): doubles
    show (a bolus and a basal may share a time: the encoding tells them apart).

    No pending row may be left, except with ``unordered_ok`` (right after a kill, before
    the command is rerun) a row whose commit is not on the ledger: a kill between writing
    the vault row and appending to the log leaves it, nothing was acknowledged, and the
    service opened here drops it (nobody is left to order it); one whose transaction was
    appended but not yet cut into a block stays, and the rerun's first block settles it."""
    seen: Counter[tuple[bytes, str, int, bytes]] = Counter()
    with Node(folder, workers=1) as node:
        vault = open_vault(node)
        service = IngestService(node, vault, workers=1)
        try:
            pending = vault.batches(status="pending")
            if unordered_ok:
                assert not node.store.find_txs([r.tx_hash for r in pending]), \
                    "a pending row's commit is on the ledger: recover did not settle it"
            else:
                assert not pending
            for row in vault.batches():
                _salt, batch = vault.open(row)
                seen.update((row.uploader, row.stream, r.time_ms, codec.encode(r.to_value()))
                            for r in batch.items)
            report = verify_vault(node.store, vault)
            assert report.decrypted == report.batches
        finally:
            service.close()
            vault.close()
    return seen


def test_kill_during_init(tmp_path: Path) -> None:
    rng = random.Random(12)
    took = min(_timed("init", "--data", str(tmp_path / f"timed{i}")) for i in range(2))
    killed = trial = 0
    while killed < 3 and trial < 10:  # a kill that came too late proves nothing: try again
        folder = tmp_path / f"n{trial}"
        trial += 1
        if _kill_after(_start("init", "--data", str(folder)), rng.uniform(0.2, 0.95) * took):
            killed += 1
        if folder.exists():  # a complete node
            assert verify_folder(folder, workers=1).blocks == 1
        else:  # rerun the same command
            r = run("init", "--data", str(folder))
            assert r.returncode == 0, r.stderr
        assert run("verify", "--data", str(folder)).returncode == 0
        r = run("init", "--data", str(folder))  # a second init is refused, nothing changed
        assert r.returncode != 0 and "already holds a node" in r.stderr
        assert [p.name for p in tmp_path.iterdir() if ".init-" in p.name] == [] or killed
    assert killed, "no kill landed during init: the trial proved nothing"


def test_kill_during_demo_seeding(tmp_path: Path) -> None:
    rng = random.Random(7)
    killed = 0
    for trial in range(3):
        folder = tmp_path / f"d{trial}"
        port = str(free_port())
        proc = _start("serve", "--demo", "--data", str(folder), "--port", port)
        if _kill_after(proc, rng.uniform(1.0, 12.0)):
            killed += 1
        if not folder.exists():  # rerun the same command until it serves, then stop it
            proc = _start("serve", "--demo", "--data", str(folder), "--port", port)
            deadline = time.monotonic() + 240
            while not (folder / "node.json").exists():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        # The folder is a complete demo: logins and the uploader work, verify OK.
        with Node(folder, workers=1) as node:
            Passwords(node).verify("alice", "alice-demo-password")
            Passwords(node).verify("dr-lee", "dr-lee-demo-password")
        assert verify_folder(folder, workers=1).blocks > 1
        assert sum(_readings(folder).values()) > 1000
    assert killed, "no kill landed during seeding: the trial proved nothing"


def test_kill_during_ingest_then_rerun(tmp_path: Path) -> None:
    rng = random.Random(3)
    folder = tmp_path / "node"
    make_node(folder, uploads=0)
    killed = 0
    took = 0.0
    for trial in range(5):
        # Each file its own week (7 batches of 288).
        f = write_jsonl(tmp_path / f"f{trial}.jsonl", 2016, first=trial * 2016)
        args = ("ingest", str(f), "--patient", "alice", "--device", "SN-1",
                "--batch-size", "288", "--data", str(folder))
        if trial == 0:  # a whole run, timed: the kills land at random points of such a run
            began = time.monotonic()
            assert run(*args).returncode == 0
            took = time.monotonic() - began
            continue
        if _kill_after(_start(*args), rng.uniform(0.2, 0.9) * took):
            killed += 1
        r = run(*args)  # rerun: stores what is missing, answers the rest
        assert r.returncode == 0, r.stderr
    assert killed, "no kill landed during ingest: the trial proved nothing"
    seen = _readings(folder)
    assert max(seen.values()) == 1, "a reading was stored twice"
    assert sum(seen.values()) == 5 * 2016, "a reading was lost"
    assert verify_folder(folder, workers=1).blocks > 0


def test_kill_during_simulate(tmp_path: Path) -> None:
    rng = random.Random(5)
    folder = tmp_path / "node"
    make_node(folder, uploads=0)
    killed = 0
    args = ("simulate", "--patients", "4", "--days", "7", "--data", str(folder))
    began = time.monotonic()
    assert run(*args).returncode == 0
    took = time.monotonic() - began  # the kills land at random points of such a run
    for _trial in range(3):
        if _kill_after(_start(*args), rng.uniform(0.2, 0.9) * took):
            killed += 1
        assert verify_folder(folder, workers=1).blocks > 0  # a working node after each kill
        seen = _readings(folder, unordered_ok=True)
        assert not seen or max(seen.values()) == 1, "a reading was stored twice"
    assert run(*args).returncode == 0  # resumable: the rerun settles what the kill left
    seen = _readings(folder)
    assert max(seen.values()) == 1, "a reading was stored twice"
    r = run("simulate", "--patients", "1", "--days", "2", "--data", str(folder))
    assert r.returncode == 0, r.stderr
    assert killed, "no kill landed during simulate: the trial proved nothing"


_CRASH_AFTER_ROWS = """
import os, signal, sys
from pathlib import Path
from glucoledger.node.service import Node
from glucoledger.node.world import World
from glucoledger import codec
from glucoledger.node.ingest import IngestService, open_vault
node = Node(Path(sys.argv[1]), workers=1)
world = World.load(node)
alice, dev = world.patient("alice"), world.device("SN-1")
service = IngestService(node, open_vault(node), workers=1)
# kill -9 at a chosen point: the blobs and the pending rows (with their identity tags) are
# written and durable, nothing is ordered yet.
node.submit = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
service.ingest_jsonl(Path(sys.argv[2]), patient=alice.id, uploader=dev.id, signer=dev.key)
"""


def test_kill_between_vault_rows_and_ordering_then_rerun(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=0)
    f = write_jsonl(tmp_path / "f.jsonl", 600)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    crashed = subprocess.run([sys.executable, "-c", _CRASH_AFTER_ROWS, str(folder), str(f)],
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    db = sqlite3.connect(folder / "vault.db")
    assert db.execute("SELECT COUNT(*) FROM batches WHERE status = 'pending'").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 9
    db.close()
    r = run("ingest", str(f), "--patient", "alice", "--device", "SN-1", "--data", str(folder))
    assert r.returncode == 0, r.stderr
    seen = _readings(folder)  # also: no pending row is left, verify-vault OK
    assert max(seen.values()) == 1 and sum(seen.values()) == 600
    again = run("ingest", str(f), "--patient", "alice", "--device", "SN-1", "--data",
                str(folder))
    assert again.returncode == 0 and "3 of 3 batches were stored before" in " ".join(
        again.stdout.split())


_CRASH_AFTER_ERASE_ORDERED = """
import os, signal, sys
from pathlib import Path
from glucoledger.node.services import NodeServices
from glucoledger.node.world import World
with NodeServices.open(Path(sys.argv[1])) as services:
    node, erasure = services.node, services.erasure
    alice = World.load(node).patient("alice")
    real = node.submit
    def submit(*args, **kw):
        real(*args, **kw)  # the erase transaction is ordered, durable
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 before keys and blobs are destroyed
    node.submit = submit
    erasure.erase_as(alice.id, [alice.key], ["cgm"])
"""


def _vault_rows(folder: Path) -> int:
    db = sqlite3.connect(folder / "vault.db")
    try:
        return int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
    finally:
        db.close()


def test_kill_between_ordering_an_erasure_and_destroying_then_any_open_finishes_it(
        tmp_path: Path) -> None:
    """The ledger says erased; the rows (wrapped data keys) and blobs were still there for
    good, and verify reported them as "erased by": now verify names each, and the next
    command that opens the vault destroys them. A stream key made after a finished erasure
    (new uploads) is never destroyed by a later open."""
    folder = tmp_path / "node"
    make_node(folder, uploads=3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    crashed = subprocess.run([sys.executable, "-c", _CRASH_AFTER_ERASE_ORDERED, str(folder)],
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert _vault_rows(folder) == 3
    r = run("verify", "--data", str(folder))
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.count("the erasure was interrupted") == 3, r.stderr
    assert "restore the vault" not in r.stderr  # a backup would bring erased data back
    r = run("batches", "--patient", "alice", "--data", str(folder))
    assert r.returncode == 0, r.stderr
    assert _vault_rows(folder) == 0
    assert not list((folder / "blobs").rglob("*.pack"))
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0 and "erased by transaction" in r.stdout, r.stdout + r.stderr
    add_uploads(folder, range(4, 6))  # new cgm under a new stream key
    assert run("batches", "--patient", "alice", "--data", str(folder)).returncode == 0
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0 and "2 decrypted" in r.stdout, r.stdout + r.stderr

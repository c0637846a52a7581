"""Two processes on one folder: a command run next to ``serve`` (a patient's ``readings``,
an operator's ``grant``, a new Nightscout secret) on the same data.

- Blocks: the command appends to the same embedded log and stores the blocks it derives.
  The server, deriving the same log, finds those blocks stored: the same log gives the same
  block, so it goes on. Before, every upload after such a command was refused (a storage
  error: "UNIQUE constraint failed: blocks.height") and its readings were lost unless the
  app sent them again.
- State: the server reads what another process ordered before it authenticates (a key
  recovered away, a gateway revoked or made), not at its own next write
  (``Node.refresh``: SQLite's ``data_version`` says when another connection appended).
- Nightscout credentials (``nightscout.json``): a secret made by the command works at once
  on the running server (before: "not known here" until a restart), and each process adds
  its own under the file's lock from a fresh read (before: the server's next secret wrote
  back what it had read at start, and the command's secret was gone for good)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
import requests

from glucoledger.api.context import ServerContext
from glucoledger.errors import StorageError
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.node.accounts import create_account, identity, keys_of
from glucoledger.node.service import Node, verify_folder

from ..api.payloads import xdrip_sgv
from ..servers import ServeProcess, cli_env
from .helpers import node_with_uploader
from .test_kill import _readings

SECRET = "two-process-uploader-secret"


def _cli(folder: Path, *args: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "glucoledger", *args, "--data", str(folder)],
                         capture_output=True, text=True, env=cli_env(), timeout=120,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_uploads_go_on_while_commands_write_to_the_same_folder(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    node_with_uploader(folder, SECRET)
    srv = ServeProcess(folder, demo=False, ready="/api/v1/status.json", timeout=60)
    headers = {"api-secret": hashlib.sha1(SECRET.encode()).hexdigest()}
    sent = 0
    try:
        now = int(time.time() * 1000)
        for round_ in range(3):
            docs = xdrip_sgv(now - (3 - round_) * 3_600_000, n=4)
            r = requests.post(srv.url + "/api/v1/entries", json=docs, headers=headers,
                              timeout=30)
            assert r.status_code == 200, r.text  # the round after a command too
            sent += len(docs)
            # the patient reads her own readings (an audited read: a block of its own)
            _cli(folder, "readings", "--patient", "alice", "--format", "json",
                 "--from", str(now - 86_400_000), "--to", str(now + 60_000))
        out = srv.stop()
    finally:
        srv.stop()
    assert "Traceback" not in out and "UNIQUE" not in out, out[-2000:]
    assert sum(_readings(folder).values()) == sent  # every acknowledged reading, once
    verify_folder(folder, workers=1)  # raises if any block is missing or differs


@pytest.mark.slow
def test_a_secret_made_next_to_serve_works_at_once_and_neither_side_loses_one(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "node"
    with Node.init(folder, workers=1) as node:
        for name, kind in (("rosa", "trusted"), ("alice", "patient"), ("bob", "patient")):
            create_account(node, name, kind, **({"trusted": "rosa"} if kind == "patient"
                                                 else {}))
    srv = ServeProcess(folder, demo=False, ready="/api/v1/status.json", timeout=60)
    try:
        made = subprocess.run([sys.executable, "-m", "glucoledger", "nightscout-uploader",
                               "alice", "--data", str(folder)], capture_output=True,
                              text=True, env=cli_env(), timeout=120, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
        secret = made.stdout.split("(shown once): ")[1].split()[0]
        doc = xdrip_sgv(int(time.time() * 1000), n=1)
        r = requests.post(srv.url + "/api/v1/entries", json=doc, timeout=30,
                          headers={"api-secret": hashlib.sha1(secret.encode()).hexdigest()})
        assert r.status_code == 200, r.text  # known at once, no restart
    finally:
        srv.stop()
    # The server process's service, opened before the command's secret, adds its own:
    # read fresh under the lock, both stay.
    with Node(folder, workers=1) as node:
        c = ServerContext.create(node)
        try:
            other = ServerContext.create(node)  # a second process's view, made first
            try:
                c.svc.nightscout.add_uploader("bob", "bob-uploader-secret-1")
                other.svc.nightscout.add_uploader("alice", "alice-second-secret")
                for svc in (c.svc.nightscout, other.svc.nightscout):
                    for s in (secret, "bob-uploader-secret-1", "alice-second-secret"):
                        assert svc.knows(hashlib.sha1(s.encode()).hexdigest()), s
            finally:
                other.close()
        finally:
            c.close()


@pytest.mark.slow
def test_a_key_recovered_away_by_another_process_stops_signing_at_once(tmp_path: Path
                                                                        ) -> None:
    import secrets

    from glucoledger.crypto.httpsig import sign_request
    from glucoledger.node.accounts import recover_key

    folder = tmp_path / "node"
    with Node.init(folder, workers=1) as node:
        create_account(node, "rosa", "trusted")
        create_account(node, "alice", "patient", trusted="rosa")
    srv = ServeProcess(folder, demo=False, ready="/api/v1/status.json", timeout=60)
    try:
        with Node(folder, workers=1) as mine:  # this test's process: the other writer
            lost = keys_of(mine, identity(mine, "alice"), [1])[0]

            def me() -> requests.Response:
                url = srv.url + "/api/me"
                return requests.get(url, timeout=30, headers=sign_request(
                    lost, method="GET", url=url, nonce=secrets.token_hex(8)))

            r = me()
            assert r.status_code == 200 and r.json()["name"] == "alice", r.text
            recover_key(mine, "alice", "rosa", 2)  # ordered and stored by this process
            r = me()  # the server has written nothing since
            assert r.status_code == 401 and "not a key of any account" in r.text, r.text
    finally:
        srv.stop()


_SPEND = """
import sys, time
from pathlib import Path
from glucoledger.node.recovery import RecoveryCodes
from glucoledger.node.service import Node
from glucoledger.errors import AuthenticationError
folder, code, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with Node(folder, workers=1) as node:
    codes = RecoveryCodes(node)
    while not go.exists():
        time.sleep(0.001)
    try:
        codes.use("alice", code)
        print("spent")
    except AuthenticationError:
        print("refused")
"""


@pytest.mark.slow
def test_a_recovery_code_is_spent_once_by_two_processes_at_the_same_moment(
        tmp_path: Path) -> None:
    """Recovery codes work once. Two processes on the folder (two servers, a command next
    to ``serve``) each read the codes, checked the code (Argon2id, tens of ms) and wrote
    back: both could spend the same code."""
    import subprocess
    import sys

    from glucoledger.node.recovery import RecoveryCodes

    folder = tmp_path / "node"
    with Node.init(folder, workers=1) as node:
        create_account(node, "rosa", "trusted")
        create_account(node, "alice", "patient", trusted="rosa")
        code = RecoveryCodes(node).issue(identity(node, "alice"))[0]
    outcomes = []
    for trial in range(3):
        go = tmp_path / f"go-{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", _SPEND, str(folder), code, str(go)],
                                  stdout=subprocess.PIPE, text=True, env=cli_env())
                 for _ in range(2)]
        time.sleep(1.5)  # both opened the node and wait
        go.touch()
        outcomes.append(sorted(p.communicate(timeout=120)[0].strip() for p in procs))
        with Node(folder, workers=1) as node:  # the next trial spends a fresh code
            code = RecoveryCodes(node).issue(identity(node, "alice"))[0]
    assert outcomes == [["refused", "spent"]] * 3, outcomes


def test_a_different_block_at_a_stored_height_is_refused_and_nothing_written(
        tmp_path: Path) -> None:
    """The one case the tolerance must not cover: the store holds another block at the
    height the log gives (another history)."""
    folder = tmp_path / "node"
    Node.init(folder, workers=1).close()
    with Node(folder, workers=1) as a, Node(folder, workers=1) as b:
        create_account(a, "rosa", "trusted")  # a stores a block; b has not read it
        height = a.store.height() - 1
        db = sqlite3.connect(folder / "chain.db")
        db.execute("UPDATE blocks SET hash = ? WHERE height = ?", (b"\x00" * 32, height))
        db.commit()
        db.close()
        before = b.store.tx_count()
        who = identity(a, "rosa")
        stx = sign(Transaction(b.chain, "alert.rules", {"rules": None}, who.id,
                               b.next_nonce(who.id)), keys_of(a, who)[:1])
        with pytest.raises(StorageError) as refused:
            b.submit([stx.raw])
        assert refused.value.code == "other_log"
        assert "already holds another block" in refused.value.message
        assert b.store.tx_count() == before

"""kill -9 of the setup commands (``account create``, ``device register``,
``nightscout-uploader``) between the ledger accepting their transaction and the rest.

Before, the ledger could hold an account, a device, a gateway or the simulated maker whose
private key was never saved (the key was written after the transaction was accepted). The
invariant checked after every kill: every account and device on the ledger has a private key
in the wallet (the key of one of its cosigners; a device's own key), and rerunning the same
command finishes it (exit 0, or a refusal that says what to do), never with a traceback.

The deterministic trials kill a real ``python -m glucoledger`` process with SIGKILL right
after its k-th accepted transaction (a test-side wrapper around ``Node.submit``: nothing in
the product knows); the random ones kill it at times spread over a whole run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glucoledger.crypto import PublicKey
from glucoledger.node.registry import Registry
from glucoledger.node.service import Node
from glucoledger.state.accounts_model import find_account

from ..cli.test_cli import run
from ..servers import cli_env

#: Runs the command line with ``Node.submit`` killing the process (SIGKILL, no cleanup)
#: right after the ``argv[1]``-th submission that had an accepted transaction returned.
_KILLER = """
import os, signal, sys
from glucoledger.node import service
after = int(sys.argv[1])
real = service.Node.submit
seen = [0]
def submit(self, envelopes, **kw):
    out = real(self, envelopes, **kw)
    if any(r.ok for r in out):
        seen[0] += 1
        if seen[0] == after:
            os.kill(os.getpid(), signal.SIGKILL)
    return out
service.Node.submit = submit
from glucoledger.cli.main import run
sys.exit(run(sys.argv[2:]))
"""


def _killed_after(k: int, *args: str) -> int:
    r = subprocess.run([sys.executable, "-c", _KILLER, str(k), *args], env=cli_env(),
                       capture_output=True, text=True, timeout=300, check=False)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode


def missing_keys(folder: Path) -> list[str]:
    """Every account and device on the ledger with none of its own private keys in the
    wallet (a key is its own when no account with fewer cosigners names it: a patient's
    policy names her trusted party's key too, which is not hers)."""
    missing = []
    with Node(folder, workers=1) as node:
        held = {node.wallet.load(n).public.raw for n in node.wallet.names()}
        accounts = [find_account(node.state, bytes.fromhex(k[len("acct/"):]))
                    for k in list(node.state.keys("acct/"))]
        fewest: dict[bytes, int] = {}
        for a in accounts:
            for c in a.cosigners:
                fewest[c.key.raw] = min(fewest.get(c.key.raw, 99), len(a.cosigners))
        for acct in accounts:
            own = [c.key.raw for c in acct.cosigners
                   if fewest[c.key.raw] == len(acct.cosigners)]
            if not any(k in held for k in own):
                missing.append(f"{acct.kind} {acct.id.hex()[:12]}")
        for key in list(node.state.keys("dev/")):
            rec = node.state.get(key)
            if rec is not None and rec.get("key") is not None \
                    and PublicKey.from_value(rec["key"]).raw not in held:
                missing.append(f"device {rec.get('serial')}")
    return missing


def _new_node(tmp_path: Path) -> Path:
    folder = tmp_path / "clinic"
    assert run("init", "--data", str(folder)).returncode == 0
    assert run("account", "create", "rosa", "--kind", "trusted", "--data",
               str(folder)).returncode == 0
    assert run("account", "create", "alice", "--trusted", "rosa", "--data",
               str(folder)).returncode == 0
    return folder


def _rerun_finishes(folder: Path, args: list[str], shows: str, *,
                    done_ok: bool = False) -> None:
    """The same command again finishes the interrupted one (``done_ok``: or, when the
    kill came after all was done but before the process ended, says it exists already
    and where to see it)."""
    r = run(*args, "--data", str(folder))
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr, r.stderr
    if done_ok and r.returncode == 2:
        assert "already" in r.stderr and ("account show" in r.stderr
                                          or "device list" in r.stderr), r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert shows in r.stdout, r.stdout
    assert missing_keys(folder) == []
    v = run("verify", "--data", str(folder))
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.parametrize(("args", "k", "shows"), [
    (["account", "create", "dr-lee", "--kind", "clinician"], 1, "clinician dr-lee"),
    (["account", "create", "bob", "--trusted", "rosa"], 1, "patient bob"),
    (["device", "register", "--serial", "CGM-1"], 1, "registered CGM-G7 CGM-1"),  # maker
    (["device", "register", "--serial", "CGM-1"], 2, "registered CGM-G7 CGM-1"),  # device
    (["nightscout-uploader", "alice"], 1, "API secret"),  # the gateway, before its bind
])
def test_a_kill_right_after_the_ledger_accepts_keeps_the_key(
        tmp_path: Path, args: list[str], k: int, shows: str) -> None:
    folder = _new_node(tmp_path)
    rc = _killed_after(k, *args, "--data", str(folder))
    assert rc == -signal.SIGKILL, rc
    assert missing_keys(folder) == [], "the ledger holds a key the wallet lost"
    v = run("verify", "--data", str(folder))
    assert v.returncode == 0 and "was being set up when a command stopped" in v.stdout, \
        v.stdout + v.stderr
    _rerun_finishes(folder, args, shows)
    assert "was being set up" not in run("verify", "--data", str(folder)).stdout


def test_rerunning_account_create_finishes_the_interrupted_one(tmp_path: Path) -> None:
    """The rerun names the account the killed run made (same id), not a second one."""
    folder = _new_node(tmp_path)
    assert _killed_after(1, "account", "create", "dr-lee", "--kind", "clinician",
                         "--data", str(folder)) == -signal.SIGKILL
    r = run("account", "create", "dr-lee", "--kind", "clinician", "--data", str(folder))
    assert r.returncode == 0, r.stderr
    with Node(folder, workers=1) as node:
        ids = [k for k in node.state.keys("acct/")
               if find_account(node.state, bytes.fromhex(k[5:])).kind == "clinician"]
    assert len(ids) == 1
    assert Registry(folder).accounts()["dr-lee"]["id"] == ids[0][5:]
    assert not Registry(folder).load().get("pending")


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "glucoledger", *args],
                            env=cli_env(COLUMNS="200"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["account", "device", "uploader"])
def test_kill_at_random_times_keeps_every_key(tmp_path: Path, command: str) -> None:
    folder = _new_node(tmp_path)

    def args(i: int) -> tuple[list[str], str]:
        if command == "account":
            return ["account", "create", f"c{i}", "--kind", "clinician"], f"c{i}"
        if command == "device":
            return ["device", "register", "--serial", f"SN-{i}"], f"SN-{i}"
        return ["nightscout-uploader", "alice"], "API secret"

    began = time.monotonic()
    whole = run(*args(0)[0], "--data", str(folder))
    assert whole.returncode == 0, whole.stderr
    span = time.monotonic() - began
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    landed = 0
    for i in range(1, 13):
        argv, shows = args(i)
        p = _start([*argv, "--data", str(folder)])
        try:
            p.wait(span * (0.3 + 0.9 * rng.random()))
            finished = True
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            finished = False
        _out, err = p.communicate()
        assert "Traceback" not in err, err
        landed += not finished
        assert missing_keys(folder) == [], f"trial {i}: the ledger holds a key the wallet lost"
        if finished:
            assert p.returncode == 0, err
        else:
            _rerun_finishes(folder, argv, shows, done_ok=True)
    assert landed, "no kill landed while the command ran: nothing was tried"


def test_a_refused_setup_keeps_nothing_and_a_key_is_never_replaced(tmp_path: Path) -> None:
    """The ledger refuses the device (its serial registered already, not through this
    node's names): its key and pending entry go. A wallet key the new account would be
    saved under (an orphan, maybe a key the ledger knows): refused before anything."""
    from glucoledger.crypto import generate
    from glucoledger.errors import InputError, RejectedError
    from glucoledger.node import devices as dv
    from glucoledger.node.accounts import create_account
    from glucoledger.node.world import World

    with Node.init(tmp_path / "n", workers=1) as node:
        world = World.create(node)
        dv.register_device(node, world.maker, world.maker_keys[:1], "SN-9", "CGM-G7",
                           generate("ed25519").public)
        with pytest.raises(RejectedError):
            world.add_device("SN-9")
        assert not node.wallet.exists("device-SN-9")
        assert not Registry(node.data_dir).load().get("pending")
        orphan = generate("ed25519")
        node.wallet.save("zed.1", orphan)
        size = node.store.last_header().log_size  # type: ignore[union-attr]
        with pytest.raises(InputError, match="would replace"):
            create_account(node, "zed", "clinician")
        assert node.wallet.load("zed.1").public.raw == orphan.public.raw
        assert node.store.last_header().log_size == size  # type: ignore[union-attr]
        assert "zed" not in Registry(node.data_dir).accounts()


def test_a_damaged_pending_entry_is_refused_and_removes_no_key(tmp_path: Path) -> None:
    """A pending entry of ``names.json`` is acted on only when its transaction makes what it
    names and its saved keys are that transaction's. Before, an entry naming a key of
    another account (``alice.1``) next to a missing one, with a transaction the ledger
    never saw, had the next ``account create`` delete alice's private key (the entry was
    dropped with "its" keys); an entry that did not read as one stopped every setup with
    "unexpected error (ValueError): this is a bug". Now both are refused naming the entry
    and what to do, with nothing submitted, named or removed; ``verify`` names them."""
    import json

    from glucoledger.crypto import generate
    from glucoledger.node.devices import keyed_account_tx, org_account

    folder = _new_node(tmp_path)
    with Node(folder, workers=1) as node:
        alice_key = node.wallet.load("alice.1").public.raw
        org, org_key = org_account(node)
        zed, stx = keyed_account_tx(node, "clinician", [generate("ed25519")],
                                    sponsor=(org, [org_key]))
        size = node.store.last_header().log_size  # type: ignore[union-attr]
    names = folder / "names.json"
    for entry, why in [
        ({"what": "account", "name": "zed", "id": zed.hex(), "kind": "clinician",
          "keys": ["alice.1", "zed.1"], "model": None, "tx": stx.raw.hex()},
         "the wallet key alice.1 is not one its transaction gives the ledger"),
        ({"what": "account", "name": "zed", "id": zed.hex(), "kind": "clinician",
          "keys": ["zed.1"], "model": None, "tx": "not hex"},
         "its fields do not read as a setup"),
        ({"what": "account", "name": "alice", "id": zed.hex(), "kind": "patient",
          "keys": ["zed.1"], "model": None, "tx": stx.raw.hex()},
         "its transaction does not make the account it names")]:
        doc = json.loads(names.read_text())
        doc["pending"] = {f"account:{entry['name']}": entry}
        names.write_text(json.dumps(doc))
        before = names.read_bytes()
        r = run("account", "create", "bob", "--kind", "clinician", "--data", str(folder))
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "this is a bug" not in out, out
        assert "damaged pending setup" in out and why in out and "restore names.json" in out
        assert names.read_bytes() == before
        with Node(folder, workers=1) as node:
            assert node.wallet.exists("alice.1"), "another account's key was deleted"
            assert node.wallet.load("alice.1").public.raw == alice_key
            assert not node.wallet.exists("bob.1")
            assert node.store.last_header().log_size == size  # type: ignore[union-attr]
        assert "bob" not in Registry(folder).accounts()
        if "wallet key" not in why:  # verify reads names.json, not the wallet's keys
            assert "damaged pending setup" in run("verify", "--data", str(folder)).stdout

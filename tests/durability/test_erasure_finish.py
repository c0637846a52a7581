"""An erasure a kill -9 interrupted is finished at the next vault open (``ErasureService
.finish``): it must destroy the stream key the erased batches were sealed under, never one
another process made meanwhile for new uploads of the same stream.

Before, ``finish`` destroyed whatever key the stream had when any erased row was left: a
``glucoledger erase`` killed after destroying the key but before deleting the rows, then new
readings uploaded by a process already running (``serve``: it opened its vault before, so
nothing finished the erasure there; its upload made a new stream key), then any command:
the new key was destroyed and every new reading was unreadable for good.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from glucoledger.node.ingest import open_vault
from glucoledger.node.service import Node
from glucoledger.vault.store import Vault

from ..cli.test_cli import run
from ..servers import cli_env
from .helpers import add_uploads, make_node

#: ``erase`` with the process killed (SIGKILL) once the stream key and the blobs are
#: destroyed, as the rows (deleted last) are about to go.
_KILLED_BEFORE_THE_ROWS_GO = """
import os, signal, sys
from glucoledger.vault.store import Vault
Vault.forget = lambda self, *args: os.kill(os.getpid(), signal.SIGKILL)
from glucoledger.cli.main import run
sys.exit(run(sys.argv[1:]))
"""


def killed_erase(folder: Path, at: str = "Vault.forget") -> None:
    """``glucoledger erase --patient alice --stream cgm`` in a process killed (SIGKILL) as it
    calls ``at`` (``Vault.forget``: the rows, deleted last; ``Vault.erase``: the stream
    key, right after the ledger ordered the erasure)."""
    killer = _KILLED_BEFORE_THE_ROWS_GO.replace("Vault.forget", at)
    killed = subprocess.run(
        [sys.executable, "-c", killer, "erase", "--patient", "alice", "--stream", "cgm",
         "--yes", "--data", str(folder)],
        env=cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def _readable(folder: Path) -> int:
    """How many of the vault's rows open (the data key unwraps, the blob decrypts)."""
    with Node(folder, workers=1) as node:
        vault = open_vault(node)
        try:
            n = 0
            for row in vault.batches():
                try:
                    vault.open(row)
                    n += 1
                except Exception:  # noqa: BLE001 - unreadable is what is counted
                    pass
            return n
        finally:
            vault.close()


def test_finishing_an_interrupted_erasure_spares_a_key_made_since(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=3)
    killed_erase(folder)
    add_uploads(folder, range(4, 6))  # a process that opened its vault before: a new key
    assert _readable(folder) == 2  # the two new batches (the 3 erased ones: key gone)
    r = run("batches", "--patient", "alice", "--data", str(folder))  # finishes the erasure
    assert r.returncode == 0, r.stderr
    assert _readable(folder) == 2, "finishing the erasure destroyed the new stream key"
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0 and "2 decrypted" in r.stdout, r.stdout + r.stderr
    assert "erased by transaction" in r.stdout


def test_finishing_still_destroys_the_key_the_erased_batches_used(tmp_path: Path) -> None:
    """A kill before the key went (right after the ledger ordered the erasure): the next
    open destroys that key and the batches, as before."""
    folder = tmp_path / "node"
    make_node(folder, uploads=3)
    killed_erase(folder, at="Vault.erase")
    assert _readable(folder) == 3  # nothing destroyed yet
    assert run("batches", "--patient", "alice", "--data", str(folder)).returncode == 0
    with Node(folder, workers=1) as node:
        vault = Vault(folder, node.master, node.chain)
        try:
            assert vault.batches() == []
            alice = bytes.fromhex(_alice_id(folder))
            assert vault.existing_kek(alice, "cgm") is None
        finally:
            vault.close()


def _alice_id(folder: Path) -> str:
    from glucoledger.node.registry import Registry

    return str(Registry(folder).accounts()["alice"]["id"])

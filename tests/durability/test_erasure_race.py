"""An erasure of a whole stream and uploads of that stream arriving at the same moment from
another process: every batch ordered after the ``erase`` transaction must stay readable.

The erasure destroys the stream key (``Vault.erase``); a batch's data key is wrapped under
that key. Two ways a new batch was lost for good:

- sealed (its data key wrapped under the key) before the erasure, ordered after it: the
  row held a data key wrapped under a key that no longer existed;
- an ``erase`` killed after the ledger ordered it and before it destroyed the key: a
  running server went on wrapping new batches under that key, and whatever next finished
  the erasure destroyed the key with the new batches under it.

Now a node-custody data key is wrapped when its batch is ordered, under the vault's
ordering lock, with the stream key the database holds then; an erasure orders its
transaction and destroys the key under the same lock; and whoever takes that lock first
carries out the key step of an erasure the ledger holds and this process has not seen
(``node/erasure.py``, ``erased_keys_destroyed``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from glucoledger.vault.batch import prepare_upload

from ..cli.test_cli import run
from ..servers import cli_env
from .helpers import cgm_batch, erase_cgm, ingesting, make_node
from .test_erasure_finish import _readable, killed_erase


def test_an_upload_sealed_before_an_erasure_and_ordered_after_it_stays_readable(
        tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=2)
    with ingesting(folder) as (node, world, _vault, ingest):  # the running server
        alice, dev = world.patient("alice"), world.device("SN-1")
        job = ingest.submit(prepare_upload(node.chain, alice.id, dev.id, 3, cgm_batch(3),
                                           dev.key), commit=False)  # sealed, not ordered
        erase_cgm(folder)
        receipt = ingest.wait(job)  # ordered after the erasure
        assert receipt.seq == 3
    assert _readable(folder) == 1, "the batch ordered after the erasure is unreadable"
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0 and "1 decrypted" in r.stdout, r.stdout + r.stderr


def test_uploads_after_an_erasure_killed_before_its_key_went_stay_readable(
        tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=3)
    with ingesting(folder) as (node, world, vault, ingest):  # a server already running
        alice, dev = world.patient("alice"), world.device("SN-1")
        killed_erase(folder, at="Vault.erase")
        for seq in (4, 5):
            ingest.upload(prepare_upload(node.chain, alice.id, dev.id, seq, cgm_batch(seq),
                                         dev.key))
        # the erasure's key step was carried out before the first new batch was wrapped
        assert not any(vault.wrapped_under_current_kek(row) for row in vault.batches()
                       if row.seq <= 3)
    assert run("batches", "--patient", "alice", "--data", str(folder)).returncode == 0
    assert _readable(folder) == 2, "finishing the erasure destroyed the new batches' key"
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0 and "2 decrypted" in r.stdout, r.stdout + r.stderr
    assert "erased by transaction" in r.stdout


def test_an_erasure_waits_for_a_group_being_ordered_and_erases_it(tmp_path: Path) -> None:
    """An ingest group has wrapped its data key and is ordering its ``data.commit`` when
    ``glucoledger erase`` runs: the erasure waits for the group (the ordering lock) and
    lists its batch. Without the lock the erasure was ordered first and destroyed the key,
    and the batch, ordered after it and not listed, was unreadable for good."""
    folder = tmp_path / "node"
    make_node(folder, uploads=2)
    with ingesting(folder) as (node, world, _vault, ingest):
        alice, dev = world.patient("alice"), world.device("SN-1")
        submit = node.submit
        eraser: list[subprocess.Popen[str]] = []

        def erase_meanwhile(envelopes: Any, **kw: Any) -> Any:
            if not eraser:
                eraser.append(subprocess.Popen(
                    [sys.executable, "-m", "glucoledger", "erase", "--patient", "alice",
                     "--stream", "cgm", "--yes", "--data", str(folder)],
                    env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True))
                try:  # time for an erasure that does not wait to be ordered and done
                    eraser[0].wait(timeout=8)
                except subprocess.TimeoutExpired:
                    pass  # waiting for the ordering lock, as it must
            return submit(envelopes, **kw)

        node.submit = erase_meanwhile  # type: ignore[method-assign]
        ingest.upload(prepare_upload(node.chain, alice.id, dev.id, 3, cgm_batch(3), dev.key))
        out, err = eraser[0].communicate(timeout=120)
        assert eraser[0].returncode == 0, err
    assert _readable(folder) == 0
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("erased by transaction") >= 1 and "3 batches" in out, out

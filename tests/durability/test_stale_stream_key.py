"""A stream erased by another process (``glucoledger erase`` next to ``serve``): the
running process's new readings of that stream must stay readable. Two causes, both real:

- the vault kept each stream key in memory once used: after the other process destroyed
  it, new uploads were still wrapped under it (readable from memory while the process
  lived, unreadable for good after a restart);
- the erasing process zeroed and removed the blob pack whose records were all erased, the
  very pack the running process was still appending to: its new blobs went into a removed
  file ("its blob is missing").
"""

from __future__ import annotations

from pathlib import Path

from glucoledger.vault.batch import prepare_upload

from ..cli.test_cli import run
from .helpers import cgm_batch, erase_cgm, ingesting, make_node
from .test_erasure_finish import _readable


def test_new_readings_after_another_process_erased_the_stream_stay_readable(
        tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=1)
    with ingesting(folder) as (node, world, _vault, ingest):  # the running server
        alice, dev = world.patient("alice"), world.device("SN-1")
        ingest.upload(prepare_upload(node.chain, alice.id, dev.id, 2, cgm_batch(2), dev.key))
        erase_cgm(folder)
        ingest.upload(prepare_upload(node.chain, alice.id, dev.id, 3, cgm_batch(3), dev.key))
    assert _readable(folder) == 1, "the new reading is unreadable (see the module docstring)"
    r = run("verify", "--data", str(folder))
    assert r.returncode == 0 and "1 decrypted" in r.stdout, r.stdout + r.stderr

"""A vault row nobody can order any more: kill -9 between the vault write and the log append,
and an uploader that never sends that sequence again.

``IngestService.recover`` drops such a row (row, tags, blob) once no other ingest service is
alive on the folder (node/presence.py), and keeps it while one is, or while the log holds
transactions still waiting for a cut (they may yet be ordered).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from glucoledger.node.ingest import open_vault
from glucoledger.node.presence import Presence
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import verify_vault
from glucoledger.vault.batch import prepare_upload

from .helpers import add_uploads, cgm_batch, ingesting, make_node
from .test_idempotent_ingest import write_jsonl

pytestmark = pytest.mark.slow

# kill -9 inside ``Node.submit`` of the first group: the blobs and the pending rows are
# durable. "uncut": the group's transactions were appended to the log first, without the cut
# that closes their block (a writer killed between its append and its cut).
_CRASH = """
import os, signal, sys
from pathlib import Path
from glucoledger.ledger.log import encode_tx_entry
from glucoledger.node.service import Node
from glucoledger.node.world import World
from glucoledger.node.ingest import IngestService, open_vault
node = Node(Path(sys.argv[1]), workers=1)
world = World.load(node)
alice, dev = world.patient("alice"), world.device("SN-1")
service = IngestService(node, open_vault(node), workers=1)
def crash(envelopes, **_kw):
    if sys.argv[3] == "uncut":
        node.orderer.append([encode_tx_entry(e) for e in envelopes])
    os.kill(os.getpid(), signal.SIGKILL)
node.submit = crash
service.ingest_jsonl(Path(sys.argv[2]), patient=alice.id, uploader=dev.id, signer=dev.key)
"""

# An ingest service alive on the folder until its stdin closes.
_HOLD = """
import sys
from pathlib import Path
from glucoledger.node.service import Node
from glucoledger.node.ingest import IngestService, open_vault
node = Node(Path(sys.argv[1]), workers=1)
service = IngestService(node, open_vault(node), workers=1)
print("ready", flush=True)
sys.stdin.read()
"""


def _python(code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def _crash(folder: Path, jsonl: Path, mode: str = "rows") -> None:
    """Ingest 600 readings (3 batches) into ``folder`` and be killed before ordering them."""
    p = _python(_CRASH, str(folder), str(jsonl), mode, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
    _out, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL, err
    assert _count(folder) == (3, 9)


def _crashed(tmp_path: Path, mode: str = "rows") -> Path:
    """A node whose last ingest was killed with 3 pending rows, never retried."""
    folder = tmp_path / "node"
    make_node(folder, uploads=2)
    _crash(folder, write_jsonl(tmp_path / "f.jsonl", 600), mode)
    return folder


def _count(folder: Path) -> tuple[int, int]:
    """(pending rows, idempotency tags) in the vault."""
    db = sqlite3.connect(folder / "vault.db")
    try:
        pending = db.execute("SELECT COUNT(*) FROM batches WHERE status = 'pending'"
                             ).fetchone()[0]
        return pending, db.execute("SELECT COUNT(*) FROM tags").fetchone()[0]
    finally:
        db.close()


def test_a_row_nobody_can_order_is_dropped_with_its_tags_and_blob(tmp_path: Path) -> None:
    folder = _crashed(tmp_path)
    db = sqlite3.connect(folder / "vault.db")
    cts = [r[0] for r in db.execute("SELECT ct FROM batches WHERE status = 'pending'")]
    db.close()
    with Node(folder, workers=1) as node:
        vault = open_vault(node)
        assert all(vault.blobs.exists(ct) for ct in cts)
        vault.close()
    with ingesting(folder) as (node, world, vault, ingest):  # recover runs as it opens
        assert _count(folder) == (0, 0)
        assert not any(vault.blobs.exists(ct) for ct in cts)
        report = verify_vault(node.store, vault)
        assert report.decrypted == report.batches == 2
        # nothing was consumed: the device's next sequence is the one the kill cut
        assert ingest.next_seq(world.device("SN-1").id) == 3
    add_uploads(folder, range(3, 5))  # and the device goes on from there
    assert verify_folder(folder, workers=1).blocks > 0


def test_a_row_stays_while_another_ingest_service_is_alive(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=2)
    with _python(_HOLD, str(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            _crash(folder, write_jsonl(tmp_path / "f.jsonl", 600))
            with ingesting(folder) as (_node, _world, _vault, ingest):
                assert _count(folder) == (3, 9), \
                    "a row was dropped while another service lived"
                holder.kill()  # kill -9: the kernel releases the holder's mark
                holder.wait()
                assert ingest.recover() == 3
                assert _count(folder) == (0, 0)
        finally:
            holder.kill()


def test_transactions_waiting_for_a_cut_keep_their_rows_until_ordered(tmp_path: Path) -> None:
    folder = _crashed(tmp_path, "uncut")
    with ingesting(folder) as (_node, _world, _vault, ingest):
        assert _count(folder) == (3, 9), "a row whose commit may still be ordered was dropped"
    add_uploads(folder, range(9, 10))  # the next block's cut orders the crashed commits too
    with ingesting(folder) as (node, _world, vault, _ingest):
        assert _count(folder) == (0, 9)  # committed: the batches keep their tags
        report = verify_vault(node.store, vault)
        assert report.decrypted == report.batches == 2 + 3 + 1


def test_a_row_this_service_is_committing_is_kept(tmp_path: Path) -> None:
    """Another thread's recover (a retry of a pending sequence runs one) between this
    service's vault write and its log append: the row is this service's, in flight."""
    folder = tmp_path / "node"
    make_node(folder, uploads=1)
    with ingesting(folder) as (node, world, vault, ingest):
        submit = node.submit

        def recover_first(envelopes: list[bytes], **kw: object) -> object:
            assert _count(folder) == (1, 0)
            ingest.recover()
            return submit(envelopes, **kw)  # type: ignore[arg-type]

        node.submit = recover_first  # type: ignore[method-assign, assignment]
        alice, dev = world.patient("alice"), world.device("SN-1")
        ingest.upload(prepare_upload(node.chain, alice.id, dev.id, 2, cgm_batch(2), dev.key))
        node.submit = submit  # type: ignore[method-assign]
        report = verify_vault(node.store, vault)
        assert report.decrypted == report.batches == 2


def test_a_service_closed_while_it_commits_keeps_its_mark(tmp_path: Path) -> None:
    """A server shutting down with a group in flight: until the process ends, no other
    process may take that group's rows for stranded."""
    folder = tmp_path / "node"
    make_node(folder, uploads=1)
    with ingesting(folder) as (node, world, _vault, ingest):
        submit = node.submit
        seen: list[bool] = []

        def close_first(envelopes: list[bytes], **kw: object) -> object:
            ingest.close()
            seen.append(Presence(folder).others_alive())
            return submit(envelopes, **kw)  # type: ignore[arg-type]

        node.submit = close_first  # type: ignore[method-assign, assignment]
        alice, dev = world.patient("alice"), world.device("SN-1")
        ingest.upload(prepare_upload(node.chain, alice.id, dev.id, 2, cgm_batch(2), dev.key))
        node.submit = submit  # type: ignore[method-assign]
        assert seen == [True], "a closing service with a group in flight gave up its mark"
        ingest.close()  # nothing in flight now: the mark goes
        assert not Presence(folder).others_alive()


def test_presence(tmp_path: Path) -> None:
    a = Presence(tmp_path)
    assert not a.others_alive()
    b = Presence(tmp_path)  # another service, even in this process, is alive
    assert a.others_alive() and b.others_alive()
    b.close()
    assert not a.others_alive()
    dead = _python("import sys, os\nfrom pathlib import Path\n"
                   "from glucoledger.node.presence import Presence\n"
                   "p = Presence(Path(sys.argv[1]))\nos._exit(0)\n", str(tmp_path))
    assert dead.wait(60) == 0
    assert len(list((tmp_path / "ingest").glob("*.lock"))) == 2  # its mark is left...
    assert not a.others_alive()  # ...but nobody holds it: taken and removed
    assert [p.name for p in (tmp_path / "ingest").glob("*.lock")] == [a.path.name if a.path
                                                                     else ""]
    a.close()
    assert not list((tmp_path / "ingest").glob("*.lock"))


def test_presence_where_it_cannot_mark_answers_alive(tmp_path: Path) -> None:
    (tmp_path / "ingest").write_bytes(b"")  # not a folder: no mark can be made
    p = Presence(tmp_path)
    assert p.path is None and p.others_alive()  # and so nothing is ever dropped

"""Disk-full trials on a real small file system (a tmpfs made by the test, as root).

What must hold (issue 12): while the disk is full nothing is acknowledged and the answer
names the cause ("disk full on ..."); the node never stores a block on top of a missing one
and never deletes a batch whose commit may be ordered; once space returns it recovers by
itself, every acknowledged reading reads back, and verify and verify-vault say OK.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from glucoledger import sqlitetx
from glucoledger.errors import BackendError, GlucoledgerError
from glucoledger.glucose.readings import Batch, CgmReading
from glucoledger.node.ingest import IngestReceipt, IngestService, open_vault
from glucoledger.node.service import Node, verify_folder
from glucoledger.node.verify import verify_vault
from glucoledger.node.world import World
from glucoledger.vault.batch import Upload, prepare_upload

from .smallfs import ballast, small_fs

T0 = 1_700_000_012_345


_MADE: dict[tuple[bytes, int], Upload] = {}


def _upload(world: World, dev: object, patient: bytes, seq: int, n: int = 288) -> Upload:
    """The upload of ``seq``, the same bytes every time (a retry resends what it sent)."""
    key = (dev.id, seq)  # type: ignore[attr-defined]
    if key not in _MADE:
        _MADE[key] = _make(world, dev, patient, seq, n)
    return _MADE[key]


def _make(world: World, dev: object, patient: bytes, seq: int, n: int) -> Upload:
    t0 = T0 + seq * n * 300_000
    items = tuple(CgmReading(t0 + i * 300_000, 0, 60 + (i * 7 + seq) % 300) for i in range(n))
    batch = Batch("cgm", items, items[0].time_ms, items[-1].time_ms, n)
    return prepare_upload(world.node.chain, patient, dev.id, seq, batch, dev.key)  # type: ignore[attr-defined]


def _all_readable(ingest: IngestService, acked: dict[int, IngestReceipt]) -> None:
    for seq, r in acked.items():
        row = ingest.vault.by_ct(r.ct)
        _salt, batch = ingest.vault.open(row)
        assert batch.count == r.count and row.seq == seq and row.tx_index == r.tx_index


def _check_clean(node: Node, ingest: IngestService, acked: dict[int, IngestReceipt]) -> None:
    _all_readable(ingest, acked)
    report = node.verify()
    assert report.blocks == node.store.height()
    vr = verify_vault(node.store, ingest.vault)
    assert vr.batches >= len(acked) and vr.decrypted == vr.batches
    assert not ingest.vault.batches(status="pending")


def _setup(folder: Path) -> tuple[Node, World, object, bytes]:
    node = Node.init(folder, workers=1)
    world = World.create(node)
    alice = world.add_patient("alice")
    dev = world.add_device("SN-1", patient=alice)
    return node, world, dev, alice.id


def test_full_disk_under_the_block_store_stops_and_recovers(tmp_path: Path) -> None:
    """Only chain.db is on the full disk: the log takes the commits, the blocks fail. The node
    must stop (no block over a hole), keep the vault rows, and recover once space returns."""
    node, world, dev, alice = _setup(tmp_path / "node")
    node.close()
    with small_fs(tmp_path / "small", 3072) as small:
        for name in ("chain.db", "chain.db-wal", "chain.db-shm"):
            src = tmp_path / "node" / name
            if src.exists():
                shutil.move(src, small / name)
        (tmp_path / "node" / "chain.db").symlink_to(small / "chain.db")
        node = Node(tmp_path / "node", workers=1)
        world = World.load(node)
        vault = open_vault(node)
        ingest = IngestService(node, vault)
        acked: dict[int, IngestReceipt] = {}
        failed: list[int] = []
        try:
            seq = 1
            acked[seq] = ingest.upload(_upload(world, dev, alice, seq))
            filler = small / "ballast"
            ballast(filler, 0)
            for seq in range(2, 12):
                try:
                    acked[seq] = ingest.upload(_upload(world, dev, alice, seq))
                except BackendError as exc:
                    if not failed:  # ordered, not stored: it is applied once space returns,
                        assert "takes effect then" in exc.message  # so do not resend blindly
                    failed.append(seq)
                    assert "disk full on" in exc.message and str(small) in exc.message
                    assert "cannot rollback" not in exc.message
                    assert exc.http_status == 503
            assert failed, "the trial never filled the disk: it proved nothing"
            assert node.fault is not None
            height = node.store.height()
            # Still full: the node refuses every write and stores nothing.
            with pytest.raises(BackendError, match="disk full"):
                ingest.upload(_upload(world, dev, alice, 50))
            assert node.store.height() == height
            filler.unlink()
            # Space is back: the first request re-derives the missing blocks, then goes on.
            # The first failed upload's commit was ordered before its block failed: its
            # retry answers the original receipt; the later ones were refused before
            # anything was ordered, and are stored now.
            for seq in failed:
                again = ingest.upload(_upload(world, dev, alice, seq))
                assert node.fault is None
                assert again.duplicate == (seq == failed[0])
                acked[seq] = again
            acked[60] = ingest.upload(_upload(world, dev, alice, 60))
            _check_clean(node, ingest, acked)
        finally:
            ingest.close()
            vault.close()
            node.close()


@pytest.mark.slow
def test_full_disk_under_ingest_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The whole node on a small file system, filled while uploads go on."""
    with small_fs(tmp_path / "small", 8192) as small:
        node, world, dev, alice = _setup(small / "node")
        vault = open_vault(node)
        ingest = IngestService(node, vault)
        acked: dict[int, IngestReceipt] = {}
        errors: dict[int, str] = {}
        try:
            filler = small / "ballast"
            ballast(filler, 160)
            for seq in range(1, 60):
                try:
                    acked[seq] = ingest.upload(_upload(world, dev, alice, seq))
                except GlucoledgerError as exc:
                    errors[seq] = exc.message
                    assert isinstance(exc, BackendError), exc.message
                    assert "cannot rollback" not in exc.message
            assert errors, "the trial never filled the disk: it proved nothing"
            assert any("disk full on" in m for m in errors.values()), errors
            filler.unlink()
            for seq in sorted(errors):
                r = ingest.upload(_upload(world, dev, alice, seq))
                acked[seq] = r
            _check_clean(node, ingest, acked)
            cts = [r.ct for r in acked.values()]
            assert len(set(cts)) == len(cts) == vault.count()  # nothing doubled
        finally:
            ingest.close()
            vault.close()
            node.close()


@pytest.mark.slow
def test_file_size_limit_under_the_ingest_command(tmp_path: Path) -> None:
    """The fallback where no file system can be mounted: ``ulimit -f`` (RLIMIT_FSIZE) makes
    writes past the limit fail (EFBIG) in a real ``glucoledger ingest`` process. It must end
    with a message naming the cause, acknowledge nothing it did not store, and the same
    command rerun without the limit must store everything once."""
    import resource
    import subprocess
    import sys

    from .helpers import make_node
    from .test_idempotent_ingest import write_jsonl
    from .test_kill import _readings

    folder = tmp_path / "node"
    make_node(folder, uploads=0)
    f = write_jsonl(tmp_path / "week.jsonl", 2016)
    biggest = max(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    limit = biggest + 48 * 1024

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [sys.executable, "-m", "glucoledger", "ingest", str(f), "--patient", "alice",
            "--device", "SN-1", "--batch-size", "96", "--data", str(folder)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    capped = subprocess.run(args, env=env, preexec_fn=cap, capture_output=True, text=True,
                            timeout=300, check=False)
    assert capped.returncode != 0, "the limit was never reached: the trial proved nothing"
    assert "Traceback" not in capped.stderr and "cannot rollback" not in capped.stderr
    assert "file size limit" in capped.stderr or "disk full" in capped.stderr or \
        "input/output error" in capped.stderr, capped.stderr
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stderr
    seen = _readings(folder)
    assert max(seen.values()) == 1 and sum(seen.values()) == 2016
    assert verify_folder(folder, workers=1).blocks > 1


@pytest.mark.slow
def test_full_disk_under_the_ingest_command(tmp_path: Path) -> None:
    """A real ``glucoledger ingest`` process on a node whose file system fills (ENOSPC from
    a tmpfs, not a limit on this process): it stops with "disk full on …" and no traceback,
    acknowledges nothing it did not store; after space is freed the same command stores
    every reading once and verify says OK."""
    import subprocess
    import sys

    from ..servers import cli_env
    from .helpers import make_node
    from .test_idempotent_ingest import write_jsonl
    from .test_kill import _readings

    with small_fs(tmp_path / "small", 8192) as small:
        folder = small / "node"
        make_node(folder, uploads=0)
        f = write_jsonl(tmp_path / "week.jsonl", 2016)
        args = [sys.executable, "-m", "glucoledger", "ingest", str(f), "--patient", "alice",
                "--device", "SN-1", "--batch-size", "96", "--data", str(folder)]
        filler = small / "ballast"
        ballast(filler, 48)
        full = subprocess.run(args, env=cli_env(COLUMNS="200"), capture_output=True,
                              text=True, timeout=300, check=False)
        assert full.returncode != 0, "the disk never filled: the trial proved nothing"
        assert "Traceback" not in full.stderr and "cannot rollback" not in full.stderr
        assert "disk full on" in full.stderr and "free space" in full.stderr, full.stderr
        filler.unlink()
        again = subprocess.run(args, env=cli_env(COLUMNS="200"), capture_output=True,
                               text=True, timeout=300, check=False)
        assert again.returncode == 0, again.stderr
        seen = _readings(folder)
        assert max(seen.values()) == 1 and sum(seen.values()) == 2016
        assert verify_folder(folder, workers=1).blocks > 1


def test_an_io_error_on_a_full_file_system_is_named_disk_full(tmp_path: Path) -> None:
    """SQLite answers SQLITE_IOERR, not SQLITE_FULL, when the WAL index cannot grow on a full
    tmpfs; the message must still name the full disk (what the person has to fix)."""
    from glucoledger.sqlitetx import sqlite_error

    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = 10  # type: ignore[attr-defined]  # SQLITE_IOERR
    roomy = sqlite_error(exc, tmp_path / "orderer.db", "opening the ordered log")
    assert roomy.code == "io_error" and "input/output error" in roomy.message
    with small_fs(tmp_path / "small", 1024) as small:
        ballast(small / "ballast", 0)
        full = sqlite_error(exc, small / "orderer.db", "opening the ordered log")
    assert full.code == "disk_full", full.message
    assert f"disk full on {small.resolve()}" in full.message and "free space" in full.message


def test_a_checkpoint_on_a_full_disk_is_logged_once_and_done_once_space_returns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        checkpoint_threads: Callable[[], list[str]]) -> None:
    """The chain store's checkpoints run in a thread of their own (sqlitetx.Checkpointer),
    where nothing can raise to a caller: on a full disk the copy back into the database
    file fails, which is logged once with the file and what to do, and the committed rows
    stay readable from the WAL; once space returns the next checkpoint copies them."""
    with small_fs(tmp_path / "fs", 4096) as fs:
        path = fs / "t.db"
        db = sqlitetx.connect(path, sync="NORMAL",
                              schema="CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
        cp = sqlitetx.Checkpointer(db, path)
        try:
            db.execute("BEGIN")
            db.executemany("INSERT INTO t VALUES (?, ?)",
                           [(i, os.urandom(3000)) for i in range(200)])
            db.execute("COMMIT")
            size = ballast(fs / "ballast", 8)
            assert size > 0
            with caplog.at_level("WARNING", logger="glucoledger.storage"):
                assert cp.checkpoint() == (1, -1, -1)
                assert cp.checkpoint() == (1, -1, -1)
            said = [r.getMessage() for r in caplog.records]
            assert len(said) == 1, said  # once, not at every try
            assert str(path) in said[0] and "full" in said[0] and "free space" in said[0]
            assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 200
            (fs / "ballast").unlink()
            busy, frames, copied = cp.checkpoint()
            assert busy == 0 and frames == copied > 0
            assert path.stat().st_size > 200 * 3000
        finally:
            cp.close()
            db.close()
    assert checkpoint_threads() == []

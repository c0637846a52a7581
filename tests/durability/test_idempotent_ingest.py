"""Ingest is idempotent by content: the same file twice stores nothing new and answers the
original receipts; other readings under the same identity are a conflict; nothing changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from glucoledger.errors import RejectedError
from glucoledger.node.ingest import IngestService, open_vault
from glucoledger.node.service import Node
from glucoledger.node.world import World

from ..cli.test_cli import run
from .helpers import T0, make_node


def write_jsonl(path: Path, n: int, *, bump: int | None = None, first: int = 0) -> Path:
    """``n`` CGM readings, 5 min apart, from the ``first``-th slot after T0."""
    lines = [json.dumps({"stream": "cgm", "time": T0 + (first + i) * 300_000,
                         "value": 100 + (i % 50) + (1 if i == bump else 0)}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _counts(folder: Path) -> tuple[int, int, int]:
    with Node(folder, workers=1) as node:
        vault = open_vault(node)
        try:
            rows = vault._q("SELECT COUNT(*) FROM batches")[0][0]
            tags = vault._q("SELECT COUNT(*) FROM tags")[0][0]
            return int(rows), int(tags), node.store.tx_count()
        finally:
            vault.close()


def test_same_file_twice_stores_nothing_new(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=0)
    f = write_jsonl(tmp_path / "a.jsonl", 700)
    with Node(folder, workers=1) as node:
        world = World.load(node)
        alice, dev = world.patient("alice"), world.device("SN-1")
        vault = open_vault(node)
        ingest = IngestService(node, vault, workers=1)
        try:
            kw = {"patient": alice.id, "uploader": dev.id, "signer": dev.key}
            first = ingest.ingest_jsonl(f, **kw)  # type: ignore[arg-type]
            assert len(first) == 3 and not any(r.duplicate for r in first)
            before = (vault.count(), node.store.tx_count(), node.state.snapshot())
            again = ingest.ingest_jsonl(f, **kw)  # type: ignore[arg-type]
            assert [(r.ct, r.tx_index, r.seq) for r in again] == \
                [(r.ct, r.tx_index, r.seq) for r in first]
            assert all(r.duplicate for r in again)
            assert (vault.count(), node.store.tx_count(), node.state.snapshot()) == before
            # One reading changed: the same identity with other content is a conflict,
            # and nothing of that file is stored.
            changed = write_jsonl(tmp_path / "b.jsonl", 700, bump=650)
            with pytest.raises(RejectedError, match="already ingested with other values") as info:
                ingest.ingest_jsonl(changed, **kw)  # type: ignore[arg-type]
            assert info.value.code == "ingest_conflict"
            assert (vault.count(), node.store.tx_count(), node.state.snapshot()) == before
            # The file grew at its end: its last batch (700 = 288 + 288 + 124) would now end
            # later; a second copy of its 124 readings is refused as a conflict, not stored.
            grown = write_jsonl(tmp_path / "c.jsonl", 720)
            with pytest.raises(RejectedError, match="already ingested"):
                ingest.ingest_jsonl(grown, **kw)  # type: ignore[arg-type]
            assert (vault.count(), node.store.tx_count(), node.state.snapshot()) == before
            # Only the new readings: stored, once.
            extra = write_jsonl(tmp_path / "d.jsonl", 20, first=700)
            assert len(ingest.ingest_jsonl(extra, **kw)) == 1  # type: ignore[arg-type]
            assert vault.count() == before[0] + 1
        finally:
            ingest.close()
            vault.close()


def test_cli_ingest_twice_prints_the_original_receipts(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_node(folder, uploads=0)
    f = write_jsonl(tmp_path / "a.jsonl", 300)
    args = ("ingest", str(f), "--patient", "alice", "--device", "SN-1", "--data", str(folder))
    one = run(*args)
    assert one.returncode == 0, one.stderr
    counts = _counts(folder)
    two = run(*args)
    assert two.returncode == 0, two.stderr
    assert "2 of 2 batches were stored before" in " ".join(two.stdout.split())
    index = re.compile(r"(\d+)\s*\W\s*([0-9a-f]{16})\s*\W\s*(?:now|before)")  # log index, blob
    assert index.findall(one.stdout) == index.findall(two.stdout) != []
    assert _counts(folder) == counts
    write_jsonl(f, 300, bump=3)
    three = run(*args)
    assert three.returncode != 0 and "already ingested with other values" in three.stderr
    assert "Traceback" not in three.stderr and "ingest_conflict" not in three.stdout
    assert _counts(folder) == counts

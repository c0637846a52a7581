"""What a push feed asks the vault every 2 seconds for every followed patient
(``last_index``), and a stream's mark (``mark``): right answers, and the marker answered by
one seek in an index, not a walk over her rows (a year of one-reading uploads is 100,000)."""

from __future__ import annotations

from pathlib import Path

from glucoledger.vault.store import BatchRow, Vault

ANN, BOB = b"a" * 32, b"b" * 32


def _row(n: int, patient: bytes, stream: str) -> BatchRow:
    return BatchRow(bytes([n]) * 32, patient, stream, b"u" * 32, n, 0, 1, 1, b"r" * 32, "node",
                    b"k", "gateway", b"h" * 32, None, "pending")


def test_the_marker_and_a_streams_mark(tmp_path: Path) -> None:
    vault = Vault(tmp_path, b"m" * 32, "test-chain", fsync=False)
    assert vault.last_index(ANN) == -1 and vault.mark(ANN, ["settings"]) == (-1, 0)
    rows = [_row(1, ANN, "cgm"), _row(2, ANN, "settings"), _row(3, BOB, "cgm"),
            _row(4, ANN, "cgm"), _row(5, ANN, "settings")]
    vault.add_pending(rows)
    assert vault.last_index(ANN) == -1  # pending rows are not data yet
    vault.settle([(r.ct, 10 * r.seq) for r in rows[:4]], [])
    assert vault.last_index(ANN) == 40 and vault.last_index(BOB) == 30
    assert vault.mark(ANN, ["settings"]) == (20, 1)
    assert vault.mark(ANN, ["cgm", "settings"]) == (40, 3)
    vault.settle([(rows[4].ct, 50)], [])
    assert vault.mark(ANN, ["settings"]) == (50, 2)
    vault.forget([rows[1].ct])  # erased
    assert vault.mark(ANN, ["settings"]) == (50, 1)


def test_the_marker_is_one_index_seek(tmp_path: Path) -> None:
    vault = Vault(tmp_path, b"m" * 32, "test-chain", fsync=False)
    ran: list[str] = []
    vault._db.set_trace_callback(ran.append)  # the statement last_index really runs
    vault.last_index(ANN)
    vault._db.set_trace_callback(None)
    [sql] = [s for s in ran if s.lstrip().upper().startswith("SELECT")]
    plan = vault._db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
    assert any("COVERING INDEX batches_last" in str(step) for step in plan), plan

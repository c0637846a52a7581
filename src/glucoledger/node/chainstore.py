"""The chain store: blocks, transactions, results, Merkle nodes and state, in SQLite.

Everything here is derived from the ordered log; one block (its header, its transactions
with results, the Merkle nodes it completed, its state writes and its signed checkpoint) is
written in one SQLite transaction, so the store is always at a block boundary. ``verify``
re-derives all of it and compares.

Tables::

    meta(key, value)                      chain, frontier (the compact Merkle range), ...
    blocks(height, hash, header, checkpoint)
    txs(idx, height, pos, envelope, hash, result)   idx = leaf index in the global log,
                                                    pos = position in the orderer's log
    nodes(level, idx, hash)               perfect Merkle subtrees of level 1 and up, for
                                          proofs (a leaf's hash is derived from its row in
                                          txs; a store written before keeps level 0 rows,
                                          which nothing reads)
    state(key, value)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .. import codec
from ..errors import NotFoundError, StorageError
from ..ledger import merkle
from ..ledger.block import BlockHeader, Result
from ..sqlitetx import Checkpointer, connect, sqlite_error, transaction
from ..state.replica import Block

__all__ = ["ChainStore", "StoredResult", "StoredTx"]

_OK = Result("ok")
_OK_RESULT = codec.encode(_OK.to_value())

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL,
    checkpoint BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    idx INTEGER PRIMARY KEY, height INTEGER NOT NULL, pos INTEGER NOT NULL,
    envelope BLOB NOT NULL, hash BLOB, result BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS txs_hash ON txs(hash);
CREATE INDEX IF NOT EXISTS txs_height ON txs(height);
CREATE INDEX IF NOT EXISTS txs_pos ON txs(pos);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""


class StoredResult:
    """A stored transaction's place in the log and its result, without its envelope: what a
    receipt or a "did it land" check needs (reading the envelopes too costs a copy of each)."""

    __slots__ = ("hash", "height", "idx", "pos", "result")

    def __init__(self, idx: int, height: int, pos: int, hash: bytes | None,
                 result: bytes) -> None:
        self.idx, self.height, self.pos, self.hash, self.result = idx, height, pos, hash, result

    def decoded_result(self) -> Result:
        if self.result == _OK_RESULT:  # most of them: no decode for the same few bytes
            return _OK
        return Result.from_value(codec.decode(self.result))


class StoredTx(StoredResult):
    """A stored transaction with its envelope (the leaf's data)."""

    __slots__ = ("envelope",)

    def __init__(self, idx: int, height: int, pos: int, envelope: bytes, hash: bytes | None,
                 result: bytes) -> None:
        super().__init__(idx, height, pos, hash, result)
        self.envelope = envelope


_RESULT_COLUMNS = "idx, height, pos, hash, result"
_TX_COLUMNS = _RESULT_COLUMNS + ", envelope"


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _result_row(r: Any) -> StoredResult:
    return StoredResult(r[0], r[1], r[2], _blob(r[3]), bytes(r[4]))


def _tx_row(r: Any) -> StoredTx:
    return StoredTx(r[0], r[1], r[2], bytes(r[5]), _blob(r[3]), bytes(r[4]))


_Row = TypeVar("_Row", bound=StoredResult)


class ChainStore:
    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        """``readonly``: open an existing store without writing anything (for ``verify``)."""
        self.path = Path(path)
        self._lock = threading.RLock()
        # The store is re-derivable from the durable ordered log: NORMAL keeps it consistent
        # across a crash (WAL), and a lost tail is replayed on restart.
        self._db = connect(self.path, sync="NORMAL", readonly=readonly, schema=_SCHEMA,
                           what="the chain store")
        # Checkpoints off the thread that stores blocks (sqlitetx.Checkpointer).
        try:
            self._checkpointer = None if readonly else Checkpointer(self._db, self.path)
        except BaseException:
            self._db.close()
            raise

    # --- helpers --------------------------------------------------------------------------
    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise sqlite_error(exc, self.path, "reading the chain store") from None

    def get_meta(self, key: str) -> Any:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return codec.decode(bytes(rows[0][0])) if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock, transaction(self._db, self.path, f"storing {key}") as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                       (key, codec.encode(value)))

    # --- writing --------------------------------------------------------------------------
    def write_block(self, block: Block, checkpoint: bytes, frontier: Sequence[bytes]) -> None:
        """Persist one block atomically: all of it or nothing (``sqlitetx.transaction``).

        Raises StorageError (disk full, read-only, damaged file) and then stores nothing; the
        caller (``Node``) must not derive a next block on top of it (fail-stop).

        A block of this height already stored with the same hash was stored by another
        process deriving the same log (a command run next to ``serve`` on one folder): the
        same log gives the same block, so there is nothing to write. Another hash at that
        height is a store of another history: StorageError ``other_log``, nothing written."""
        h = block.header
        encoded = block.result_bytes or tuple(codec.encode(r.to_value()) for r in block.results)
        tx_rows = [
            (block.first_index + i, h.height, block.positions[i], env, block.tx_hashes[i],
             encoded[i])
            for i, env in enumerate(block.envelopes)
        ]
        with self._lock, transaction(self._db, self.path, f"storing block {h.height}") as db:
            # Another process on this folder (a command while `serve` runs, two commands)
            # derives the same blocks from the same log: the identical block stored first is
            # this one (derivation is deterministic); another block there is damage.
            row = db.execute("SELECT hash FROM blocks WHERE height = ?", (h.height,)).fetchone()
            if row is not None:
                if bytes(row[0]) == block.hash:
                    return
                raise StorageError(
                    f"{self.path} already holds another block {h.height} (hash "
                    f"{bytes(row[0]).hex()[:16]}) than the one its log gives "
                    f"({block.hash.hex()[:16]}): the store and the log disagree; nothing was "
                    "written. Run `glucoledger verify` to see where", code="other_log")
            db.execute("INSERT INTO blocks (height, hash, header, checkpoint) VALUES (?,?,?,?)",
                       (h.height, block.hash, h.encode(), checkpoint))
            db.executemany("INSERT INTO txs VALUES (?,?,?,?,?,?)", tx_rows)
            db.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?)", block.nodes)
            changes = block.changes.items()
            db.executemany("DELETE FROM state WHERE key = ?",
                           [(k,) for k, v in changes if v is None])
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                           [(k, v) for k, v in changes if v is not None])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('frontier', ?)",
                       (codec.encode(list(frontier)),))
        if self._checkpointer is not None:
            self._checkpointer.wake()

    # --- reading --------------------------------------------------------------------------
    def last_header(self) -> BlockHeader | None:
        rows = self._q("SELECT header FROM blocks ORDER BY height DESC LIMIT 1")
        return BlockHeader.decode(bytes(rows[0][0])) if rows else None

    def height(self) -> int:
        """Number of blocks stored."""
        rows = self._q("SELECT COALESCE(MAX(height) + 1, 0) FROM blocks")
        return int(rows[0][0])

    def block_row(self, height: int) -> tuple[bytes, bytes, bytes]:
        rows = self._q("SELECT hash, header, checkpoint FROM blocks WHERE height = ?", (height,))
        if not rows:
            raise NotFoundError(f"no block at height {height}")
        return bytes(rows[0][0]), bytes(rows[0][1]), bytes(rows[0][2])

    def latest_checkpoint(self) -> bytes | None:
        rows = self._q("SELECT checkpoint FROM blocks ORDER BY height DESC LIMIT 1")
        return bytes(rows[0][0]) if rows else None

    def checkpoint_at(self, height: int) -> bytes:
        return self.block_row(height)[2]

    def iter_blocks(self) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        """(height, hash, header, checkpoint) in height order, read in pages."""
        last = -1
        while True:
            rows = self._q(
                "SELECT height, hash, header, checkpoint FROM blocks WHERE height > ? "
                "ORDER BY height LIMIT 500", (last,))
            if not rows:
                return
            for r in rows:
                yield int(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3])
            last = int(rows[-1][0])

    def recent_blocks(self, last: int) -> list[tuple[int, bytes, BlockHeader, list[Result]]]:
        """The ``last`` most recent blocks, oldest first: (height, hash, header, results)."""
        top = self.height()
        out = []
        for h in range(max(0, top - last), top):
            bhash, raw, _ = self.block_row(h)
            out.append((h, bhash, BlockHeader.decode(raw),
                        [t.decoded_result() for t in self.txs_of_block(h)]))
        return out

    def _txs(self, where: str, args: Sequence[Any] = ()) -> list[StoredTx]:
        """Transactions with their envelopes, in log order."""
        return [_tx_row(r) for r in self._q(
            f"SELECT {_TX_COLUMNS} FROM txs WHERE {where} ORDER BY idx", args)]

    def _results(self, where: str, args: Sequence[Any] = ()) -> list[StoredResult]:
        """Transactions' places and results, without their envelopes, in log order."""
        return [_result_row(r) for r in self._q(
            f"SELECT {_RESULT_COLUMNS} FROM txs WHERE {where} ORDER BY idx", args)]

    def txs_of_block(self, height: int) -> list[StoredTx]:
        return self._txs("height = ?", (height,))

    def refused_txs(self) -> list[StoredTx]:
        """Every transaction the state machine refused, in log order (one pass in SQLite; an
        accepted result is always the same bytes)."""
        return self._txs("result != ?", (_OK_RESULT,))

    def tx_count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM txs")[0][0])

    def find_txs(self, tx_hashes: Sequence[bytes]) -> dict[bytes, list[StoredTx]]:
        """The stored transactions of these hashes, in a few queries: hash -> rows in log
        order (absent: none; a hash ordered twice has two rows, a refused one among them)."""
        return _by_hash(self._txs, tx_hashes)

    def find_results(self, tx_hashes: Sequence[bytes]) -> dict[bytes, list[StoredResult]]:
        """``find_txs`` without the envelopes: where each landed and with what result."""
        return _by_hash(self._results, tx_hashes)

    def results_at_positions(self, low: int, high: int) -> dict[int, list[StoredResult]]:
        """Transactions whose orderer position is in [low, high], without their envelopes:
        position -> rows."""
        out: dict[int, list[StoredResult]] = {}
        for t in self._results("pos BETWEEN ? AND ?", (low, high)):
            out.setdefault(t.pos, []).append(t)
        return out

    def tx_at(self, idx: int) -> StoredTx:
        rows = self._txs("idx = ?", (idx,))
        if not rows:
            raise NotFoundError(f"no transaction at log index {idx}")
        return rows[0]

    def state_value(self, key: str) -> bytes | None:
        """One stored state entry (raw bytes), or None."""
        rows = self._q("SELECT value FROM state WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def load_state(self) -> dict[str, bytes]:
        return {str(k): bytes(v) for k, v in self._q("SELECT key, value FROM state")}

    def frontier(self) -> list[bytes]:
        value = self.get_meta("frontier")
        return list(value) if value else []

    def node(self, level: int, index: int) -> bytes:
        """``merkle.NodeReader.node``: level 0, a leaf, is hashed from its stored envelope
        (the leaf's data), so a transaction is stored once, not also as its leaf's hash."""
        if level == 0:
            return merkle.leaf_hash(self.tx_at(index).envelope)
        rows = self._q("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index))
        if not rows:
            raise NotFoundError(f"no Merkle node at level {level}, index {index}")
        return bytes(rows[0][0])

    def node_rows(self) -> list[Any]:
        """Every stored Merkle node of level 1 and up, (level, index, hash) in that order, as
        SQLite gives the rows: tuples of int, int and bytes, unless the file was altered
        (``verify`` compares them with the nodes it derives; level 0 rows, which stores
        written before kept, are never read)."""
        return self._q("SELECT level, idx, hash FROM nodes WHERE level > 0 ORDER BY level, idx")

    def as_node_reader(self) -> merkle.NodeReader:
        return self

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            self._db.close()


def _by_hash(read: Callable[[str, Sequence[Any]], list[_Row]], tx_hashes: Sequence[bytes]
             ) -> dict[bytes, list[_Row]]:
    """Rows of many hashes in queries of at most 500: hash -> rows (absent: none)."""
    out: dict[bytes, list[_Row]] = {}
    unique = list(dict.fromkeys(tx_hashes))
    for k in range(0, len(unique), 500):
        part = unique[k:k + 500]
        for t in read(f"hash IN ({','.join('?' * len(part))})", part):
            if t.hash is not None:  # always: it matched one
                out.setdefault(t.hash, []).append(t)
    return out

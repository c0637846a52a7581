"""The SQLite helper every store opens its file with (``glucoledger.sqlitetx``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from glucoledger import sqlitetx


class _Tagged(bytes):
    """A bytes subclass: adapted by its own type, as without the helper."""


def test_bytes_parameters_bind_unchanged_through_the_identity_adapter(tmp_path: Path) -> None:
    """Importing the helper registers ``bytes`` as the adapter of bytes (one dict look-up
    instead of two failed attribute look-ups a parameter); what is stored is exactly what
    was bound: empty, binary, large, a subclass, and None beside them."""
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)] is bytes
    db = sqlitetx.connect(tmp_path / "t.db",
                          schema="CREATE TABLE IF NOT EXISTS t (k INTEGER, v BLOB)")
    values: list[bytes | None] = [b"", bytes(range(256)), b"\x00" * 300_000,
                                  _Tagged(b"tag"), None]
    db.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    stored = [v for _, v in db.execute("SELECT k, v FROM t ORDER BY k")]
    assert stored == values
    assert [type(v) for v in stored[:4]] == [bytes] * 4
    db.close()

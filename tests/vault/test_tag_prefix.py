"""``Vault.tags_from``: a tag found by its prefix (Nightscout's 12-byte ``_id``), with the
batch that holds it; prefixes at the edges of the byte range (leading zeros, all 0xff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glucoledger.vault.store import BatchRow, Vault


def _row(ct: bytes) -> BatchRow:
    return BatchRow(ct, b"p" * 32, "carbs", b"u" * 32, ct[0], 0, 1, 1, b"r" * 32, "node",
                    b"k", "gateway", b"h" * 32, None, "pending")


def test_tags_by_prefix(tmp_path: Path) -> None:
    vault = Vault(tmp_path, b"m" * 32, "test-chain", fsync=False)
    tags = {b"\x00\x01" + b"a" * 30: bytes([1]) * 32, b"\x00\x02" + b"b" * 30: bytes([2]) * 32,
            b"\xff" * 32: bytes([3]) * 32, b"\xff" * 12 + b"\x00" * 20: bytes([4]) * 32,
            b"\x00\x01" + b"c" * 30: bytes([5]) * 32}
    vault.add_pending([_row(ct) for ct in tags.values()], list(tags.items()))
    assert sorted(vault.tags_from(b"\x00\x01")) == [b"\x00\x01" + b"a" * 30,
                                                     b"\x00\x01" + b"c" * 30]
    assert vault.tags_from(b"\x00\x01", limit=1).keys() <= {b"\x00\x01" + b"a" * 30}
    [(tag, row)] = vault.tags_from(b"\x00\x02").items()
    assert tag == b"\x00\x02" + b"b" * 30 and row.ct == bytes([2]) * 32
    assert set(vault.tags_from(b"\xff" * 12)) == {b"\xff" * 32, b"\xff" * 12 + b"\x00" * 20}
    assert vault.tags_from(b"\x00\x03") == {} and vault.tags_from(b"\x00") != {}
    with pytest.raises(ValueError):
        vault.tags_from(b"")

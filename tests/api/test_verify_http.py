"""``POST /api/verify`` and ``POST /api/verify-vault`` on a real server name every finding.

A ``serve --demo`` process on a loopback port; its chain.db and vault.db are damaged from
outside (as a disk or an intruder would) while it runs. The answer must carry every damaged
item, as the CLI's ``verify`` prints them (``IntegrityError.findings``/``unchecked``), and
``GET /api/status`` must show the failed result; damage must never answer 200 "ok".
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glucoledger.crypto.httpsig import sign_request
from glucoledger.node.keystore import Wallet, load_master_key

from ..servers import ServeProcess


class Served(ServeProcess):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "--insecure-cookies")
        self.wallet = Wallet(folder, load_master_key(folder))
        self.http = httpx.Client(base_url=self.url, timeout=120)

    def signed(self, who: str, method: str, path: str) -> httpx.Response:
        key = self.wallet.load(who if who == "org" else f"{who}.1")
        headers = sign_request(key, method=method, url=self.url + path, body=b"",
                               nonce=secrets.token_hex(12))
        return self.http.request(method, path, headers=headers)

    def stop(self, wait: float = 30) -> str:
        self.http.close()
        return super().stop(wait)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("verify") / "node")
    try:
        yield s
    finally:
        out = s.stop()
        assert "Traceback" not in out, out[-3000:]


def _flip(db_path: Path, sql_pick: str, table: str, column: str, key: str) -> int:
    """Flip one bit in the middle of ``column`` of the row ``sql_pick`` selects; its key."""
    db = sqlite3.connect(db_path)
    try:
        (k,) = db.execute(sql_pick).fetchone()
        (value,) = db.execute(f"SELECT {column} FROM {table} WHERE {key} = ?", (k,)).fetchone()
        data = bytearray(value)
        data[len(data) // 2] ^= 0x10
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (bytes(data), k))
        db.commit()
    finally:
        db.close()
    return int(k)


def _status(s: Served) -> dict[str, Any]:
    r = s.http.get("/api/status")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_verify_answers_every_damaged_transaction(served: Served) -> None:
    ok = served.signed("org", "POST", "/api/verify")
    assert ok.status_code == 200 and ok.json()["ok"] is True, ok.text
    assert _status(served)["verify"]["ok"] is True
    chain = served.folder / "chain.db"
    db = sqlite3.connect(chain)
    (top,) = db.execute("SELECT MAX(height) FROM txs").fetchone()
    db.close()
    assert top >= 3, "the demo chain is too short to damage two blocks"
    low, high = 1, top - 1
    first = _flip(chain, f"SELECT MIN(idx) FROM txs WHERE height = {low}", "txs", "envelope",
                  "idx")
    second = _flip(chain, f"SELECT MAX(idx) FROM txs WHERE height = {high}", "txs",
                   "envelope", "idx")
    r = served.signed("alice", "POST", "/api/verify")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "integrity" and body["ok"] is False
    named = {(f["height"], f["tx_index"]) for f in body["findings"]}
    assert (low, first) in named and (high, second) in named, body["findings"]
    assert len(body["findings"]) == 2, body["findings"]  # each damage once, none invented
    for f in body["findings"]:
        assert f["kind"] == "tamper" and f["expected"] != f["found"] and f["message"]
    assert body["message"].startswith(body["findings"][0]["message"])
    assert body["unchecked"] and f"block {low}" in body["unchecked"][0]
    # The status page shows the failure, not the earlier OK.
    last = _status(served)["verify"]
    assert last["ok"] is False and last["findings"] == 2
    assert last["first"] == body["findings"][0]["message"]


def test_verify_vault_answers_every_damaged_batch(served: Served) -> None:
    vault = served.folder / "vault.db"
    db = sqlite3.connect(vault)
    cols = [r[1] for r in db.execute("PRAGMA table_info(batches)")]
    rows = db.execute("SELECT ct, tx_hash FROM batches WHERE status = 'committed' ORDER BY ct"
                      ).fetchall()
    assert "count" in cols and len(rows) >= 2
    (a, a_tx), (b, b_tx) = rows[0], rows[-1]
    db.execute("UPDATE batches SET count = count + 1 WHERE ct IN (?, ?)", (a, b))
    db.commit()
    db.close()
    r = served.signed("org", "POST", "/api/verify-vault")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "integrity" and body["ok"] is False
    text = json.dumps(body["findings"])
    assert len(body["findings"]) == 2, text[:2000]  # the two edited rows, no more
    assert {f["tx_hash"] for f in body["findings"]} == {a_tx.hex(), b_tx.hex()}, text[:2000]
    assert all(f["message"] and "count" in f["message"] for f in body["findings"]), text
    assert "Traceback" not in r.text

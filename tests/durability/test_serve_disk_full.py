"""Disk full under ``serve``: Nightscout uploads over real HTTP to a node on a small tmpfs.

While the disk is full every upload answers 503 naming the cause (never a traceback, never
"cannot rollback"); when space returns the server recovers by itself; afterwards every
acknowledged reading is readable, nothing is doubled, and verify and verify-vault say OK.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from glucoledger.node.service import verify_folder
from glucoledger.node.vaultcheck import verify_vault_folder

from ..api.payloads import xdrip_sgv
from ..servers import ServeProcess
from .helpers import node_with_uploader
from .smallfs import ballast, small_fs
from .test_kill import _readings

SECRET = "disk-full-uploader-secret"


@pytest.mark.slow
@pytest.mark.parametrize("full", ["whole folder", "chain store only"])
def test_serve_uploads_on_a_full_disk(tmp_path: Path, full: str) -> None:
    """``whole folder``: the node lives on the small file system (blobs, vault and log
    writes fail first); ``chain store only``: chain.db alone does (the log and the vault
    take the upload, the block cannot be stored: the fail-stop path)."""
    with small_fs(tmp_path / "small", 12 * 1024) as small:
        folder = small / "node" if full == "whole folder" else tmp_path / "node"
        node_with_uploader(folder, SECRET)
        if full == "chain store only":
            for name in ("chain.db", "chain.db-wal", "chain.db-shm"):
                if (folder / name).exists():
                    shutil.move(folder / name, small / name)
            (folder / "chain.db").symlink_to(small / "chain.db")
        srv = ServeProcess(folder, demo=False, ready="/api/v1/status.json", timeout=60)
        headers = {"api-secret": hashlib.sha1(SECRET.encode()).hexdigest()}
        acked: list[int] = []
        answers: Counter[int] = Counter()
        causes: set[str] = set()
        sent: list[list[dict[str, object]]] = []
        t0 = int(time.time() * 1000) - 30 * 86_400_000
        try:
            def post(body: list[dict[str, object]]) -> requests.Response:
                r = requests.post(f"{srv.url}/api/v1/entries", json=body,
                                  headers=headers, timeout=60)
                answers[r.status_code] += 1
                assert "Traceback" not in r.text and "cannot rollback" not in r.text
                if r.status_code == 200:
                    acked.extend(int(e["date"]) for e in body)  # type: ignore[call-overload]
                else:
                    assert r.status_code == 503, r.text
                    assert "disk full on" in r.text or "free space" in r.text, r.text
                    causes.add(r.json()["message"].split(" while ")[-1].split(":")[0])
                return r

            filler = small / "ballast"
            ballast(filler, 400 if full == "whole folder" else 0)
            for k in range(120):  # 36 readings a POST, 3 h apart
                body = xdrip_sgv(t0 + (k + 1) * 36 * 300_000, 36)
                sent.append(body)
                post(body)
                if answers[503] >= 5:
                    break
            assert answers[503] >= 5, f"the disk never filled: {answers}"
            filler.unlink()
            # Uploaders retry what failed; the server recovers by itself on the next request.
            for body in sent:
                r = post(body)
                assert r.status_code == 200, r.text
            body = xdrip_sgv(t0 + 150 * 36 * 300_000, 36)
            assert post(body).status_code == 200
        finally:
            out = srv.stop(60)
        assert "Traceback" not in out, out[-3000:]
        print(f"answers {dict(answers)}; 503 while: {sorted(causes)}")
        assert verify_folder(folder, workers=1).blocks > 1
        assert verify_vault_folder(folder).batches >= 1
        seen = _readings(folder)
        times = Counter(t for (_uploader, _stream, t, _value) in seen.elements())
        assert max(times.values()) == 1, "a reading was stored twice"
        assert set(acked) <= set(times), "an acknowledged reading is missing"

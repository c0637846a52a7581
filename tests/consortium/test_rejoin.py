"""Rejoining from nothing after compaction, and refusing a damaged state at start.

Real etcd members and `glucoledger node` processes; the CLI runs as a separate process.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glucoledger import codec
from glucoledger.errors import GlucoledgerError
from glucoledger.ledger.checkpoint import parse_note
from glucoledger.ledger.finality import verify_final_at
from glucoledger.node import control
from glucoledger.node.service import Node, etcd_chain_key, verify_folder
from glucoledger.ordering.etcd import EtcdOrderer
from glucoledger.state.governance import member_schedule

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glucoledger", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=120)


def _lose_member_after_compaction(c: Consortium, tmp: Path) -> tuple[Path, dict[str, object]]:
    """Stop org-2, back up its keys, move the chain on and compact the log past it, then
    delete its whole folder. Returns the key backup and the others' converged status."""
    c.submit(patient_envelopes(5))
    wait_until(c.converged, 30, "convergence")
    c.kill_node(2, hard=True)
    keys = tmp / "org-2-keys"
    keys.mkdir()
    for name in ("master.key", "member.txt"):
        shutil.copy2(c.folders[2] / name, keys / name)
    shutil.copytree(c.folders[2] / "wallet", keys / "wallet")
    shutil.copytree(c.folders[2] / "tls", keys / "tls")
    before = c.status(0)["height"]
    for _ in range(3):
        c.submit(patient_envelopes(10))
    top = wait_until(lambda: (s := c.converged([0, 1])) and s["height"] > before and s, 30,
                     "the other two to finalize")
    orderer = EtcdOrderer.from_url(c.etcd_url(), etcd_chain_key(CHAIN))
    try:
        orderer.compact(orderer.size())
        assert orderer.first() > 0
    finally:
        orderer.close()
    shutil.rmtree(c.folders[2])
    return keys, top


def _rejoined_and_converged(c: Consortium) -> None:
    c.start_node(2)
    top = c.status(0)["height"]
    wait_until(lambda: c.status(2)["height"] >= top, 40, "the rejoined member to catch up")
    assert c.status(2)["refusing"] is None
    c.submit(patient_envelopes(3), prefer=2)
    final = wait_until(c.converged, 40, "all three to converge again")
    assert "org-2" in c.status(0)["final_signers"] or final["final_height"] >= top
    c.kill_node(2, hard=False)
    report = verify_folder(c.folders[2], workers=1)
    assert report.blocks == c.status(0)["height"] + 1
    with Node(c.folders[2], workers=1) as n:
        note = n.store.get_meta("final")
        assert isinstance(note, bytes)
        cp = verify_final_at(note, member_schedule(n.state))
        assert cp.height >= top
    # Identical blocks: every header org-2 stored is org-0's.
    db0 = sqlite3.connect(f"file:{c.folders[0] / 'chain.db'}?mode=ro", uri=True)
    db2 = sqlite3.connect(f"file:{c.folders[2] / 'chain.db'}?mode=ro", uri=True)
    try:
        q = "SELECT height, hash FROM blocks WHERE height <= ? ORDER BY height"
        h = report.blocks - 1
        assert db0.execute(q, (h,)).fetchall() == db2.execute(q, (h,)).fetchall()
    finally:
        db0.close()
        db2.close()


@pytest.mark.slow
def test_a_member_that_lost_its_folder_rejoins_from_genesis_keys_and_one_peer(
        consortium: Consortium, tmp_path: Path) -> None:
    keys, _ = _lose_member_after_compaction(consortium, tmp_path)
    folder = consortium.folders[2]
    # A wrong peer answer (another member's keys) is refused before anything is written.
    bad = cli("consortium", "rejoin", "--genesis", consortium.base / "genesis.json",
              "--orderer", consortium.etcd_url(2), "--peer", consortium.urls[0],
              "--keys", tmp_path / "nowhere", "--data", folder)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout
    assert "master.key" in bad.stdout + bad.stderr
    done = cli("consortium", "rejoin", "--genesis", consortium.base / "genesis.json",
               "--orderer", consortium.etcd_url(2), "--peer", consortium.urls[0],
               "--keys", keys, "--data", folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified and stored" in done.stdout
    _rejoined_and_converged(consortium)


@pytest.mark.slow
def test_an_empty_member_folder_catches_up_by_itself_past_compaction(
        consortium: Consortium, tmp_path: Path) -> None:
    from glucoledger.node.genesis_file import Genesis
    from glucoledger.node.rejoin import restore_folder

    keys, _ = _lose_member_after_compaction(consortium, tmp_path)
    # Only keys, node.json and genesis.json: the running node fetches and verifies the
    # blocks from a peer listed in etcd (the log no longer holds them).
    restore_folder(consortium.folders[2], Genesis.load(consortium.base / "genesis.json"),
                   consortium.etcd_url(2), keys)
    assert not (consortium.folders[2] / "chain.db").exists()
    _rejoined_and_converged(consortium)


@pytest.mark.slow
def test_offline_export_import_into_an_empty_folder_and_tampered_exports_refused(
        consortium: Consortium, tmp_path: Path) -> None:
    keys, _ = _lose_member_after_compaction(consortium, tmp_path)
    export = tmp_path / "blocks.cbor"
    out = cli("consortium", "export", export, "--data", consortium.folders[0])
    assert out.returncode == 0, out.stdout + out.stderr
    doc = codec.decode(export.read_bytes(), max_size=1 << 30)
    note = parse_note(doc["final"])
    assert len(note.signatures) >= 2
    # Under threshold: keep one cosignature only.
    weak = tmp_path / "weak.cbor"
    one = note.text + b"\n" + doc["final"].split(b"\n\n", 1)[1].split(b"\n")[0] + b"\n"
    weak.write_bytes(codec.encode({**doc, "final": one}))
    # Another history: one transaction's bytes changed.
    forged = tmp_path / "forged.cbor"
    blocks = [dict(b) for b in doc["blocks"]]
    env = bytearray(blocks[1]["envelopes"][0])
    env[-3] ^= 1
    blocks[1]["envelopes"] = [bytes(env), *blocks[1]["envelopes"][1:]]
    forged.write_bytes(codec.encode({**doc, "blocks": blocks}))
    # Another chain's history: block 0 is not the genesis every founder signed.
    other = tmp_path / "other.cbor"
    first = dict(blocks[0])
    first["envelopes"] = [b"\xa0", *doc["blocks"][0]["envelopes"][1:]]
    other.write_bytes(codec.encode({**doc, "blocks": [first, *doc["blocks"][1:]]}))
    folder = consortium.folders[2]
    for bad, why in ((weak, "valid signature"), (forged, "re-deriving block 1"),
                     (other, "not the genesis")):
        res = cli("consortium", "rejoin", "--genesis", consortium.base / "genesis.json",
                  "--orderer", consortium.etcd_url(2), "--export", bad, "--keys", keys,
                  "--data", folder)
        assert res.returncode != 0 and why in res.stdout + res.stderr, res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        with Node(folder, workers=1) as n:
            assert n.store.height() == 0  # a refused import stored nothing
    res = cli("consortium", "rejoin", "--genesis", consortium.base / "genesis.json",
              "--orderer", consortium.etcd_url(2), "--export", export, "--keys", keys,
              "--data", folder)
    assert res.returncode == 0, res.stdout + res.stderr
    _rejoined_and_converged(consortium)


@pytest.mark.slow
def test_a_flipped_byte_in_state_is_refused_at_start_reported_and_answered_503(
        consortium: Consortium) -> None:
    for _ in range(2):
        consortium.submit(patient_envelopes(5))
    wait_until(consortium.converged, 30, "convergence")
    consortium.kill_node(2, hard=False)
    key = consortium.flip_byte(2, "state", "key", "value", "key LIKE 'acct/%'")
    st, reports = consortium.damaged_and_reported(2)
    assert key in st["refusing"] and "changed" in st["refusing"]
    for rep in reports:
        assert key in rep["detail"] and rep["height"] >= 1
    start = time.monotonic()
    with pytest.raises(GlucoledgerError, match="refuses to work") as exc:
        control.submit(consortium.urls[2], patient_envelopes(1), consortium.node_key(0),
                       timeout=30)
    assert time.monotonic() - start < 3, "a stopped node must answer at once"
    assert key in exc.value.message
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(consortium.urls[2] + "/checkpoint", timeout=5)
    assert http.value.code == 503
    http.value.close()
    # The healthy two go on without it.
    before = consortium.status(0)["height"]
    consortium.submit(patient_envelopes(2))
    wait_until(lambda: (s := consortium.converged([0, 1])) and s["height"] > before, 30,
               "the healthy pair")


@pytest.mark.parametrize("args", [
    ("consortium", "rejoin", "--genesis", "/nonexistent/genesis.json", "--orderer",
     "etcd://127.0.0.1:27001", "--peer", "http://127.0.0.1:27002"),
    ("consortium", "rejoin", "--genesis", "/nonexistent/genesis.json", "--orderer",
     "etcd://127.0.0.1:27001"),
    ("consortium", "propose", "bogus", "--out", "p.cbor"),
    ("consortium", "cosign", "/nonexistent/p.cbor"),
])
def test_consortium_commands_refuse_bad_input_with_a_message(args: tuple[str, ...],
                                                             tmp_path: Path) -> None:
    res = cli(*args, "--data", tmp_path / "member")
    assert res.returncode != 0
    assert "Traceback" not in res.stdout + res.stderr
    assert "error" in (res.stdout + res.stderr).lower()  # ours, or click's "Error:"
    assert not (tmp_path / "member" / "chain.db").exists()  # a refusal changes nothing

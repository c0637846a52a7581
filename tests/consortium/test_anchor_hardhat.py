"""Anchoring to a real local chain node process: hardhat 2.x `hardhat node` (JSON-RPC).

Installed by .ci/install-hardhat.sh (npm, pinned by .ci/hardhat/package-lock.json). The
final checkpoint is written to that chain, recorded on the ledger, and `verify-anchor` (a
separate CLI process) reads it back over JSON-RPC.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from glucoledger.ledger.finality import verify_final_at
from glucoledger.node import control
from glucoledger.node.anchor import Anchorer, connect, record_tx
from glucoledger.node.genesis_file import member_of
from glucoledger.node.service import Node
from glucoledger.state.governance import member_schedule

from .conftest import CHAIN, Consortium, patient_envelopes, ports_in_range, wait_until
from .test_rejoin import cli

pytest.importorskip("web3", reason="anchoring needs: pip install 'glucoledger[anchor]'")

HARDHAT = Path(__file__).resolve().parents[2] / ".ci" / "hardhat"


def _rpc(url: str, method: str) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.loads(resp.read())["result"]


@pytest.fixture
def hardhat(tmp_path: Path) -> Iterator[str]:
    binary = HARDHAT / "node_modules" / ".bin" / "hardhat"
    if not binary.exists():
        pytest.skip("hardhat is not installed: run .ci/install-hardhat.sh")
    port = ports_in_range(1)
    log = open(tmp_path / "hardhat.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(binary), "node", "--hostname", "127.0.0.1", "--port",
                             str(port)], cwd=HARDHAT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _rpc(url, "eth_chainId"), 90, "hardhat node to answer JSON-RPC")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


@pytest.mark.slow
def test_final_checkpoint_anchored_on_hardhat_and_verified_over_json_rpc(
        consortium: Consortium, hardhat: str) -> None:
    c = consortium
    c.submit(patient_envelopes(4))
    wait_until(c.converged, 30, "convergence")
    with urllib.request.urlopen(c.urls[0] + "/checkpoint?final=1", timeout=5) as r:
        note = r.read()
    with Node(c.folders[1], workers=1) as n:
        schedule = member_schedule(n.state)
    assert int(str(_rpc(hardhat, "eth_chainId")), 16) == 31337
    receipt = Anchorer(connect(hardhat)).anchor(note, schedule)
    assert receipt.chain_id == 31337
    _, wallet = member_of(c.folders[0])
    stx = record_tx(CHAIN, receipt, wallet.load("org"), anchor_nonce=0)
    [res] = control.submit(c.urls[0], [stx.raw], c.node_key(0))
    assert res["code"] == "ok", res
    wait_until(lambda: c.status(1)["height"] >= res["height"], 20, "the record on node 1")
    cosigned = c.base / "final.txt"
    cosigned.write_bytes(note)
    assert verify_final_at(note, schedule).height == receipt.height
    ok = cli("verify-anchor", "--endpoint", hardhat, "--data", c.folders[1],
             "--checkpoint", cosigned)
    assert ok.returncode == 0 and "anchored in chain 31337" in ok.stdout, ok.stdout + ok.stderr
    # Another chain height's checkpoint does not match the recorded anchor.
    time.sleep(0.1)
    c.submit(patient_envelopes(2))
    wait_until(lambda: (s := c.converged()) and s["final_height"] > receipt.height, 30,
               "a later final checkpoint")
    with urllib.request.urlopen(c.urls[0] + "/checkpoint?final=1", timeout=5) as r:
        later = r.read()
    cosigned.write_bytes(later)
    bad = cli("verify-anchor", "--endpoint", hardhat, "--data", c.folders[1],
              "--checkpoint", cosigned)
    assert bad.returncode != 0 and "Traceback" not in bad.stdout + bad.stderr
    assert "anchor names block" in bad.stdout + bad.stderr

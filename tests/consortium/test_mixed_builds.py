"""A consortium whose members run different builds of the core agrees, block for block.

Members install what their machine builds: the compiled wheel (``pip install .`` with a C
compiler) or the pure-Python source (no compiler, or ``GLUCOLEDGER_PURE=1``). Results,
their refusal messages included, are hashed into blocks, so a compiled handler that
answered one transaction otherwise than the source would split the chain. Here one member
runs the source (``PYTHONPATH`` at ``src``) and two run the wheel, on a real TLS
consortium; the transactions include accepted ones and refusals of account creations (malformed
bodies, a policy that can never sign, a wrong nonce). Runs on the wheel
(.ci/run's compiled step); on the source tree every member runs the same build."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import glucoledger
from glucoledger.crypto import generate
from glucoledger.ledger.tx import Transaction, sign
from glucoledger.state.accounts_model import account_id, single_key_policy
from tests.builds import STATE_COMPILED

from .conftest import CHAIN, Consortium, patient_envelopes, wait_until

pytestmark = pytest.mark.skipif(not STATE_COMPILED,
                                reason="every member runs this one build: nothing to compare")

ROOT = Path(__file__).resolve().parents[2]


def _create(body: dict[str, Any], kind: str = "patient", nonce: int = 0) -> bytes:
    k = generate()
    policy = body.get("policy", single_key_policy(k.public))
    try:
        acct = account_id(kind, policy)
    except TypeError:  # a kind that is no text: the compiled account_id refuses it; any id
        acct = bytes(32)
    return sign(Transaction(CHAIN, "account.create", {"kind": kind, "policy": policy, **body},
                            acct, nonce), [k]).raw


def _refused() -> list[bytes]:
    k = generate()
    key = single_key_policy(k.public)["cosigners"][0]["key"]
    never = {"cosigners": [{"key": key, "w": {"default": 1}}], "thresholds": {"default": 2}}
    return [
        _create({"policy": never}),  # bad_policy: the account could never sign
        _create({"policy": {"cosigners": [], "thresholds": {"default": 1}}}),
        _create({"policy": "x"}),
        _create({"kind": 7}),
        _create({"extra": b"\x00"}),
        _create({}, kind="wizard"),
        _create({}, nonce=3),
    ]


def _runs_compiled(pid: int) -> bool:
    """Whether process ``pid`` mapped an extension of the installed wheel's glucoledger."""
    package = str(Path(glucoledger.__file__).parent) + "/"
    return any(line.split()[-1].startswith(package) and line.endswith(".so")
               for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def _results(folder: Path) -> list[tuple[bytes, bytes]]:
    db = sqlite3.connect(f"file:{folder / 'chain.db'}?mode=ro", uri=True)
    try:
        return [(bytes(h), bytes(r)) for h, r in
                db.execute("SELECT hash, result FROM txs ORDER BY rowid").fetchall()]
    finally:
        db.close()


def test_a_member_on_the_source_agrees_with_members_on_the_wheel(
        consortium: Consortium) -> None:
    c = consortium
    c.kill_node(0, hard=False)
    c.start_node(0, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    pids = [int(n["pid"]) for n in c.state["nodes"]]
    assert [_runs_compiled(p) for p in pids] == [False, True, True]

    good = patient_envelopes(6)
    refused = _refused()
    receipts = []
    for i, batch in enumerate((good[:3] + refused[:4], refused[4:] + good[3:])):
        receipts += c.submit(batch, prefer=i)  # the source's member orders the first
    codes = [r["code"] for r in receipts]
    assert codes.count("ok") == 6 and len(set(codes) - {"ok"}) >= 3, codes
    final = wait_until(c.converged, 60, "every member at one final checkpoint")
    for i in range(3):
        st = c.status(i)
        assert st["error"] is None and st["refusing"] is None and not st["diverged"], st
    assert final["final_root"]
    assert _results(c.folders[0]) == _results(c.folders[1]) == _results(c.folders[2])

"""The zero-knowledge benchmark runs and measures what it says: the claim it times verifies
with bn254.py, with py_ecc (its baseline, checking the same proofs) and with snarkjs, and
the environment variable it sets to time the Python verifier is put back."""

from __future__ import annotations

import os

import pytest

from glucoledger.bench.zk import bench_zk
from glucoledger.zk.toolchain import PROFILES, Toolchain


def test_small_run(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Toolchain(PROFILES["test"]).ready():
        pytest.skip("the zero-knowledge toolchain is not set up here: run "
                    "`glucoledger zk-setup --profile test`")
    monkeypatch.delenv("GLUCOLEDGER_ZK_VERIFIER", raising=False)
    (row,) = bench_zk("test", [1])
    assert row["py_ecc_agrees"] == row["snarkjs_agrees"] == 1.0
    assert row["verify_python_s"] is not None and row["verify_python_s"] > 0
    assert "GLUCOLEDGER_ZK_VERIFIER" not in os.environ

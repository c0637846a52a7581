"""A command the node refuses changes nothing on the ledger: what the node layer can tell is
wrong before signing (a serial that cannot name the device's key, a patient without her
trusted party) is refused before a transaction is ordered, as bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import run


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("refused") / "clinic"
    r = run("init", "--data", str(d))
    assert r.returncode == 0, r.stderr
    return d


def _log_size(d: Path) -> int:
    r = run("blocks", "--json", "--last", "1", "--data", str(d))
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)[-1]["log_size"])


@pytest.mark.parametrize("serial", ["CGM 01", "CGM/01", "cgm-é"])
def test_a_serial_that_cannot_name_a_wallet_key_registers_nothing(node: Path,
                                                                   serial: str) -> None:
    """Once the ledger recorded the device and the key could not be kept: the serial was
    taken for good ("already registered") and its signing key lost."""
    before = _log_size(node)
    r = run("device", "register", "--serial", serial, "--data", str(node))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"serial {serial!r}" in r.stderr and "letters, digits" in r.stderr
    assert "Traceback" not in r.stderr
    assert _log_size(node) == before
    assert serial not in run("device", "list", "--data", str(node)).stdout


def test_a_patient_without_a_trusted_party_is_refused_before_the_ledger(node: Path) -> None:
    """The default kind (patient) without --trusted made a policy the ledger refuses as
    locked: a refused transaction on the chain and advice about thresholds and weights."""
    before = _log_size(node)
    r = run("account", "create", "zed", "--data", str(node))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--trusted NAME" in r.stderr and "Traceback" not in r.stderr
    assert _log_size(node) == before

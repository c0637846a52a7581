"""A command the node refuses changes nothing on the ledger: what the node layer can tell is
wrong before signing (a serial that cannot name the device's key, a patient without her
trusted party) is refused before a transaction is ordered, as bad input (exit 2); so is an
input file too large to be one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_an_endless_or_huge_input_file_is_refused_before_it_fills_the_memory(
        node: Path, tmp_path: Path) -> None:
    """``ingest /dev/zero`` (any file a command reads: a disk image given by mistake) read it
    whole: MemoryError, "a bug" (here under a 2 GiB address-space limit; without one the
    machine swaps)."""
    resource = pytest.importorskip("resource")
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this machine")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "400"}
    before = _log_size(node)
    sparse = tmp_path / "big.jsonl"
    with sparse.open("wb") as f:
        f.truncate((64 << 20) + 1)
    for path in ("/dev/zero", str(sparse)):
        r = subprocess.run([sys.executable, "-m", "glucoledger", "ingest", path, "--patient",
                            "org", "--device", "X", "--data", str(node)], env=env,
                           capture_output=True, text=True, timeout=300, check=False,
                           preexec_fn=limit)
        assert r.returncode == 2, r.stderr
        assert "larger than 64 MiB" in r.stderr and "unexpected" not in r.stderr, r.stderr
    assert _log_size(node) == before


def test_a_firmware_image_is_read_in_pieces_and_an_endless_one_refused(
        node: Path, tmp_path: Path) -> None:
    """``firmware verify /dev/zero`` read the image whole: MemoryError ("a bug") under a
    1 GiB address-space limit. Now the image is hashed in pieces (an image may be up to
    16 GiB) and one that never ends is refused past that size; a real image still works."""
    resource = pytest.importorskip("resource")
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this machine")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "400"}
    r = subprocess.run([sys.executable, "-m", "glucoledger", "firmware", "verify", "/dev/zero",
                        "--model", "CGM-G7", "--version", "1.0.0", "--data", str(node)],
                       env=env, capture_output=True, text=True, timeout=600, check=False,
                       preexec_fn=limit)
    assert r.returncode == 2 and "larger than 16 GiB" in r.stderr, r.stderr
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 40)
    r = run("firmware", "publish", str(image), "--model", "CGM-G7", "--version", "2.0.0",
            "--data", str(node))
    assert r.returncode == 0, r.stderr
    r = run("firmware", "verify", str(image), "--model", "CGM-G7", "--version", "2.0.0",
            "--data", str(node))
    assert r.returncode == 0 and "10240 bytes" in r.stdout, r.stdout + r.stderr

"""The benchmarks' shared parts: port options, load, the signature ceiling, the plain store."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glucoledger.bench.common import (
    Ports,
    best_ceiling,
    machine_load,
    parse_port_range,
    signature_ceiling,
)
from glucoledger.bench.plainstore import make_app
from glucoledger.errors import InputError


@pytest.mark.parametrize("text", ["", "27500", "a-b", "27599-27500", "0-10", "1-70000",
                                  "27500--27599"])
def test_a_bad_port_range_is_refused_with_the_form_to_use(text: str) -> None:
    with pytest.raises(InputError, match="port range"):
        parse_port_range(text)


def test_ports_come_from_the_range_in_order_skipping_held_ones() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        ports = Ports.from_args(0, f"{busy}-{busy + 40}")
        first = ports.take()
        assert busy < first <= busy + 40  # the held port is skipped
        assert ports.take() > first  # never the same port twice
        start = ports.block(3)
        assert start > first


def test_one_port_then_the_range_and_a_full_range_is_refused() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        ports = Ports.from_args(busy + 1, f"{busy}-{busy}")
        assert ports.take() == busy + 1  # --port first
        with pytest.raises(InputError, match="no free port left"):
            ports.take()  # the range holds only the held port
        with pytest.raises(InputError, match="consecutive"):
            ports.block(2)


def test_a_single_port_for_a_bench_that_binds_two_asks_for_a_range() -> None:
    ports = Ports.from_args(27599)
    assert ports.take() == 27599
    with pytest.raises(InputError, match="--port-range"):
        ports.take()
    assert Ports().take() == 0 and Ports().take_bound() > 0


def test_machine_load_names_the_cpus() -> None:
    m = machine_load()
    assert m["cpus"] >= 1 and m["load_1m"] >= 0


def test_signature_ceiling_measures_each_installed_library() -> None:
    c = signature_ceiling(200, repeat=2)
    assert c["cryptography_verify_one_core"] > 0
    assert c["cryptography_verify_all_cores"] > 0
    assert best_ceiling(c) >= c["cryptography_verify_all_cores"]
    try:
        import nacl  # noqa: F401
    except ImportError:
        assert "pynacl_verify_one_core" not in c
    else:
        assert c["pynacl_verify_one_core"] > 0


def test_the_plain_store_checks_the_secret_and_the_entries_and_stores_them(
        tmp_path: Path) -> None:
    good = hashlib.sha1(b"s").hexdigest()
    client = TestClient(make_app(tmp_path / "p.db", {good}))
    body = json.dumps([{"type": "sgv", "sgv": 120, "date": 1}])
    assert client.post("/api/v1/entries", content=body,
                       headers={"api-secret": "nope"}).status_code == 401
    assert client.post("/api/v1/entries", content="[{}]",
                       headers={"api-secret": good}).status_code == 400
    r = client.post("/api/v1/entries", content=body, headers={"api-secret": good})
    assert r.status_code == 200 and r.json()[0]["sgv"] == 120
    import sqlite3

    rows = sqlite3.connect(tmp_path / "p.db").execute("SELECT sgv FROM entries").fetchall()
    assert rows == [(120,)]  # only the accepted POST was stored


@pytest.mark.parametrize("module", ["glucoledger.bench.server", "glucoledger.bench.consortium"])
def test_a_bench_given_a_bad_port_range_says_so_without_a_traceback(module: str) -> None:
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", module, "--port-range", "27600-27500"],
                       capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert r.returncode != 0
    assert "FIRST <= LAST" in r.stderr and "Traceback" not in r.stderr

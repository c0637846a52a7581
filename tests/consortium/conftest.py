"""A real local consortium per test: 3 etcd members, 3 `glucoledger node` processes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glucoledger.bench.ledger import account_envelopes
from glucoledger.errors import GlucoledgerError
from glucoledger.node import control, devcluster
from glucoledger.node.genesis_file import member_of
from glucoledger.ordering.cluster import EtcdCluster
from glucoledger.ordering.etcd_rbac import EtcdAdmin

from ..servers import free_ports, local_consortium, require_etcd, wait_until

CHAIN = "glucoledger/consortium"

# The port and etcd helpers every test shares (tests/servers.py), under their old names here.
ports_in_range = free_ports
__all__ = ["CHAIN", "Consortium", "patient_envelopes", "ports_in_range", "require_etcd",
           "wait_until"]


def patient_envelopes(n: int) -> list[bytes]:
    return account_envelopes(CHAIN, n)


@dataclass
class Consortium:
    base: Path
    state: dict[str, Any]

    @property
    def folders(self) -> list[Path]:
        return [Path(n["data"]) for n in self.state["nodes"]]

    @property
    def urls(self) -> list[str]:
        return [n["control"] for n in self.state["nodes"]]

    @property
    def etcd(self) -> EtcdCluster:
        path = Path(self.state["etcd_dir"])
        return devcluster._CLUSTERS.get(path) or EtcdCluster.load(path)

    def etcd_endpoint(self, i: int) -> str:
        """``host:port`` of member i's own etcd member, the only one whose client port
        accepts its certificates (``devcluster``)."""
        return f"127.0.0.1:{self.etcd.members[i].client_port}"

    def etcd_url(self, i: int = 0) -> str:
        """The orderer URL as member i uses it: its own etcd member, over TLS with its
        certificate (without TLS: every member)."""
        if not self.state.get("tls"):
            return str(self.state["etcd"])
        return f"etcd://{self.etcd_endpoint(i)}?tls={self.folders[i] / 'tls'}"

    def etcd_admin(self, i: int = 0) -> EtcdAdmin:
        """etcd's root, held in member i's ``etcd-admin`` folder, through its etcd member."""
        return EtcdAdmin.from_folder(f"etcd://{self.etcd_endpoint(i)}",
                                     self.folders[i] / "etcd-admin")

    def status(self, i: int) -> dict[str, Any]:
        return dict(json.loads((self.folders[i] / "status.json").read_text()))

    def node_key(self, i: int) -> Any:
        """Member i's node key (it signs control requests), loaded once."""
        cache = self.__dict__.setdefault("_keys", {})
        if i not in cache:
            cache[i] = member_of(self.folders[i])[1].load("node")
        return cache[i]

    def submit(self, envelopes: list[bytes], prefer: int = 0) -> list[dict[str, Any]]:
        """Submit through the first node that answers (failing over like a client would),
        signed by that member's own node key."""
        last: Exception | None = None
        for k in range(len(self.urls)):
            i = (prefer + k) % len(self.urls)
            try:
                return control.submit(self.urls[i], envelopes, self.node_key(i), timeout=30)
            except GlucoledgerError as exc:
                last = exc
        assert last is not None
        raise last

    def kill_node(self, i: int, hard: bool = True) -> None:
        import signal

        node = self.state["nodes"][i]
        devcluster.stop_node(int(node["pid"]), Path(node["data"]),
                             signal.SIGKILL if hard else signal.SIGTERM)

    def start_node(self, i: int, extra: tuple[str, ...] = (),
                   env: dict[str, str] | None = None) -> None:
        node = self.state["nodes"][i]
        (Path(node["data"]) / "control.json").unlink(missing_ok=True)
        node["pid"] = devcluster.start_node(Path(node["data"]), port=int(node.get("port", 0)),
                                            extra=extra, env=env)
        url = devcluster.wait_controls([Path(node["data"])])[0]
        node["control"] = url
        (self.base / "consortium.json").write_text(json.dumps(self.state))

    def converged(self, nodes: list[int] | None = None) -> dict[str, Any] | None:
        """All (listed) nodes at one height with one final checkpoint at that height."""
        idx = nodes if nodes is not None else list(range(len(self.folders)))
        sts = [self.status(i) for i in idx]
        first = sts[0]
        if all(s["height"] == first["height"] and s["final_height"] == first["height"]
               and s["final_root"] == first["final_root"] for s in sts):
            return first
        return None

    def flip_byte(self, i: int, table: str, key_col: str, val_col: str, where: str) -> Any:
        """Flip one bit in the middle of the first ``val_col`` matching ``where`` in node
        i's store (stopped); return that row's ``key_col``."""
        db = sqlite3.connect(self.folders[i] / "chain.db")
        try:
            key, value = db.execute(f"SELECT {key_col}, {val_col} FROM {table} WHERE {where} "
                                    f"ORDER BY {key_col} LIMIT 1").fetchone()
            value = bytearray(value)
            value[len(value) // 2] ^= 0x01
            db.execute(f"UPDATE {table} SET {val_col} = ? WHERE {key_col} = ?",
                       (bytes(value), key))
            db.commit()
            return key
        finally:
            db.close()

    def damaged_and_reported(self, i: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Restart node i; wait until it refuses and the others name it. Returns its status
        and the others' first reports about it."""
        self.start_node(i)
        st = wait_until(lambda: self.status(i)["refusing"] and self.status(i), 30,
                        "the damaged node to refuse")
        name = self.state["nodes"][i]["name"]
        reports = [wait_until(lambda j=j: [d for d in self.status(j)["diverged"]
                                           if d["node"] == name], 20, f"node {j}'s report")[0]
                   for j in range(len(self.folders)) if j != i]
        return st, reports

    def ok_counts(self, i: int, tx_hashes: list[str]) -> dict[str, int]:
        db = sqlite3.connect(f"file:{self.folders[i] / 'chain.db'}?mode=ro", uri=True)
        try:
            out = {}
            for h in tx_hashes:
                rows = db.execute("SELECT result FROM txs WHERE hash = ?",
                                  (bytes.fromhex(h),)).fetchall()
                out[h] = sum(1 for (r,) in rows if bytes(r)[:4] == b"\x82bok")
            return out
        finally:
            db.close()


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    with local_consortium(tmp_path / "c") as state:
        yield Consortium(tmp_path / "c", state)

"""Consortium throughput and commit latency, side by side with an in-process Ethereum chain.

``python -m glucoledger.bench.consortium [--tx N] [--batch B] [--clients C] [--eth M]
[--idle S] [--port-range A-B]``

Starts 3 etcd members and 3 ``glucoledger node`` processes on 127.0.0.1 (``node.devcluster``),
pre-signs N ``account.create`` transactions (signing is the clients' work, not timed), then C
client threads submit them in batches of B to the nodes' control endpoints, round robin. A
poller reads every node's status every 10 ms.

- committed on all nodes: a batch counts when every node's final (cosigned) checkpoint
  covers the block that holds it; tx/s = N / (time of the last such moment - start);
- commit latency: per transaction, from its batch's submit to that moment (p50, p99).

CPU, with psutil over the processes themselves: the nodes' and etcd's CPU over ``idle``
seconds with no load (before any transaction and again after them all), and their CPU during
the timed section divided by the transactions (per node: the nodes' total over 3).

Baselines in the same run: the all-core Ed25519 verify ceiling (``bench.common``), and, side
by side: the first M of the same envelopes, each sent as the data of a
transaction on an eth-tester chain (py-evm, in process), waiting for each receipt.

Numbers are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..node import control, devcluster
from ..node.genesis_file import member_of
from ..runtime import interruptible
from .common import Ports, best_ceiling, print_ceiling, print_load, require, signature_ceiling
from .ledger import account_envelopes

__all__ = ["main", "run"]

CHAIN = "glucoledger/consortium"




def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")


def _processes(state: dict[str, Any], base: Path) -> tuple[list[Any], list[Any]]:
    import psutil  # type: ignore[import-untyped]

    cluster = devcluster._CLUSTERS[base / "etcd"]
    nodes = [psutil.Process(int(x["pid"])) for x in state["nodes"]]
    etcd = [psutil.Process(m.pid) for m in cluster.members if m.pid is not None]
    return nodes, etcd


def _requests(urls: list[str], keys: list[Any]) -> dict[str, int]:
    """The members' requests to etcd so far, by kind, summed (``ConsortiumNode.etcd_requests``
    in each one's signed status)."""
    total: dict[str, int] = {}
    for url, key in zip(urls, keys, strict=True):
        for k, v in control.get_status(url, key).get("etcd_requests", {}).items():
            total[k] = total.get(k, 0) + int(v)
    return total


def _cpu(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(
            t, "children_system", 0.0)
    return total


def idle_cpu(nodes: list[Any], etcd: list[Any], seconds: float) -> dict[str, float]:
    """Cores busy (CPU seconds per second) over ``seconds`` of no load."""
    n0, e0 = _cpu(nodes), _cpu(etcd)
    time.sleep(seconds)
    return {"idle_nodes_cores": (_cpu(nodes) - n0) / seconds,
            "idle_etcd_cores": (_cpu(etcd) - e0) / seconds}


def run(n: int = 6000, batch: int = 500, clients: int = 6, eth: int = 200, idle: float = 30.0,
        port_range: str = "", follow: str = "watch") -> dict[str, float]:
    """One cluster, one load; ``follow``: "watch" (the nodes' default) or "poll" (the nodes
    run the polling loop, ``GLUCOLEDGER_FOLLOW=poll``: the same-run baseline of the watch)."""
    if follow not in ("watch", "poll"):
        raise ValueError("follow is 'watch' or 'poll'")
    saved = os.environ.get("GLUCOLEDGER_FOLLOW")
    os.environ["GLUCOLEDGER_FOLLOW"] = follow  # the node processes inherit it
    try:
        return _run(n, batch, clients, eth, idle, port_range)
    finally:
        if saved is None:
            os.environ.pop("GLUCOLEDGER_FOLLOW", None)
        else:
            os.environ["GLUCOLEDGER_FOLLOW"] = saved


def _run(n: int, batch: int, clients: int, eth: int, idle: float,
         port_range: str) -> dict[str, float]:
    envs = account_envelopes(CHAIN, n)
    ports = Ports.from_args(0, port_range)
    base_port = ports.block(9) if port_range else None  # 6 for etcd, 3 control endpoints
    with tempfile.TemporaryDirectory(prefix="glucoledger-bench-") as tmp:
        base = (Path(tmp) / "c").resolve()
        state = devcluster.up(base, 3, base_port=base_port)
        folders = [Path(x["data"]) for x in state["nodes"]]
        urls = [x["control"] for x in state["nodes"]]
        try:
            nodes, etcd = _processes(state, base)
            out: dict[str, float] = {}
            if idle > 0:
                time.sleep(2)  # let start-up settle (genesis, first notes)
                out |= {f"{k}_before": v for k, v in idle_cpu(nodes, etcd, idle).items()}
            keys = [member_of(f)[1].load("node") for f in folders]
            r0 = _requests(urls, keys)
            n0, e0 = _cpu(nodes), _cpu(etcd)
            out |= _measure(envs, batch, clients, folders, urls)
            done = out["consortium_tx"] or 1
            r1 = _requests(urls, keys)
            out |= {f"etcd_{k.replace(' ', '_')}_per_100_tx": (r1[k] - r0.get(k, 0)) / done * 100
                    for k in r1}
            out["node_cpu_ms_per_tx_per_node"] = (_cpu(nodes) - n0) / done / len(nodes) * 1000
            out["etcd_cpu_ms_per_tx"] = (_cpu(etcd) - e0) / done * 1000
            if idle > 0:
                time.sleep(2)
                out |= {f"{k}_after": v for k, v in idle_cpu(nodes, etcd, idle).items()}
            return out | _eth(envs[:eth])
        finally:
            devcluster.down(base)


def _measure(envs: list[bytes], batch: int, clients: int, folders: list[Path],
             urls: list[str]) -> dict[str, float]:
    batches = [envs[k:k + batch] for k in range(0, len(envs), batch)]
    pending: list[tuple[float, int, int]] = []  # (submitted at, height, size)
    lock = threading.Lock()
    done: list[tuple[float, float, int]] = []  # (submitted, final at, size)
    stop = threading.Event()
    queue = list(enumerate(batches))
    keys = [member_of(f)[1].load("node") for f in folders]  # each signs its own requests

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                i, b = queue.pop(0)
            t0 = time.perf_counter()
            receipts = control.submit(urls[i % len(urls)], b, keys[i % len(urls)],
                                      timeout=120)
            with lock:
                pending.append((t0, max(r["height"] for r in receipts), len(b)))

    def poller() -> None:
        while not stop.is_set():
            try:
                finals = [json.loads((f / "status.json").read_text())["final_height"]
                          for f in folders]
            except (OSError, ValueError):
                time.sleep(0.005)
                continue
            now = time.perf_counter()
            low = min(finals)
            with lock:
                for item in [p for p in pending if p[1] <= low]:
                    pending.remove(item)
                    done.append((item[0], now, item[2]))
            time.sleep(0.01)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    watch = threading.Thread(target=poller)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if not pending:
                break
        time.sleep(0.01)
    stop.set()
    watch.join()
    lat = [d[1] - d[0] for d in done for _ in range(d[2])]
    end = max(d[1] for d in done)
    total = sum(d[2] for d in done)
    return {"consortium_tx": total, "consortium_tx_per_s": total / (end - start),
            "consortium_p50_s": _pct(lat, 0.50), "consortium_p99_s": _pct(lat, 0.99)}


def _eth(envs: list[bytes]) -> dict[str, float]:
    if not envs:
        return {}
    try:
        from web3 import EthereumTesterProvider, Web3
    except ImportError:
        return {}
    w3 = Web3(EthereumTesterProvider())
    sender = w3.eth.accounts[0]
    lat = []
    start = time.perf_counter()
    for e in envs:
        t0 = time.perf_counter()
        tx: Any = {"from": sender, "to": sender, "value": 0, "data": "0x" + e.hex()}
        h = w3.eth.send_transaction(tx)
        w3.eth.wait_for_transaction_receipt(h)
        lat.append(time.perf_counter() - t0)
    secs = time.perf_counter() - start
    return {"eth_tester_tx": len(envs), "eth_tester_tx_per_s": len(envs) / secs,
            "eth_tester_p50_s": statistics.median(lat), "eth_tester_p99_s": _pct(lat, 0.99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tx", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--eth", type=int, default=200)
    ap.add_argument("--idle", type=float, default=30.0,
                    help="seconds of idle CPU measured before and after the load (0: skip)")
    ap.add_argument("--compare-poll", action="store_true",
                    help="run again with the nodes polling etcd (the old loop), same run")
    ap.add_argument("--port-range", default="",
                    help="take the 9 ports (6 etcd, 3 control endpoints) from FIRST-LAST")
    args = ap.parse_args()
    require("psutil", "psutil", "to measure the etcd members' and the nodes' CPU")
    try:
        Ports.from_args(0, args.port_range)  # a bad range is refused before any work
    except InputError as exc:
        raise SystemExit(f"bench.consortium: {exc}") from None
    print_load("start")
    ceiling = signature_ceiling()
    print_ceiling(ceiling)
    try:
        results = run(args.tx, args.batch, args.clients, args.eth, args.idle, args.port_range)
        base = (run(args.tx, args.batch, args.clients, 0, args.idle, args.port_range, "poll")
                if args.compare_poll else {})
    except InputError as exc:
        raise SystemExit(f"bench.consortium: {exc}") from None
    for k, v in results.items():
        ratio = f"   {v / base[k]:.3f}x the polling loop's" if base.get(k) else ""
        print(f"{k:32} {v:,.3f}{ratio}")
    for k, v in base.items():
        print(f"baseline (polling loop) {k:32} {v:,.3f}")
    best = best_ceiling(ceiling)
    print(f"consortium: {results['consortium_tx_per_s'] / best:.3f}x the all-core signature "
          f"ceiling (goal: >= 3,000 tx/s, p99 < 1 s, idle < 0.05 cores)")
    print_load("end")


if __name__ == "__main__":
    interruptible(main)

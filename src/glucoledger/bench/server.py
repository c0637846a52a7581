"""Server benchmark: Nightscout-style uploads and audited summary reads over loopback.

The server (uvicorn with uvloop and httptools, one process; a thread of this one) serves a
fresh node; then the same node behind HTTP worker processes (below). The client is a second
process (``multiprocessing``, spawn) driving keep-alive connections from one asyncio loop
(``bench.loadgen``: a lean client, so that the client's CPU is not taken from the server's
two cores more than it must).

- Uploads: ``patients`` patients (one uploader secret each, as each patient's phone has its
  own) shared round-robin over ``connections`` connections. Each request is one xDrip+-style
  POST /api/v1/entries of one SGV, the patient's readings 5 minutes apart (as a CGM makes
  them), so every request becomes one gateway-attested ``data.commit``.
- Reads: POST /api/reads (14-day summary) signed by the clinician with RFC 9421 (fresh nonce
  each): one ``access`` transaction ordered before the summary is released.
- Follower polls: GET /api/v1/entries.json?count=10&rr=<n> with a reader token holding a raw
  grant (xDrip+'s follower), each an audited ``access`` transaction.
- Mix: per connection, 6 uploads, 2 PUT updates of one temp basal per patient (each a new
  version: new batches and a ``doc.version`` transaction) and 2 follower polls in 10.
- Baselines, in the same run: the plain store (``bench.plainstore``: FastAPI + SQLite taking
  the same Nightscout POSTs from the same client, an fsync per request, no signatures, no
  ledger), which the upload rows are given as a ratio of (the issue's goal: >= 1.5x it, p99
  < 50 ms); and GET /api/v1/status.json on our server (no ledger work), the floor the HTTP
  stack itself sets, which every row is also given as a ratio of.
- The machine's load at the start and the end (``bench.common``).

Numbers are printed, not asserted.

- Workers, in the same run: the same node behind ``--workers`` HTTP worker processes
  (api/workers.py, as ``serve --workers N``): status, uploads and the mix again, each row
  also given as a ratio of the one-process row and of the plain store; server CPU counts
  the ordering process and the workers.

Run: ``python -m glucoledger.bench.server [--seconds 10] [--connections 32] [--patients 128]
[--workers 2[,3...]] [--port N | --port-range A-B]`` (the server takes the first port, the
plain store the next, the workers the next).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import resource
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runtime import interruptible, long_running_gc
from .common import Ports, add_port_args, print_load, require

__all__ = ["main", "run"]

_STEP_MS = 300_000  # one CGM reading every 5 minutes
_BACK_MS = 7 * 86_400_000  # the first reading of each patient, a week ago


def _iso(ms: int) -> str:
    from ..interop.nsrender import iso

    return iso(ms)


def _client(host: str, port: int, kind: str, secrets_: list[str], seconds: float,
            connections: int, signer: Any, out: Any, follow: tuple[str, ...] = (),
            shift: int = 0) -> None:
    from ..crypto import PrivateKey
    from ..crypto.httpsig import sign_request
    from .loadgen import http_request, run_connections

    key = PrivateKey.from_private_bytes(signer[0], signer[1])
    # Each row its own day of readings (``shift``), so no row re-sends another's: a repeat
    # is answered without being stored, which would flatter the rows after the first.
    base = int(time.time() * 1000) - _BACK_MS + shift * 86_400_000
    sent = [0] * len(secrets_)
    auth = [hashlib.sha1(s.encode()).hexdigest() for s in secrets_]
    hostport = f"{host}:{port}"
    read_body = json.dumps({"patient": "p0", "streams": ["cgm"], "view": "summary"}).encode()
    status = http_request("GET", "/api/v1/status.json", hostport)

    def upload(conn: int, i: int) -> bytes:
        p = (conn + i * connections) % len(secrets_)  # this connection's patients in turn
        t = base + sent[p] * _STEP_MS + p
        sent[p] += 1
        body = json.dumps([{"type": "sgv", "sgv": 90 + (t // _STEP_MS) % 90, "date": t,
                            "direction": "Flat", "device": "xDrip-G6"}]).encode()
        return http_request("POST", "/api/v1/entries", hostport, body,
                            {"api-secret": auth[p], "content-type": "application/json"})

    def read(conn: int, i: int) -> bytes:
        hs = sign_request(key, method="POST", url=f"http://{hostport}/api/reads",
                          body=read_body, nonce=secrets.token_hex(12))
        return http_request("POST", "/api/reads", hostport, read_body,
                            {**hs, "content-type": "application/json"})

    updates = [0] * len(secrets_)
    poll_auth = follow[0] if follow else ""

    def update(conn: int, i: int) -> bytes:
        # Loop/xDrip+: the same temp basal again with another duration: a new version
        p = (conn + i * connections) % len(secrets_)
        updates[p] += 1
        t = base - 3_600_000 + p
        body = json.dumps([{"eventType": "Temp Basal", "created_at": _iso(t),
                            "enteredBy": "loop://iPhone", "rate": 0.5, "absolute": 0.5,
                            "duration": 30 - updates[p] % 25}]).encode()
        return http_request("PUT", "/api/v1/treatments", hostport, body,
                            {"api-secret": auth[p], "content-type": "application/json"})

    def poll(conn: int, i: int) -> bytes:
        # xDrip+ follower: the last 10 readings, cache-buster and all, through a raw grant
        return http_request("GET", f"/api/v1/entries.json?count=10&rr={i}", hostport, b"",
                            {"api-secret": poll_auth})

    def mix(conn: int, i: int) -> bytes:
        k = i % 10
        return upload(conn, i) if k < 6 else update(conn, i) if k < 8 else poll(conn, i)

    make = {"upload": upload, "read": read, "status": lambda c, i: status, "mix": mix,
            "poll": poll}[kind]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    res = run_connections(host, port, make, connections, seconds)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out.put((res.latencies, res.errors, res.first_error, cpu))


def _report(name: str, lat: list[float], errors: int, seconds: float, server_cpu: float,
            client_cpu: float, baseline: float | None) -> dict[str, Any]:
    lat.sort()
    n = len(lat)

    def p(q: float) -> float:
        return lat[min(n - 1, int(q * n))] * 1000 if n else 0.0

    per_s = n / seconds if seconds else 0.0
    row = {"what": name, "requests": n, "errors": errors, "per_s": round(per_s, 1),
           "p50_ms": round(p(0.50), 2), "p99_ms": round(p(0.99), 2),
           "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else 0.0,
           "server_cpu_ms": round(server_cpu / n * 1000, 3) if n else 0.0,
           "client_cpu_ms": round(client_cpu / n * 1000, 3) if n else 0.0,
           "of_baseline": round(per_s / baseline, 3) if baseline else 1.0}
    ratio = "" if baseline is None else f"  {row['of_baseline']:.2f} of baseline"
    print(f"{name:34s} {row['per_s']:>8.1f}/s  p50 {row['p50_ms']:>7.2f} ms  "
          f"p99 {row['p99_ms']:>7.2f} ms  server {row['server_cpu_ms']:.2f} ms CPU/req  "
          f"client {row['client_cpu_ms']:.2f}{ratio}  ({n} requests, {errors} errors)")
    return row


def _plain_row(ports: Ports, secrets_: list[str], seconds: float, connections: int,
               signer: Any, folder: Path, baseline: float | None) -> dict[str, Any]:
    """Run the plain store in its own process and the same upload client against it."""
    import psutil  # type: ignore[import-untyped]

    from .plainstore import serve

    ctx = mp.get_context("spawn")
    port = ports.take_bound()
    hashes = [hashlib.sha1(s.encode()).hexdigest() for s in secrets_]
    folder.mkdir(parents=True, exist_ok=True)
    server = ctx.Process(target=serve, args=(port, str(folder), hashes), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if time.monotonic() > deadline or not server.is_alive():
                raise RuntimeError(f"the plain store did not start on port {port}")
            time.sleep(0.05)
        proc = psutil.Process(server.pid)
        c0 = proc.cpu_times()
        q = ctx.Queue()
        client = ctx.Process(target=_client, args=("127.0.0.1", port, "upload", secrets_,
                                                   seconds, connections, signer, q))
        client.start()
        t0 = time.perf_counter()
        lat, errors, first_error, client_cpu = q.get()
        wall = min(seconds, time.perf_counter() - t0)
        c1 = proc.cpu_times()
        client.join()
    finally:
        server.terminate()
        server.join(10)
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    row = _report(f"baseline: plain FastAPI+SQLite uploads ({connections} conns)", lat, errors,
                  wall, cpu, client_cpu, baseline)
    if first_error:
        print(f"  first error: {first_error}")
    return row


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(seconds: float = 10.0, connections: int = 32, patients: int = 128, readers: int = 8,
        folder: Path | None = None, port: int = 0, port_range: str = "",
        plain: bool = True, workers: tuple[int, ...] = (2,)) -> list[dict[str, Any]]:
    import uvicorn

    from ..api.app import create_app
    from ..api.context import ServerContext
    from ..node import consent_actions as ca
    from ..node.accounts import create_account, identity, keys_of
    from ..node.service import Node

    ports = Ports.from_args(port, port_range)
    load0 = print_load("start")
    folder = folder or Path(tempfile.mkdtemp(prefix="glucoledger-bench-server-"))
    node = Node.init(folder)
    c = ServerContext.create(node)
    assert c.svc is not None
    ns = c.svc.nightscout
    # No per-credential read budget (node/readguard.py): the read and poll rows measure the
    # audited read path at full speed, one reader and one patient.
    c.svc.access.guard.rate = None
    create_account(node, "dr-b", "clinician")
    create_account(node, "t", "trusted")
    secrets_ = []
    for i in range(patients):
        create_account(node, f"p{i}", "patient", trusted="t")
        s = f"bench-secret-{i:04d}-{secrets.token_hex(4)}"
        ns.add_uploader(f"p{i}", s)
        secrets_.append(s)
    p0 = identity(node, "p0")
    now = int(time.time() * 1000)
    # Two finished days of p0's readings: a summary-only grant releases whole, finished UTC
    # days (state/consent.py ``_check_days``), so the read row reads those.
    midnight = now - now % 86_400_000
    up0 = ns.authenticate(hashlib.sha1(secrets_[0].encode()).hexdigest(), None)
    ns.upload(up0, "entries", [{"type": "sgv", "sgv": 100 + k % 60, "date": t,
                                "direction": "Flat"}
                               for k, t in enumerate(range(midnight - 2 * 86_400_000,
                                                           midnight, 300_000))], now)
    ca.grant(node, p0.id, keys_of(node, p0, [0]), identity(node, "dr-b").id, streams=["cgm"],
             view="summary", window={"last_days": 14}, valid_from=now,
             valid_until=now + 86_400_000)
    # A follower of p0 with a raw grant (the xDrip+ follower polls of the mix row).
    create_account(node, "fol", "clinician")
    ca.grant(node, p0.id, keys_of(node, p0, [0]), identity(node, "fol").id,
             streams=["cgm", "insulin"], view="raw", window={"last_days": 14},
             valid_from=now, valid_until=now + 86_400_000)
    follow_token = f"bench-follow-{secrets.token_hex(8)}"
    ns.add_reader("fol", "p0", follow_token)
    follow = (hashlib.sha1(follow_token.encode()).hexdigest(),)
    app = create_app(node, context=c)
    port = ports.take_bound()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="auto",
                                           http="auto", log_level="warning", access_log=False))
    long_running_gc()  # as ``serve`` does once its setup is done
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    ctx = mp.get_context("spawn")
    rows = []
    key = keys_of(node, identity(node, "dr-b"))[0]
    signer = (key.alg, key.private_bytes())  # the client process signs as dr-b
    print(f"server: uvicorn ({server.config.loop} loop, {server.config.http} parser), "
          f"1 process; client: a second process, {seconds:.0f} s per row")
    baseline: float | None = None
    plain_rate: float | None = None
    shift = 0
    for kind, conns, name in (("status", connections, "baseline: GET status.json"),
                              ("upload", connections, "Nightscout uploads"),
                              ("read", readers, "audited summary reads"),
                              ("poll", readers, "follower polls (raw, audited)"),
                              ("mix", connections, ("mix: 60% uploads, 20% PUT updates "
                                                    "(versions), 20% follower polls"))):
        if conns <= 0:
            continue
        q = ctx.Queue()
        shift += kind in ("upload", "mix")
        proc = ctx.Process(target=_client, args=("127.0.0.1", port, kind, secrets_, seconds,
                                                 conns, signer, q, follow, shift))
        proc.start()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        lat, errors, first_error, client_cpu = q.get()
        wall = min(seconds, time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        proc.join()
        server_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        row = _report(f"{name} ({conns} conns)", lat, errors, wall, server_cpu, client_cpu,
                      baseline)
        if first_error:
            print(f"  first error: {first_error}")
        row["kind"] = kind
        if kind == "status":
            baseline = row["per_s"] or None
        if plain_rate and kind in ("upload", "mix"):
            row["of_plain"] = round(row["per_s"] / plain_rate, 3)
            print(f"  {row['of_plain']:.2f}x the plain FastAPI+SQLite store (goal for uploads: "
                  ">= 1.5x, p99 < 50 ms)")
        rows.append(row)
        if kind == "status" and plain:
            prow = _plain_row(ports, secrets_, seconds, connections, signer,
                              folder.parent / (folder.name + "-plain"), baseline)
            plain_rate = prow["per_s"] or None
            rows.append(prow)
    one_process = {r["kind"]: r["per_s"] for r in rows if "kind" in r}
    for n in workers:
        shift = _worker_rows(app, n, ports, rows, secrets_, seconds, connections, signer,
                             follow, shift, plain_rate, one_process)
    server.should_exit = True
    th.join(10)
    c.close()
    node.close()
    load1 = print_load("end")
    for r in rows:
        r["load_start"], r["load_end"] = load0["load_1m"], load1["load_1m"]
    return rows


def _worker_rows(app: Any, n: int, ports: Ports, rows: list[dict[str, Any]],
                 secrets_: list[str], seconds: float, connections: int, signer: Any,
                 follow: tuple[str, ...], shift: int, plain_rate: float | None,
                 one_process: dict[str, float]) -> int:
    """The same node behind ``n`` HTTP worker processes (api/workers.py: this process
    orders and stores, as ``serve --workers n``): status, uploads and the mix, same client.
    Server CPU counts this process and the workers. Returns the last day shift used."""
    import psutil

    from ..api.workers import Orderer

    orderer = Orderer(app, "127.0.0.1", ports.take_bound(), n)
    orderer.start()
    ctx = mp.get_context("spawn")
    procs = [psutil.Process(p.pid) for p in orderer.procs]
    print(f"server: the same node behind {n} HTTP worker processes (pids "
          f"{', '.join(str(p.pid) for p in procs)}), port {orderer.port}")
    try:
        baseline: float | None = None
        for kind in ("status", "upload", "mix"):
            q = ctx.Queue()
            shift += kind in ("upload", "mix")
            proc = ctx.Process(target=_client, args=("127.0.0.1", orderer.port, kind,
                                                     secrets_, seconds, connections, signer,
                                                     q, follow, shift))
            proc.start()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            w0 = [p.cpu_times() for p in procs]
            t0 = time.perf_counter()
            lat, errors, first_error, client_cpu = q.get()
            wall = min(seconds, time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            w1 = [p.cpu_times() for p in procs]
            proc.join()
            own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            theirs = sum((b.user - a.user) + (b.system - a.system)
                         for a, b in zip(w0, w1, strict=True))
            row = _report(f"{kind}, {n} workers ({connections} conns)", lat, errors, wall,
                          own + theirs, client_cpu, baseline)
            if first_error:
                print(f"  first error: {first_error}")
            done = row["requests"] or 1
            row["kind"], row["workers"] = kind, n
            row["orderer_cpu_ms"] = round(own / done * 1000, 3)
            print(f"  ordering process {row['orderer_cpu_ms']:.2f} ms CPU/req, workers "
                  f"{theirs / done * 1000:.2f}")
            if kind == "status":
                baseline = row["per_s"] or None
            if one_process.get(kind):
                row["of_one_process"] = round(row["per_s"] / one_process[kind], 3)
                print(f"  {row['of_one_process']:.2f}x one process (same run)")
            if plain_rate and kind in ("upload", "mix"):
                row["of_plain"] = round(row["per_s"] / plain_rate, 3)
                print(f"  {row['of_plain']:.2f}x the plain FastAPI+SQLite store (goal for "
                      "uploads: >= 1.5x, p99 < 50 ms)")
            rows.append(row)
    finally:
        orderer.stop()
    return shift


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--patients", type=int, default=128)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--no-plain", action="store_true",
                    help="skip the plain FastAPI+SQLite baseline")
    ap.add_argument("--workers", default="2",
                    help="comma-separated HTTP worker counts to measure after the one-process "
                    "rows, on the same node (0: none)")
    add_port_args(ap)
    a = ap.parse_args()
    require("psutil", "psutil", "to measure the servers' CPU")
    try:
        try:
            counts = tuple(n for n in (int(x) for x in a.workers.split(",") if x.strip())
                           if n > 1)
        except ValueError:
            raise InputError("--workers takes worker counts such as 2 or 2,3") from None
        run(a.seconds, a.connections, a.patients, a.readers, port=a.port,
            port_range=a.port_range, plain=not a.no_plain, workers=counts)
    except InputError as exc:
        raise SystemExit(f"bench.server: {exc}") from None


if __name__ == "__main__":
    interruptible(main)

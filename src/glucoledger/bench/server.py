"""Server benchmark: Nightscout-style uploads and audited summary reads over loopback.

The server (uvicorn with uvloop and httptools, one process; a thread of this one) serves a
fresh node. The client is a second process (``multiprocessing``, spawn) driving keep-alive
connections from one asyncio loop (``bench.loadgen``: a lean client, so that the client's CPU
is not taken from the server's two cores more than it must).

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
- Baseline, in the same run: GET /api/v1/status.json (no ledger work), the floor the HTTP
  stack itself sets on this machine now; the other rows are also given as a ratio of it.

Numbers are printed, not asserted. Goal (2 cores): >= 2,000 uploads/s with p99 < 50 ms.

Run: ``python -m glucoledger.bench.server [--seconds 10] [--connections 32] [--patients 128]``.
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

__all__ = ["main", "run"]

_STEP_MS = 300_000  # one CGM reading every 5 minutes
_BACK_MS = 7 * 86_400_000  # the first reading of each patient, a week ago


def _iso(ms: int) -> str:
    from ..interop.nsrender import iso

    return iso(ms)


def _client(host: str, port: int, kind: str, secrets_: list[str], seconds: float,
            connections: int, signer: Any, out: Any, follow: tuple[str, ...] = ()) -> None:
    from ..crypto import PrivateKey
    from ..crypto.httpsig import sign_request
    from .loadgen import http_request, run_connections

    key = PrivateKey.from_private_bytes(signer[0], signer[1])
    base = int(time.time() * 1000) - _BACK_MS
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


def run(seconds: float = 10.0, connections: int = 32, patients: int = 128, readers: int = 8,
        folder: Path | None = None, port: int = 0) -> list[dict[str, Any]]:
    import uvicorn

    from ..api.app import create_app
    from ..api.context import ServerContext
    from ..node import consent_actions as ca
    from ..node.accounts import create_account, identity, keys_of
    from ..node.service import Node

    folder = folder or Path(tempfile.mkdtemp(prefix="glucoledger-bench-server-"))
    node = Node.init(folder)
    c = ServerContext.create(node)
    assert c.svc is not None
    ns = c.svc.nightscout
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
    port = port or 25000 + secrets.randbelow(1000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="auto",
                                           http="auto", log_level="warning", access_log=False))
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
    for kind, conns, name in (("status", connections, "baseline: GET status.json"),
                              ("upload", connections, "Nightscout uploads"),
                              ("read", readers, "audited summary reads"),
                              ("poll", readers, "follower polls (raw, audited)"),
                              ("mix", connections, ("mix: 60% uploads, 20% PUT updates "
                                                    "(versions), 20% follower polls"))):
        if conns <= 0:
            continue
        q = ctx.Queue()
        proc = ctx.Process(target=_client, args=("127.0.0.1", port, kind, secrets_, seconds,
                                                 conns, signer, q, follow))
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
        if kind == "status":
            baseline = row["per_s"] or None
        rows.append(row)
    server.should_exit = True
    th.join(10)
    c.close()
    node.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--patients", type=int, default=128)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--port", type=int, default=0,
                    help="loopback port (default: a free one in 25000-25999)")
    a = ap.parse_args()
    run(a.seconds, a.connections, a.patients, a.readers, port=a.port)


if __name__ == "__main__":
    main()

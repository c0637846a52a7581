"""Server benchmark: Nightscout-style uploads and audited summary reads over loopback.

The server (uvicorn, one process, in a thread here) serves a fresh demo-like node; the
client is a second process (``multiprocessing``, spawn) running ``concurrency`` threads with
keep-alive connections (httpx). Each upload is one xDrip+-style POST /api/v1/entries of one
SGV from its own uploader (one patient each, as phones upload), so every request becomes one
gateway-attested ``data.commit`` in a group commit. Each read is POST /api/reads (summary
view) signed by the clinician with RFC 9421: one ``access`` transaction ordered before the
summary is released. Numbers are printed, not asserted. Goal (2 cores): >= 2,000 uploads/s,
p99 < 50 ms.

Run: ``PYTHONPATH=src python -m glucoledger.bench.server [--seconds 10] [--uploaders 32]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]


def _client(url: str, kind: str, secrets_: list[str], seconds: float, threads: int,
            signer: Any, out: Any) -> None:
    import httpx

    from ..api.httpsig import sign_request
    from ..crypto import PrivateKey

    signer = PrivateKey.from_private_bytes(signer[0], signer[1])

    lat: list[float] = []
    errors = [0]
    mu = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        secret = secrets_[i % len(secrets_)]
        h = {"api-secret": hashlib.sha1(secret.encode()).hexdigest(),
             "content-type": "application/json"}
        t = int(time.time() * 1000) - 86_400_000 + i * 7  # distinct per thread
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.perf_counter() < stop:
                if kind == "upload":
                    t += 300_000 // 50
                    body = json.dumps([{"type": "sgv", "sgv": 100 + t % 80, "date": t,
                                        "direction": "Flat", "device": "xDrip-G6"}]).encode()
                    t0 = time.perf_counter()
                    r = c.post("/api/v1/entries", content=body, headers=h)
                else:
                    body = json.dumps({"patient": "p0", "streams": ["cgm"],
                                       "view": "summary"}).encode()
                    hs = sign_request(signer, method="POST", url=f"{url}/api/reads", body=body,
                                      nonce=secrets.token_hex(12))
                    t0 = time.perf_counter()
                    r = c.post("/api/reads", content=body,
                               headers={**hs, "content-type": "application/json"})
                mine.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    bad += 1
        with mu:
            lat.extend(mine)
            errors[0] += bad

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    out.put((lat, errors[0]))


def _report(name: str, lat: list[float], errors: int, seconds: float) -> dict[str, Any]:
    lat.sort()
    n = len(lat)
    def p(q: float) -> float:
        return lat[min(n - 1, int(q * n))] * 1000 if n else 0.0

    row = {"what": name, "requests": n, "errors": errors, "per_s": round(n / seconds, 1),
           "p50_ms": round(p(0.50), 2), "p99_ms": round(p(0.99), 2),
           "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else 0.0}
    print(f"{name:28s} {row['per_s']:>9.1f}/s  p50 {row['p50_ms']:>7.2f} ms  "
          f"p99 {row['p99_ms']:>7.2f} ms  ({n} requests, {errors} errors)")
    return row


def run(seconds: float = 10.0, uploaders: int = 32, readers: int = 8) -> list[dict[str, Any]]:
    import uvicorn

    from ..api.app import create_app
    from ..api.context import ServerContext
    from ..glucose.simulate import simulate_cgm  # noqa: F401 - keeps the import warm
    from ..node import consent_actions as ca
    from ..node.accounts import create_account, identity, keys_of
    from ..node.people import Passwords
    from ..node.service import Node

    folder = Path(tempfile.mkdtemp(prefix="glucoledger-bench-server-"))
    node = Node.init(folder)
    c = ServerContext.create(node)
    ns = c.services["nightscout"]
    create_account(node, "dr-b", "clinician")
    create_account(node, "t", "trusted")
    Passwords(node)  # touch
    secrets_ = []
    for i in range(uploaders):
        create_account(node, f"p{i}", "patient", trusted="t")
        s = f"bench-secret-{i:04d}-{secrets.token_hex(4)}"
        ns.add_uploader(f"p{i}", s)
        secrets_.append(s)
    p0 = identity(node, "p0")
    now = int(time.time() * 1000)
    ca.grant(node, p0.id, keys_of(node, p0, [0]), identity(node, "dr-b").id, streams=["cgm"],
             view="summary", window={"last_days": 14}, valid_from=now,
             valid_until=now + 86_400_000)
    app = create_app(node, context=c)
    port = 18000 + secrets.randbelow(2000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    ctx = mp.get_context("spawn")
    rows = []
    print(f"server: uvicorn, 1 process; client: a second process; {seconds:.0f} s each")
    for kind, threads, name in (("upload", uploaders, "Nightscout uploads"),
                                ("read", readers, "audited summary reads")):
        q = ctx.Queue()
        key = keys_of(node, identity(node, "dr-b"))[0]
        signer = (key.alg, key.private_bytes())  # the client process signs as dr-b
        proc = ctx.Process(target=_client, args=(url, kind, secrets_, seconds, threads,
                                                 signer, q))
        t0 = time.perf_counter()
        proc.start()
        lat, errors = q.get()
        proc.join()
        rows.append(_report(f"{name} ({threads} conns)", lat, errors,
                            min(seconds, time.perf_counter() - t0)))
    server.should_exit = True
    th.join(10)
    c.close()
    node.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--uploaders", type=int, default=32)
    ap.add_argument("--readers", type=int, default=8)
    a = ap.parse_args()
    run(a.seconds, a.uploaders, a.readers)


if __name__ == "__main__":
    main()

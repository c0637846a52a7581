"""One patient's concurrent requests over real HTTP (uvicorn, threads): all succeed.

The portal and the REST API sign with the session's custodial keys; each transaction takes the
account's next nonce. Without one lock per account around build and submit, two requests at
once would take the same nonce and one would be refused as a replay (409 ``bad_nonce``).
"""

from __future__ import annotations

import threading
from typing import Any

import requests


def test_one_patients_concurrent_grants_alerts_and_reads_all_succeed(served) -> None:  # type: ignore[no-untyped-def]
    _site, srv = served
    s = requests.Session()
    r = s.post(f"{srv.url}/api/session", json={"name": "alice",
                                               "password": "alice-demo-password"}, timeout=30)
    assert r.status_code == 200, r.text
    h = {"x-csrf-token": r.json()["csrf"],
         "cookie": f"gl_session={r.cookies.get('gl_session') or s.cookies.get('gl_session')}"}
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for grantee in ("dr-lee", "dr-kim", "rosa") * 2:
        calls.append(("POST", "/api/grants", {"grantee": grantee, "streams": ["cgm"],
                                              "view": "summary", "last_days": 14,
                                              "valid_days": 30}))
    calls += [("PUT", "/api/alerts", {"rules": None})] * 2
    calls += [("POST", "/api/reads", {"patient": "alice", "streams": ["cgm"],
                                      "view": "summary", "last_days": 3})] * 2
    statuses: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(calls))

    def call(method: str, path: str, body: dict[str, Any]) -> None:
        barrier.wait()
        resp = requests.request(method, f"{srv.url}{path}", json=body, headers=h, timeout=60)
        statuses.append((resp.status_code, resp.text[:200]))

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(statuses) == len(calls)
    assert all(code in (200, 201) for code, _ in statuses), statuses
    grants = s.get(f"{srv.url}/api/grants", headers=h, timeout=30).json()
    assert len(grants) == 6

"""The plain baseline store: FastAPI + SQLite taking the same Nightscout POSTs, nothing else.

POST /api/v1/entries with an ``api-secret`` header (SHA-1 of the uploader's secret, as
Nightscout clients send it), a JSON list of entries: the secret is looked up, each entry's
``date`` and ``sgv`` are checked, the entries go into one SQLite table in one transaction
(WAL, ``synchronous=FULL``: an fsync per request) and the answer echoes them, as Nightscout
does. No signatures, no ledger, no encryption: what a store must pay at least to take the
same requests durably with the same HTTP stack (uvicorn, one process), in the same run.

``serve(port, folder, hashes)`` runs it (blocking; the benchmark starts it in a process).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["make_app", "serve"]


def make_app(db_path: Path, hashes: set[str]) -> FastAPI:
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, secret TEXT, "
               "date INTEGER, sgv INTEGER, doc TEXT)")
    app = FastAPI()

    @app.post("/api/v1/entries")
    async def entries(request: Request) -> Response:
        secret = request.headers.get("api-secret", "")
        if secret not in hashes:
            return JSONResponse({"status": 401, "message": "unauthorized"}, status_code=401)
        try:
            docs = json.loads(await request.body())
            rows = [(secret, int(d["date"]), int(d["sgv"]), json.dumps(d)) for d in docs]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"status": 400, "message": "bad entries"}, status_code=400)
        db.execute("BEGIN")
        db.executemany("INSERT INTO entries (secret, date, sgv, doc) VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        return JSONResponse(docs)

    @app.get("/api/v1/status.json")
    async def status() -> Response:
        return JSONResponse({"status": "ok"})

    return app


def serve(port: int, folder: str, hashes: list[str]) -> None:
    import uvicorn

    app = make_app(Path(folder) / "plain.db", set(hashes))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)

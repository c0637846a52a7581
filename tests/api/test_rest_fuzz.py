"""Fuzz the REST routes past the door: as a logged-in patient and as the operator, every
operation of the OpenAPI document answers something other than a 500."""

from __future__ import annotations

from typing import Any

import pytest

from glucoledger.api.security import COOKIE

from .fuzzing import server_errors

#: The routes of "REST API for everything the CLI does" (issue 5).
REST = ("/api/accounts", "/api/devices", "/api/uploads", "/api/firmware", "/api/batches",
        "/api/proofs/reading", "/api/nightscout", "/api/verify-vault", "/api/blocks",
        "/api/node-key")
OPERATOR_PASSWORD = "operator-fuzz-password"


def _session(client: Any, name: str, password: str) -> dict[str, str]:
    r = client.post("/api/session", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    return {"cookie": f"{COOKIE}={client.cookies.get(COOKIE)}", "x-csrf-token": r.json()["csrf"]}


@pytest.mark.parametrize("who", ["alice", "org"])
def test_fuzz_the_rest_routes_logged_in(client, site, who: str) -> None:  # type: ignore[no-untyped-def]
    if who == "org":
        site.ctx.passwords.set("org", OPERATOR_PASSWORD)
    headers = _session(client, who, OPERATOR_PASSWORD if who == "org" else
                       "alice-demo-password")
    seen, failures = server_errors(site.app, max_examples=15,
                                   include=lambda path: path.startswith(REST),
                                   headers=lambda path: headers)
    assert len(seen) >= 15, seen
    assert not failures, failures


EXPECTED = {
    ("post", "/api/accounts"), ("put", "/api/accounts/{name}/password"),
    ("post", "/api/devices"), ("get", "/api/devices/{device_id}"),
    ("post", "/api/devices/{device_id}/binding"), ("delete", "/api/devices/{device_id}/binding"),
    ("post", "/api/devices/{device_id}/revoke"), ("post", "/api/uploads"),
    ("post", "/api/firmware"), ("post", "/api/firmware/revoke"), ("put", "/api/firmware/floor"),
    ("post", "/api/firmware/verify"), ("get", "/api/batches"), ("get", "/api/proofs/reading"),
    ("post", "/api/proofs/reading/verify"), ("post", "/api/verify-vault"),
    ("post", "/api/nightscout/uploaders"), ("post", "/api/nightscout/readers"),
    ("get", "/api/blocks"), ("get", "/api/node-key"),
}


def test_openapi_lists_the_rest_routes_with_their_errors(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json()
    listed = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert EXPECTED <= listed, EXPECTED - listed
    for method, path in EXPECTED:
        responses = doc["paths"][path][method]["responses"]
        for status in ("400", "401", "403", "404", "409", "413", "422"):
            assert status in responses, (method, path, status)
        assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ErrorBody")
    upload = doc["paths"]["/api/uploads"]["post"]
    assert "application/cbor" in upload["requestBody"]["content"]
    assert {"200", "201", "415"} <= set(upload["responses"])

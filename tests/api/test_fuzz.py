"""Fuzz the API with schemathesis against its own OpenAPI document: never a 500."""

from __future__ import annotations

import hashlib

from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from .fuzzing import server_errors


def test_openapi_is_published(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json()
    assert "/api/v1/entries" in doc["paths"] and "/fhir/Patient/{patient}/$cgm-bundle" in \
        doc["paths"]


def test_fuzz_every_operation(site) -> None:  # type: ignore[no-untyped-def]
    secret = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
    _, failures = server_errors(
        site.app, max_examples=20, include=lambda path: path != "/api/verify",
        headers=lambda path: {"api-secret": secret} if path.startswith("/api/v1") else {})
    assert not failures, failures

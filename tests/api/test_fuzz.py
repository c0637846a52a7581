"""Fuzz the API with schemathesis against its own OpenAPI document: never a 500."""

from __future__ import annotations

import hashlib
import warnings

import pytest
from hypothesis import HealthCheck, settings

from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis

# Device uploads are canonical CBOR (POST /api/uploads): fuzz them with arbitrary bytes.
schemathesis.serializer.alias("application/cbor", "application/octet-stream")


@pytest.fixture
def schema(site):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", site.app)


def test_openapi_is_published(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json()
    assert "/api/v1/entries" in doc["paths"] and "/fhir/Patient/{patient}/$cgm-bundle" in \
        doc["paths"]


def test_fuzz_every_operation(site) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/openapi.json", site.app)
    secret = hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()
    failures: list[tuple[str, str, int, str]] = []
    from hypothesis import given

    def fuzz(op):  # type: ignore[no-untyped-def]
        headers = {"api-secret": secret} if op.path.startswith("/api/v1") else {}

        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):  # type: ignore[no-untyped-def]
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append((op.method, op.path, response.status_code,
                                 response.text[:200]))

        run()

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path != "/api/verify":
            fuzz(op)
    assert not failures, failures

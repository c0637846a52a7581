"""One schemathesis loop for the fuzz tests: every operation of the app's OpenAPI document,
a bounded number of generated requests each, and every 5xx answer collected."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis

# Device uploads are canonical CBOR (POST /api/uploads): fuzz them with arbitrary bytes.
schemathesis.serializer.alias("application/cbor", "application/octet-stream")


def server_errors(app: Any, *, headers: Callable[[str], dict[str, str]],
                  include: Callable[[str], bool], max_examples: int
                  ) -> tuple[set[str], list[tuple[str, str, int, str]]]:
    """Fuzz the operations whose path ``include`` accepts; return (paths fuzzed, 5xx seen)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[tuple[str, str, int, str]] = []
    seen: set[str] = set()

    def fuzz(op: Any) -> None:
        sent = headers(op.path)

        @settings(max_examples=max_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):  # type: ignore[no-untyped-def]
            response = case.call(headers=sent)
            if response.status_code >= 500:
                failures.append((op.method, op.path, response.status_code,
                                 response.text[:200]))

        run()

    for result in schema.get_all_operations():
        op = result.ok()
        if include(op.path):
            seen.add(op.path)
            fuzz(op)
    return seen, failures

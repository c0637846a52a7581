"""No request telemetry leaves the server, even when the process has an OpenTelemetry provider.

FastAPI 0.16x traces every request as soon as a global tracer provider exists (an operator's
``opentelemetry-instrument``, a platform's auto-instrumentation), and the span carries the
query string: a Nightscout follower's ``?token=`` is a read credential. The attack: install
the real OpenTelemetry SDK's provider with an in-memory exporter (in a child process: the
global provider can be set once a process), send requests with a token in the query, and
read what would have been exported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

_ATTACK = """
import json, sys
from pathlib import Path
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
from starlette.testclient import TestClient
from glucoledger.api.app import create_app
from glucoledger.node.service import Node
node = Node.init(Path(sys.argv[1]) / "node", workers=1)
codes = []
with TestClient(create_app(node)) as client:
    for path in ("/api/v1/entries.json?count=3&token=reader-0123456789abcdef",
                 "/api/v1/status.json?token=reader-0123456789abcdef",
                 "/api/v1/treatments?token=reader-0123456789abcdef"):
        codes.append(client.get(path).status_code)
node.close()
spans = [dict(s.attributes or {}) for s in exporter.get_finished_spans()]
print(json.dumps({"codes": codes, "spans": spans}))
"""


def test_no_span_with_the_query_string_leaves_the_server(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-c", _ATTACK, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["codes"]) == 3 and 200 in out["codes"]  # the requests were served
    assert "reader-0123456789abcdef" not in json.dumps(out["spans"]), "a token was exported"
    assert out["spans"] == [], "request telemetry is exported"

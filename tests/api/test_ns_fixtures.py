"""cgm-remote-monitor's own test fixtures round-trip field for field through the HTTP API.

tests/testdata/nightscout/cgm-remote-monitor-fixtures.json holds documents from
cgm-remote-monitor's tests/fixtures (provenance inside: repository, commit, files). Each set
is POSTed with the uploader's secret and read back with it: every document is answered, is
stored, and reads back with exactly the fields and values sent (ints as ints, floats as
floats, strings as strings: example.json's sgv "5", a Dexcom error code, stays "5"), plus
only ``_id`` and the fields Nightscout itself adds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from glucoledger.interop.nightscout import ADDED
from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

UP = {"api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()}
FIXTURES = json.loads((Path(__file__).parents[1] / "testdata" / "nightscout" /
                       "cgm-remote-monitor-fixtures.json").read_text())
TIME = {"entries": "date", "treatments": "created_at", "devicestatus": "created_at"}


def js(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def test_provenance_is_recorded() -> None:
    p = FIXTURES["provenance"]
    assert p["repository"].endswith("nightscout/cgm-remote-monitor") and len(p["commit"]) == 40


@pytest.mark.parametrize("fixture", FIXTURES["sets"], ids=[s["name"] for s in FIXTURES["sets"]])
def test_fixture_round_trips_field_for_field(client, fixture: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    col, docs = fixture["collection"], fixture["docs"]
    r = client.post(f"/api/v1/{col}", json=docs, headers=UP)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert len(answer) == len(docs) and not any("glucoledger" in a for a in answer)
    r = client.get(f"/api/v1/{col}.json", headers=UP, params={
        f"find[{TIME[col]}][$gte]": "2014-01-01T00:00:00Z",
        f"find[{TIME[col]}][$lt]": "2025-01-01T00:00:00Z", "count": "1000"})
    assert r.status_code == 200, r.text
    got = {d["_id"]: d for d in r.json()}
    for sent, a in zip(docs, answer, strict=True):
        back = got[a["_id"]]
        assert js({k: back[k] for k in sent if k in back}) == js(sent), sent
        assert set(sent) <= set(back), set(sent) - set(back)
        assert set(back) - set(sent) <= {"_id", *ADDED[col]}, set(back) - set(sent)

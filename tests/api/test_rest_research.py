"""Research over REST, requests signed (RFC 9421) as the sponsor, the patients and a verifier;
refusals answer with a code and a message and change nothing."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoledger.api.app import create_app
from glucoledger.api.context import ServerContext, ServerSettings
from tests.api.rest import call
from tests.node.test_research import NOW, PEOPLE, build_lab

DAY = 86_400_000


class ResearchSite:
    def __init__(self, folder: Path) -> None:
        lab, vault = build_lab(folder)
        vault.close()
        self.lab = lab
        self.node = lab.node
        self.ctx = ServerContext.create(self.node, ServerSettings(secure_cookies=True))
        self.app = create_app(self.node, context=self.ctx)

    def close(self) -> None:
        self.ctx.close()
        self.node.close()


@pytest.fixture
def rsite(tmp_path: Path) -> Iterator[ResearchSite]:
    s = ResearchSite(tmp_path)
    yield s
    s.close()


@pytest.fixture
def rclient(rsite: ResearchSite) -> Iterator[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    with TestClient(rsite.app, base_url="https://testserver") as c:
        yield c


TERMS = {"protocol": "GL-REST-1", "ethics": "IRB 44", "purpose": "overnight lows",
         "streams": ["cgm"], "fields": ["sex"],
         "period": {"from": NOW - 30 * DAY, "to": NOW + 720 * DAY},
         "forms": ["records", "aggregate"], "k": 2, "budget": 300_000, "retention_days": 365,
         "contact": "lows@uni.example", "credit": {"rate": 2, "terms": "reported yearly"}}


def _profile(i: int) -> dict[str, str]:
    name, born, sex, state, zip_, kind = PEOPLE[i]
    return {"name": name, "birth_date": born, "sex": sex, "state": state, "zip": zip_,
            "diabetes_type": kind}


def test_three_roles_over_rest(rsite: ResearchSite, rclient: Any) -> None:
    c, s = rclient, rsite
    r = call(c, s, "p0", "POST", "/api/research/studies", TERMS)
    assert r.status_code == 403 and "organization" in r.json()["message"]
    r = call(c, s, "uni-research", "POST", "/api/research/studies", TERMS)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    grants = []
    for i in range(3):
        r = call(c, s, f"p{i}", "POST", f"/api/research/studies/{sid}/consent",
                 {"streams": ["cgm"], "fields": ["sex"], "days": 90, "profile": _profile(i)})
        assert r.status_code == 201, r.text
        grants.append(r.json()["id"])
    r = call(c, s, "p0", "POST", f"/api/research/studies/{sid}/consent",
             {"streams": ["carbs"], "fields": [], "days": 90, "profile": _profile(0)})
    assert r.status_code == 409 and r.json()["code"] == "bad_scope"
    # consenting again without details keeps the ones the node holds (sealed)
    r = call(c, s, "p1", "POST", f"/api/research/studies/{sid}/consent",
             {"streams": ["cgm"], "fields": ["sex"], "days": 90})
    assert r.status_code == 201, r.text
    grants[1] = r.json()["id"]
    r = call(c, s, "uni-research", "POST", f"/api/research/studies/{sid}/releases")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    bundle = r.content
    assert len(json.loads(bundle)["participants"]) == 3
    r = call(c, s, "p1", "POST", "/api/research/verify", raw=bundle)
    assert r.status_code == 200 and r.json()["participants"] == 3, r.text
    doc = json.loads(bundle)
    doc["rows"][3]["mgdl"] += 1
    bad = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    r = call(c, s, "p1", "POST", "/api/research/verify", raw=bad)
    assert r.status_code >= 400 and "altered" in r.json()["message"]
    r = call(c, s, "uni-research", "POST", f"/api/research/studies/{sid}/queries",
             {"statistic": "gmi", "epsilon": 0.3})
    assert r.status_code == 200 and r.json()["spent"] == pytest.approx(0.3), r.text
    before = s.node.state.snapshot()
    r = call(c, s, "uni-research", "POST", f"/api/research/studies/{sid}/queries",
             {"statistic": "gmi", "epsilon": 0.01})
    assert r.status_code == 409 and r.json()["code"] == "budget_exhausted"
    assert s.node.state.snapshot() == before
    r = call(c, s, "p0", "POST", f"/api/research/grants/{grants[0]}/withdraw")
    assert r.status_code == 200, r.text
    r = call(c, s, "p0", "GET", "/api/research/mine")
    mine = r.json()
    assert r.status_code == 200 and mine[0]["status"] == "withdrawn"
    assert [u["form"] for u in mine[0]["uses"]] == ["records", "aggregate"]
    assert mine[0]["credit"]["credits"] == 2 * mine[0]["credit"]["days"] > 0
    assert mine[0]["fhir"][0]["resourceType"] == "Consent"
    r = call(c, s, "p2", "GET", f"/api/research/studies/{sid}")
    assert r.json()["resourceType"] == "ResearchStudy"
    for path, code in ((f"/api/research/studies/{'zz' * 32}", 400),
                       (f"/api/research/studies/{'00' * 32}", 409)):
        r = call(c, s, "p2", "GET", path)
        assert r.status_code == code and r.json()["message"], r.text
    r = call(c, s, None, "GET", "/api/research/mine")
    assert r.status_code == 401
    # Another organization acting on uni-research's study: a permission refusal, logged.
    before = s.node.state.snapshot()
    for path, body in ((f"/api/research/studies/{sid}/close", None),
                       (f"/api/research/studies/{sid}/queries",
                        {"statistic": "gmi", "epsilon": 0.01})):
        r = call(c, s, "org", "POST", path, body)
        assert (r.status_code, r.json()["code"]) == (403, "not_sponsor"), r.text
        assert s.ctx.seclog.recent(1)[0].status == 403
    r = call(c, s, "org", "POST", f"/api/research/studies/{sid}/releases")
    assert r.status_code == 403, r.text
    assert s.node.state.snapshot() == before


@pytest.mark.parametrize("who", ["alice", "org"])
def test_fuzz_research_routes_never_answer_500(client: Any, site: Any, who: str) -> None:
    from glucoledger.api.security import COOKIE

    from .fuzzing import server_errors

    password = "alice-demo-password"
    if who == "org":
        password = "operator-fuzz-password"
        site.ctx.passwords.set("org", password)
    r = client.post("/api/session", json={"name": who, "password": password})
    assert r.status_code == 200, r.text
    headers = {"cookie": f"{COOKIE}={client.cookies.get(COOKIE)}",
               "x-csrf-token": r.json()["csrf"]}
    seen, failures = server_errors(site.app, max_examples=10,
                                   include=lambda path: path.startswith("/api/research"),
                                   headers=lambda path: headers)
    assert len(seen) >= 9, seen
    assert not failures, failures


def test_rest_offers_exactly_the_contracts_statistics() -> None:
    from typing import get_args

    from glucoledger.api.routes_research import QueryBody
    from glucoledger.node.research import BOUNDS
    from glucoledger.state.research import STATISTICS

    offered = set(get_args(QueryBody.model_fields["statistic"].annotation))
    assert offered == set(STATISTICS) == set(BOUNDS)
    assert {"hypo1_episodes_per_week", "hyper2_episodes_per_week"} <= offered

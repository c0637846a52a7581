"""The portal's research page over HTTP (in-process, a real node, vault, OpenDP, pycanon):
a patient opts in (narrowing), sees every use and her credit, withdraws; a research
organization sees its studies, asks a DP statistic, closes a study; anyone checks a release
bundle (a patient also learns whether she is in it). Every form refuses a forged or missing
CSRF token, a refused form is an HTML page that changes nothing."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoledger.node.research import ResearchService, verify_bundle
from tests.api.test_portal_http import _csrf, _login
from tests.api.test_rest_research import ResearchSite


@pytest.fixture
def rsite(tmp_path: Path) -> Iterator[ResearchSite]:
    s = ResearchSite(tmp_path)
    s.lab.research = ResearchService(s.node, s.ctx.svc.vault)  # the server's vault
    for name in ("p0", "p1", "p2", "p3", "uni-research"):
        s.ctx.passwords.set(name, f"{name}-demo-password")
    yield s
    s.close()


def _client(rsite: ResearchSite) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    return TestClient(rsite.app, base_url="https://testserver")


def _frozen(s: ResearchSite, *, log: bool = False) -> tuple[Any, ...]:
    """The state and the sealed profiles (and the log's height: a refusal by the contract
    is ordered as a rejected transaction, so only refusals before ordering keep it)."""
    folder = s.node.data_dir
    return (s.node.store.height() if log else None, s.node.state.snapshot(),
            (folder / "research-profiles.bin").read_bytes())


def _article(html: str, cls: str, protocol: str) -> str:
    m = re.search(rf'<article class="{cls}" data-protocol="{protocol}".*?</article>', html,
                  re.S)
    assert m, (cls, protocol)
    return m.group(0)


def test_patient_joins_narrowing_sees_uses_and_credit_and_withdraws(rsite: ResearchSite
                                                                    ) -> None:
    lab = rsite.lab
    study = lab.study(protocol="GL-PORTAL-1", purpose="lows after exercise")
    for i in (1, 2):
        lab.join(i, study)
    with _client(rsite) as c:
        assert c.get("/research", follow_redirects=False).headers["location"] == (
            "/portal/research")
        assert c.get("/portal/research").url.path == "/portal/login"  # signed out
        csrf = _login(c, "p0", "p0-demo-password")
        home = c.get("/portal").text
        assert '<a href="/portal/research">Research</a>' in home  # in her navigation
        page = c.get("/portal/research")
        assert page.headers["cache-control"] == "no-store"
        offer = _article(page.text, "open-study", "GL-PORTAL-1")
        assert "lows after exercise" in offer and "IRB 2026-117" in offer
        assert "We use the details you gave" in offer  # her profile is kept from before
        sid = study.hex()
        # a refused join (no stream ticked) changes nothing and says what to do
        before = _frozen(rsite, log=True)
        r = c.post(f"/portal/research/studies/{sid}/join",
                   data={"csrf": _csrf(page.text), "days": "365", "fields": "sex"})
        assert r.status_code == 400 and "tick at least one kind of data" in r.text
        assert 'id="error-message"' in r.text and _frozen(rsite, log=True) == before
        # she joins, sharing only CGM and her sex (the study asked for more)
        r = c.post(f"/portal/research/studies/{sid}/join",
                   data={"csrf": csrf, "days": "365", "streams": "cgm", "fields": "sex"})
        assert r.status_code == 200 and "You joined GL-PORTAL-1" in r.text, r.text[:400]
        mine = _article(r.text, "study", "GL-PORTAL-1")
        assert 'data-status="active"' in mine and "sensor glucose (cgm)" in mine
        shared = re.search(r"You share (.*?)\. Study", mine, re.S)  # not in a random token
        assert shared and shared.group(1) == "sensor glucose (cgm) and your sex", mine
        assert "open-study" not in r.text  # nothing left to join
        grant = lab.node.state.get("rconsent/" + sid + "/" + lab.patients[0].id.hex())
        g = lab.node.state.get("rgrant/" + grant.hex())
        assert g["streams"] == ["cgm"] and g["fields"] == ["sex"]
        # a release and a query include her; her page lists both and her credit
        lab.release(study)
        lab.research.query(lab.sponsor.id, lab.sponsor_keys, study,
                           "hypo1_episodes_per_week", 0.25)
        mine = _article(c.get("/portal/research").text, "study", "GL-PORTAL-1")
        assert mine.count("<tr><td>") == 2
        assert "de-identified records" in mine and "received" in mine
        assert "Episodes below 70 mg/dL per week" in mine and "epsilon 0.25" in mine
        credit = re.search(r'<p class="credit">.*?</p>', mine, re.S)
        assert credit and "cannot be sold or transferred" in credit.group(0)
        assert re.search(r"<strong>(\d+)</strong> for (\d+) day", credit.group(0))
        # she withdraws; a later release does not hold her, the earlier stay listed
        r = c.post(f"/portal/research/grants/{grant.hex()}/withdraw", data={"csrf": csrf})
        assert r.status_code == 200 and "You withdrew" in r.text
        lab.release(study)
        mine = _article(c.get("/portal/research").text, "study", "GL-PORTAL-1")
        assert 'data-status="withdrawn"' in mine and mine.count("<tr><td>") == 2
        assert "Withdraw from GL-PORTAL-1" not in mine
        # her audit trail (the portal's) names the study's uses too
        assert "GL-PORTAL-1" in c.get("/portal/audit").text


def test_first_join_asks_her_details_and_keeps_them_sealed(rsite: ResearchSite) -> None:
    lab = rsite.lab
    study = lab.study(protocol="GL-PORTAL-2")
    assert lab.research.store.forget(lab.patients[3].id)
    with _client(rsite) as c:
        csrf = _login(c, "p3", "p3-demo-password")
        offer = _article(c.get("/portal/research").text, "open-study", "GL-PORTAL-2")
        assert 'autocomplete="bday"' in offer and "Your details" in offer
        url = f"/portal/research/studies/{study.hex()}/join"
        details = {"name": "Dan Smith", "birth_date": "1962-11-11", "sex": "male",
                   "state": "ca", "zip": "94110", "diabetes_type": "T1D"}
        before = _frozen(rsite)
        r = c.post(url, data={"csrf": csrf, "days": "90", "streams": "cgm",
                              **{**details, "zip": ""}})
        assert r.status_code == 400 and "fill in every one of your details" in r.text
        r = c.post(url, data={"csrf": csrf, "days": "90", "streams": "cgm",
                              **{**details, "birth_date": "1962-13-40"}})
        assert r.status_code in (400, 422) and "YYYY-MM-DD" in r.text
        assert _frozen(rsite) == before
        assert not lab.research.store.has_profile(lab.patients[3].id)
        r = c.post(url, data={"csrf": csrf, "days": "90", "streams": "cgm", **details})
        assert r.status_code == 200 and "You joined GL-PORTAL-2" in r.text, r.text[:300]
        assert lab.research.store.profile(lab.patients[3].id).state == "CA"
        raw = (rsite.node.data_dir / "research-profiles.bin").read_bytes()
        assert b"Dan Smith" not in raw and b"94110" not in raw


def test_sponsor_sees_studies_asks_a_statistic_and_closes(rsite: ResearchSite) -> None:
    lab = rsite.lab
    study = lab.study(protocol="GL-PORTAL-3", budget=500_000)
    for i in range(3):
        lab.join(i, study)
    lab.release(study)
    with _client(rsite) as c:
        csrf = _login(c, "uni-research", "uni-research-demo-password")
        page = c.get("/portal/research").text
        assert '<a href="/portal/research">Research</a>' in page
        mine = _article(page, "sponsored-study", "GL-PORTAL-3")
        assert re.search(r'class="participants">3<', mine)
        assert "de-identified records" in mine and "attested" in mine
        assert "<strong>0</strong> of 0.5 (epsilon) spent" in mine
        url = f"/portal/research/studies/{study.hex()}/query"
        r = c.post(url, data={"csrf": csrf, "statistic": "hyper1_episodes_per_week",
                              "epsilon": "0.4"})
        assert r.status_code == 200 and "Episodes above 180 mg/dL per week:" in r.text
        assert "over 3 participants (epsilon 0.4; spent 0.4 of 0.5)" in r.text
        before = _frozen(rsite)
        r = c.post(url, data={"csrf": csrf, "statistic": "gmi", "epsilon": "0.2"})
        assert r.status_code == 409 and "past the study" in r.text
        r = c.post(url, data={"csrf": csrf, "statistic": "zip_codes", "epsilon": "0.01"})
        assert r.status_code == 400 and "unknown statistic" in r.text
        assert _frozen(rsite) == before
        # a record-level release, as a file that verifies offline
        r = c.post(f"/portal/research/studies/{study.hex()}/release", data={"csrf": csrf})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert 'filename="release-GL-PORTAL-3.json"' in r.headers["content-disposition"]
        got = verify_bundle(r.content, rsite.node.verifier())
        assert got.study == study and got.participants == 3
        mine = _article(c.get("/portal/research").text, "sponsored-study", "GL-PORTAL-3")
        assert mine.count("attested") == 2
        r = c.post(f"/portal/research/studies/{study.hex()}/close", data={"csrf": csrf})
        assert r.status_code == 200 and "Study closed" in r.text
        assert 'data-status="closed"' in _article(r.text, "sponsored-study", "GL-PORTAL-3")
    # a patient may not ask statistics or close studies
    with _client(rsite) as c:
        csrf = _login(c, "p1", "p1-demo-password")
        before = _frozen(rsite)
        r = c.post(url, data={"csrf": csrf, "statistic": "gmi", "epsilon": "0.01"})
        assert r.status_code == 403 and "organization" in r.text
        assert _frozen(rsite) == before


def test_a_release_is_checked_and_she_learns_whether_she_is_in_it(rsite: ResearchSite
                                                                  ) -> None:
    lab = rsite.lab
    study = lab.study(protocol="GL-PORTAL-4")
    for i in range(3):
        lab.join(i, study)
    bundle = lab.research.release(lab.sponsor.id, lab.sponsor_keys, study)
    for name, expect in (("p0", "yes: 5 of your batches"), ("p4", "no: none of your data")):
        with _client(rsite) as c:
            csrf = _login(c, name, f"{name}-demo-password") if name != "p4" else None
            if csrf is None:
                rsite.ctx.passwords.set("p4", "p4-demo-password")
                csrf = _login(c, "p4", "p4-demo-password")
            r = c.post("/portal/research/verify", data={"csrf": csrf},
                       files={"bundle": ("release.json", bundle, "application/json")})
            assert r.status_code == 200 and "Unaltered" in r.text, r.text[:300]
            assert expect in r.text and "GL-PORTAL-4" in r.text
    doc = json.loads(bundle)
    doc["rows"][2]["mgdl"] += 1
    bad = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    with _client(rsite) as c:
        csrf = _login(c, "uni-research", "uni-research-demo-password")
        r = c.post("/portal/research/verify", data={"csrf": csrf},
                   files={"bundle": ("release.json", bad, "application/json")})
        assert r.status_code >= 400 and "altered" in r.text and "Unaltered" not in r.text
        r = c.post("/portal/research/verify", data={"csrf": csrf})
        assert r.status_code == 400 and "choose a release bundle" in r.text


def test_every_research_form_refuses_a_forged_csrf_token(rsite: ResearchSite) -> None:
    """The POST routes come from the page's own router, so a new form is covered."""
    from glucoledger.api import portal_research

    lab = rsite.lab
    study = lab.study(protocol="GL-PORTAL-5")
    grant = lab.join(0, study)
    fields = {"days": "90", "streams": "cgm", "fields": "sex", "statistic": "gmi",
              "epsilon": "0.1"}
    params = {"study_id": study.hex(), "grant_id": grant.hex()}
    routes = sorted({r.path for r in portal_research.router.routes
                     if "POST" in (getattr(r, "methods", None) or ())})
    assert len(routes) == 6, routes
    for who in ("p0", "uni-research"):
        with _client(rsite) as c:
            csrf = _login(c, who, f"{who}-demo-password")
            before = _frozen(rsite, log=True)
            for path in routes:
                for token in ("forged", ""):
                    r = c.post(path.format(**params), data={**fields, "csrf": token},
                               files={"bundle": ("b.json", b"{}", "application/json")})
                    assert r.status_code in (400, 401, 403), (path, token, r.status_code)
                    words = r.text.lower()
                    assert "csrf" in words or "stale" in words, (path, words[:300])
                    assert _frozen(rsite, log=True) == before, (path, token)
            if who == "p0":  # the same withdrawal with the page's token goes through
                r = c.post(f"/portal/research/grants/{grant.hex()}/withdraw",
                           data={"csrf": csrf})
                assert r.status_code == 200 and _frozen(rsite, log=True) != before

"""``glucoledger research``: the three roles as a person runs them, in real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.node.test_research import NOW, PEOPLE, build_lab

DAY = 86_400_000


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("research")
    lab, vault = build_lab(d)
    vault.close()
    lab.node.close()
    return d / "node"


def test_sponsor_patient_verifier(lab_dir: Path, tmp_path: Path) -> None:
    data = ["--data", str(lab_dir)]
    terms = {"protocol": "GL-CLI-1", "ethics": "IRB 9", "purpose": "glucose after meals",
             "streams": ["cgm"], "fields": ["sex"],
             "period": {"from": NOW - 30 * DAY, "to": NOW + 720 * DAY},
             "forms": ["records", "aggregate"], "k": 2, "budget": 500_000,
             "retention_days": 365, "contact": "study@uni.example",
             "credit": {"rate": 1, "terms": "reported yearly"}}
    (tmp_path / "terms.json").write_text(json.dumps(terms))
    r = run("research", "register", "--sponsor", "uni-research", "--terms",
            str(tmp_path / "terms.json"), *data)
    assert r.returncode == 0, r.stderr
    study = r.stdout.split()[-1]
    grants = []
    for i in range(3):
        name, born, sex, state, zip_, kind = PEOPLE[i]
        (tmp_path / f"p{i}.json").write_text(json.dumps({
            "name": name, "birth_date": born, "sex": sex, "state": state, "zip": zip_,
            "diabetes_type": kind}))
        # p2 joins without --profile: the node keeps the details she gave before
        given = ["--profile", str(tmp_path / f"p{i}.json")] if i < 2 else []
        r = run("research", "join", "--patient", f"p{i}", "--study", study, *given,
                "--fields", "sex", *data)
        assert r.returncode == 0, r.stderr
        grants.append(r.stdout.split()[-1])
    out = tmp_path / "release.json"
    r = run("research", "release", "--sponsor", "uni-research", "--study", study, "--out",
            str(out), *data)
    assert r.returncode == 0 and "3 participants" in r.stdout, r.stderr
    r = run("research", "verify", str(out), *data)
    assert r.returncode == 0 and "verified" in r.stdout, r.stderr
    r = run("research", "am-i-in", "--patient", "p1", str(out), *data)
    assert r.returncode == 0 and "yes: 4 of your batches" in r.stdout, r.stderr
    r = run("research", "am-i-in", "--patient", "p4", str(out), *data)
    assert r.returncode == 0 and "no: none of your data" in r.stdout, r.stderr
    doc = json.loads(out.read_bytes())
    doc["rows"][0]["mgdl"] += 1
    out.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    r = run("research", "verify", str(out), *data)
    assert r.returncode == 3 and "altered" in r.stderr and "Traceback" not in r.stderr
    r = run("research", "query", "--sponsor", "uni-research", "--study", study, "--statistic",
            "time_in_range", "--epsilon", "0.4", *data)
    assert r.returncode == 0 and "spent 0.4 of 0.5" in r.stdout, r.stderr
    r = run("research", "query", "--sponsor", "uni-research", "--study", study, "--statistic",
            "time_in_range", "--epsilon", "0.2", *data)
    assert r.returncode == 1 and "budget_exhausted" in r.stderr and "Traceback" not in r.stderr
    r = run("research", "withdraw", "--patient", "p0", "--grant", grants[0], *data)
    assert r.returncode == 0, r.stderr
    r = run("research", "mine", "--patient", "p0", *data)
    assert r.returncode == 0 and "GL-CLI-1" in r.stdout and "withdrawn" in r.stdout, r.stderr
    r = run("research", "mine", "--patient", "p0", "--json", *data)
    assert r.returncode == 0, r.stderr
    (mine,) = [d for d in json.loads(r.stdout) if d["study"] == "GL-CLI-1"]
    assert mine["status"] == "withdrawn" and grants[0].startswith(mine["grant"][:6]), mine
    r = run("research", "mine", "--patient", "p0", "--fhir", *data)
    assert r.returncode == 0 and '"resourceType": "ResearchStudy"' in r.stdout, r.stderr
    r = run("audit", "--patient", "p0", *data)
    assert r.returncode == 0 and "GL-CLI-1" in r.stdout, r.stderr


def test_mistakes_end_in_messages_not_tracebacks(lab_dir: Path, tmp_path: Path) -> None:
    data = ["--data", str(lab_dir)]
    for args, code, words in (
            (["research", "withdraw", "--patient", "p0", "--grant", "zz"], 2, "64 hex digits"),
            (["research", "show", "--study", "00" * 32], 1, "no study"),
            # a missing input file is click's usage error (common.in_file): exit 2
            (["research", "verify", str(tmp_path / "missing.json")], 2, "does not exist"),
            (["research", "register", "--sponsor", "uni-research", "--terms",
              str(tmp_path / "none.json")], 2, "does not exist")):
        r = run(*args, *data)
        assert r.returncode == code and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr

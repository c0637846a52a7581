"""FHIR R4 export of a study (ResearchStudy) and a research grant (Consent): validated by
fhir.resources (R4B models), and a wrong resource is rejected by the same validator."""

from __future__ import annotations

import pytest

from glucoledger.interop.fhir_research import research_consent, research_study

DAY = 86_400_000
T0 = 1_767_225_600_000
STUDY = {"id": b"\x01" * 32, "sponsor": b"\x02" * 32, "protocol": "GL-NOCT-1",
         "ethics": "IRB 2026-117", "purpose": "nocturnal hypoglycaemia", "streams": ["cgm"],
         "fields": ["age"], "period": {"from": T0, "to": T0 + 365 * DAY},
         "forms": ["records"], "k": 5, "budget": 1_000_000, "spent": 250_000,
         "retention_days": 730, "contact": "dpo@uni.example",
         "credit": {"rate": 3, "terms": "reported yearly"}, "status": "open"}
GRANT = {"id": b"\x03" * 32, "patient": b"\x04" * 32, "study": STUDY["id"],
         "streams": ["cgm"], "fields": [], "until": T0 + 90 * DAY, "status": "withdrawn"}


def test_study_and_grant_validate_with_fhir_resources() -> None:
    rs = pytest.importorskip("fhir.resources.R4B.researchstudy")
    cs = pytest.importorskip("fhir.resources.R4B.consent")
    study = rs.ResearchStudy.model_validate(research_study(STUDY))
    assert study.status == "active" and study.identifier[0].value == "GL-NOCT-1"
    consent = cs.Consent.model_validate(research_consent(GRANT, STUDY, T0))
    assert consent.status == "inactive"
    assert consent.scope.coding[0].code == "research"
    assert consent.provision.purpose[0].code == "HRESCH"
    assert consent.extension[0].valueReference.reference == "ResearchStudy/" + "01" * 32
    bad = research_consent(GRANT, STUDY, T0)
    bad["provision"]["period"] = "from now on"  # a Period, not text
    with pytest.raises(ValueError):
        cs.Consent.model_validate(bad)

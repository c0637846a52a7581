"""Research grants and studies as FHIR R4 resources (validated with fhir.resources R4B
models in tests/interop/test_fhir_research.py).

- A study is a ResearchStudy (R4 section 12.x, ResearchStudy): ``identifier`` = the protocol
  id and the ethics approval reference; ``status`` ``active`` (open) or ``completed``
  (closed); ``description`` = the purpose in plain words; ``period``; ``sponsor`` =
  Organization/<account id>; ``contact`` with the study's contact address; the streams,
  fields, release forms, k, privacy budget, retention and credit terms as extensions.
- A research grant is a Consent (R4 section 6.2, Consent) with ``scope`` ``research``
  (consentscope), ``category`` ``research`` (consentcategorycodes), ``policyRule`` OPTIN and
  a provision: permit, period [consented, until), purpose HRESCH (v3-ActReason), the
  study's sponsor as recipient (IRCP), one ``code`` per stream she shares, and an extension
  referencing the ResearchStudy. A withdrawn or replaced grant is ``inactive``.

Pure: values in, dicts out; no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["research_consent", "research_study"]

EXT: Final = "https://glucoledger.example/fhir/StructureDefinition/"
IDS: Final = "https://glucoledger.example/fhir/NamingSystem/"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def research_study(study: dict[str, Any]) -> dict[str, Any]:
    """The study record (state/research.py) as a ResearchStudy resource."""
    ext: list[dict[str, Any]] = [
        {"url": EXT + "research-streams", "valueString": ",".join(study["streams"])},
        {"url": EXT + "research-fields", "valueString": ",".join(study["fields"]) or "none"},
        {"url": EXT + "research-forms", "valueString": ",".join(study["forms"])},
        {"url": EXT + "research-k", "valueInteger": study["k"]},
        {"url": EXT + "research-epsilon-budget", "valueDecimal": study["budget"] / 1e6},
        {"url": EXT + "research-epsilon-spent", "valueDecimal": study["spent"] / 1e6},
        {"url": EXT + "research-retention-days", "valueInteger": study["retention_days"]},
        {"url": EXT + "research-credit-per-day", "valueInteger": study["credit"]["rate"]},
        {"url": EXT + "research-credit-terms", "valueString": study["credit"]["terms"]},
    ]
    return {
        "resourceType": "ResearchStudy",
        "id": study["id"].hex()[:64],
        "extension": ext,
        "identifier": [{"system": IDS + "protocol", "value": study["protocol"]},
                       {"system": IDS + "ethics-approval", "value": study["ethics"]}],
        "title": study["protocol"],
        "status": "active" if study["status"] == "open" else "completed",
        "description": study["purpose"],
        "period": {"start": _time(study["period"]["from"]),
                   "end": _time(study["period"]["to"])},
        "sponsor": {"reference": f"Organization/{study['sponsor'].hex()}"},
        "contact": [{"telecom": [{"system": "email" if "@" in study["contact"] else "url",
                                  "value": study["contact"]}]}],
    }


def research_consent(grant: dict[str, Any], study: dict[str, Any], consented_ms: int
                     ) -> dict[str, Any]:
    """A research grant (``rgrant/<id>``) as a Consent resource with a research provision."""
    return {
        "resourceType": "Consent",
        "id": grant["id"].hex()[:64],
        "extension": [
            {"url": EXT + "research-study",
             "valueReference": {"reference": f"ResearchStudy/{study['id'].hex()[:64]}"}},
            {"url": EXT + "research-fields",
             "valueString": ",".join(grant["fields"]) or "none"},
        ],
        "status": "active" if grant["status"] == "active" else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "research"}]},
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentcategorycodes",
            "code": "research"}]}],
        "patient": {"reference": f"Patient/{grant['patient'].hex()}"},
        "dateTime": _time(consented_ms),
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": _time(consented_ms), "end": _time(grant["until"])},
            "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP"}]},
                "reference": {"reference": f"Organization/{study['sponsor'].hex()}"}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                         "code": "HRESCH"}],
            "code": [{"coding": [{"system": "https://glucoledger.example/fhir/CodeSystem/stream",
                                  "code": s}]} for s in grant["streams"]],
        },
    }

"""FHIR R4 resources after the HL7 CGM implementation guide (hl7.fhir.uv.cgm). Pure.

- Readings: Observation, profile cgm-sensor-reading-mass-per-volume (LOINC 99504-3, mg/dL)
  or ...-moles-per-volume (LOINC 105272-9, mmol/L), ``effectiveDateTime`` the reading time.
- Summary: one panel Observation (LOINC 107931-8) whose ``hasMember`` points at the IG's
  summary Observations, each over ``effectivePeriod``: the period requested (the summary's
  window, ``[start, end)`` as instants: a 12-hour window stays 12 hours, and gaps at the
  edges stay in the period, so sensor-active is not overstated):
  times in ranges 106793-3 (components very low 104642-4 <54, low 104641-6 54-69,
  target 97510-2 70-180, high 104640-8 181-250, very high 104639-0 >250; %),
  mean 97507-8 (mg/dL), GMI 97506-0 (%), CV 104638-2 (%), days of wear 104636-6 (d),
  sensor active 104637-4 (%).
- Grants: Consent resources (R4: scope patient-privacy, category LOINC 59284-0, a permit
  provision for the grantee over the data window, with actions "access"; a revoked grant
  is ``inactive``).
- Bundle: a ``transaction`` Bundle as the IG's cgm-data-submission-bundle (entries with
  ``urn:uuid`` full URLs and POST requests), so a receiver can submit it as is.

Every resource is a plain dict; ``validate`` (tests, and the node before release) parses each
with ``fhir.resources`` (R4B models, which R4 documents satisfy for these resources).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..glucose.metrics import Summary
from ..glucose.readings import CgmReading
from ..glucose.units import mgdl_to_mmol

__all__ = ["ConsentInfo", "cgm_bundle", "consent", "reading_observation", "summary_observations",
           "validate"]

LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
IG: Final = "http://hl7.org/fhir/uv/cgm/StructureDefinition/"
_NS: Final = uuid.UUID("6b1f6a52-4f4c-4f0e-9d0a-1c2a51e0c0de")  # our UUIDv5 namespace


def _iso(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(_NS, "|".join(str(p) for p in parts)))


def _code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _pct(value: float) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": "%", "system": UCUM, "code": "%"}


_LAB: Final = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                            "observation-category", "code": "laboratory"}]}]


def reading_observation(patient_ref: str, r: CgmReading, *, units: str = "mg/dL",
                        device_ref: str | None = None) -> dict[str, Any]:
    mmol = units == "mmol/L"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _uid(patient_ref, "reading", r.time_ms),
        "meta": {"profile": [IG + ("cgm-sensor-reading-moles-per-volume" if mmol else
                                   "cgm-sensor-reading-mass-per-volume")]},
        "status": "final",
        "category": _LAB,
        "code": _code("105272-9", "Glucose [Moles/volume] in Interstitial fluid") if mmol else
        _code("99504-3", "Glucose [Mass/volume] in Interstitial fluid"),
        "subject": {"reference": patient_ref},
        "effectiveDateTime": _iso(r.time_ms),
        "valueQuantity": ({"value": round(mgdl_to_mmol(r.mgdl), 1), "unit": "mmol/l",
                           "system": UCUM, "code": "mmol/L"} if mmol else
                          {"value": r.mgdl, "unit": "mg/dl", "system": UCUM, "code": "mg/dL"}),
    }
    if device_ref:
        obs["device"] = {"reference": device_ref}
    return obs


def _summary_obs(patient_ref: str, s: Summary, slug: str, code: dict[str, Any],
                 **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": _uid(patient_ref, slug, s.start_ms, s.end_ms),
            "meta": {"profile": [IG + slug]}, "status": "final", "category": _LAB,
            "code": code, "subject": {"reference": patient_ref},
            "effectivePeriod": {"start": _iso(s.start_ms), "end": _iso(s.end_ms)},
            **value}


def summary_observations(patient_ref: str, s: Summary) -> list[dict[str, Any]]:
    """The summary panel (first) and its members."""
    ranges = [("104642-4", "Time in very low range (<54 mg/dL)", s.tbr54),
              ("104641-6", "Time in low range (54-69 mg/dL)", s.tbr70 - s.tbr54),
              ("97510-2", "Time in target range (70-180 mg/dL)", s.tir),
              ("104640-8", "Time in high range (181-250 mg/dL)", s.tar180 - s.tar250),
              ("104639-0", "Time in very high range (>250 mg/dL)", s.tar250)]
    members = [
        _summary_obs(patient_ref, s, "cgm-summary-times-in-ranges",
                     _code("106793-3", "Continuous glucose monitoring time in ranges panel"),
                     component=[{"code": _code(c, d), "valueQuantity": _pct(v)}
                                for c, d, v in ranges]),
        _summary_obs(patient_ref, s, "cgm-summary-mean-glucose-mass-per-volume",
                     _code("97507-8", "Mean glucose by continuous glucose monitoring"),
                     valueQuantity={"value": round(s.mean, 1), "unit": "mg/dl", "system": UCUM,
                                    "code": "mg/dL"}),
        _summary_obs(patient_ref, s, "cgm-summary-gmi",
                     _code("97506-0", "Glucose management indicator"),
                     valueQuantity=_pct(s.gmi)),
        _summary_obs(patient_ref, s, "cgm-summary-coefficient-of-variation",
                     _code("104638-2", "Coefficient of variation of glucose"),
                     valueQuantity=_pct(s.cv)),
        _summary_obs(patient_ref, s, "cgm-summary-days-of-wear",
                     _code("104636-6", "Continuous glucose monitoring duration of use"),
                     valueQuantity={"value": s.days_with_data, "unit": "days", "system": UCUM,
                                    "code": "d"}),
        _summary_obs(patient_ref, s, "cgm-summary-sensor-active-percentage",
                     _code("104637-4", "Continuous glucose monitoring sensor active time"),
                     valueQuantity=_pct(s.active)),
    ]
    panel = _summary_obs(patient_ref, s, "cgm-summary",
                         _code("107931-8", "Continuous glucose monitoring summary panel"),
                         hasMember=[{"reference": f"urn:uuid:{m['id']}"} for m in members])
    return [panel, *members]


@dataclass(frozen=True)
class ConsentInfo:
    """What a Consent resource says about one grant (built by the node from the ledger)."""

    id: str
    grantee_ref: str
    grantee_name: str
    streams: tuple[str, ...]
    view: str  # "raw" | "summary"
    data_start_ms: int | None
    data_end_ms: int | None
    valid_from_ms: int
    valid_until_ms: int | None
    purpose: str  # treatment | research | emergency
    active: bool


_PURPOSE: Final = {"treatment": ("TREAT", "treatment"),
                   "research": ("HRESCH", "healthcare research"),
                   "emergency": ("ETREAT", "emergency treatment")}


def consent(patient_ref: str, g: ConsentInfo) -> dict[str, Any]:
    code, display = _PURPOSE.get(g.purpose, ("TREAT", "treatment"))
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": _iso(g.valid_from_ms),
                   **({"end": _iso(g.valid_until_ms)} if g.valid_until_ms else {})},
        "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "v3-ParticipationType", "code": "IRCP",
                                        "display": "information recipient"}]},
                   "reference": {"reference": g.grantee_ref, "display": g.grantee_name}}],
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                "consentaction", "code": "access"}]}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                     "code": code, "display": display}],
        "class": [{"system": "https://glucoledger.example/streams", "code": s}
                  for s in g.streams] + [{"system": "https://glucoledger.example/view",
                                          "code": g.view}],
    }
    if g.data_start_ms is not None:
        provision["dataPeriod"] = {"start": _iso(g.data_start_ms),
                                   **({"end": _iso(g.data_end_ms)} if g.data_end_ms else {})}
    return {
        "resourceType": "Consent",
        "id": _uid(patient_ref, "consent", g.id),
        "identifier": [{"system": "https://glucoledger.example/grant", "value": g.id}],
        "status": "active" if g.active else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"reference": patient_ref},
        "dateTime": _iso(g.valid_from_ms),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                   "v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    }


def patient_resource(patient_id: str) -> dict[str, Any]:
    """A Patient with only the ledger account id: no names leave the node."""
    return {"resourceType": "Patient", "id": patient_id[:64],
            "identifier": [{"system": "https://glucoledger.example/account",
                            "value": patient_id}]}


def cgm_bundle(patient_id: str, *, readings: Sequence[CgmReading] = (),
               summary: Summary | None = None, consents: Iterable[ConsentInfo] = (),
               units: str = "mg/dL", now_ms: int) -> dict[str, Any]:
    """A transaction Bundle: the patient, readings, summary panel and members, Consents."""
    patient = patient_resource(patient_id)
    pref = f"urn:uuid:{_uid('patient', patient_id)}"
    resources: list[tuple[str, dict[str, Any]]] = [(pref, patient)]
    for r in readings:
        o = reading_observation(pref, r, units=units)
        resources.append((f"urn:uuid:{o['id']}", o))
    if summary is not None:
        for o in summary_observations(pref, summary):
            resources.append((f"urn:uuid:{o['id']}", o))
    for g in consents:
        c = consent(pref, g)
        resources.append((f"urn:uuid:{c['id']}", c))
    return {
        "resourceType": "Bundle",
        "id": _uid("bundle", patient_id, now_ms),
        "meta": {"profile": [IG + "cgm-data-submission-bundle"]},
        "type": "transaction",
        "timestamp": _iso(now_ms),
        "entry": [{"fullUrl": url, "resource": res,
                   "request": {"method": "POST", "url": res["resourceType"]}}
                  for url, res in resources],
    }


def validate(resource: dict[str, Any]) -> Any:
    """Parse ``resource`` with fhir.resources (R4B models); raise its ValidationError if bad.

    Only the tests and ``export-fhir --check`` need the package, so it is imported here.
    """
    from fhir.resources.R4B import get_fhir_model_class

    cls = get_fhir_model_class(resource["resourceType"])
    return cls.model_validate(resource)

"""Research routes for the three roles (thin: parse, authenticate, call node/research.py).

Sponsor (an organization account):
- ``POST /api/research/studies``: register a study. This node's organization cosigns as the
  member accepting it; in a consortium whose threshold is above one the contract refuses it
  (``insufficient_signatures``) until the other members' cosignatures are collected (CLI).
- ``POST /api/research/studies/{id}/close``
- ``POST /api/research/studies/{id}/releases``: a de-identified record-level release bundle
- ``POST /api/research/studies/{id}/queries``: a DP statistic, charged to the budget first
Patient:
- ``POST /api/research/studies/{id}/consent``: opt in (profile kept on the node)
- ``POST /api/research/grants/{id}/withdraw``
- ``GET /api/research/mine``: her studies, what each received, her credit, as FHIR too
Anyone signed in (a release verifier):
- ``GET /api/research/studies/{id}``: the study as a FHIR ResearchStudy, with spent budget
- ``POST /api/research/verify``: check a bundle against this node's checkpoint key (the same
  check runs offline with ``glucoledger research verify`` or ``node.research.verify_bundle``)

The portal's page for the three roles is api/portal_research.py (``/portal/research``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from ..codec import parse_hex_id
from ..crypto import PrivateKey
from ..interop.fhir_research import research_consent, research_study
from ..node.accounts import keys_of
from ..node.deid import Profile
from ..node.research import ResearchService, verify_bundle
from ..node.research_view import participation
from ..state.consent import DAY_MS
from ..state.research import load_study
from .auth import permission, principal, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS, Strict

__all__ = ["research_service", "router"]

router = APIRouter(prefix="/api/research", tags=["research"])
Who = Annotated[Principal, Depends(principal)]
Stream = Literal["cgm", "smbg", "insulin", "carbs"]
Field_ = Literal["age", "sex", "region", "diabetes_type"]
Text = Annotated[str, Field(min_length=1, max_length=500)]


def research_service(request: Request) -> ResearchService:
    c = ctx(request)
    return ResearchService(c.node, c.svc.vault)


def _keys(request: Request, who: Principal) -> list[PrivateKey]:
    if who.session is not None:
        return who.session.keys
    return keys_of(ctx(request).node, who.ident)


def _study(text: str) -> bytes:
    return parse_hex_id(text, "a study id")


class Period(Strict):
    from_: int = Field(alias="from", ge=0)
    to: int = Field(ge=0)


class Credit(Strict):
    rate: int = Field(ge=0, le=1000)
    terms: Text


class StudyBody(Strict):
    protocol: Text
    ethics: Text
    purpose: Text
    streams: list[Stream] = Field(min_length=1, max_length=4)
    fields: list[Field_] = Field(max_length=4)
    period: Period
    forms: list[Literal["records", "aggregate"]] = Field(min_length=1, max_length=2)
    k: int = Field(ge=2, le=1000)
    budget: int = Field(ge=0, le=100_000_000, description="epsilon in millionths")
    retention_days: int = Field(ge=1, le=36_600)
    contact: Text
    credit: Credit


class ProfileBody(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    birth_date: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    sex: Literal["female", "male", "other"]
    state: Annotated[str, Field(min_length=1, max_length=60)]
    zip: Annotated[str, Field(min_length=1, max_length=12)]
    diabetes_type: Literal["T1D", "T2D", "other"]


class ConsentBody(Strict):
    streams: list[Stream] = Field(min_length=1, max_length=4)
    fields: list[Field_] = Field(max_length=4)
    days: int = Field(ge=1, le=3660)
    #: her details, kept sealed on the node; left out: the ones she gave before
    profile: ProfileBody | None = None


class QueryBody(Strict):
    statistic: Literal["mean_glucose", "time_in_range", "time_below_70", "time_below_54",
                       "gmi", "hourly_median_profile", "hypo1_episodes_per_week",
                       "hypo2_episodes_per_week", "hyper1_episodes_per_week",
                       "hyper2_episodes_per_week"]
    epsilon: float = Field(gt=0, le=100)


@router.post("/studies", responses=ERRORS, status_code=201)
def register_study(body: StudyBody, request: Request, who: Who) -> dict[str, Any]:
    """Register a study as its sponsor organization."""
    require_kind(request, who, "organization")
    terms = body.model_dump(by_alias=True)
    terms["streams"], terms["fields"] = sorted(set(body.streams)), sorted(set(body.fields))
    terms["forms"] = sorted(set(body.forms))
    sid = research_service(request).register_study(who.id, _keys(request, who), terms,
                                           [ctx(request).node.wallet.load("org")])
    return {"id": sid.hex(), "status": "open"}


@router.get("/studies/{study_id}", responses=ERRORS)
def get_study(study_id: str, request: Request, who: Who) -> dict[str, Any]:
    """The study as a FHIR ResearchStudy (terms, status, spent budget)."""
    return research_study(load_study(ctx(request).node.state, _study(study_id)))


@router.post("/studies/{study_id}/close", responses=ERRORS)
def close_study(study_id: str, request: Request, who: Who) -> dict[str, Any]:
    require_kind(request, who, "organization")
    with permission(request, who):  # another sponsor's study: 403 not_sponsor, logged
        research_service(request).close_study(who.id, _keys(request, who), _study(study_id))
    return {"id": study_id, "status": "closed"}


@router.post("/studies/{study_id}/releases", responses=ERRORS)
def release(study_id: str, request: Request, who: Who) -> Response:
    """A de-identified record-level release (a bundle verifiable offline)."""
    require_kind(request, who, "organization")
    with permission(request, who):
        raw = research_service(request).release(who.id, _keys(request, who), _study(study_id))
    return Response(raw, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.post("/studies/{study_id}/queries", responses=ERRORS)
def query(study_id: str, body: QueryBody, request: Request, who: Who) -> dict[str, Any]:
    """A differentially private cohort statistic; the budget is charged on the ledger first."""
    require_kind(request, who, "organization")
    with permission(request, who):
        a = research_service(request).query(who.id, _keys(request, who), _study(study_id),
                                            body.statistic, body.epsilon)
    return {"statistic": a.statistic, "values": list(a.values), "epsilon": a.epsilon,
            "participants": a.participants, "spent": a.spent, "budget": a.budget,
            "query": a.query.hex()}


@router.post("/studies/{study_id}/consent", responses=ERRORS, status_code=201)
def consent(study_id: str, body: ConsentBody, request: Request, who: Who) -> dict[str, Any]:
    """Opt in to a study (you may narrow its streams and fields)."""
    require_kind(request, who, "patient")
    profile = Profile.from_value(body.profile.model_dump()) if body.profile else None
    node = ctx(request).node
    gid = research_service(request).join(who.id, _keys(request, who), _study(study_id),
                                 sorted(set(body.streams)), sorted(set(body.fields)),
                                 node.now_ms() + body.days * DAY_MS, profile)
    return {"id": gid.hex(), "status": "active"}


@router.post("/grants/{grant_id}/withdraw", responses=ERRORS)
def withdraw(grant_id: str, request: Request, who: Who) -> dict[str, Any]:
    """Withdraw: you are in no release or query from the next block on."""
    require_kind(request, who, "patient")
    research_service(request).withdraw(who.id, _keys(request, who),
                                       parse_hex_id(grant_id, "a grant id"))
    return {"id": grant_id, "status": "withdrawn"}


@router.get("/mine", responses=ERRORS)
def mine(request: Request, who: Who) -> list[dict[str, Any]]:
    """Your studies: each release and query that held your data, and your credit."""
    require_kind(request, who, "patient")
    out = []
    for p in participation(ctx(request).node.state, who.id):
        out.append({
            "study": p.study["id"].hex(), "protocol": p.study["protocol"],
            "purpose": p.study["purpose"], "grant": p.grant["id"].hex(),
            "status": p.grant["status"],
            "uses": [{"id": r["id"].hex(), "form": r["form"], "statistic": r["statistic"],
                      "time": r["time"]} for r in p.releases],
            "credit": {"days": p.credit_days, "credits": p.credits,
                       "terms": p.study["credit"]["terms"]},
            "fhir": [research_consent(p.grant, p.study, p.grant["time"]),
                     research_study(p.study)]})
    return out


@router.post("/verify", responses=ERRORS)
async def verify(request: Request, who: Who) -> dict[str, Any]:
    """Check a release bundle (the request body) against this node's checkpoint key."""
    got = verify_bundle(await request.body(), ctx(request).node.verifier())
    return {"study": got.study.hex(), "release": got.release.hex(), "root": got.root.hex(),
            "rows": got.rows, "participants": got.participants,
            "batches": [b.hex() for b in got.batches], "checkpoint_size": got.checkpoint.size,
            "signer": got.signer}

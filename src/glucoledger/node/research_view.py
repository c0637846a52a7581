"""What a participant sees of her research sharing, read from the state (no I/O but it).

- ``research_entries``: the audit-trail entries (node/audit.py) of her research grants: each
  consent, each withdrawal and every release or query that included her data, with the
  study, its purpose and the form of release.
- ``participation``: per study she joined: the study's terms, her grant, the releases and
  queries that held her data, and her credit (days of sufficient data and credits). Credit
  is bound to her grant: nothing on the ledger can move it, and the study sees only
  pseudonyms, never which grant earned what.
- ``open_studies``: the studies taking participants now; ``sponsored``: a sponsor's studies
  with how many participants count now and every release and query (what the sponsor
  received, never who was in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..state.research import active_grants, credit_of, release_key, rgrant_key, study_key
from ..state.store import State

__all__ = ["Participation", "SponsoredStudy", "open_studies", "participation",
           "research_entry", "sponsored"]


def research_entry(state: State, kind: str, tx: bytes, patient: bytes) -> dict[str, Any]:
    """The fields of one research audit event (``kind`` as the contract wrote it)."""
    if kind == "research_use":
        rel = state.get(release_key(tx))
        study = state.get(study_key(rel["study"]))
        form = ("record-level, de-identified" if rel["form"] == "records"
                else f"aggregate {rel['statistic']}, epsilon {rel['epsilon'] / 1e6:g}")
        return {"kind": "research", "height": rel["height"], "time": rel["time"],
                "who": study["sponsor"], "outcome": _outcome(rel), "view": rel["form"],
                "grant": _grant_of(rel, patient, state),
                "detail": f"study {study['protocol']} ({study['purpose']}): {form}"}
    # research_consent is keyed by the grant; research_withdraw by the withdrawal
    gid = tx if kind == "research_consent" else state.get("rwithdraw/" + tx.hex())
    grant = state.get(rgrant_key(gid))
    study = state.get(study_key(grant["study"]))
    joined = kind == "research_consent"
    return {"kind": "research", "height": grant["created"] if joined else grant["ended"],
            "time": grant["time"] if joined else grant["ended_time"], "who": patient,
            "outcome": "consented" if joined else "withdrew", "view": None,
            "grant": grant["id"],
            "detail": f"study {study['protocol']} ({study['purpose']}): "
                      f"{', '.join(grant['streams'])}" + ("" if joined else "; no later use")}


def _outcome(rel: dict[str, Any]) -> str:
    if rel["form"] == "aggregate":
        return "queried"
    # a record-level release leaves the node only after the node attested its manifest
    return "released" if rel["manifest"] is not None else "withheld"


def _grant_of(rel: dict[str, Any], patient: bytes, state: State) -> bytes | None:
    for p in rel["participants"]:
        if state.get(rgrant_key(p["grant"]))["patient"] == patient:
            return bytes(p["grant"])
    return None


@dataclass(frozen=True, slots=True)
class Participation:
    study: dict[str, Any]
    grant: dict[str, Any]
    releases: tuple[dict[str, Any], ...]
    credit_days: int
    credits: int


def participation(state: State, patient: bytes) -> list[Participation]:
    """Every research grant of the patient (newest first), with uses and credit."""
    out = []
    for key in state.keys("rgrant/"):
        g = state.get(key)
        if g["patient"] != patient:
            continue
        study = state.get(study_key(g["study"]))
        rels = tuple(state.get(release_key(r)) for r in g["releases"])
        credit = credit_of(state, g["id"])
        out.append(Participation(study, dict(g), rels, len(credit["days"]), credit["credits"]))
    out.sort(key=lambda p: -int(p.grant["created"]))
    return out


def open_studies(state: State) -> list[dict[str, Any]]:
    """Every open study (newest first)."""
    out = [dict(s) for k in state.keys("study/") if (s := state.get(k))["status"] == "open"]
    out.sort(key=lambda s: -int(s["created"]))
    return out


@dataclass(frozen=True, slots=True)
class SponsoredStudy:
    study: dict[str, Any]
    #: research grants that count at the time asked (current scope version, not ended)
    participants: int
    #: releases and queries, newest first (each with its number of participants)
    releases: tuple[dict[str, Any], ...]


def sponsored(state: State, sponsor: bytes, time_ms: int) -> list[SponsoredStudy]:
    """The sponsor's studies (newest first), with participants counting at ``time_ms``."""
    studies = [dict(s) for k in state.keys("study/")
               if (s := state.get(k))["sponsor"] == sponsor]
    releases: dict[bytes, list[dict[str, Any]]] = {}
    if studies:
        for k in state.keys("release/"):
            r = state.get(k)
            releases.setdefault(bytes(r["study"]), []).append(dict(r))
    out = []
    for st in studies:
        rels = sorted(releases.get(bytes(st["id"]), []), key=lambda r: -int(r["height"]))
        out.append(SponsoredStudy(st, len(active_grants(state, st["id"], time_ms)),
                                  tuple(rels)))
    out.sort(key=lambda s: -int(s.study["created"]))
    return out

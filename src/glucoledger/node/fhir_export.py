"""FHIR export through consent: every export is an audited read (node/access.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..crypto import PrivateKey
from ..glucose.readings import CgmReading
from ..interop import fhir
from ..state.consent import Grant, Request, day_ceil, day_floor, grants_of, summary_only
from .access import AccessService, RawRelease, SignedSummary
from .accounts import AddressBook
from .service import Node

__all__ = ["consent_info", "export_bundle"]


def consent_info(node: Node, g: Grant, now_ms: int) -> fhir.ConsentInfo:
    names = {i.id: i.name for i in AddressBook(node).all()}
    w = dict(g.window)
    start, end = (w.get("from"), w.get("to")) if "from" in w else (
        now_ms - w["last_days"] * 86_400_000, None)
    return fhir.ConsentInfo(g.id.hex(), f"urn:glucoledger:account:{g.grantee.hex()}",
                            names.get(g.grantee, g.grantee.hex()[:16]), tuple(g.streams),
                            g.view, start, end, g.valid_from, g.valid_until, g.purpose,
                            g.active_at(now_ms))


def export_bundle(node: Node, access: AccessService, requester: bytes,
                  keys: Sequence[PrivateKey], patient: bytes, *, start_ms: int | None,
                  end_ms: int | None, units: str, now_ms: int) -> dict[str, Any]:
    """Read (raw if the grant allows, else summary) and build the CGM bundle. Under summary
    grants only, ``start_ms``/``end_ms`` are moved inward to whole UTC days (the only
    windows such a grant permits); without them the last N whole UTC days.

    Raises AccessDeniedError/AccessRefusedError (audited), OutOfRangeError (no data).
    """
    window = None
    if start_ms is not None or end_ms is not None:
        lo = start_ms or 0
        window = {"from": lo, "to": max(end_ms or now_ms + 1, lo + 1)}
    only_summary = summary_only(node.state, patient, requester, now_ms)
    if only_summary and window is not None:
        # A summary grant releases whole UTC days only (state/consent.py ``_check_days``):
        # the asked period shrinks to the whole days inside it, which the Observations'
        # effectivePeriod then shows. None left (less than a day): asked as is, so the
        # decision refuses it (``not_whole_days``, audited) and says what to ask for.
        lo, hi = day_ceil(window["from"]), day_floor(window["to"])
        if lo < hi:
            window = {"from": lo, "to": hi}
    req = Request(patient, ("cgm",), "summary" if only_summary else "raw", window)
    release = access.read_as(requester, keys, req)
    readings: list[CgmReading] = []
    summary = None
    if isinstance(release, SignedSummary):
        summary = release.summary
    elif isinstance(release, RawRelease):
        readings = [r for r in release.records if isinstance(r, CgmReading)]
        # The node's summary over the permitted (requested) period, never the data's span:
        # its window is the effectivePeriod of the summary Observations.
        summary = release.summary
    grants = grants_of(node.state, patient) if requester == patient else \
        grants_of(node.state, patient, requester)
    consents = [consent_info(node, g, now_ms) for g in grants]
    return fhir.cgm_bundle(patient.hex(), readings=readings, summary=summary,
                           consents=consents, units=units, now_ms=now_ms)

"""FHIR R4 export after the HL7 CGM IG: ``GET /fhir/Patient/{id}/$cgm-bundle``.

The export is a read like any other: one audited ``access`` request for the readings (raw
grant) or the summary (summary grant), then the Consent resources of the patient's grants
(only the patient herself sees all of them; a grantee sees her own).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..errors import InputError, PermissionDeniedError
from ..node.fhir_export import export_bundle
from .auth import principal
from .context import Principal, ctx
from .routes_consent import patient_by_id
from .routes_ledger import ERRORS

__all__ = ["router"]

EXPORT_EVERY_S, EXPORT_BURST = 60.0, 10  # exports per account per minute

router = APIRouter(prefix="/fhir", tags=["fhir"])
Who = Annotated[Principal, Depends(principal)]


def _ms(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)  # 3.11+ reads a trailing Z as UTC
    except ValueError:
        raise InputError(f"{what} {text[:40]!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@router.get("/Patient/{patient}/$cgm-bundle", responses=ERRORS)
def cgm_bundle(patient: str, request: Request, who: Who,
               start: Annotated[str | None, Query(max_length=40)] = None,
               end: Annotated[str | None, Query(max_length=40)] = None,
               units: Annotated[str, Query(pattern="^(mg/dL|mmol/L)$")] = "mg/dL"
               ) -> dict[str, Any]:
    """A transaction Bundle: readings (raw grants), the summary panel, and Consents. Costly:
    ``EXPORT_BURST`` exports a minute per account (429 with Retry-After)."""
    pid = patient_by_id(request, patient)
    lo, hi = _ms(start, "start"), _ms(end, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise InputError("end must come after start")
    c = ctx(request)
    c.costly.spend(who.id.hex(), "export", EXPORT_EVERY_S, EXPORT_BURST)  # else 429
    try:
        with c.account_lock(who.id):
            return export_bundle(c.node, c.svc.access, who.id, c.keys_for(who),
                                 pid,
                                 start_ms=lo, end_ms=hi, units=units,
                                 now_ms=int(time.time() * 1000))
    except PermissionDeniedError as exc:
        from .auth import record_refusal

        record_refusal(request, exc, who.name)
        raise

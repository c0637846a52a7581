"""Data routes: committed batches, single-reading proofs, vault verification.

Who may call what:

- ``GET /api/batches``: a patient (her own batches) or an organization (any patient's: the
  operator keeps the vault). Batch metadata only: stream, hour range, count, trust,
  uploader, sequence, log index; never a reading.
- ``GET /api/proofs/reading``: the patient, for her own reading. The answer is the proof file
  ``glucoledger verify-proof FILE --node-key VKEY`` checks offline (node/proofs.py), byte for
  byte; the node's verifier key is ``GET /api/node-key``.
- ``POST /api/proofs/reading/verify``: anyone; checks a proof against this node's key (or
  the verifier key given), as ``verify-proof`` does.
- ``POST /api/verify-vault``: an organization; checks every committed batch's blob (hash,
  AES-GCM tag, salted root) against the ledger, as ``verify-vault`` does.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..errors import InputError, NotFoundError, PermissionDeniedError, TooLargeError
from ..glucose.readings import MAX_TIME_MS, MIN_TIME_MS
from ..ledger.checkpoint import NoteVerifier
from ..names import NAME_PATTERN
from ..node.accounts import identity
from ..node.erasure import erased_by
from ..node.proofs import MAX_PROOF, dumps_proof, prove_reading, verify_proof
from ..node.registry import Registry
from ..node.verify import verify_vault
from ..vault.store import BatchRow
from .auth import principal, record_refusal, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["data"])
Who = Annotated[Principal, Depends(principal)]
Stream = Literal["cgm", "smbg", "insulin", "carbs", "settings", "notes"]
NAME = NAME_PATTERN


def _named_patient(request: Request, name: str | None) -> bytes | None:
    if name is None:
        return None
    try:
        ident = identity(ctx(request).node, name)
    except NotFoundError:
        return None
    return ident.id if ident.kind == "patient" else None


def _patient_for(request: Request, who: Principal, patient: str | None) -> bytes:
    """The patient whose batches ``who`` asks for: herself, or (an organization) anyone's.
    A refusal that names a patient of this node is also in her audit trail."""
    named = _named_patient(request, patient)
    require_kind(request, who, "patient", "organization", patient=named)
    if who.kind == "patient":
        if patient is not None and patient not in (who.name, who.id.hex()):
            exc = PermissionDeniedError("a patient sees her own batches only; leave patient "
                                        "out", code="not_yours")
            record_refusal(request, exc, who.name, patient=named)
            raise exc
        return who.id
    if patient is None:
        raise InputError("say whose batches: ?patient=NAME")
    ident = identity(ctx(request).node, patient)
    if ident.kind != "patient":
        raise InputError(f"{patient} is a {ident.kind}, not a patient")
    return ident.id


def batch_value(r: BatchRow) -> dict[str, Any]:
    return {"stream": r.stream, "start_ms": r.start, "end_ms": r.end, "count": r.count,
            "trust": r.trust, "custody": r.custody, "uploader": r.uploader.hex(),
            "seq": r.seq, "log_index": r.tx_index, "tx_hash": r.tx_hash.hex(),
            "blob": r.ct.hex()}


@router.get("/batches", responses=ERRORS)
def batches(request: Request, who: Who,
            patient: Annotated[str | None, Query(min_length=1, max_length=64,
                                                 pattern=NAME)] = None,
            stream: Stream | None = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            offset: Annotated[int, Query(ge=0, lt=1 << 32)] = 0) -> dict[str, Any]:
    """Committed batches of a patient (oldest first), with how they were attested."""
    pid = _patient_for(request, who, patient)
    rows = ctx(request).svc.vault.batches(pid, stream)
    return {"patient": pid.hex(), "total": len(rows),
            "batches": [batch_value(r) for r in rows[offset:offset + limit]]}


@router.get("/proofs/reading", response_class=Response, responses={**ERRORS, 200: {
    "content": {"application/json": {"schema": {"type": "object"}}},
    "description": "the proof file (canonical JSON, docs/formats.md)"}})
def prove(request: Request, who: Who,
          time: Annotated[int, Query(ge=MIN_TIME_MS, le=MAX_TIME_MS,
                                     description="the reading's time, epoch ms (exact)")],
          stream: Stream = "cgm") -> Response:
    """A self-contained proof of one of your readings: the reading, its salt, its path to the
    committed batch root, the node-signed commit, its inclusion in the log and the signed
    checkpoint. Save it and check it anywhere with ``glucoledger verify-proof``."""
    require_kind(request, who, "patient")
    c = ctx(request)
    doc = prove_reading(c.node, c.svc.vault, who.id, stream, time)
    return Response(dumps_proof(doc), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.post("/proofs/reading/verify", responses=ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"type": "object"}}}}})
async def verify_reading_proof(
        request: Request,
        node_key: Annotated[str | None, Query(min_length=1, max_length=300,
                                              description="a verifier key (name+hex+base64); "
                                              "default: this node's")] = None) -> dict[str, Any]:
    """Check a reading proof (the file, byte for byte) as ``verify-proof`` does; 400 or 422
    naming what is wrong, or what it proves."""
    body = await request.body()
    if len(body) > MAX_PROOF:
        raise TooLargeError(f"a proof is at most {MAX_PROOF} bytes")
    node = ctx(request).node
    verifier = node.verifier() if node_key is None else NoteVerifier.parse(node_key)
    r = await run_in_threadpool(verify_proof, body, verifier)
    return {"valid": True, "reading": r.reading.to_value(), "patient": r.patient.hex(),
            "stream": r.stream, "uploader": r.uploader.hex(), "seq": r.seq, "trust": r.trust,
            "log_index": r.log_index, "checkpoint": {
                "size": r.checkpoint.size, "height": r.checkpoint.height,
                "root": base64.b64encode(r.checkpoint.root).decode()},
            "signer": r.signer}


@router.post("/verify-vault", responses=ERRORS)
async def verify_the_vault(request: Request, who: Who) -> dict[str, Any]:
    """Check every committed batch's blob against the ledger: present, its SHA-256, its
    AES-GCM tag, its salted root. Erased batches are reported as erased, not as tampering."""
    require_kind(request, who, "organization")
    c = ctx(request)
    report = await run_in_threadpool(verify_vault, c.node.store, c.svc.vault,
                                     erased=erased_by(c.node),
                                     label=Registry(c.node.data_dir).label)
    return {"ok": True, "batches": report.batches, "decrypted": report.decrypted,
            "self_custody": report.self_custody, "seconds": round(report.seconds, 3),
            "erased": [{"blob": ct.hex(), "by": tx.hex()} for ct, tx in report.erased]}

"""Device routes: register, bind, unbind, revoke, look up; device-signed uploads; firmware.

Who may call what (the state machine decides the rest, state/devices.py, state/firmware.py):

- ``POST /api/devices`` (register), firmware ``POST /api/firmware``, ``/revoke``, ``/floor``:
  a maker account.
- ``POST``/``DELETE /api/devices/{id}/binding``: a patient, for her own account.
- ``POST /api/devices/{id}/revoke``: the device's maker, the patient it is bound to, or a
  gateway's sponsor.
- ``GET /api/devices/{id}``: its maker or the patient it is bound to.
- ``POST /api/uploads``: a device or gateway. No session and no request signature: the
  upload carries its uploader's signature over its salted root (``vault/batch.py``), which
  is its credential. The answer is the ingest receipt.
- ``POST /api/firmware/verify``: anyone (an installer checks an image's digest).

A refusal for lack of permission is 403 with the machine's reason code (``auth.permission``);
other refusals keep their status from the one error table (``app.py``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..crypto import PublicKey
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    MalformedError,
    PermissionDeniedError,
    RejectedError,
    SignatureError,
    TooLargeError,
    UnsupportedMediaError,
)
from ..node import devices as dv
from ..node import firmware as fw
from ..node.ingest import IngestReceipt
from ..vault.batch import MAX_UPLOAD_BYTES
from .auth import permission, principal, record_refusal, require_kind
from .context import Principal, ctx
from .routes_ledger import ERRORS, Strict

__all__ = ["UPLOAD_MEDIA", "router"]

router = APIRouter(prefix="/api", tags=["devices"])
Who = Annotated[Principal, Depends(principal)]
DeviceId = Annotated[str, Path(min_length=64, max_length=64, pattern=r"^[0-9a-fA-F]{64}$",
                               description="the device (or gateway) id, 64 hex digits")]
UPLOAD_MEDIA = "application/cbor"
_LABEL = r"^[A-Za-z0-9_.-]+$"
_VERSION = r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$"  # state/firmware.py


class KeyBody(Strict):
    alg: Literal["ed25519", "p256"]
    pub: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9+/=]+$",
                     description="the raw public key, base64 (Ed25519: 32 bytes; P-256: 33-byte "
                     "compressed point)")


class DeviceBody(Strict):
    serial: str = Field(min_length=1, max_length=64, pattern=_LABEL)
    model: str = Field(min_length=1, max_length=64, pattern=_LABEL)
    key: KeyBody


class ReleaseBody(Strict):
    model: str = Field(min_length=1, max_length=64, pattern=_LABEL)
    version: str = Field(min_length=1, max_length=40, pattern=_VERSION)


class PublishBody(ReleaseBody):
    sha256: str = Field(min_length=64, max_length=64, pattern=r"^[0-9a-fA-F]{64}$")
    length: int = Field(ge=1, le=1 << 34)


class FirmwareCheckBody(PublishBody):
    installed: str | None = Field(default=None, min_length=1, max_length=40, pattern=_VERSION)


class ReceiptBody(BaseModel):
    """What an accepted upload answers (201; 200 and ``duplicate`` for a retry)."""

    tx_hash: str
    index: int
    seq: int
    duplicate: bool
    patient: str
    uploader: str
    stream: str
    count: int
    trust: str
    blob: str


def _public_key(k: KeyBody) -> PublicKey:
    try:
        raw = base64.b64decode(k.pub, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError("key.pub is not base64") from None
    return PublicKey(k.alg, raw)


def device_value(u: dv.Uploader) -> dict[str, Any]:
    return {"id": u.id.hex(), "kind": u.kind, "status": u.status,
            "patient": u.patient.hex() if u.patient else None,
            "maker": u.maker.hex() if u.maker else None, "serial": u.serial, "model": u.model,
            "key": None if u.key is None else {"alg": u.key.alg,
                                               "pub": base64.b64encode(u.key.raw).decode()},
            "last_seq": u.last_seq}


@router.post("/devices", responses=ERRORS, status_code=201)
def register_device(body: DeviceBody, request: Request, who: Who) -> dict[str, Any]:
    """Register a device you make: its serial, model and public key (it keeps the private
    key and signs every upload). Answers the device id the patient binds."""
    require_kind(request, who, "maker")
    c = ctx(request)
    key = _public_key(body.key)
    with permission(request, who), c.account_lock(who.id):
        did = dv.register_device(c.node, who.id, c.keys_for(who), body.serial, body.model,
                                 key)
    return device_value(dv.uploader(c.node, did))


def _visible(request: Request, who: Principal, device_id: str) -> dv.Uploader:
    """The device, if ``who`` is its maker or the patient it is bound to (403 otherwise)."""
    u = dv.uploader(ctx(request).node, bytes.fromhex(device_id))
    if who.id not in (u.maker, u.patient):
        exc = PermissionDeniedError("only the device's maker or the patient it is bound to "
                                    "sees it", code="not_allowed")
        record_refusal(request, exc, who.name)
        raise exc
    return u


@router.get("/devices/{device_id}", responses=ERRORS)
def get_device(device_id: DeviceId, request: Request, who: Who) -> dict[str, Any]:
    """One device or gateway: kind, status, model, serial, key, last accepted sequence."""
    return device_value(_visible(request, who, device_id))


def _patient_action(request: Request, who: Principal, device_id: str, what: str) -> None:
    require_kind(request, who, "patient")
    c = ctx(request)
    action = dv.bind_device if what == "bind" else dv.unbind_device
    with permission(request, who), c.account_lock(who.id):
        action(c.node, who.id, c.keys_for(who), bytes.fromhex(device_id))


@router.post("/devices/{device_id}/binding", responses=ERRORS)
def bind_device(device_id: DeviceId, request: Request, who: Who) -> dict[str, Any]:
    """Bind a registered device (or a gateway) to you: from the next block its uploads are
    accepted as your data."""
    _patient_action(request, who, device_id, "bind")
    return device_value(dv.uploader(ctx(request).node, bytes.fromhex(device_id)))


@router.delete("/devices/{device_id}/binding", responses=ERRORS)
def unbind_device(device_id: DeviceId, request: Request, who: Who) -> dict[str, Any]:
    """Release a device bound to you (its sequence number is kept: no replays later)."""
    _patient_action(request, who, device_id, "unbind")
    return device_value(dv.uploader(ctx(request).node, bytes.fromhex(device_id)))


@router.post("/devices/{device_id}/revoke", responses=ERRORS)
def revoke_device(device_id: DeviceId, request: Request, who: Who) -> dict[str, Any]:
    """Revoke a device or gateway for good (its maker, its patient, or a gateway's
    sponsor): every later upload is refused."""
    require_kind(request, who, "maker", "patient", "organization")
    c = ctx(request)
    with permission(request, who), c.account_lock(who.id):
        dv.revoke_device(c.node, who.id, c.keys_for(who), bytes.fromhex(device_id))
    return device_value(dv.uploader(c.node, bytes.fromhex(device_id)))


# --- device-signed uploads ---------------------------------------------------------------

#: An upload's refusal, by reason code, when the answer is about its credential (the
#: uploader's signature): unknown uploader or a signature that does not verify is 401; a
#: known uploader that may not upload this (revoked, unbound, bound to another patient) 403.
#: Replays and reordered sequences stay 409, malformed or out-of-range input 400.
_UPLOAD_CREDENTIAL: dict[str, type[GlucoledgerError]] = {
    "unknown_device": AuthenticationError,
    "bad_upload_signature": AuthenticationError,
    "wrong_key": AuthenticationError,
    "revoked_device": PermissionDeniedError,
    "unbound_device": PermissionDeniedError,
    "wrong_patient": PermissionDeniedError,
}


def _upload_refusal(request: Request, exc: GlucoledgerError) -> GlucoledgerError:
    if isinstance(exc, SignatureError):
        err: GlucoledgerError = AuthenticationError(exc.message, code=exc.code)
    elif isinstance(exc, RejectedError) and exc.code in _UPLOAD_CREDENTIAL:
        err = _UPLOAD_CREDENTIAL[exc.code](exc.message, code=exc.code)
    else:
        return exc
    record_refusal(request, err, None)
    return err


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdecimal() or int(length) > limit):
        raise TooLargeError(f"the upload is larger than {limit} bytes; send smaller batches "
                            "(for example one day of readings per upload)")
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise TooLargeError(f"the upload is larger than {limit} bytes; send smaller "
                                "batches (for example one day of readings per upload)")
        chunks.append(chunk)
    return b"".join(chunks)


def receipt_value(r: IngestReceipt) -> dict[str, Any]:
    return {"tx_hash": r.tx_hash.hex(), "index": r.tx_index, "seq": r.seq,
            "duplicate": r.duplicate, "patient": r.patient.hex(), "uploader": r.uploader.hex(),
            "stream": r.stream, "count": r.count, "trust": r.trust, "blob": r.ct.hex()}


@router.post("/uploads", status_code=201, response_model=ReceiptBody,
             responses={**ERRORS, 200: {"model": ReceiptBody,
                                        "description": "a retry of an accepted upload"},
                        415: ERRORS[400]},
             openapi_extra={"requestBody": {"required": True, "content": {UPLOAD_MEDIA: {
                 "schema": {"type": "string", "format": "binary"}}}}})
async def upload(request: Request) -> JSONResponse:
    """A device-signed upload: the canonical CBOR of ``Upload.to_value`` (docs/formats.md),
    ``Content-Type: application/cbor``. The uploader's signature inside is the credential.
    Answers the ingest receipt (201; a retry of the same upload 200 with ``duplicate``).
    Refusals change nothing and carry the reason code: 400 malformed or out of range, 401
    unknown uploader or bad signature, 403 revoked, unbound or another patient's, 409
    ``replayed_seq``/``reordered_seq``, 413 too large, 415 not CBOR."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != UPLOAD_MEDIA:
        raise UnsupportedMediaError(f"send the upload as {UPLOAD_MEDIA} (canonical CBOR of "
                                    "the signed upload, docs/formats.md)")
    c = ctx(request)
    wire = await _body(request, min(c.settings.max_body, MAX_UPLOAD_BYTES))
    if not wire:
        raise MalformedError("the request has no body; send the signed upload as CBOR")
    (result,) = await run_in_threadpool(c.svc.ingest.upload_wire, [wire])
    if isinstance(result, GlucoledgerError):
        raise _upload_refusal(request, result)
    return JSONResponse(receipt_value(result), status_code=200 if result.duplicate else 201)


# --- firmware (after TUF) ----------------------------------------------------------------

def _maker_submits(request: Request, who: Principal, action: Any, *args: Any) -> None:
    require_kind(request, who, "maker")
    c = ctx(request)
    with permission(request, who), c.account_lock(who.id):
        action(c.node, who.id, c.keys_for(who), *args)


@router.post("/firmware", responses=ERRORS, status_code=201)
def publish_firmware(body: PublishBody, request: Request, who: Who) -> dict[str, Any]:
    """Release a firmware image of your model by its SHA-256 and length (the image stays
    with you). Signed with your release keys; your account's firmware threshold applies."""
    _maker_submits(request, who, fw.publish_digest, body.model, body.version,
                   bytes.fromhex(body.sha256), body.length)
    return {"model": body.model, "version": body.version, "status": "released"}


@router.post("/firmware/revoke", responses=ERRORS)
def revoke_firmware(body: ReleaseBody, request: Request, who: Who) -> dict[str, Any]:
    """Revoke a release: it never verifies again."""
    _maker_submits(request, who, fw.revoke, body.model, body.version)
    return {"model": body.model, "version": body.version, "status": "revoked"}


@router.put("/firmware/floor", responses=ERRORS)
def firmware_floor(body: ReleaseBody, request: Request, who: Who) -> dict[str, Any]:
    """Raise the rollback floor of a model: no version below it verifies."""
    _maker_submits(request, who, fw.set_floor, body.model, body.version)
    return {"model": body.model, "floor": body.version}


@router.post("/firmware/verify", responses=ERRORS)
def verify_firmware(body: FirmwareCheckBody, request: Request) -> dict[str, Any]:
    """Check an image (by the SHA-256 and length the installer computed) before installing:
    released, not revoked, threshold-signed, not below the floor, newer than ``installed``.
    Public; 422 with the failed check as the code."""
    rel = fw.verify_digest(ctx(request).node.state, bytes.fromhex(body.sha256), body.length,
                           body.model, body.version, body.installed)
    return {"accepted": True, "model": rel.model, "version": rel.version,
            "sha256": rel.sha256.hex(), "length": rel.length, "maker": rel.maker.hex(),
            "signed_weight": rel.signers}

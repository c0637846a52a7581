"""Firmware releases (after TUF): threshold-signed targets, revocation, a rollback floor.

A maker account publishes what its devices may run. Release keys are the maker account's
cosigners; the threshold is the account's ``firmware`` action class (``thresholds["firmware"]``,
falling back to ``default``), so "signed by k of the maker's n release keys" is enforced by the
state machine exactly as any multi-signature action (state/machine.py ``authorize``). Give the
maker policy e.g. three keys weighing ``{"default": 1, "firmware": 1}`` and
``{"default": 1, "firmware": 2}`` as thresholds.

- ``firmware.release`` {model, version, sha256, length}: the first maker to publish a model
  owns it (``model_owned``); a version is published once (``exists``); the signers' key ids
  are kept so a verifier can re-check them against the maker's *current* keys (a release
  signed by keys since rotated out no longer reaches the threshold and stops verifying).
- ``firmware.revoke`` {model, version}: the release must never be installed again.
- ``firmware.floor`` {model, version}: no version below it verifies (rollback protection); the
  floor only rises (``floor_lowered``).

Versions are dotted decimal numbers (``1``, ``2.4``, ``10.0.3``: 1 to 4 parts), compared part
by part. Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..ledger.tx import SignedTx
from .accounts_model import load_account
from .machine import Body, Context, body_field, register, require
from .store import State

__all__ = ["floor_key", "model_key", "parse_version", "release_key"]

_VERSION = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$")
_MODEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_IMAGE = 1 << 34


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.10.2"`` -> (1, 10, 2). Raises ValueError for anything else."""
    if not isinstance(text, str) or not _VERSION.match(text):
        raise ValueError(f"version {text!r} is not dotted decimal numbers like 1.4.2")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))


def model_key(model: str) -> str:
    return "fwmodel/" + model


def release_key(model: str, version: str) -> str:
    return f"fw/{model}/{'.'.join(map(str, parse_version(version)))}"


def floor_key(model: str) -> str:
    return "fwfloor/" + model


@dataclass(frozen=True, slots=True)
class FirmwareRef(Body):
    """The body of ``firmware.revoke`` and ``firmware.floor``: ``{model, version}`` (other
    fields are ignored, as they always were); the base of ``firmware.release``'s body."""

    model: str
    version: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FirmwareRef:
        model, version = body_field(body, "model", str), body_field(body, "version", str)
        require(bool(_MODEL.match(model)), "malformed", "model is 1-64 letters, digits or _.-")
        try:
            parse_version(version)
        except ValueError as exc:
            require(False, "malformed", str(exc))
        return cls(model, version)


@dataclass(frozen=True, slots=True)
class FirmwareRelease(Body):
    """The body of ``firmware.release``: model, version, image SHA-256 and length. The
    handler checks model and version first (``FirmwareRef``) and the model's owner, then
    parses the rest here, as results always were."""

    model: str
    version: str
    sha256: bytes
    length: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FirmwareRelease:
        ref = FirmwareRef.parse(body)
        require(set(body) == {"model", "version", "sha256", "length"}, "malformed",
                "firmware.release takes exactly model, version, sha256, length")
        digest, length = body_field(body, "sha256", bytes), body_field(body, "length", int)
        require(len(digest) == 32, "malformed", "sha256 is 32 bytes")
        require(0 < length <= MAX_IMAGE, "malformed", "length must be positive (at most 16 GiB)")
        return cls(ref.model, ref.version, digest, length)


def _model_version(state: State, stx: SignedTx) -> tuple[str, str]:
    maker = load_account(state, stx.tx.account)
    require(maker.kind == "maker", "not_maker", "only a maker account manages firmware")
    ref = FirmwareRef.parse(stx.tx.body)
    model, version = ref.model, ref.version
    owner = state.get(model_key(model))
    require(owner is None or owner["maker"] == maker.id, "model_owned",
            f"model {model!r} belongs to another maker")
    return model, version


@register("firmware.release", action="firmware", body=FirmwareRelease)
def _release(state: State, stx: SignedTx, ctx: Context) -> None:
    """Publish a firmware image for a model: version, SHA-256 and length."""
    model, version = _model_version(state, stx)
    b = FirmwareRelease.parse(stx.tx.body)
    digest, length = b.sha256, b.length
    require(release_key(model, version) not in state, "exists",
            f"{model} {version} is already released; publish a new version instead")
    state.put(model_key(model), {"maker": stx.tx.account})
    state.put(release_key(model, version), {
        "maker": stx.tx.account, "model": model, "version": version, "sha256": digest,
        "length": length, "signers": sorted(stx.signer_ids), "revoked": False,
        "height": ctx.height, "time": ctx.time_ms,
    })


@register("firmware.revoke", action="firmware", body=FirmwareRef)
def _revoke(state: State, stx: SignedTx, ctx: Context) -> None:
    """Revoke a released version: it never verifies again."""
    model, version = _model_version(state, stx)
    record: dict[str, Any] | None = state.get(release_key(model, version))
    require(record is not None, "unknown_release", f"{model} {version} was never released")
    assert record is not None
    require(not record["revoked"], "revoked", f"{model} {version} is already revoked")
    state.put(release_key(model, version), {**record, "revoked": True, "revoked_at": ctx.height})


@register("firmware.floor", action="firmware", body=FirmwareRef)
def _floor(state: State, stx: SignedTx, ctx: Context) -> None:
    """Set the lowest version of a model that may be installed; it only rises."""
    model, version = _model_version(state, stx)
    old = state.get(floor_key(model))
    require(old is None or parse_version(version) > parse_version(old["version"]),
            "floor_lowered",
            f"the floor of {model} is {old['version'] if old else ''}; it can only rise")
    state.put(floor_key(model), {"version": version, "height": ctx.height})

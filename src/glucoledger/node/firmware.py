"""Firmware service: publish, revoke and set floors as a maker; verify an image (after TUF).

``verify_image`` is the device-side (or installer-side) check against the ledger's state: it
returns the verified release or raises ``FirmwareError`` naming the check that failed, in
this order: ``unknown_release`` (never released), ``revoked``, ``threshold`` (the release's
signers no longer reach the maker's current ``firmware`` threshold: keys were rotated out),
``length``, ``hash``, ``below_floor``, ``not_newer`` (not above the installed version).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..crypto import PrivateKey, constant_time_equal, sha256
from ..errors import VerificationError
from ..state.accounts_model import load_account
from ..state.firmware import MAX_IMAGE, floor_key, parse_version, release_key
from ..state.store import State
from .service import Node

__all__ = ["MAX_IMAGE", "FirmwareError", "Release", "publish", "publish_digest", "revoke",
           "set_floor", "verify_digest", "verify_image"]


class FirmwareError(VerificationError):
    """``check`` names the failed check (also the error code)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message, code=check)
        self.check = check


@dataclass(frozen=True, slots=True)
class Release:
    model: str
    version: str
    sha256: bytes
    length: int
    maker: bytes
    signers: int


def publish(node: Node, maker: bytes, keys: Sequence[PrivateKey], model: str, version: str,
            image: bytes) -> None:
    publish_digest(node, maker, keys, model, version, sha256(image), len(image))


def publish_digest(node: Node, maker: bytes, keys: Sequence[PrivateKey], model: str,
                   version: str, digest: bytes, length: int) -> None:
    """Release an image known by its SHA-256 and length (the image itself stays with the
    maker). Raises RejectedError with the state machine's reason code."""
    body = {"model": model, "version": version, "sha256": digest, "length": length}
    node.send("firmware.release", body, maker, keys)


def revoke(node: Node, maker: bytes, keys: Sequence[PrivateKey], model: str,
           version: str) -> None:
    node.send("firmware.revoke", {"model": model, "version": version}, maker, keys)


def set_floor(node: Node, maker: bytes, keys: Sequence[PrivateKey], model: str,
              version: str) -> None:
    node.send("firmware.floor", {"model": model, "version": version}, maker, keys)


def verify_image(state: State, image: bytes, model: str, version: str,
                 installed: str | None = None) -> Release:
    """Accept ``image`` as ``model`` ``version`` only if every check passes."""
    return verify_digest(state, sha256(image), len(image), model, version, installed)


def verify_digest(state: State, digest: bytes, length: int, model: str, version: str,
                  installed: str | None = None) -> Release:
    """``verify_image`` for an image known by its SHA-256 and length (computed by the
    installer from the bytes it is about to install)."""
    try:
        wanted = parse_version(version)
        current = parse_version(installed) if installed is not None else None
    except ValueError as exc:
        raise FirmwareError("bad_version", str(exc)) from None
    record = state.get(release_key(model, version))
    if record is None:
        raise FirmwareError("unknown_release", f"{model} {version} was never released by its "
                            "maker: do not install it")
    if record["revoked"]:
        raise FirmwareError("revoked", f"{model} {version} was revoked by its maker: do not "
                            "install it; ask for a newer release")
    maker = load_account(state, record["maker"])
    weights = maker.weights("firmware")
    weight = sum(weights.get(k, 0) for k in record["signers"])
    if weight < maker.threshold("firmware"):
        raise FirmwareError("threshold", f"{model} {version} is signed with weight {weight}; "
                            f"the maker's release keys now require {maker.threshold('firmware')}"
                            " (keys were rotated out): the maker must re-release it")
    if length != record["length"]:
        raise FirmwareError("length", f"image is {length} bytes; {model} {version} was "
                            f"released with {record['length']}: wrong or damaged image")
    if not constant_time_equal(digest, record["sha256"]):
        raise FirmwareError("hash", f"image SHA-256 does not match {model} {version}'s "
                            "released hash: the image was altered")
    floor = state.get(floor_key(model))
    if floor is not None and wanted < parse_version(floor["version"]):
        raise FirmwareError("below_floor", f"{model} {version} is below the rollback floor "
                            f"{floor['version']}: install {floor['version']} or newer")
    if current is not None and wanted <= current:
        raise FirmwareError("not_newer", f"{model} {version} is not newer than the installed "
                            f"{installed}: a rollback (or a reinstall) is refused")
    return Release(model, version, record["sha256"], record["length"], record["maker"],
                   weight)

"""Nightscout API v3 on a node: JWTs for access tokens, documents with ``identifier`` and
``srvModified``, and the history of changes for incremental sync (AndroidAPS NSClient V3).

cgm-remote-monitor ``lib/api3/``: a client trades its access token for a JWT
(``/api/v2/authorization/request/<token>``) and sends ``Authorization: Bearer <jwt>``; every
document has an ``identifier`` and ``srvModified`` (ms when the server last changed it);
``/api/v3/<col>/history/<ms>`` gives what changed after ``ms``, deletions included
(``isValid: false``), oldest change first.

Here:
- the JWT is HS256 (RFC 7519 section 3, RFC 7515) under a key derived from the node's master
  key; its subject is the stored hash of the credential (never the credential), so it names
  exactly one uploader secret or reader token, and it expires after ``JWT_HOURS``;
- ``identifier`` is the client's own when it sent one (AndroidAPS re-creating a document it
  already named; a client reads, updates and deletes by it afterwards), else the document's
  ``_id`` (the keyed hash of its Nightscout identity); both stay the same across versions,
  moves in time included (node/nsversions.py). ``srvModified`` is the time of the block that
  committed the batch holding the document's current version (or its deletion): what the
  ledger says, not a clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, Final

from .. import jsonin
from ..crypto.hashing import constant_time_equal, hmac_sha256
from ..crypto.legacy import credential_hash, nightscout_secret_digests
from ..errors import AuthenticationError
from ..interop import nightscout as ns
from ..interop.nsannex import Annex
from ..ledger.block import BlockHeader
from ..state.versions import versions_of

if TYPE_CHECKING:
    from .nightscout import Binding, NightscoutService

__all__ = ["JWT_HOURS", "V3", "identifier_of"]

JWT_HOURS: Final = 8
_HEADER: Final = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class V3:
    def __init__(self, svc: NightscoutService) -> None:
        self.svc = svc
        self._key = hmac_sha256(svc.node.master, b"glucoledger nightscout jwt v1")
        self._block_time: dict[bytes, int] = {}

    # --- tokens ------------------------------------------------------------------------------
    def issue(self, access_token: str, now_ms: int) -> dict[str, Any]:
        """A JWT for an access token (an uploader secret or a reader token), as Nightscout's
        ``/api/v2/authorization/request/<token>`` answers. Raises AuthenticationError."""
        sha1 = nightscout_secret_digests(access_token)[0]
        binding = self.svc.authenticate(sha1, access_token)
        sub = credential_hash(sha1 if self.svc.knows(sha1) else access_token).hex()
        iat = now_ms // 1000
        claims = {"accessToken": sub, "iat": iat, "exp": iat + JWT_HOURS * 3600}
        text = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
        token = f"{text}.{_b64(hmac_sha256(self._key, text.encode()))}"
        groups = [["*:*:create", "*:*:read", "*:*:update", "*:*:delete"]] \
            if binding.role == "upload" else [["*:*:read"]]
        return {"token": token, "sub": binding.account, "permissionGroups": groups,
                "iat": claims["iat"], "exp": claims["exp"]}

    def authenticate(self, bearer: str | None, now_ms: int) -> Binding:
        """The binding a ``Bearer`` JWT names. Raises AuthenticationError (401: AndroidAPS then
        asks for a new JWT)."""
        if not bearer:
            raise AuthenticationError("send Authorization: Bearer <jwt> (from "
                                      "/api/v2/authorization/request/<your access token>)")
        try:
            head, body, sig = bearer.split(".")
            good = hmac_sha256(self._key, f"{head}.{body}".encode())
            if not constant_time_equal(_unb64(sig), good):
                raise ValueError("signature")
            claims = jsonin.loads(_unb64(body))
            sub, exp = str(claims["accessToken"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise AuthenticationError("the JWT is not one this server issued: request a new "
                                      "one with your access token") from None
        if exp * 1000 < now_ms:
            raise AuthenticationError("the JWT has expired: request a new one with your "
                                      "access token")
        return self.svc.binding_of(bytes.fromhex(sub))

    # --- documents ---------------------------------------------------------------------------
    def srv_modified(self, ct: bytes) -> int:
        """The block time of the batch's commit (ms)."""
        hit = self._block_time.get(ct)
        if hit is None:
            row = self.svc.ingest.vault.by_ct(ct)
            node = self.svc.node
            assert row.tx_index is not None
            _, header, _ = node.store.block_row(node.store.tx_at(row.tx_index).height)
            hit = self._block_time[ct] = BlockHeader.decode(header).time
        return hit

    def documents(self, binding: Binding, collection: str, query: ns.Query,
                  *, deleted: bool = False) -> list[dict[str, Any]]:
        """The documents ``query`` selects, each with ``identifier``, ``srvModified``,
        ``srvCreated`` and ``isValid``; with ``deleted``, the deleted ones too (``isValid``
        false, ``srvModified`` the time of the deletion)."""
        svc = self.svc
        by_ct = svc._release(binding, collection, query)
        state = svc.node.state
        modified: dict[str, int] = {}
        gone: dict[str, tuple[int, int]] = {}
        gone_records = []
        live = []
        for ct, records in by_ct:
            for rec in records:
                annex = None if rec.ns is None else Annex.parse(rec.ns, ns.COLLECTIONS)
                if annex is None or annex.collection != collection:
                    live.append(rec)
                    continue
                tag = svc.tag_of(binding.patient, collection, annex.key)
                history = versions_of(state, binding.patient, tag)
                doc_id = tag[:12].hex()
                if history and not history[-1]["cts"]:
                    gone[doc_id] = (int(history[-1]["time"]), rec.time_ms)
                    # Named as its last version was (a create that landed on a v1 document
                    # renamed it), not by whichever earlier version is read last.
                    last = next((v["cts"] for v in reversed(history) if v["cts"]), None)
                    if last is None or ct in last:
                        gone_records.append(rec)
                    continue
                if not svc.access.current(binding.patient, [(ct, [rec])]):
                    continue  # an earlier version, or a change the ledger refused
                modified[doc_id] = max(modified.get(doc_id, 0), self.srv_modified(ct))
                live.append(rec)
        out = []
        for f in svc._found(binding, collection, live):
            t = modified.get(f.doc["_id"], f.time_ms)
            out.append(ns.Found(collection, f.key, f.time_ms, dict(
                f.doc, identifier=identifier_of(f.doc), srvModified=t, srvCreated=t,
                isValid=True)))
        if deleted:
            names = {f.doc["_id"]: identifier_of(f.doc)
                     for f in svc._found(binding, collection, gone_records)}
            out += [ns.Found(collection, i, when, {
                "identifier": names.get(i, i), "_id": i, "isValid": False, "srvModified": t,
                "date": when}) for i, (t, when) in gone.items()]
        return [f.doc for f in ns.select(out, query)]


def identifier_of(doc: dict[str, Any]) -> str:
    """A v3 document's ``identifier``: the client's own, else its ``_id``."""
    own = doc.get("identifier")
    return own if isinstance(own, str) and 0 < len(own) <= 128 else str(doc["_id"])


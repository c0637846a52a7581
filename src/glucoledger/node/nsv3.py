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
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final

from .. import jsonin
from ..crypto.hashing import constant_time_equal, hmac_sha256
from ..crypto.legacy import credential_hash, nightscout_secret_digests
from ..errors import AuthenticationError, InputError, MalformedError, PreconditionFailedError
from ..interop import nightscout as ns
from ..interop.nsannex import Annex
from ..interop.nsfields import TIMES, time_raw
from ..ledger.block import BlockHeader
from ..state.versions import versions_of

if TYPE_CHECKING:
    from .nightscout import Binding, NightscoutService

__all__ = ["IMMUTABLE", "JWT_HOURS", "MIN_TIMESTAMP", "V3", "as_parsed", "check_common",
           "check_immutable", "check_unmodified_since", "identifier_of", "patch_moves"]

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



# --- what cgm-remote-monitor's lib/api3 checks before it writes ------------------------------
# Pure: the v3 routes (api/routes_nsv3.py) call these with the document sent and the one
# stored; each raises (nothing stored) with Nightscout's own words first, which AndroidAPS
# matches (NSAndroidClientImpl createTreatment/createSgv: "cannot be modified by the client",
# "Bad or missing utcOffset field"), then what to do.

#: What a create that lands on a document, a PUT or a PATCH may not change
#: (lib/api3/generic/update/validate.js lines 21-22, used by update/replace.js for PUT and
#: for a create that deduplicates, and by patch/validate.js): sent with another value than
#: the document has (or has not), 400 "Field <name> cannot be modified by the client".
IMMUTABLE: Final = ("identifier", "date", "utcOffset", "eventType", "device", "app",
                    "srvCreated", "subject", "srvModified", "modifiedBy", "isValid")
#: lib/api3/const.json: a date must be after 2000-01-01; a utcOffset within a day.
MIN_TIMESTAMP: Final = 946_684_800_000
MAX_UTC_OFFSET: Final = 1440
_ABSENT: Final = object()


def _ms(value: Any) -> int | None:
    """A time as cgm-remote-monitor's ``dateTools.parseToMoment`` reads it (epoch ms, a
    numeric string, ISO 8601 text), in ms; None when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return time_raw({"t": value}, ("t",), "date")[0]
    except MalformedError:
        return None


def _same(name: str, sent: Any, held: Any) -> bool:
    if held is _ABSENT:
        return False
    if name == "date":  # Nightscout compares it after parseDate made it epoch ms
        return _ms(sent) is not None and _ms(sent) == _ms(held)
    if isinstance(sent, bool) or isinstance(held, bool):
        return sent is held
    return bool(sent == held)


def check_immutable(col: str, identifier: str, sent: dict[str, Any], current: dict[str, Any],
                    *, skip: tuple[str, ...] = ()) -> None:
    """Raise InputError when ``sent`` gives a field of ``IMMUTABLE`` (but ``skip``) another
    value than ``current`` (a live document, as v3 reads it) has: update/validate.js line 39,
    ``typeof(doc[field]) !== 'undefined' && doc[field] !== storageDoc[field]`` (a field the
    document lacks counts as changed). A deleted document is not checked (line 36)."""
    if current.get("isValid") is False:
        return
    for name in IMMUTABLE:
        if name in skip or name not in sent:
            continue
        held = current.get(name, _ABSENT)
        if _same(name, sent[name], held):
            continue
        hint = {"isValid": f"DELETE /api/v3/{col}/{identifier} deletes it",
                "date": "delete it and create it again at the new time",
                "eventType": "delete it and create one with the new eventType"}.get(
            name, "leave it out or send it unchanged")
        if held is _ABSENT:
            has = f"has no {name} (it was stored without one, e.g. through API v1)"
            hint = (f"change it with PATCH /api/v3/{col}/{identifier[:40]} without {name}, "
                    "or through API v1")
        else:
            has = f"has {json.dumps(held)[:60]}"
        raise InputError(f"Field {name} cannot be modified by the client (the {col} "
                         f"document {identifier[:40]!r} {has}, the request sent "
                         f"{json.dumps(sent[name])[:60]}): {hint}; nothing was stored")


def as_parsed(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as cgm-remote-monitor compares it after ``collection.js`` parseDate (lines
    170-194): without a ``date`` that parses, the one its ``created_at`` gives."""
    if _ms(doc.get("date")) is None and _ms(doc.get("created_at")) is not None:
        return {**doc, "date": _ms(doc["created_at"])}
    return doc


def check_common(doc: dict[str, Any], *, patching: bool = False) -> None:
    """Nightscout's ``validateCommon`` (lib/api3/shared/operationTools.js lines 56-89), for a
    create (create/validate.js), a PUT (update/validate.js, insert or replace) and, of the
    fields sent only, a PATCH: ``date`` (or, as ``collection.js`` parseDate falls back to
    it, ``created_at``) a time after 2000, ``utcOffset`` when sent a number of minutes within
    a day (parseDate derives it otherwise), ``app`` a non-blank string. Raises InputError."""
    if not patching or "date" in doc:
        sent = [doc.get("date")] if patching else [doc.get("date"), doc.get("created_at")]
        if not any((t := _ms(v)) is not None and t > MIN_TIMESTAMP for v in sent):
            raise InputError("Bad or missing date field: send date as epoch milliseconds "
                             "(or created_at as ISO 8601 text with its offset), after "
                             "2000-01-01; nothing was stored")
    if "utcOffset" in doc:
        off = doc["utcOffset"]
        if isinstance(off, bool) or not isinstance(off, (int, float)) \
                or not -MAX_UTC_OFFSET <= off <= MAX_UTC_OFFSET:
            raise InputError(f"Bad or missing utcOffset field: send the minutes from UTC, "
                             f"-{MAX_UTC_OFFSET}..{MAX_UTC_OFFSET} (or leave it out), not "
                             f"{json.dumps(off)[:40]}; nothing was stored")
    if not patching or "app" in doc:
        app = doc.get("app")
        if not isinstance(app, str) or not app.strip():
            raise InputError("Bad or missing app field: send app, the name of the app that "
                             "made the document (e.g. \"AAPS\"); nothing was stored")


def patch_moves(col: str, identifier: str, sent: dict[str, Any],
                    current: dict[str, Any]) -> bool:
    """Whether a PATCH ``sent`` to the live document ``current`` moves it in time (True: a
    document without ``date``, stored through v1, whose time is its ``created_at``).

    cgm-remote-monitor's PATCH does not run ``parseDate`` (patch/operation.js lines 26-28),
    so a ``created_at`` sent is written as is while ``date``, immutable (update/validate.js),
    stays: the document does not move in API v3, whose time is ``date`` (``created_at`` is
    derived from it on create and PUT: collection.js parseDate, lines 170-194). Here a
    document is at one time, so a PATCH whose other time field names another instant than
    the document's ``date`` is refused (InputError, nothing stored); the same instant is
    taken. An entry's time is its ``date`` here too (``TIMES``): its ``dateString`` or
    ``sysTime`` is written as sent and it stays, as in Nightscout. A profile moves to its
    ``startDate`` (Nightscout's v3 does not derive that from ``date``)."""
    names = [n for n in TIMES.get(col, ()) if n != "date" and n in sent]
    held = _ms(current.get("date"))
    if not names:
        return False
    if held is None or col == "profile":
        return True
    if TIMES[col][0] == "date":
        return False
    for name in names:
        if _ms(sent[name]) != held:
            raise InputError(
                f"Field {name} cannot be modified by the client to another time than the "
                f"document's date (the {col} document {identifier[:40]!r} is at "
                f"{json.dumps(current.get('date'))[:40]}, the request sent "
                f"{json.dumps(sent[name])[:60]}): in API v3 a document's time is its date, "
                f"which cannot be modified; delete it and create it again at the new time; "
                f"nothing was stored")
    return False


def check_unmodified_since(header: str | None, col: str, identifier: str,
                           current: dict[str, Any]) -> None:
    """``If-Unmodified-Since`` on a PUT or PATCH (update/operation.js lines 54-60,
    patch/operation.js lines 44-50): PreconditionFailedError (412, nothing stored) when the
    document's ``srvModified``, floored to the second, is after the date sent (floored too);
    a date that does not parse is no condition (JavaScript's ``new Date`` gives NaN, and
    every comparison with it is false)."""
    if not header:
        return
    try:
        since = int(parsedate_to_datetime(header).timestamp()) * 1000
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return
    modified = int(current.get("srvModified") or 0)
    if modified - modified % 1000 > since:
        raise PreconditionFailedError(
            f"the {col} document {identifier[:40]!r} was modified after If-Unmodified-Since "
            f"({header[:40]}): it changed at {modified} ms; read it again "
            f"(GET /api/v3/{col}/{identifier[:40]}) and send your change against that; "
            f"nothing was stored")

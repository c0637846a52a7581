"""The ``data.commit`` contract: one commitment per accepted upload batch.

A batch never goes on the ledger; its commitment does::

    {patient, stream, start, end, count, root, ct, uploader, seq, trust, key, sig, custody}

- ``start``/``end``: the batch's time range *rounded outward to whole UTC hours*
  (``hour_range``), so the ledger never carries the exact time of a reading; ``count`` the
  number of records.
- ``root``: RFC 9162 Merkle root over the batch's salted per-reading leaves
  (``leaf_hash(encode({"salt": salt_i, "reading": record}))``, records in batch order). Salts
  come from a random per-batch key (``salt_i = HMAC-SHA-256(batch salt key, "salt" || i)``),
  so disclosing one reading with its salt reveals nothing about any other.
- ``ct``: SHA-256 of the stored ciphertext (the blob's content address).
- ``uploader``/``seq``/``sig``/``key``: the device (or gateway) and its strictly increasing
  sequence number, and its signature (context ``"upload"``) over ``upload_statement``: chain,
  patient, uploader, stream, seq, start, end, count, root. ``key`` is the signing public key.
- ``trust``: ``device-signed`` for a device, ``gateway-attested`` for a gateway; a mismatch
  is refused.
- ``custody``: ``node`` (data key wrapped in the node's key store) or ``self`` (wrapped with
  HPKE to the patient's key).

Format 2 (node-vouched; ``{..., v: 2}`` without ``key`` and ``sig``): for a gateway the
committing node runs itself. Its key is custodial in the node's wallet, so its upload
signature was the node signing twice; in format 2 the node's signature on the transaction,
which covers every field of the upload statement and more (``ct``, ``custody``), is the only
one. The machine accepts it only when the uploader is a *gateway* whose account was sponsored
by the committing node's own organization (``not_custodian`` otherwise): who runs the
gateway is on the ledger. A device's upload always carries the device's signature
(``unsigned_upload``): format 2 never stands in for a device. Format 1 commits (every ledger
before format 2) verify as they always did. docs/formats.md, "data.commit".

Who sends it: a ``node`` account (the node that ran ingest), signing with keys meeting its
``data`` threshold. It is authorized by the handler (auth "self") and consumes no account
nonce: the uploader's sequence number is the replay guard (a second commit of the same upload
is refused as ``replayed_seq``), so a refused commit can never block the node's later ones.

Refusals: ``not_node``, ``unknown_device``, ``revoked_device``, ``unbound_device``,
``wrong_patient``, ``wrong_trust``, ``wrong_key``, ``replayed_seq``, ``reordered_seq``,
``bad_upload_signature``, ``malformed``; format 2: ``unsigned_upload``, ``not_custodian``;
rule set 2: ``span_too_long`` (an hour range of more than ``MAX_SPAN_HOURS``).
A refusal changes nothing (the sequence is kept).
Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .. import codec
from ..crypto import PublicKey
from ..errors import MalformedError, RejectedError, SignatureError
from ..ledger.tx import SignedTx
from .accounts import rules
from .accounts_model import load_account
from .devices import device_key, get_uploader
from .machine import MISSING, Body, Context, authorize, body_field, register, require, typed_field
from .store import State

__all__ = ["COMMIT_FIELDS", "COMMIT_FIELDS_V2", "HOUR_MS", "MAX_SPAN_HOURS", "TRUST_LEVELS",
           "UPLOAD_CONTEXT", "VOUCHED", "DataCommit", "check_span", "hour_range",
           "upload_statement"]

UPLOAD_CONTEXT: Final = "upload"
HOUR_MS: Final = 3_600_000
TRUST_LEVELS: Final = {"device": "device-signed", "gateway": "gateway-attested"}
COMMIT_FIELDS: Final = frozenset({"patient", "stream", "start", "end", "count", "root", "ct",
                                  "uploader", "seq", "trust", "key", "sig", "custody"})
#: Format 2 (node-vouched gateway uploads): no uploader key or signature, and ``v: 2``.
COMMIT_FIELDS_V2: Final = (COMMIT_FIELDS - {"key", "sig"}) | {"v"}
VOUCHED: Final = 2
MAX_COUNT: Final = 10_000
#: The longest hour range a commit covers: 366 days. The access index (state/access.py)
#: files a commit under every hour it touches, so the span bounds the keys one commit writes
#: on every node (audit F13: 10^6 hours took 2 s and 337 MB, 10^9 never finished). A year of
#: readings is a batch no device sends; ingest cuts longer files (node/ingest.split_batch)
#: and refuses a longer device upload with the same rule (``check_span``), so nothing it
#: accepts is refused here. Rule set 2 (state/accounts.py ``RULES``): older chains may hold
#: longer commits, and replay them as they were.
MAX_SPAN_HOURS: Final = 366 * 24
_STREAMS: Final = ("cgm", "smbg", "insulin", "carbs", "settings", "notes")


def hour_range(start_ms: int, end_ms: int) -> tuple[int, int]:
    """The hour-aligned range [start, end) that covers every time in [start_ms, end_ms]."""
    if end_ms < start_ms:
        raise ValueError("end before start")
    return start_ms - start_ms % HOUR_MS, end_ms - end_ms % HOUR_MS + HOUR_MS


def check_span(start: int, end: int) -> None:
    """Refuse (``span_too_long``) an hour range [start, end) of more than MAX_SPAN_HOURS;
    the one rule of ``data.commit`` and of ingest (node/ingest.py)."""
    hours = (end - start) // HOUR_MS
    if hours > MAX_SPAN_HOURS:
        raise RejectedError(
            f"the batch's readings span {hours} hours; a batch spans at most "
            f"{MAX_SPAN_HOURS} hours (366 days): split the upload into batches of shorter "
            "periods (or check the device clock: a reading far in the past stretches it)",
            code="span_too_long")


def upload_statement(*, chain: str, patient: bytes, uploader: bytes, stream: str, seq: int,
                     start: int, end: int, count: int, root: bytes) -> bytes:
    """The canonical bytes a device (or gateway) signs for one upload batch.

    Raises MalformedError for a field of the wrong type."""
    if not (type(chain) is str and type(stream) is str and type(patient) is bytes
            and type(uploader) is bytes and type(root) is bytes
            and all(type(x) is int and -(1 << 63) <= x < 1 << 64
                    for x in (seq, start, end, count))):
        raise MalformedError("an upload statement is text, byte strings and 64-bit integers")
    return codec.encode({"chain": chain, "patient": patient, "uploader": uploader,
               "stream": stream, "seq": seq, "start": start, "end": end,
               "count": count, "root": root})


def _hash32(body: dict[str, Any], name: str) -> bytes:
    value = body_field(body, name, bytes)
    require(len(value) == 32, "malformed", f"{name} must be 32 bytes")
    return bytes(value)


@dataclass(frozen=True, slots=True, init=False)
class DataCommit(Body):
    """The body of ``data.commit``. ``parse`` checks the shape, in the order (and with the
    codes and words) results have always had; ``trust``, ``key`` and ``sig`` are checked by
    the handler against the uploader's record, after the state checks that come first."""

    patient: bytes
    stream: str
    start: int
    end: int
    count: int
    root: bytes
    ct: bytes
    uploader: bytes
    seq: int
    custody: str
    trust: Any
    key: Any = MISSING
    sig: Any = MISSING
    #: 1 (the uploader signed) or ``VOUCHED`` (2: the committing node vouches).
    v: int = 1

    def __init__(self, patient: bytes, stream: str, start: int, end: int, count: int,
                 root: bytes, ct: bytes, uploader: bytes, seq: int, custody: str, trust: Any,
                 key: Any = MISSING, sig: Any = MISSING, v: int = 1) -> None:
        # Written out, so mypyc compiles it (``_compiled.py``): one an upload.
        object.__setattr__(self, "patient", patient)
        object.__setattr__(self, "stream", stream)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "ct", ct)
        object.__setattr__(self, "uploader", uploader)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "custody", custody)
        object.__setattr__(self, "trust", trust)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "sig", sig)
        object.__setattr__(self, "v", v)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DataCommit:
        """Raises RejectedError (code ``malformed``) or MalformedError."""
        names = set(body)
        version = 1
        if names == COMMIT_FIELDS_V2 and type(body["v"]) is int and body["v"] == VOUCHED:
            version = VOUCHED
        elif names != COMMIT_FIELDS:  # the words of format 1: results are hashed in blocks
            raise RejectedError(f"data.commit takes exactly {', '.join(sorted(COMMIT_FIELDS))}",
                                code="malformed")
        patient, uploader = _hash32(body, "patient"), _hash32(body, "uploader")
        root = _hash32(body, "root")
        ct = _hash32(body, "ct")
        stream = body_field(body, "stream", str)
        if stream not in _STREAMS:
            raise RejectedError(f"unknown stream {stream!r}", code="malformed")
        start, end = body_field(body, "start", int), body_field(body, "end", int)
        count, seq = body_field(body, "count", int), body_field(body, "seq", int)
        require(0 <= start < end and start % HOUR_MS == 0 and end % HOUR_MS == 0, "malformed",
                "start and end are whole hours (epoch ms), start before end")
        if not 1 <= count <= MAX_COUNT:
            raise RejectedError(f"count must be 1 to {MAX_COUNT}", code="malformed")
        require(seq >= 1, "malformed", "sequence numbers start at 1")
        custody = body["custody"]
        require(custody in ("node", "self"), "malformed", "custody is 'node' or 'self'")
        if version == VOUCHED:
            return cls(patient, stream, start, end, count, root, ct, uploader, seq, custody,
                       body["trust"], v=VOUCHED)
        return cls(patient, stream, start, end, count, root, ct, uploader, seq, custody,
                   body["trust"], body["key"], body["sig"])

    def to_body(self) -> dict[str, Any]:
        body = {"patient": self.patient, "stream": self.stream, "start": self.start,
                "end": self.end, "count": self.count, "root": self.root, "ct": self.ct,
                "uploader": self.uploader, "seq": self.seq, "trust": self.trust,
                "custody": self.custody}
        if self.v == VOUCHED:
            return {**body, "v": VOUCHED}
        return {**body, **{k: v for k, v in (("key", self.key), ("sig", self.sig))
                           if v is not MISSING}}


@register("data.commit", action="data", auth="self", body=DataCommit)
def _commit(state: State, stx: SignedTx, ctx: Context) -> None:
    """Commit one upload batch: salted Merkle root, ciphertext hash, uploader signature.

    Every upload passes here, so refusal messages are only formatted when they are needed
    (``if not ...: raise``, not ``require``): the same codes and words, without building
    ten messages per accepted batch.
    """
    node = load_account(state, stx.tx.account)
    if node.kind != "node":
        raise RejectedError(f"data commitments are sent by a node account, not a {node.kind} "
                            "account", code="not_node")
    authorize(node, stx, "data")
    b = DataCommit.parse(stx.tx.body)
    if rules(state) >= 2:
        check_span(b.start, b.end)
    patient, uploader, seq = b.patient, b.uploader, b.seq
    record = get_uploader(state, uploader)
    if record is None:
        raise RejectedError(f"no device or gateway {uploader.hex()[:16]} is registered: "
                            "register it first", code="unknown_device")
    kind = record["kind"]
    if record["status"] != "active":
        raise RejectedError(f"{kind} {uploader.hex()[:16]} was revoked; its uploads are "
                            "refused", code="revoked_device")
    if record["patient"] is None:
        raise RejectedError(f"{kind} {uploader.hex()[:16]} is not bound to any patient: the "
                            "patient binds it first", code="unbound_device")
    if record["patient"] != patient:
        raise RejectedError(f"{kind} {uploader.hex()[:16]} is bound to another patient, not "
                            f"{patient.hex()[:16]}", code="wrong_patient")
    if b.trust != TRUST_LEVELS[kind]:
        raise RejectedError(f"uploads from a {kind} are recorded as {TRUST_LEVELS[kind]!r}",
                            code="wrong_trust")
    last = record["seq"]
    if seq == last:
        raise RejectedError(f"sequence {seq} of {kind} {uploader.hex()[:16]} was already "
                            "accepted: a replay (a retry of an accepted batch needs no new "
                            "upload)", code="replayed_seq")
    if seq < last:
        raise RejectedError(f"sequence {seq} is below the last accepted ({last}) for {kind} "
                            f"{uploader.hex()[:16]}: a replayed or reordered upload; send "
                            "newer batches with higher numbers", code="reordered_seq")
    if b.v == VOUCHED:
        _vouched(state, node.record, kind, uploader)
        record["seq"] = seq
        state.put(device_key(uploader), record)
        return
    key = PublicKey.from_value(typed_field(b.key, "key", dict))
    if kind == "device":
        require(key == PublicKey.from_value(record["key"]), "wrong_key",
                "the upload was signed with a key that is not the device's registered key")
    else:
        gateway = load_account(state, uploader)
        require(key.key_id in gateway.keys, "wrong_key",
                "the upload was signed with a key that is not one of the gateway's keys")
    statement = upload_statement(chain=ctx.chain, patient=patient, uploader=uploader,
                                 stream=b.stream, seq=seq, start=b.start, end=b.end,
                                 count=b.count, root=b.root)
    try:
        ctx.verify_signature(key, UPLOAD_CONTEXT, statement, typed_field(b.sig, "sig", bytes))
    except SignatureError as exc:
        raise RejectedError(f"the {kind}'s upload signature does not verify ({exc.message}); "
                            "the batch was altered or signed by another key",
                            code="bad_upload_signature") from None
    record["seq"] = seq
    state.put(device_key(uploader), record)


def _vouched(state: State, node: Mapping[str, Any], kind: str, uploader: bytes) -> None:
    """Format 2: only a gateway sponsored by the committing node's own organization."""
    if kind != "gateway":
        raise RejectedError(f"a device's upload carries the device's own signature: device "
                            f"{uploader.hex()[:16]}'s batch needs data.commit format 1 with "
                            "its key and signature", code="unsigned_upload")
    gateway = load_account(state, uploader)
    if gateway.record.get("sponsor") != node.get("sponsor"):
        raise RejectedError(f"gateway {uploader.hex()[:16]} is not run by this node's "
                            "organization (another account sponsored it): its uploads carry "
                            "its own signature (data.commit format 1)", code="not_custodian")

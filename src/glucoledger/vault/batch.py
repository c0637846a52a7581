"""Batches as the vault keeps them: salted leaves, the signed upload, the sealed blob.

Leaves (what ``data.commit`` commits to, state/data.py)::

    salt_i = HMAC-SHA-256(salt_key, b"salt" || i as 4 bytes big-endian)
    leaf_i = RFC 9162 leaf hash of encode({"salt": salt_i, "reading": record_i.to_value()})
    root   = RFC 9162 Merkle tree hash over leaf_0 .. leaf_{n-1} (records in batch order)

``salt_key`` is 32 random bytes per batch, chosen by the uploader and kept only inside the
encrypted blob. HMAC is a PRF: knowing salt_i (disclosed with one reading) reveals nothing
about salt_j, so the other leaves stay unguessable even for low-entropy readings.

An ``Upload`` is what a device (or gateway) sends: the validated batch, its salt key, its
sequence number, and its signature over ``upload_statement`` (chain, patient, uploader,
stream, seq, hour range, count, root). ``prepare_upload`` is the uploader's side.

``check_wire`` is the node's side for uploads received as bytes: it parses, validates and
recomputes the leaves, and returns a ``Checked`` (what the node keeps of an upload: ids, range,
count, root, key, signature, and the blob's plaintext, encoded once). CGM uploads (LOW/HIGH
records included) take a bulk path on the bytes themselves (``_fast_cgm``): one regular
expression cuts the items array into records and captures each field's encoding, every rule
of the glucose package (``CgmReading``, ``check_unique_times``) is a C-level pass over a
column of those encodings (membership in the canonical encodings of the valid values; byte
order of the 8-byte times), the records' wire bytes are the leaf preimages and, unchanged,
the blob's plaintext, and the rest of the upload is decoded alone and proven canonical by
comparing the wire with the encoding rebuilt from the checked values. Anything it does not
accept goes through ``Upload.from_value(codec.decode(...))``, which names the reason; the
leaves, the root and the plaintext are byte-identical either way
(``tests/vault/test_bulk_day_batch.py`` checks both against a per-reading reference).

Cost (2026-12-04, one 288-reading day, timeit; ``bench.ingest`` prints the check's total): 2.3
us a reading without the device signature, against 3.3 us when every record was decoded by
cbor2 and checked from dicts. Of the 2.3, 1.7 us are the three SHA-256 calls a reading (salt
HMAC 0.61, leaf 0.51, Merkle node 0.56), almost all hashlib's per-call cost; cutting and
checking the records takes 0.4 us.

The blob: ``seal(data_key, encode({"v": 1, "salt_key", "batch"}), "batch", aad)`` with
``aad = batch_aad(...)``, the batch identifiers (chain, patient, uploader, stream, seq): a blob
cannot be passed off as another batch's. Data keys are wrapped with ``seal(kek, dk,
"data-key", aad)`` (custodial) or ``hpke_seal(x25519, dk, "data-key", aad)`` (self-custody).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from itertools import repeat
from operator import lt
from typing import Any

from .. import codec
from ..crypto import PrivateKey, PublicKey, hmac_sha256
from ..crypto.hashing import hmac_sha256_many, sha256_many
from ..crypto.seal import new_key
from ..errors import GlucoledgerError, MalformedError, SignatureError
from ..glucose.readings import (
    CENSORED_RANGE,
    CGM_MAX_MGDL,
    CGM_MIN_MGDL,
    MAX_BATCH,
    MAX_TIME_MS,
    MIN_TIME_MS,
    TRENDS,
    Batch,
    check_unique_times,
)
from ..ledger import merkle
from ..ledger.trust import TrustCache
from ..state.data import UPLOAD_CONTEXT, hour_range, upload_statement

__all__ = [
    "MAX_UPLOAD_BYTES",
    "Checked",
    "Upload",
    "batch_aad",
    "batch_plaintext",
    "check_wire",
    "check_wires",
    "leaf_data",
    "leaf_hashes",
    "prepare_upload",
    "read_plaintext",
    "reading_salt",
]

SALT_KEY_BYTES = 32


def reading_salt(salt_key: bytes, index: int) -> bytes:
    return hmac_sha256(salt_key, b"salt" + index.to_bytes(4, "big"))


_LEAF_HEAD = b"\xa2\x64salt\x58\x20"  # map(2), "salt": bytes(32) ...
_LEAF_MID = b"\x67reading"  # ... "reading": <record>, keys in canonical order


def leaf_data(salt: bytes, reading: dict[str, Any]) -> bytes:
    """``codec.encode({"salt": salt, "reading": reading})``, assembled without re-sorting."""
    if len(salt) != 32:
        raise ValueError("salts are 32 bytes")
    return _LEAF_HEAD + salt + _LEAF_MID + codec.encode(reading)


#: ``b"salt" || i`` (4 bytes, big-endian) for every index a batch can have, built once.
_SALT_MSGS: list[bytes] = [b"salt" + i.to_bytes(4, "big") for i in range(MAX_BATCH + 1)]


def _salts(salt_key: bytes, n: int) -> list[bytes]:
    if n <= MAX_BATCH:
        return hmac_sha256_many(salt_key, _SALT_MSGS[:n])
    return hmac_sha256_many(salt_key, [b"salt" + i.to_bytes(4, "big") for i in range(n)])


def leaf_hashes(salt_key: bytes, readings: list[dict[str, Any]]) -> list[bytes]:
    return [merkle.leaf_hash(leaf_data(salt, r))
            for salt, r in zip(_salts(salt_key, len(readings)), readings, strict=True)]


def batch_aad(chain: str, patient: bytes, uploader: bytes, stream: str, seq: int) -> bytes:
    return codec.encode({"chain": chain, "patient": patient, "uploader": uploader,
                         "stream": stream, "seq": seq})


def batch_plaintext(salt_key: bytes, batch_value: dict[str, Any]) -> bytes:
    return codec.encode({"v": 1, "salt_key": salt_key, "batch": batch_value})


def read_plaintext(data: bytes, *, authenticated: bool = False) -> tuple[bytes, Batch]:
    """Parse a decrypted blob. Raises MalformedError.

    ``authenticated``: ``data`` is the plaintext of a blob whose AES-GCM tag verified under
    the node's data key, so these are the bytes this node encoded (``batch_plaintext``) and
    the canonical-form re-scan is skipped (a third of the parse, the hottest step of a first
    read: node/access.py); ``Batch.from_value`` still checks every field's type and range.
    ``verify-vault`` keeps the strict parse (node/vaultcheck.py).
    """
    value = (codec.decode_authenticated(data) if authenticated
             else codec.decode(data, max_size=64 << 20))
    if not isinstance(value, dict) or set(value) != {"v", "salt_key", "batch"} or value["v"] != 1:
        raise MalformedError("decrypted blob is not a v1 batch")
    return value["salt_key"], Batch.from_value(value["batch"])


@dataclass(frozen=True)
class Upload:
    """One signed upload batch, as the ingest service receives it."""

    chain: str
    patient: bytes
    uploader: bytes
    seq: int
    batch: Batch
    salt_key: bytes
    key: PublicKey
    sig: bytes
    #: Computed once: record values, leaf hashes, root, hour range.
    values: list[dict[str, Any]] = field(repr=False, compare=False, default_factory=list)
    leaves: list[bytes] = field(repr=False, compare=False, default_factory=list)
    root: bytes = field(repr=False, compare=False, default=b"")
    #: Made by this node for a gateway it runs (``prepare_upload(..., vouched=True)``):
    #: unsigned; the node's own signature on the ``data.commit`` (format 2) vouches for it.
    #: Never set from the network (``from_value`` and ``check_wire`` leave it False).
    vouched: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.salt_key, bytes) or len(self.salt_key) != SALT_KEY_BYTES:
            raise MalformedError("an upload's salt key is 32 bytes")
        if not isinstance(self.seq, int) or self.seq < 1:
            raise MalformedError("upload sequence numbers start at 1")
        if len(self.patient) != 32 or len(self.uploader) != 32:
            raise MalformedError("patient and uploader are 32-byte ids")
        if self.root:  # computed by prepare_upload from the same batch and salt key
            return
        values = [r.to_value() for r in self.batch.items]
        leaves = leaf_hashes(self.salt_key, values)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "leaves", leaves)
        object.__setattr__(self, "root", merkle.root_of(leaves))

    @property
    def stream(self) -> str:
        return self.batch.stream

    @property
    def hours(self) -> tuple[int, int]:
        return hour_range(self.batch.start_ms, self.batch.end_ms)

    def statement(self) -> bytes:
        start, end = self.hours
        return upload_statement(chain=self.chain, patient=self.patient, uploader=self.uploader,
                                stream=self.stream, seq=self.seq, start=start, end=end,
                                count=self.batch.count, root=self.root)

    def aad(self) -> bytes:
        return batch_aad(self.chain, self.patient, self.uploader, self.stream, self.seq)

    def check_signature(self) -> None:
        """Raise SignatureError unless ``sig`` is ``key``'s signature over the statement."""
        self.key.verify(UPLOAD_CONTEXT, self.statement(), self.sig)

    def checked(self) -> Checked:
        """What the node keeps of this upload (its plaintext encoded once)."""
        b = self.batch
        value = {"stream": b.stream, "items": self.values, "start_ms": b.start_ms,
                 "end_ms": b.end_ms, "count": b.count}
        return Checked(self.chain, self.patient, self.uploader, self.seq, b.stream, b.start_ms,
                       b.end_ms, b.count, self.key, self.sig, self.root,
                       batch_plaintext(self.salt_key, value), vouched=self.vouched)

    def to_value(self) -> dict[str, Any]:
        return {"chain": self.chain, "patient": self.patient, "uploader": self.uploader,
                "seq": self.seq, "batch": {"stream": self.stream, "items": self.values,
                                           "start_ms": self.batch.start_ms,
                                           "end_ms": self.batch.end_ms,
                                           "count": self.batch.count},
                "salt_key": self.salt_key, "key": self.key.to_value(), "sig": self.sig}

    @classmethod
    def from_value(cls, value: Any) -> Upload:
        """Parse an upload received from the network. Raises MalformedError/OutOfRangeError
        (also for two records of one type at the same time)."""
        names = {"chain", "patient", "uploader", "seq", "batch", "salt_key", "key", "sig"}
        if not isinstance(value, dict) or set(value) != names:
            raise MalformedError(f"an upload is exactly {{{', '.join(sorted(names))}}}")
        if not all(isinstance(value[k], bytes) for k in ("patient", "uploader", "salt_key", "sig")):
            raise MalformedError("upload ids, salt key and signature are bytes")
        if type(value["chain"]) is not str:
            raise MalformedError("an upload's chain is its chain id, a text string")
        if type(value["seq"]) is not int or not 1 <= value["seq"] < 1 << 63:  # not a bool
            raise MalformedError("an upload's seq is an integer from 1 to 2^63 - 1")
        batch = Batch.from_value(value["batch"])
        check_unique_times(batch)  # a device may not send two readings of one moment
        return cls(value["chain"], value["patient"], value["uploader"], value["seq"], batch,
                   value["salt_key"], PublicKey.from_value(value["key"]), value["sig"])


def prepare_upload(chain: str, patient: bytes, uploader: bytes, seq: int, batch: Batch,
                   signer: PrivateKey, *, salt_key: bytes | None = None,
                   vouched: bool = False) -> Upload:
    """The uploader's side: choose the salt key, compute the root, sign the statement.

    A device keeps the prepared upload until the node acknowledges it and resends it unchanged
    on retry (a retry of the same upload is idempotent; a new salt key would be a new batch).

    ``vouched``: a gateway the node itself runs (its key custodial in the node's wallet,
    sponsored by the node's organization) does not sign: the node's signature on the
    ``data.commit`` (format 2, docs/formats.md) covers every field the statement would.
    """
    key = new_key() if salt_key is None else salt_key
    unsigned = Upload(chain, patient, uploader, seq, batch, key, signer.public, b"")
    if vouched:
        return Upload(chain, patient, uploader, seq, batch, key, signer.public, b"",
                      unsigned.values, unsigned.leaves, unsigned.root, vouched=True)
    sig = signer.sign(UPLOAD_CONTEXT, unsigned.statement())
    return Upload(chain, patient, uploader, seq, batch, key, signer.public, sig,
                  unsigned.values, unsigned.leaves, unsigned.root)


@dataclass(frozen=True, slots=True)
class Checked:
    """A parsed, validated upload as the node handles it: identifiers, range, count, salted
    root, the device's key and signature, and the blob's plaintext (encoded once).

    Made only by ``Upload.checked`` or ``check_wire`` from a fully validated upload.
    ``sig_ok`` is the result of a signature check this node already ran (in a worker
    process), None when nobody checked yet.
    """

    chain: str
    patient: bytes
    uploader: bytes
    seq: int
    stream: str
    start_ms: int
    end_ms: int
    count: int
    key: PublicKey
    sig: bytes
    root: bytes
    plaintext: bytes = field(repr=False)
    sig_ok: bool | None = None
    #: ``statement()``, kept by ``check_wire`` (it verified over these bytes).
    signed: bytes = field(default=b"", repr=False, compare=False)
    #: Unsigned, vouched for by this node (``Upload.vouched``); never set from the network.
    vouched: bool = False

    @property
    def hours(self) -> tuple[int, int]:
        return hour_range(self.start_ms, self.end_ms)

    def statement(self) -> bytes:
        if self.signed:
            return self.signed
        start, end = self.hours
        return upload_statement(chain=self.chain, patient=self.patient, uploader=self.uploader,
                                stream=self.stream, seq=self.seq, start=start, end=end,
                                count=self.count, root=self.root)

    def aad(self) -> bytes:
        return batch_aad(self.chain, self.patient, self.uploader, self.stream, self.seq)

    def check_signature(self, trust: TrustCache | None = None) -> None:
        """Raise SignatureError unless ``sig`` is ``key``'s signature over the statement.

        ``trust``: the node's memo; a check already run by one of the node's own workers
        (``sig_ok``) is recorded there, so the state machine's check of it is free."""
        if self.sig_ok is None:
            if trust is None:
                self.key.verify(UPLOAD_CONTEXT, self.statement(), self.sig)
            else:
                trust.verify(self.key, UPLOAD_CONTEXT, self.statement(), self.sig)
        elif self.sig_ok:
            if trust is not None:
                trust.note_verified(self.key, UPLOAD_CONTEXT, self.statement(), self.sig)
        else:
            raise SignatureError(f"signature does not verify under {self.key.alg} key "
                                 f"{self.key.key_id.hex()[:16]}")


#: Largest upload accepted as bytes (a batch of MAX_BATCH settings records fits).
MAX_UPLOAD_BYTES = 64 << 20

# --- the CGM fast path ---------------------------------------------------------------------
# A day batch is checked on its bytes, without decoding its records into Python objects: one
# regular expression (C) cuts the items array into records and captures each field's encoding;
# every check is then a C-level pass over a column of those byte strings (set membership in
# the canonical encodings of the valid values, ordered comparison of the 8-byte big-endian
# times); the records' bytes, sliced from the wire, are the leaf preimages and the plaintext.
# Keys in canonical order (mgdl, type, trend, time_ms, [censored,] tz_offset_min); time_ms
# always takes the 8-byte form (MIN_TIME_MS > 2**32), so byte order is numeric order. Tests
# compare it with a per-reading reference (tests/vault/test_bulk_day_batch.py).
assert MIN_TIME_MS > 1 << 32 and MAX_TIME_MS < 1 << 64
_CBOR_INT = rb"(?:[\x00-\x17\x20-\x37]|[\x18\x38].|[\x19\x39]..|[\x1a\x3a].{4}|[\x1b\x3b].{8})"
_TREND_ENCS = [codec.encode(t) for t in (*TRENDS, None)]
_RECORD = re.compile(
    rb"((?:\xa5|(\xa6))\x64mgdl(" + _CBOR_INT + rb")\x64type\x63cgm\x65trend(?:"
    + b"|".join(map(re.escape, _TREND_ENCS)) + rb")\x67time_ms\x1b(.{8})"
    rb"(?(2)\x68censored(\x63low|\x64high))\x6dtz_offset_min(" + _CBOR_INT + rb"))", re.DOTALL)
#: (censored, mgdl) encodings a record may carry: any CGM value uncensored, a sensor's limit
#: for a LOW or a HIGH (``CgmReading``).
_MGDL_OK = frozenset(
    [(b"", codec.encode(m)) for m in range(CGM_MIN_MGDL, CGM_MAX_MGDL + 1)]
    + [(codec.encode(side), codec.encode(m))
       for side, (lo, hi) in CENSORED_RANGE.items() for m in range(lo, hi + 1)])
_TZ_OK = frozenset(codec.encode(z) for z in range(-720, 841))
_TIME_MIN, _TIME_MAX = MIN_TIME_MS.to_bytes(8, "big"), MAX_TIME_MS.to_bytes(8, "big")
_LEAF_HASH_HEAD = b"\x00" + _LEAF_HEAD  # RFC 9162 leaf prefix, then the leaf's CBOR head
_MARK = b"\x00glucoledger items\x00"
_MARK_ENC = codec.encode(_MARK)
_ITEMS_KEY = codec.encode("items")
_UPLOAD_KEYS = frozenset({"chain", "patient", "uploader", "seq", "batch", "salt_key", "key",
                          "sig"})
_BATCH_KEYS = frozenset({"stream", "items", "start_ms", "end_ms", "count"})
_PLAIN_HEAD = b"\xa3\x61v\x01\x65batch"
_PLAIN_SALT = b"\x68salt_key\x58\x20"


def _fast_cgm(wire: bytes) -> Checked | None:
    """A CGM upload checked in bulk on its bytes, or None: "take the general path" (which
    accepts what this accepts and names the reason for anything else).

    Accepts only what ``Upload.from_value(codec.decode(wire))`` accepts: every field of the
    exact type and range, records in strictly increasing time, and ``wire`` byte-equal to the
    canonical encoding rebuilt from the checked values (so canonical form is proven too).
    """
    at = wire.find(_ITEMS_KEY)  # the items array's head follows; anywhere else, the
    if at < 0:                   # rebuilt encoding below differs and the general path runs
        return None
    head_at = at + len(_ITEMS_KEY)
    h = wire[head_at:head_at + 1]
    if not h or not 0x81 <= h[0] <= 0x99:
        return None
    n = h[0] - 0x80 if h[0] < 0x98 else int.from_bytes(
        wire[head_at + 1:head_at + (2 if h[0] == 0x98 else 3)], "big")
    if not 1 <= n <= MAX_BATCH:
        return None
    items_head = codec.encode_head(4, n)
    first = head_at + len(items_head)
    if wire[head_at:first] != items_head:  # the shortest form only
        return None
    found = _RECORD.findall(wire, first)
    if len(found) != n:
        return None
    recs, _, mgs, ts, cens, zs = zip(*found, strict=True)
    records = b"".join(recs)
    last = first + len(records)
    if wire[first:last] != records:  # the records follow each other, nothing between
        return None
    # The whole batch at once, column by column (C-level passes, no per-reading branches):
    # the same conditions as ``CgmReading`` and ``check_unique_times`` one record at a time.
    if (not _MGDL_OK.issuperset(zip(cens, mgs, strict=True)) or not _TZ_OK.issuperset(zs)
            or ts[0] < _TIME_MIN or ts[-1] > _TIME_MAX or not all(map(lt, ts, ts[1:]))):
        return None
    value = codec.decode_trusted(b"".join((wire[:head_at], _MARK_ENC, wire[last:])))
    if type(value) is not dict or value.keys() != _UPLOAD_KEYS:
        return None
    chain, patient, uploader, seq = (value["chain"], value["patient"], value["uploader"],
                                     value["seq"])
    salt_key, sig, b = value["salt_key"], value["sig"], value["batch"]
    if (type(chain) is not str or type(patient) is not bytes or len(patient) != 32
            or type(uploader) is not bytes or len(uploader) != 32 or type(seq) is not int
            or not 1 <= seq < 1 << 63 or type(salt_key) is not bytes
            or len(salt_key) != SALT_KEY_BYTES or type(sig) is not bytes
            or type(b) is not dict or b.keys() != _BATCH_KEYS or b["stream"] != "cgm"
            or b["items"] != _MARK):
        return None
    try:
        key = PublicKey.from_value(value["key"])
    except MalformedError:
        return None
    start, end = int.from_bytes(ts[0], "big"), int.from_bytes(ts[-1], "big")
    if (type(b["start_ms"]) is not int or type(b["end_ms"]) is not int
            or type(b["count"]) is not int or b["start_ms"] != start or b["end_ms"] != end
            or b["count"] != n):
        return None
    bparts = codec.encode({"stream": "cgm", "items": _MARK, "start_ms": start,
                           "end_ms": end, "count": n}).split(_MARK_ENC)
    uparts = codec.encode({"chain": chain, "patient": patient, "uploader": uploader,
                           "seq": seq, "batch": _MARK, "salt_key": salt_key,
                           "key": key.to_value(), "sig": sig}).split(_MARK_ENC)
    if len(bparts) != 2 or len(uparts) != 2:
        return None
    batch_bytes = b"".join((bparts[0], wire[head_at:last], bparts[1]))
    if len(wire) != len(uparts[0]) + len(batch_bytes) + len(uparts[1]) or (
            wire != b"".join((uparts[0], batch_bytes, uparts[1]))):
        return None
    leaves = sha256_many(map(b"".join, zip(repeat(_LEAF_HASH_HEAD), _salts(salt_key, n),
                                           repeat(_LEAF_MID), recs)))
    return Checked(chain, patient, uploader, seq, "cgm", start, end, n, key, sig,
                   merkle.root_of(leaves), b"".join((_PLAIN_HEAD, batch_bytes, _PLAIN_SALT,
                                                     salt_key)))


def check_wire(wire: bytes, *, verify: bool = True) -> Checked:
    """Parse and validate an upload received as bytes (canonical CBOR of ``Upload.to_value``).

    With ``verify``, also check the device's signature: the result's ``sig_ok``. Raises
    MalformedError or OutOfRangeError (naming the record and the reason), as
    ``Upload.from_value(codec.decode(wire))`` would.
    """
    if not isinstance(wire, bytes):
        raise TypeError("check_wire takes bytes")
    if len(wire) > MAX_UPLOAD_BYTES:
        raise MalformedError(f"upload is {len(wire)} bytes; the limit is {MAX_UPLOAD_BYTES}")
    checked = None
    try:
        checked = _fast_cgm(wire)
    except Exception:  # noqa: BLE001 - anything odd: the general path says what is wrong
        checked = None
    if checked is None:
        checked = Upload.from_value(codec.decode(wire, max_size=MAX_UPLOAD_BYTES)).checked()
    if not verify:
        return checked
    statement = checked.statement()
    try:
        checked.key.verify(UPLOAD_CONTEXT, statement, checked.sig)
        ok = True
    except SignatureError:
        ok = False
    return dataclasses.replace(checked, sig_ok=ok, signed=statement)


def check_wires(wires: list[bytes]) -> list[Checked | GlucoledgerError]:
    """``check_wire`` each (runs in worker processes); an error in place of a refused one."""
    out: list[Checked | GlucoledgerError] = []
    for w in wires:
        try:
            out.append(check_wire(w))
        except GlucoledgerError as exc:
            out.append(exc)
    return out

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

The blob: ``seal(data_key, encode({"v": 1, "salt_key", "batch"}), "batch", aad)`` with
``aad = batch_aad(...)``, the batch identifiers (chain, patient, uploader, stream, seq): a blob
cannot be passed off as another batch's. Data keys are wrapped with ``seal(kek, dk,
"data-key", aad)`` (custodial) or ``hpke_seal(x25519, dk, "data-key", aad)`` (self-custody).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..crypto import PrivateKey, PublicKey, hmac_sha256
from ..crypto.seal import new_key
from ..errors import MalformedError
from ..glucose.readings import Batch
from ..ledger import merkle
from ..state.data import UPLOAD_CONTEXT, hour_range, upload_statement

__all__ = ["Upload", "batch_aad", "batch_plaintext", "leaf_data", "leaf_hashes",
           "prepare_upload", "reading_salt", "read_plaintext"]

SALT_KEY_BYTES = 32


def reading_salt(salt_key: bytes, index: int) -> bytes:
    return hmac_sha256(salt_key, b"salt" + index.to_bytes(4, "big"))


_LEAF_HEAD = b"\xa2\x64salt\x58\x20"  # map(2), "salt": bytes(32) ...
_LEAF_MID = b"\x67reading"  # ... "reading": <record>, keys in canonical order


def leaf_data(salt: bytes, reading: dict[str, Any]) -> bytes:
    """``codec.encode({"salt": salt, "reading": reading})``, assembled without re-sorting."""
    if len(salt) != 32:
        raise ValueError("salts are 32 bytes")
    return _LEAF_HEAD + salt + _LEAF_MID + codec.encode_unchecked(reading)


def leaf_hashes(salt_key: bytes, readings: list[dict[str, Any]]) -> list[bytes]:
    return [merkle.leaf_hash(leaf_data(reading_salt(salt_key, i), r))
            for i, r in enumerate(readings)]


def batch_aad(chain: str, patient: bytes, uploader: bytes, stream: str, seq: int) -> bytes:
    return codec.encode({"chain": chain, "patient": patient, "uploader": uploader,
                         "stream": stream, "seq": seq})


def batch_plaintext(salt_key: bytes, batch_value: dict[str, Any]) -> bytes:
    return codec.encode_unchecked({"v": 1, "salt_key": salt_key, "batch": batch_value})


def read_plaintext(data: bytes) -> tuple[bytes, Batch]:
    """Parse a decrypted blob. Raises MalformedError."""
    value = codec.decode(data, max_size=64 << 20)
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

    def to_value(self) -> dict[str, Any]:
        return {"chain": self.chain, "patient": self.patient, "uploader": self.uploader,
                "seq": self.seq, "batch": {"stream": self.stream, "items": self.values,
                                           "start_ms": self.batch.start_ms,
                                           "end_ms": self.batch.end_ms,
                                           "count": self.batch.count},
                "salt_key": self.salt_key, "key": self.key.to_value(), "sig": self.sig}

    @classmethod
    def from_value(cls, value: Any) -> Upload:
        """Parse an upload received from the network. Raises MalformedError/OutOfRangeError."""
        names = {"chain", "patient", "uploader", "seq", "batch", "salt_key", "key", "sig"}
        if not isinstance(value, dict) or set(value) != names:
            raise MalformedError(f"an upload is exactly {{{', '.join(sorted(names))}}}")
        if not all(isinstance(value[k], bytes) for k in ("patient", "uploader", "salt_key", "sig")):
            raise MalformedError("upload ids, salt key and signature are bytes")
        return cls(value["chain"], value["patient"], value["uploader"], value["seq"],
                   Batch.from_value(value["batch"]), value["salt_key"],
                   PublicKey.from_value(value["key"]), value["sig"])


def prepare_upload(chain: str, patient: bytes, uploader: bytes, seq: int, batch: Batch,
                   signer: PrivateKey, *, salt_key: bytes | None = None) -> Upload:
    """The uploader's side: choose the salt key, compute the root, sign the statement.

    A device keeps the prepared upload until the node acknowledges it and resends it unchanged
    on retry (a retry of the same upload is idempotent; a new salt key would be a new batch).
    """
    key = new_key() if salt_key is None else salt_key
    unsigned = Upload(chain, patient, uploader, seq, batch, key, signer.public, b"")
    sig = signer.sign(UPLOAD_CONTEXT, unsigned.statement())
    return Upload(chain, patient, uploader, seq, batch, key, signer.public, sig,
                  unsigned.values, unsigned.leaves, unsigned.root)

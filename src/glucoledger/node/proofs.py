"""Proof of a single reading, self-contained and checked offline with only the node's key.

A proof (canonical JSON: sorted keys, no spaces, ASCII, one trailing newline; base64 with
padding, canonical) holds:

- ``reading``: the record (glucose package ``to_value()`` form) and its ``salt``;
- ``leaf_index`` and ``batch_proof``: RFC 9162 inclusion of ``leaf_hash(encode({salt,
  reading}))`` in the batch root committed by ...
- ``commit``: the ``data.commit`` envelope (canonical CBOR, node-signed), which names the
  patient, stream, hour range, count, root, ciphertext hash, uploader, sequence and trust level;
- ``log_index`` and ``log_proof``: RFC 9162 inclusion of the envelope in the global log at the
  size of ...
- ``block_header`` and ``results``: the header of the block that ordered the commit (its hash
  is the checkpoint's block hash) and that block's results (whose hash the header holds), so
  the proof shows the commit was *accepted*, not merely ordered;
- ``checkpoint``: the C2SP signed note of that block, signed by the node.

``verify_proof`` checks every one of these; any altered byte of the file makes it raise
(MalformedError for a file that is not exactly a canonical proof, SignatureError for the
checkpoint or the commit's signature, ConsistencyError for a proof that does not lead to its
root). It returns the verified reading with its trust level.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .. import codec, jsonin
from ..errors import ConsistencyError, MalformedError, NotFoundError
from ..glucose.readings import Record, record_from_value
from ..ledger import merkle
from ..ledger.block import BlockHeader, Result, results_hash
from ..ledger.checkpoint import Checkpoint, NoteVerifier, parse_note
from ..ledger.tx import SignedTx
from ..vault.batch import leaf_data, leaf_hashes, reading_salt
from ..vault.store import Vault
from .registry import Registry
from .service import Node

__all__ = ["PROOF_TYPE", "VerifiedReading", "dumps_proof", "load_document", "ordered_proof",
           "prove_reading",
           "verify_ordered", "verify_proof"]

PROOF_TYPE = "glucoledger/reading-proof/v1"
_KEYS = {"type", "reading", "salt", "leaf_index", "batch_proof", "commit", "log_index",
         "log_proof", "block_header", "results", "checkpoint"}
MAX_PROOF = 1 << 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be base64 text")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedError(f"{what} is not valid base64") from None
    if _b64(raw) != text:
        raise MalformedError(f"{what} is not canonical base64")
    return raw


def dumps_proof(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            + "\n").encode("ascii")


def load_document(data: bytes, *, limit: int, keys: set[str], doc_type: str, what: str
                  ) -> dict[str, Any]:
    """Parse a canonical JSON document (``dumps_proof`` form) of exactly ``keys`` whose
    ``type`` is ``doc_type``; MalformedError naming ``what`` otherwise."""
    if len(data) > limit:
        raise MalformedError(f"the {what} is larger than {limit} bytes")
    try:
        doc = jsonin.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedError(f"the {what} is not JSON text") from None
    if not isinstance(doc, dict) or set(doc) != keys or doc.get("type") != doc_type:
        raise MalformedError(f"not a {doc_type} document")
    if dumps_proof(doc) != data:
        raise MalformedError(f"the {what} is not in canonical form (it was edited)")
    return doc


def prove_reading(node: Node, vault: Vault, patient: bytes, stream: str, time_ms: int, *,
                  x25519_private: bytes | None = None) -> dict[str, Any]:
    """Build the proof for the patient's reading of ``stream`` at ``time_ms`` (epoch ms).

    Raises NotFoundError when no committed batch holds a reading at that exact time.
    """
    for row in vault.batches(patient, stream, at=time_ms):
        salt_key, batch = vault.open(row, x25519_private=x25519_private)
        values = [r.to_value() for r in batch.items]
        hits = [i for i, r in enumerate(batch.items) if r.time_ms == time_ms]
        if not hits:
            continue
        i = hits[0]
        leaves = leaf_hashes(salt_key, values)
        tree = merkle.CompactTree()
        nodes = merkle.MemoryNodes(tree.extend(leaves))
        assert row.tx_index is not None
        return {
            "type": PROOF_TYPE,
            "reading": values[i],
            "salt": _b64(reading_salt(salt_key, i)),
            "leaf_index": i,
            "batch_proof": [_b64(h) for h in merkle.inclusion_proof(nodes, i, len(leaves))],
            "commit": _b64(node.store.tx_at(row.tx_index).envelope),
            **ordered_proof(node, row.tx_index),
        }
    raise NotFoundError(f"no committed {stream} reading at time {time_ms} for patient "
                        f"{Registry(node.data_dir).label(patient)}; check the time (epoch ms, "
                        "exact: `glucoledger readings` lists them)")


@dataclass(frozen=True, slots=True)
class VerifiedReading:
    reading: Record
    patient: bytes
    stream: str
    uploader: bytes
    seq: int
    trust: str
    log_index: int
    checkpoint: Checkpoint
    signer: str


def verify_proof(data: bytes, verifier: NoteVerifier) -> VerifiedReading:
    """Check a reading proof offline against the node's note key; return what it proves."""
    doc = load_document(data, limit=MAX_PROOF, keys=_KEYS, doc_type=PROOF_TYPE, what="proof")
    ints = ("leaf_index", "log_index")
    if not all(isinstance(doc[k], int) and not isinstance(doc[k], bool) for k in ints):
        raise MalformedError("leaf_index and log_index are integers")
    if not all(isinstance(doc[k], list) for k in ("batch_proof", "log_proof")):
        raise MalformedError("batch_proof and log_proof are lists")

    stx, cp, signer = verify_ordered(doc, verifier, "commit", "data.commit")

    # 4. the reading, in the committed batch root
    body = stx.tx.body
    reading = record_from_value(doc["reading"])
    if reading.to_value() != doc["reading"]:
        raise MalformedError("the reading is not in canonical form")
    if not body["start"] <= reading.time_ms < body["end"]:
        raise ConsistencyError("the reading's time is outside the committed batch's range")
    salt = _unb64(doc["salt"], "salt")
    if len(salt) != 32:
        raise MalformedError("salt is 32 bytes")
    leaf = merkle.leaf_hash(leaf_data(salt, doc["reading"]))
    merkle.verify_inclusion(leaf, doc["leaf_index"], body["count"],
                            [_unb64(h, "batch_proof hash") for h in doc["batch_proof"]],
                            body["root"])
    return VerifiedReading(reading, body["patient"], body["stream"], body["uploader"],
                           body["seq"], body["trust"], doc["log_index"], cp, signer)


def ordered_proof(node: Node, index: int) -> dict[str, Any]:
    """``log_index``, ``log_proof``, ``block_header``, ``results`` and ``checkpoint`` proving
    that the transaction at log ``index`` was ordered and accepted (see ``verify_ordered``)."""
    stored = node.store.tx_at(index)
    _, header_raw, note = node.store.block_row(stored.height)
    header = BlockHeader.decode(header_raw)
    results = [t.decoded_result().to_value() for t in node.store.txs_of_block(stored.height)]
    return {"log_index": index,
            "log_proof": [_b64(h) for h in node.inclusion_proof(index, header.log_size)],
            "block_header": _b64(header_raw), "results": _b64(codec.encode(results)),
            "checkpoint": note.decode("utf-8")}


def verify_ordered(doc: dict[str, Any], verifier: NoteVerifier, field: str, tx_type: str
                   ) -> tuple[SignedTx, Checkpoint, str]:
    """Check that ``doc[field]`` (a base64 envelope of type ``tx_type``) was accepted in the
    block its signed checkpoint names, and is in the log at the checkpoint's size.

    Raises MalformedError, SignatureError or ConsistencyError; returns the transaction, the
    checkpoint and the name of the node that signed it.
    """
    if not isinstance(doc.get("log_index"), int) or isinstance(doc["log_index"], bool):
        raise MalformedError("log_index is an integer")
    if not isinstance(doc.get("log_proof"), list):
        raise MalformedError("log_proof is a list")
    # 1. the checkpoint, signed by the node
    if not isinstance(doc["checkpoint"], str):
        raise MalformedError("checkpoint is the signed note text")
    note_bytes = doc["checkpoint"].encode("utf-8")
    note = parse_note(note_bytes)
    if note.encode() != note_bytes:
        raise MalformedError("the checkpoint note is not in canonical form")
    signer = note.verify([verifier])[0]
    cp = Checkpoint.parse_body(note.text)
    if cp.body() != note.text:
        raise MalformedError("the checkpoint text is not in canonical form")

    # 2. the block that ordered the commit, and its results
    header = BlockHeader.decode(_unb64(doc["block_header"], "block_header"))
    if (header.hash() != cp.block_hash or header.log_size != cp.size
            or header.log_root != cp.root or header.height != cp.height
            or header.chain != cp.origin or header.time != cp.time):
        raise ConsistencyError("the block header is not the one the checkpoint signs")
    results_raw = _unb64(doc["results"], "results")
    results = [Result.from_value(v) for v in _as_list(codec.decode(results_raw))]
    if results_hash(results) != header.results or len(results) != header.tx_count:
        raise ConsistencyError("the block results are not the ones the block header holds")
    position = doc["log_index"] - (header.log_size - header.tx_count)
    if not 0 <= position < header.tx_count:
        raise ConsistencyError("the commit's log index is not in the checkpoint's block")
    if not results[position].ok:
        raise ConsistencyError(f"the commit was refused ({results[position].code}): it "
                               "commits to nothing")

    # 3. the commit, in the log at the checkpoint's size
    envelope = _unb64(doc[field], field)
    stx = SignedTx.decode(envelope)
    if stx.tx.type != tx_type or stx.tx.chain != cp.origin:
        raise ConsistencyError(f"the {field} is not a {tx_type} of this chain")
    stx.check_signatures()
    merkle.verify_inclusion(merkle.leaf_hash(envelope), doc["log_index"], cp.size,
                            [_unb64(h, "log_proof hash") for h in doc["log_proof"]], cp.root)

    return stx, cp, signer


def _as_list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError("results is a list")
    return value

"""Versions of Nightscout documents on a node: which content is current, new versions, history.

The record of supersession is the pure ``doc.version`` contract (state/versions.py); this
module is its node side for Nightscout documents (node/nightscout.py):

- A document is named on the ledger by its *identity tag* (``NightscoutService._key``: the
  keyed HMAC of its Nightscout identity, e.g. "Temp Basal|<created_at>"), the same tag the
  vault keeps for deduplication.
- *Content tags* tell a repeat from a change without reading anything back: a batch holding
  version ``n`` of a document also holds ``content_tag(identity, n, document)``. A POST or
  PUT of a document whose identity is known and whose content tag for the current version is
  held is a repeat; otherwise it is a change, stored as new batches and recorded as version
  ``n + 1`` by a ``doc.version`` transaction signed by the uploader's gateway account.
- Readers see, for each document with recorded versions, only the records of the batches of
  its last version (none after a deletion: ``is_current``, applied once for every release
  and Nightscout read by node/access.py); version 1 is every record of it uploaded as
  version 1. A change's parts carry the version they were uploaded as in their annex
  (``nsannex.with_version``), so the batches of a change the ledger refused (committed by
  ``data.commit``, never named by a ``doc.version``) are neither the head nor version 1:
  nobody reads them as the document.
- A change that alters the document's identity fields (a PUT by ``_id``, or a v3 update by
  ``identifier``, that moves a treatment in time) is still the next version of *that*
  document: ``doc.version`` names the new identity as ``moved``, and ``canonical`` maps
  records of the new identity back to the document, so readers see one document (its
  ``_id`` unchanged) at its new time, and never the old one beside it.

Invariants: a change never rewrites or deletes a batch (every version stays in the vault,
committed and provable until erasure); a refused ``doc.version`` leaves the readers' view
unchanged (the new batches exist but are not the head) and leaves no tag in the vault: the
content tag and a move's identity tag are attached only once the ledger accepted it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..crypto import PrivateKey
from ..crypto.hashing import hmac_sha256, hmac_sha256_many
from ..errors import RejectedError
from ..glucose.readings import Record
from ..interop import nightscout as ns
from ..interop.nsannex import Annex, with_version
from ..ledger.tx import Transaction, sign
from ..state.store import State
from ..state.versions import alias_key, alias_of, version_key, versions_of
from .service import Node

__all__ = ["DEDUP_CONTEXT", "DocRef", "DocVersions", "doc_refs", "has_versions", "identity_tag",
           "is_current", "superseded"]

#: The context of the node's Nightscout identity key: HMAC(master, DEDUP_CONTEXT).
DEDUP_CONTEXT = b"glucoledger nightscout dedup v1"


def identity_tag(dedup_key: bytes, patient: bytes, collection: str, key: str) -> bytes:
    """The keyed hash naming a Nightscout identity (``collection``, ``key``) of ``patient``:
    the vault's deduplication tag and the ``doc`` of ``doc.version``."""
    return hmac_sha256(dedup_key, patient + b"|" + collection.encode() + b"|" + key.encode())


@dataclass(frozen=True, slots=True)
class DocRef:
    """Where record ``index`` of a batch belongs: the identity its annex names (``tag``),
    the state keys the version rule looks up, and the version it was uploaded as."""

    index: int
    tag: bytes
    version_key: str
    alias_key: str
    uploaded_as: int


def doc_refs(dedup_key: bytes, patient: bytes, items: Sequence[Record]) -> tuple[DocRef, ...]:
    """The Nightscout documents the records of one batch belong to, as a Nightscout reader
    sees them (``ns.identity_of``): a record uploaded through Nightscout belongs to its
    annex's document, any other (a device's, an import) to the document it reads as, so a
    Nightscout DELETE or PUT of it counts too (until 2026-12-05 such a DELETE answered
    ``n: 1`` and the reading stayed). Pure in the batch's content, so a reader computes it
    once per batch and keeps it with the decrypted records."""
    found = [(i, identity) for i, rec in enumerate(items)
             if (identity := ns.identity_of(rec)) is not None]
    if not found:
        return ()
    # ``identity_tag``, ``version_key`` and ``alias_key`` of each, with the key schedule and
    # the patient's part done once (a day batch is 288 records; tests/node/test_nsversions.py)
    head = patient + b"|"
    tags = hmac_sha256_many(dedup_key, [head + c.encode() + b"|" + k.encode()
                                        for _, (c, k, _) in found])
    versions, aliases = version_key(patient, b""), alias_key(patient, b"")
    return tuple(DocRef(i, tag, versions + tag.hex(), aliases + tag.hex(), uploaded_as)
                 for (i, (_, _, uploaded_as)), tag in zip(found, tags, strict=True))


def is_current(state: State, patient: bytes, ct: bytes, ref: DocRef,
               before: Callable[[Mapping[str, Any]], bool] | None = None) -> bool:
    """The version rule, the one place it is decided (Nightscout reads, summaries, reports,
    the AGP, FHIR): a record of a document with recorded versions counts only when its batch
    ``ct`` holds the document's last version (none after a deletion); a record of a
    document without versions counts only if it was uploaded as version 1 (a later version
    the ledger refused is nobody's content).

    ``before``: decide as the versions ``before`` accepts left the document (a summary
    grant's day stays as it was first released, node/settled.py): a move to the record's
    identity counts only if one of those versions made it."""
    doc = ref.tag if ref.alias_key not in state else alias_of(state, patient, ref.tag)
    key = ref.version_key if doc == ref.tag else version_key(patient, doc)
    if key not in state:
        return ref.uploaded_as == 1
    versions = versions_of(state, patient, doc)
    if before is not None:
        versions = [v for v in versions if before(v)]
        if doc != ref.tag and not any(v.get("moved") == ref.tag for v in versions):
            versions = []  # not moved here yet: the identity was a document of its own
    return ct in versions[-1]["cts"] if versions else ref.uploaded_as == 1


def superseded(state: State, patient: bytes, ct: bytes, refs: Sequence[DocRef]) -> set[int]:
    """The indexes of batch ``ct``'s records that do not count (``is_current``): what every
    reader of a batch leaves out, clinical reads and research releases alike."""
    return {ref.index for ref in refs
            if has_versions(state, ref) and not is_current(state, patient, ct, ref)}


def has_versions(state: State, ref: DocRef) -> bool:
    """Whether ``is_current`` has anything to decide: a record uploaded as version 1 of a
    document with no versions and no moves counts, and most records are such (a summary of
    14 days of a device's readings asks about 4,000 of them a read)."""
    return ref.uploaded_as != 1 or ref.version_key in state or ref.alias_key in state


class DocVersions:
    def __init__(self, node: Node, key: bytes,
                 identity: Callable[[bytes, str, str], bytes]) -> None:
        self.node = node
        self._key = hmac_sha256(key, b"glucoledger nightscout content v1")
        self._identity = identity

    def canonical(self, patient: bytes, tag: bytes) -> bytes:
        """The document content of identity ``tag`` belongs to (``tag`` unless moved)."""
        return alias_of(self.node.state, patient, tag)

    def current(self, patient: bytes, tag: bytes) -> tuple[int, bool]:
        """The document's current version number and whether that version deletes it."""
        history = versions_of(self.node.state, patient, tag)
        if not history:
            return 1, False
        return int(history[-1]["n"]), not history[-1]["cts"]

    def content_tag(self, patient: bytes, tag: bytes, n: int, doc: ns.Doc) -> bytes:
        text = json.dumps(doc.echo, sort_keys=True, ensure_ascii=True, allow_nan=False)
        return hmac_sha256(self._key, patient + tag + n.to_bytes(4, "big") + text.encode())

    def record(self, signer: bytes, keys: Sequence[PrivateKey], patient: bytes, tag: bytes,
               n: int, cts: Sequence[bytes], moved: bytes | None = None) -> None:
        """Order ``doc.version`` (version ``n``: the batches ``cts``, or a deletion when
        empty; ``moved``: the new content's own identity tag when it is not ``tag``'s),
        signed by ``signer``. Raises RejectedError when the ledger refused it."""
        with self.node.account_lock(signer):
            body: dict[str, Any] = {"patient": patient, "doc": tag, "n": n, "cts": list(cts)}
            if moved is not None and moved != tag:
                body["moved"] = moved
            stx = sign(Transaction(self.node.chain, "doc.version", body, signer,
                                   self.node.next_nonce(signer)), list(keys))
            receipt = self.node.submit([stx.raw])[0]
        if not receipt.ok:
            raise RejectedError(f"the new version was refused ({receipt.result.code}): "
                                f"{receipt.result.message}", code=receipt.result.code)

    def edited(self, rec: Record) -> bool:
        """Whether ``rec`` was uploaded as a later version of its document (it counts only
        where a ``doc.version`` names its batch)."""
        annex = self._annex(rec)
        return annex is not None and annex.version > 1

    @staticmethod
    def as_version(doc: ns.Doc, n: int) -> ns.Doc:
        """``doc`` with each part's annex marked as version ``n`` of the document."""
        return replace(doc, items=tuple(
            (stream, dict(item, ns=with_version(item["ns"], n)))
            for stream, item in doc.items))

    def history(self, patient: bytes, by_ct: Iterable[tuple[bytes, Sequence[Record]]],
                collection: str, tag: bytes) -> list[dict[str, Any]]:
        """Every version of one document, oldest first: ``{n, by, height, time, tx, doc}``
        (``doc`` None for a deletion; version 1's ``by`` None: the first upload)."""
        history = versions_of(self.node.state, patient, tag)
        parts: dict[int, list[Record]] = {1: []}
        where: dict[bytes, list[int]] = {}
        for v in history:
            for ct in v["cts"]:
                where.setdefault(ct, []).append(int(v["n"]))
        for ct, records in by_ct:
            for rec in records:
                own = self._tag(patient, rec)
                if own is None or self.canonical(patient, own) != tag:
                    continue
                # Version 1 is the first upload; a later version names its batches (a
                # batch can be named again: the patient restoring an earlier content). A
                # change the ledger refused belongs to no version.
                for n in [*([] if self.edited(rec) else [1]), *where.get(ct, [])]:
                    parts.setdefault(n, []).append(rec)
        out = []
        for v in [{"n": 1, "by": None, "height": None, "time": None, "tx": None}, *history]:
            found = ns.docs_from_records(parts.get(int(v["n"]), []))
            doc = next((f.doc for f in found if f.collection == collection), None)
            out.append({"n": v["n"], "by": v["by"], "height": v["height"], "time": v["time"],
                        "tx": v["tx"], "doc": doc if (v["n"] == 1 or v["cts"]) else None})
        return out

    @staticmethod
    def _annex(rec: Record) -> Annex | None:
        return None if rec.ns is None else Annex.parse(rec.ns, ns.COLLECTIONS)

    def _tag(self, patient: bytes, rec: Record) -> bytes | None:
        annex = self._annex(rec)
        if annex is None:
            return None
        return self._identity(patient, annex.collection, annex.key)

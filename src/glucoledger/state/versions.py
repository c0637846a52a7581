"""Document versions: the ``doc.version`` contract. Edits and deletions that lose nothing.

Nightscout edits in place: a PUT, a re-POST of the same identity or a DELETE overwrites or
removes the document, and the previous content is gone. Here every change is a new version
on the ledger, signed by whoever made it, and the previous versions stay (and stay provable):

- Version 1 of a document is its first upload: the batches of an ordinary ``data.commit``.
- ``doc.version`` (on the account of the device or gateway bound to the patient, or of the
  patient herself; action class ``default``; the account's nonce is the replay guard), body
  ``{patient, doc, n, cts}``:

  - ``doc``: 32 opaque bytes naming the document (the node's keyed hash of its Nightscout
    identity, e.g. HMAC(key, "Temp Basal|<created_at>")): no time or value on the ledger;
  - ``n``: the version this change makes, exactly one more than the last (2 for the first
    change). A change made from a stale view is refused as ``stale_version`` (compare and
    swap, the same on every node);
  - ``cts``: the ciphertext hashes of the batches holding the new content (up to
    ``MAX_CTS``, one per stream of a split document), each committed by ``data.commit``
    before; ``[]`` deletes the document (a tombstone, itself a version);
  - ``moved`` (optional, with new content only): the tag of the new content's own identity
    when the change moved the document to another identity (Loop moves a carb entry in
    time: ``created_at`` is part of a treatment's identity). The document keeps its name
    ``doc``; ``docalias/<patient>/<moved>`` = ``{"doc": doc}`` tells readers (and later
    uploads of that identity) that content with identity ``moved`` is this document. A tag
    that is a document of its own (it has versions) or already another document's alias
    cannot be moved to (``identity_taken``).

- The machine keeps ``docver/<patient>/<doc>`` = ``{"versions": [{n, cts, by, height, time,
  tx}...]}``: readers see the last version only (none when it is a tombstone); the patient
  sees them all. Erasure removes the batches; these records keep only opaque hashes.

Refusals: ``not_patient``, ``unbound_device`` (the signer is not bound to the patient),
``stale_version``, ``erased_batch``, ``identity_taken``, ``malformed``. A refusal changes nothing.
Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..ledger.tx import SignedTx
from .access import erased_key
from .accounts_model import load_account
from .devices import get_uploader
from .machine import Body, Context, body_field, register, require
from .store import State

__all__ = ["KEY_PREFIXES", "MAX_CTS", "MAX_VERSIONS", "alias_key", "alias_of", "version_key",
           "versions_of"]

MAX_CTS: Final = 8
MAX_VERSIONS: Final = 1_000
#: The prefixes of every key this contract writes, each followed by ``<patient hex>/``.
KEY_PREFIXES: Final = ("docver/", "docalias/")


def version_key(patient: bytes, doc: bytes) -> str:
    return f"{KEY_PREFIXES[0]}{patient.hex()}/{doc.hex()}"


def alias_key(patient: bytes, tag: bytes) -> str:
    return f"{KEY_PREFIXES[1]}{patient.hex()}/{tag.hex()}"


def alias_of(state: State, patient: bytes, tag: bytes) -> bytes:
    """The document content of identity ``tag`` belongs to: ``tag`` itself unless a change
    moved a document to that identity (``moved``)."""
    value = state.get(alias_key(patient, tag))
    return tag if value is None else bytes(value["doc"])


def versions_of(state: State, patient: bytes, doc: bytes) -> list[dict[str, Any]]:
    """The recorded changes of a document (version 2 onwards), oldest first; [] if none."""
    value = state.get(version_key(patient, doc))
    return [] if value is None else [dict(v) for v in value["versions"]]


@dataclass(frozen=True, slots=True)
class DocVersion(Body):
    """The body of ``doc.version``: patient, doc, n, cts, and ``moved`` (absent: None).
    The shape of ``cts``' entries is checked by the handler after the document's identity,
    as results always were."""

    patient: bytes
    doc: bytes
    n: int
    cts: list[Any]
    moved: bytes | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DocVersion:
        require(set(body) in ({"patient", "doc", "n", "cts"}, {"patient", "doc", "n", "cts",
                                                               "moved"}),
                "malformed", "doc.version takes patient, doc, n, cts (and moved)")
        patient = body_field(body, "patient", bytes)
        doc = body_field(body, "doc", bytes)
        n = body_field(body, "n", int)
        cts = body_field(body, "cts", list)
        require(len(doc) == 32, "malformed", "doc is 32 bytes")
        moved = body_field(body, "moved", bytes) if "moved" in body else None
        if moved is not None:
            require(len(moved) == 32 and moved != doc and bool(cts), "malformed",
                    "moved is the 32-byte tag of another identity, with new content")
        return cls(patient, doc, n, cts, moved)

    def to_body(self) -> dict[str, Any]:
        body = {"patient": self.patient, "doc": self.doc, "n": self.n, "cts": self.cts}
        return body if self.moved is None else {**body, "moved": self.moved}


@register("doc.version", body=DocVersion)
def _version(state: State, stx: SignedTx, ctx: Context) -> None:
    """A new version of a patient's document (new content, or a deletion)."""
    b = DocVersion.parse(stx.tx.body)
    patient, doc, n, cts, moved = b.patient, b.doc, b.n, b.cts, b.moved
    if moved is not None:
        require(alias_of(state, patient, moved) in (moved, doc)
                and version_key(patient, moved) not in state, "identity_taken",
                "another document already has the identity this change moves to: delete "
                "that document first, or change this one without moving it")
    require(alias_of(state, patient, doc) == doc, "malformed",
            "doc names a document, not an identity it was moved to: use the document's tag")
    require(len(cts) <= MAX_CTS and all(isinstance(c, bytes) and len(c) == 32 for c in cts)
            and len(set(cts)) == len(cts), "malformed",
            f"cts is a list of at most {MAX_CTS} distinct 32-byte ciphertext hashes")
    owner = load_account(state, patient)
    require(owner.kind == "patient", "not_patient", f"{patient.hex()[:16]} is not a patient")
    signer = stx.tx.account
    if signer != patient:
        device = get_uploader(state, signer)
        require(device is not None and device.get("patient") == patient
                and device.get("status") == "active", "unbound_device",
                f"account {signer.hex()[:16]} is not a device or gateway bound to this "
                "patient: bind it first, or let the patient make the change")
    history = versions_of(state, patient, doc)
    last = history[-1]["n"] if history else 1
    require(n == last + 1, "stale_version",
            f"this change would make version {n} but the document is at version {last}: "
            "read it again and re-apply the change")
    require(n <= MAX_VERSIONS, "malformed", f"a document keeps at most {MAX_VERSIONS} versions")
    for ct in cts:
        require(erased_key(ct) not in state, "erased_batch",
                f"batch {ct.hex()[:16]} was erased; a version cannot point to it")
    entry = {"n": n, "cts": list(cts), "by": signer, "height": ctx.height,
             "time": ctx.time_ms, "tx": stx.tx_hash}
    if moved is not None:
        entry["moved"] = moved
        state.put(alias_key(patient, moved), {"doc": doc})
    history.append(entry)
    state.put(version_key(patient, doc), {"versions": history})

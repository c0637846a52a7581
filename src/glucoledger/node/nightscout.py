"""Nightscout v1 on a node: who a credential is, uploads into the vault, reads through consent.

Credentials (``<data>/nightscout.json``, holding only ``crypto.legacy.credential_hash`` of
what a client presents, never a secret):

- an *uploader secret* is bound to one patient and one gateway account (kind ``gateway``,
  sponsored by the node's organization, bound by the patient, its key custodial in the
  wallet). Uploaders send ``api-secret: sha1hex(secret)`` (or sha512hex); what they upload
  becomes ``gateway-attested`` batches through the ingest service. It also reads its
  patient's documents, as the patient (her custodial key signs the ``access`` request, so
  the read is in her audit trail like her own), because the apps read with the secret they
  upload with (xDrip+ treatment download, Trio, Loop's profile import, tconnectsync).
- a *reader token* (``?token=`` or ``api-secret``) is bound to a reader account (clinician,
  caregiver...) and one patient; each read is an ``access`` request signed with the reader's
  custodial keys, decided by ``decide`` and audited like any other read (node/access.py).

Per document (interop/nsaccept.py): a POST is never refused whole for one document; each is
stored, answered as a repeat, or refused alone (answered in place, logged sealed for the
patient: node/nsrefusals.py). Edits (PUT, a changed re-POST, DELETE) are versions on the
ledger (node/nsversions.py, state/versions.py); API v3 is node/nsv3.py.

Deduplication as Nightscout does it (interop/nightscout.py): a document whose identity and
content were stored before is not stored again; POST echoes it with its ``_id``. The node remembers
identities as HMAC-SHA-256 under a key derived from the master key, stored as the vault's
idempotency tags of the batch that holds the document (written with the batch's row, deleted
with it), so the index reveals no reading times to someone holding only the folder, and a
document counts as seen exactly when a batch holds it, crash or not.

Uploads go through a pipeline (node/pipeline.py): ``post`` validates a POST in the caller's
thread and queues it; one thread takes every queued POST, deduplicates them against the vault
and each other, and stores them as one ingest group: one block, a handful of fsyncs, however
many POSTs arrived meanwhile.
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from ..crypto import generate
from ..crypto.hashing import hmac_sha256
from ..crypto.legacy import credential_hash, nightscout_secret_digests
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from ..files import atomic_write_json, locked, read_json, storage_error
from ..glucose.readings import Batch, Record, parse_batch
from ..interop import nightscout as ns
from ..interop import nsaccept
from ..interop.nsquery import Cond
from ..interop.nsrender import iso, with_deltas
from ..state.access import batches_in, erased_key, newest_start
from ..state.consent import Request, granted_span, grants_of
from ..state.devices import get_uploader
from ..state.versions import versions_of
from ..vault.batch import prepare_upload
from .access import AccessService, RawRelease
from .accounts import Identity, identity, keys_of
from .devices import bind_device, keyed_account_tx, org_account
from .ingest import IngestService
from .nsedits import EditLog
from .nsrefusals import Refusal, RefusalLog
from .nsv3 import V3
from .nsversions import DEDUP_CONTEXT, DocVersions, identity_tag
from .pending import Entry, Setups, pending_names
from .pipeline import Pipeline
from .service import Node

__all__ = ["STREAMS_OF", "Binding", "Followed", "Landing", "NightscoutService", "batches_of"]

#: Which streams each collection is read from.
STREAMS_OF: dict[str, tuple[str, ...]] = {
    "entries": ("cgm", "smbg", "notes"),
    "treatments": ("insulin", "carbs", "smbg", "notes"),
    "devicestatus": ("notes",),
    "profile": ("settings",),
}

#: The streams whose every record reads back as a document of the collection: a poll for
#: the newest documents counts their records to narrow its window (``_newest``).
#: devicestatus shares the notes stream with treatments' notes, so it is not narrowed.
_COUNTED: dict[str, tuple[str, ...]] = {
    "entries": ("cgm",),
    "treatments": ("insulin", "carbs"),
    "profile": ("settings",),
}
#: Conditions every record of those streams meets (``/entries/sgv.json``,
#: ``/entries/current.json``): a poll with them is narrowed too.
_MET_BY_ALL: dict[str, frozenset[Cond]] = {
    "entries": frozenset({Cond("type", "$eq", ("sgv",))}),
}


_FAR = 1 << 62
#: Credentials that read as the patient herself (her uploader's secret, her own session).
_AS_PATIENT = ("upload", "owner")


@dataclass(frozen=True, slots=True)
class Followed:
    """What a feed's read of one collection saw, taken before it read: the batches of the
    collection's streams the index holds from the feed's window on (ciphertext hash -> end),
    the patient's count of version changes (``marker``), and for the profile (the newest, of
    any age) the vault's mark of its stream instead of its batches. About 150 bytes a batch
    (tracemalloc): 48 hours of AndroidAPS's uploads (a reading, a basal, a status every 5
    minutes) keep about 450 KB a socket over its collections."""

    batches: dict[bytes, int]
    edits: int
    mark: tuple[int, int] | None = None


def batches_of(docs: list[ns.Doc], now_ms: int) -> list[Batch]:
    """The documents' items as validated batches, one per stream unless two documents hold
    records of one type at one time (two notes of different treatments): those go to
    another batch of the stream, so no document waits on another. Raises InputError only
    for what ``parse_each`` already checked per document."""
    by_stream: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    seen: dict[str, list[set[Any]]] = defaultdict(list)
    for d in docs:
        for stream, item in d.items:
            mark = (item["time"], item.get("type"))
            lanes = seen[stream]
            lane = next((i for i, s in enumerate(lanes) if mark not in s), len(lanes))
            if lane == len(lanes):
                lanes.append(set())
                by_stream[stream].append([])
            lanes[lane].add(mark)
            by_stream[stream][lane].append(item)
    return [parse_batch(s, items, now_ms=now_ms)
            for s, groups in by_stream.items() for items in groups]


#: Spans a feed's push reads in separate (audited) reads at most; more are read as one.
_MAX_SPANS = 4


def _merged(spans: list[tuple[int, int]], since_ms: int) -> list[tuple[int, int]]:
    """``spans`` ([from, to)) from ``since_ms`` on, overlapping or touching ones joined, in
    order; at most ``_MAX_SPANS``, else one from the earliest on."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((max(lo, since_ms), hi) for lo, hi in spans if hi > since_ms):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out if len(out) <= _MAX_SPANS else [(out[0][0], _FAR)]


def _feed_query(collection: str, lo: int, hi: int) -> ns.Query:
    """Every document of ``collection`` in ``[lo, hi)`` (profile: the newest)."""
    if collection == "profile":
        return ns.parse_query(collection, [("count", "1")])
    field_ = "date" if collection == "entries" else "created_at"
    params = [(f"find[{field_}][$gte]", str(lo) if field_ == "date" else iso(lo)),
              ("count", str(ns.MAX_COUNT))]
    if hi < _FAR:
        params.append((f"find[{field_}][$lt]", str(hi) if field_ == "date" else iso(hi)))
    return ns.parse_query(collection, params)


def ns_refusal(now_ms: int, uploader: str, collection: str, index: int,
               outcome: nsaccept.Refused) -> Refusal:
    return Refusal(now_ms, uploader, collection, index, outcome.error.message)


@dataclass(eq=False)
class _Post:
    """One POST on its way through the upload pipeline."""

    binding: Binding
    collection: str
    outcomes: list[nsaccept.Outcome]  # one per document sent, in order
    docs: list[ns.Doc]  # the accepted ones
    ids: list[bytes]  # the accepted documents' dedup tags (HMAC of their identity)
    now_ms: int
    batches: list[Batch]
    targets: list[str | None] = field(default_factory=list)  # PUT: the _id each replaces
    future: Future[list[dict[str, Any]]] = field(default_factory=Future)
    heads: list[bytes] = field(default_factory=list)  # the document each one is a version of
    late: dict[int, InputError] = field(default_factory=dict)  # refused when stored
    current: list[tuple[int, bool]] = field(default_factory=list)  # (version, deleted)
    ctags: list[bytes] = field(default_factory=list)  # content tags at those versions
    #: per accepted document: it landed on a document already here (a repeat, a change,
    #: a deleted one written again): Nightscout v3's ``isDeduplication``
    existed: list[bool] = field(default_factory=list)
    #: a v3 create checked against the document it lands on (``landing``): ``guard`` says
    #: the caller checked, ``pin`` the (``_id``, version) it checked, None when it found no
    #: document to change. A change of any other document or version is refused.
    guard: bool = False
    pin: tuple[str, int] | None = None
    #: a v1 PUT or a v3 update: each document replaces the one it names or is
    replace: bool = False

    def answer(self) -> list[dict[str, Any]]:
        """One element per document sent: the stored document with its ``_id``, a repeat
        as its first, a refused one as ``nsaccept.refused_answer``."""
        heads = self.heads or self.ids
        stored = iter(dict(d.echo, _id=k[:12].hex()) for d, k in zip(self.docs, heads,
                                                                     strict=True))
        out: list[dict[str, Any]] = []
        j = 0
        for o in self.outcomes:
            if isinstance(o, nsaccept.Accepted):
                answer = next(stored)
                if j in self.late:
                    answer = nsaccept.refused_answer(self.collection, o.sent, self.late[j])
                out.append(answer)
                j += 1
            elif isinstance(o, nsaccept.Repeat):
                out.append(dict(out[o.first]))
            else:
                out.append(nsaccept.refused_answer(self.collection, o.sent, o.error))
        return out


@dataclass(frozen=True)
class Landing:
    """The document already here a document sent would be the next version of
    (``NightscoutService.landing``)."""

    doc_id: str  # its ``_id``
    version: int  # its current version
    deleted: bool  # that version deletes it
    same: bool  # what was sent is its current content: a repeat, nothing would change


@dataclass(frozen=True)
class Binding:
    role: str  # "upload" | "read" | "owner" (the patient herself, in her session)
    patient: bytes
    account: str  # gateway name (upload) or reader name (read)


class NightscoutService:
    def __init__(self, node: Node, ingest: IngestService, access: AccessService) -> None:
        self.node = node
        self.ingest = ingest
        self.access = access
        self.path = node.data_dir / "nightscout.json"
        self._next_seq: dict[bytes, int] = {}  # gateway -> next sequence (pipeline thread)
        #: nightscout.json as last read, and the file's identity then (inode, mtime, size).
        self._read: tuple[tuple[int, int, int] | None, dict[str, dict[str, str]]] = (None, {})
        self._dedup_key = hmac_sha256(node.master, DEDUP_CONTEXT)
        self._gw_keys: dict[str, Any] = {}
        self._gw_ids: dict[str, bytes] = {}  # gateway name -> account id (names never move)
        self._pipeline: Pipeline[_Post] = Pipeline(self._store, name="nightscout-uploads")
        self.refusals = RefusalLog(node.data_dir / "nightscout-refusals.bin", node.master)
        self.versions = DocVersions(node, self._dedup_key, self._key)
        self.v3 = V3(self)
        #: Which of each patient's documents changed, by any process or member: the marker
        #: moves with it, and a feed reads again where the changed documents are.
        self.edits = EditLog()
        node.block_observers.append(self.edits.saw)

    def close(self) -> None:
        self._pipeline.close()

    def marker(self, patient: bytes) -> tuple[int, int]:
        """What changes when the patient's documents may have changed: the log index of her
        last committed batch, and how many changes (edits, deletions, moves) of her
        documents the stored blocks made. Reads nothing of her data; a feed that sees it
        move still reads through ``read`` (decided and audited)."""
        return self.ingest.vault.last_index(patient), self.edits.count(patient)

    # --- credentials -----------------------------------------------------------------------
    @property
    def _bindings(self) -> dict[str, dict[str, str]]:
        """The credentials as ``nightscout.json`` holds them now: read again when the file
        changed (a secret made by a command next to ``serve``, or by another process of
        the server), else from memory: a lookup costs a ``stat``. Do not mutate it."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise storage_error(exc, self.path, "reading the Nightscout credentials") from None
        sig, doc = self._read
        now = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig != now:
            doc = dict(read_json(self.path, what="the Nightscout credentials"))
            self._read = (now, doc)
        return doc

    def _bind(self, forms: list[str], role: str, patient: Identity, account: str) -> None:
        """Add credentials: read, changed and written back under the file's lock, so no
        process loses another's (``files.locked``)."""
        if any(len(f) < 12 for f in forms):
            raise InputError("a Nightscout secret or token has at least 12 characters")
        with locked(self.path.with_name(".nightscout.lock"), "changing the Nightscout "
                    "credentials"):
            doc = dict(self._bindings)
            for f in forms:
                doc[credential_hash(f).hex()] = {
                    "role": role, "patient": patient.id.hex(), "account": account}
            atomic_write_json(self.path, doc, mode=0o600)

    def add_uploader(self, patient_name: str, secret: str) -> Identity:
        """Bind an uploader secret to the patient through a new gateway account."""
        patient = identity(self.node, patient_name)
        if patient.kind != "patient":
            raise InputError(f"{patient_name} is a {patient.kind}, not a patient")
        if len(secret) < 12:
            raise InputError("a Nightscout API secret has at least 12 characters")
        setups = Setups(self.node)
        setups.settle()  # a gateway a kill left half made: named now, or dropped
        # The first number free in the registry (pending setups too) and in the wallet: any
        # account may be named like a gateway (an organization can open a clinician
        # "alice.ns-gw4"), and a taken name must neither block the patient's uploaders nor
        # have its key replaced.
        doc = setups.registry.load()
        taken = set(doc["accounts"]) | pending_names(doc, "account")
        n = 1
        while (f"{patient_name}.ns-gw{n}" in taken
               or self.node.wallet.exists(f"{patient_name}.ns-gw{n}.1")):
            n += 1
        name = f"{patient_name}.ns-gw{n}"
        key = generate("ed25519")
        org, org_key = org_account(self.node)
        gid, stx = keyed_account_tx(self.node, "gateway", [key], sponsor=(org, [org_key]))
        gw = Identity(name, gid, "gateway", (f"{name}.1",))
        # the key is saved before the ledger sees the gateway (node/pending.py); a name
        # taken meanwhile refuses it with nothing written
        setups.make(Entry("account", name, gid, "gateway", gw.key_names),
                    {f"{name}.1": key}, lambda: stx)
        bind_device(self.node, patient.id, keys_of(self.node, patient, [0]), gid)
        self._bind(list(nightscout_secret_digests(secret)), "upload", patient, name)
        return gw

    def add_reader(self, reader_name: str, patient_name: str, token: str) -> None:
        """Bind a read token (or secret) to a reader account and the patient it follows."""
        reader = identity(self.node, reader_name)
        patient = identity(self.node, patient_name)
        self._bind([token, *nightscout_secret_digests(token)], "read", patient, reader.name)

    def authenticate(self, api_secret: str | None, token: str | None) -> Binding:
        """The binding of the presented credential; AuthenticationError if none matches."""
        for presented in (api_secret.strip().lower() if api_secret else None, token):
            if not presented:
                continue
            hit = self._bindings.get(credential_hash(presented).hex())
            if hit is not None:
                return self._live(
                    Binding(hit["role"], bytes.fromhex(hit["patient"]), hit["account"]))
        if api_secret or token:
            raise AuthenticationError("the api-secret (SHA-1 hex of your secret) or token is "
                                      "not known here: check the uploader's secret")
        raise AuthenticationError("send the api-secret header (SHA-1 hex of your API secret) "
                                  "or ?token=")

    def viewer(self, binding: Binding) -> bytes:
        """The account whose display preferences (units) a credential's app shows: the
        patient's for her uploader secret, the reader's own for a reader token. Raises
        NotFoundError when the reader's account is gone."""
        if binding.role == "read":
            return identity(self.node, binding.account).id
        return binding.patient

    def knows(self, presented: str) -> bool:
        """Whether ``presented`` (as a client sends it) is a credential bound here."""
        return credential_hash(presented.strip().lower()).hex() in self._bindings

    def binding_of(self, stored: bytes) -> Binding:
        """The binding stored under a credential hash (a JWT's subject). Raises
        AuthenticationError when it is gone."""
        hit = self._bindings.get(stored.hex())
        if hit is None:
            raise AuthenticationError("the access token behind this JWT is no longer known "
                                      "here: ask the patient for a new one")
        return self._live(Binding(hit["role"], bytes.fromhex(hit["patient"]), hit["account"]))

    def _live(self, binding: Binding) -> Binding:
        """``binding``, unless it is an uploader secret whose gateway the patient revoked or
        unbound (``device.revoke``, ``device.unbind``): from that block the secret neither
        uploads nor reads (it read as the patient herself, so a lost phone's secret would
        read every stream with no window). Raises PermissionDeniedError."""
        if binding.role != "upload":
            return binding
        self.node.refresh()  # a revocation or a new gateway by another process counts now
        gw = self._gw_ids.get(binding.account)
        if gw is None:
            try:
                gw = self._gw_ids[binding.account] = identity(self.node, binding.account).id
            except NotFoundError:
                pass
        record = None if gw is None else get_uploader(self.node.state, gw)
        if record is None or record["status"] != "active":
            raise PermissionDeniedError(
                f"this uploader secret's gateway ({binding.account}) was revoked by the "
                "patient: it no longer uploads or reads; make a new uploader secret in the "
                "portal and enter it in the app", code="revoked_device")
        if record["patient"] != binding.patient:
            raise PermissionDeniedError(
                f"this uploader secret's gateway ({binding.account}) is no longer bound to "
                "its patient: it no longer uploads or reads; bind it again or make a new "
                "uploader secret", code="unbound_device")
        return binding

    # --- uploads ---------------------------------------------------------------------------
    def _key(self, patient: bytes, collection: str, key: str) -> bytes:
        return identity_tag(self._dedup_key, patient, collection, key)

    def doc_id(self, patient: bytes, collection: str, key: str) -> str:
        return self._key(patient, collection, key)[:12].hex()

    def upload(self, binding: Binding, collection: str, body: Any, now_ms: int
               ) -> list[dict[str, Any]]:
        """Store a POST body; return the stored documents with ``_id`` (Nightscout's echo).

        Blocks until the documents are committed; ``post`` is the same without the wait.
        """
        return self.post(binding, collection, body, now_ms).result()

    def post(self, binding: Binding, collection: str, body: Any, now_ms: int,
             *, replace: bool = False) -> Future[list[dict[str, Any]]]:
        """Check a POST body now and queue it; the future gives what ``upload`` returns.

        Per document (interop/nsaccept.py): every document is judged here, before anything
        is queued; refused ones are logged for the patient (``refusals``) and answered in
        place, the others stored, and the answer has one element per document sent. Raises
        at once only for a body that is not a POST body at all (MalformedError) or a read
        token (PermissionDeniedError). The future fails with RejectedError / SignatureError /
        StorageError when the ledger or the vault refused the batch.

        ``replace`` (a v1 PUT, Nightscout's ``save``; a v3 update): a document that carries
        the ``_id`` of a document of this patient is the next version of *that* document,
        even when its identity fields changed (Loop moving a carb entry in time): the old
        content is superseded, not kept beside the new one. An unknown ``_id`` is an upsert.
        """
        self._may_upload(binding)
        outcomes = nsaccept.parse_each(collection, body, now_ms)
        return self.post_judged(binding, collection, outcomes, now_ms, replace=replace)

    @staticmethod
    def _may_upload(binding: Binding) -> None:
        if binding.role != "upload":
            raise PermissionDeniedError("this token may read (through a grant), not upload; "
                                        "uploaders use their own API secret")

    def post_judged(self, binding: Binding, collection: str,
                    outcomes: list[nsaccept.Outcome], now_ms: int, *, replace: bool = False,
                    batches: list[Batch] | None = None) -> Future[list[dict[str, Any]]]:
        """``post`` for a body already judged (``outcomes``, and the accepted documents'
        ``batches`` when already built): an HTTP worker's checked upload, re-checked by
        node/checked.py ``accept_checked``. Same answers, same refusals as ``post``."""
        return self._enqueue(binding, collection, outcomes, now_ms, replace, batches).future

    def landing(self, binding: Binding, collection: str, doc: Any, now_ms: int,
                target: str | None = None) -> Landing | None:
        """The document already here that ``doc`` (one document, as ``post_one`` takes it;
        ``target``: the ``_id`` it replaces) would be the next version of, or None (it would
        be new, or is refused). Reads no document: the vault's tags and the ledger's versions
        only, so a create that checks it costs no read of the patient's data."""
        self._may_upload(binding)
        [outcome] = nsaccept.parse_each(collection, [doc], now_ms)
        if not isinstance(outcome, nsaccept.Accepted):
            return None
        patient = binding.patient
        head = self._head(patient, collection, self._key(patient, collection,
                                                         outcome.doc.key), target)
        if head not in self._stored([head]):
            return None
        n, deleted = self.versions.current(patient, head)
        ctag = self.versions.content_tag(patient, head, n, outcome.doc)
        return Landing(head[:12].hex(), n, deleted, ctag in self._stored([ctag]))

    def post_one(self, binding: Binding, collection: str, doc: Any, now_ms: int,
                 *, replace: bool = False, guard: bool = False,
                 pin: tuple[str, int] | None = None) -> Future[tuple[dict[str, Any], bool]]:
        """``post`` of one document (API v3's create and update): its answer, and whether
        it landed on a document already here (its identity, or the ``_id`` it replaces
        with ``replace``, was stored before: a repeat, a change, a deleted document written
        again), which Nightscout v3 answers as ``isDeduplication`` (200, not 201). Decided
        where the document is stored, so a re-send that arrives while the first is still
        being stored (a client's timeout) is a deduplication too.

        ``guard``: the caller checked the change against the document ``landing`` named
        (``pin``: its ``_id`` and version; None: it found none to change); if, when stored,
        the document changes another document or version (another request stored one in
        between), it is refused, nothing stored, with a message to send it again.

        The permission check is ``_enqueue``'s: ``parse_each`` of one document raises
        nothing and touches nothing (interop/nsaccept.py is pure), so a reader token is
        refused there before anything is logged or queued."""
        post = self._enqueue(binding, collection, nsaccept.parse_each(collection, [doc], now_ms),
                             now_ms, replace, None, guard=guard, pin=pin)
        out: Future[tuple[dict[str, Any], bool]] = Future()

        def done(f: Future[list[dict[str, Any]]]) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result((f.result()[0], bool(post.existed) and post.existed[0]))

        post.future.add_done_callback(done)
        return out

    def _enqueue(self, binding: Binding, collection: str, outcomes: list[nsaccept.Outcome],
                 now_ms: int, replace: bool, batches: list[Batch] | None, *,
                 guard: bool = False, pin: tuple[str, int] | None = None) -> _Post:
        self._may_upload(binding)
        refused = [ns_refusal(now_ms, binding.account, collection, i, o)
                   for i, o in enumerate(outcomes) if isinstance(o, nsaccept.Refused)]
        self.refusals.add(binding.patient, refused)
        docs = [o.doc for o in outcomes if isinstance(o, nsaccept.Accepted)]
        post = _Post(binding, collection, outcomes, docs,
                     [self._key(binding.patient, collection, d.key) for d in docs], now_ms,
                     batches_of(docs, now_ms) if batches is None else batches,
                     [o.target if replace else None for o in outcomes
                      if isinstance(o, nsaccept.Accepted)], guard=guard, pin=pin,
                     replace=replace)
        if not docs:
            post.future.set_result(post.answer())
            return post
        self._pipeline.put(post)
        return post

    def _store(self, posts: list[_Post]) -> None:
        """The pipeline's step: store a group of POSTs as one ingest group (one block).

        Each accepted document is new (its identity tag is not in the vault: stored, with its
        identity and content tags), a repeat (its content tag for the current version is
        held: Nightscout's deduplication, answered, not stored again) or a change (stored as
        batches of its own, then recorded as the next version by ``doc.version``, signed by
        the POST's gateway; node/nsversions.py). New documents become one batch per stream
        and POST; batches are signed by the gateway with consecutive sequence numbers. A
        document claimed by an earlier POST of the group waits for the next round.

        A change's tags (its content tag; a move's new identity tag) are attached to its
        batch only after the ledger accepted its ``doc.version``: a refused version leaves
        no tag behind, so its identity stays free and a retry is a change again, not a
        repeat. (A crash between the two makes a retry one more version of the same
        content: a duplicate in the history, never a lost edit.)
        """
        for p in posts:
            patient = p.binding.patient
            p.heads = [self._head(patient, p.collection, k, t) for k, t in zip(
                p.ids, p.targets or [None] * len(p.ids), strict=True)]
            p.current = [self.versions.current(patient, h) for h in p.heads]
            p.ctags = [self.versions.content_tag(patient, h, n, d)
                       for h, (n, _), d in zip(p.heads, p.current, p.docs, strict=True)]
        stored = self._stored([k for p in posts for k in (*p.ids, *p.heads, *p.ctags)])
        stored |= self._unnamed_heads([p for p in posts if p.replace], stored)
        for p in posts:
            p.existed = [h in stored for h in p.heads]
        claimed: set[bytes] = set()  # documents earlier POSTs of this group store
        work: list[tuple[_Post, list[Any], list[tuple[int, int, list[bytes], list[Any]]]]] = []
        later: list[_Post] = []
        for p in posts:
            if claimed.intersection(p.heads) or claimed.intersection(p.ids):
                later.append(p)  # wait for their outcome: stored, or not
                continue
            claimed.update(p.heads)
            claimed.update(p.ids)
            new: list[int] = []
            changed: list[int] = []
            moved: dict[int, bytes] = {}
            seen: set[bytes] = set()
            for j, (k, h, (_, deleted), c) in enumerate(zip(p.ids, p.heads, p.current,
                                                            p.ctags, strict=True)):
                if h in seen:  # two changes of one document in one upload (by _id)
                    p.late[j] = InputError(
                        f"{p.collection}: two documents of this upload change the document "
                        f"{h[:12].hex()}; send one change per document")
                    continue
                seen.add(h)
                if h not in stored:
                    new.append(j)
                    continue
                if self.versions.canonical(p.binding.patient, k) != h:  # a move
                    if k in stored:
                        p.late[j] = self._taken(p, j)
                        continue
                    moved[j] = k
                if deleted or c not in stored:
                    if p.guard and (h[:12].hex(), p.current[j][0]) != p.pin:
                        p.late[j] = self._raced(p, j)
                        continue
                    changed.append(j)
            if p.late:
                self.refusals.add(p.binding.patient, [
                    Refusal(p.now_ms, p.binding.account, p.collection, i, e.message)
                    for i, e in self._late_indexes(p)])
            try:
                if len(new) != len(p.docs):
                    p.batches = batches_of([p.docs[j] for j in new], p.now_ms)
                jobs = self._queue(p, p.batches,
                                   [t for j in new for t in (p.ids[j], p.ctags[j])])
                changes = []
                for j in changed:
                    n = p.current[j][0] + 1
                    tag = self.versions.content_tag(p.binding.patient, p.heads[j], n, p.docs[j])
                    tags = [tag, moved[j]] if j in moved else [tag]
                    # The version's tags are attached only after the ledger accepts it.
                    changes.append((j, n, tags, self._queue(p, batches_of(
                        [self.versions.as_version(p.docs[j], n)], p.now_ms), [])))
            except GlucoledgerError as exc:
                p.future.set_exception(exc)
                continue
            work.append((p, jobs, changes))
        self.ingest.drain()
        for p, jobs, changes in work:
            try:
                for job in jobs:
                    self.ingest.wait(job)
                gw, key = self._gateway(p.binding.account)
                for j, n, tags, change in changes:
                    cts = [self.ingest.wait(job).ct for job in change]
                    self.versions.record(gw.id, [key], p.binding.patient, p.heads[j], n, cts,
                                         moved=p.ids[j])
                    self.ingest.vault.add_tags([(t, cts[0]) for t in tags])
            except GlucoledgerError as exc:
                p.future.set_exception(exc)
                continue
            p.future.set_result(p.answer())
        if later:
            self._store(later)

    def _stored(self, tags: list[bytes]) -> set[bytes]:
        """Which of ``tags`` a committed batch holds. Every attempt of this pipeline settles
        before the next round, so a batch still pending here is an earlier attempt whose
        commit failed (a full disk, a lost quorum): its documents were never acknowledged
        (503) and are stored again when retried, not answered as repeats."""
        return set(self.ingest.committed_owners(tags))

    def _unnamed_heads(self, posts: list[_Post], stored: set[bytes]) -> set[bytes]:
        """The documents the replacing documents of ``posts`` (a v1 PUT, a v3 update) are
        versions of that the vault knows no identity of: records not uploaded through
        Nightscout (a device's upload, an import), read as documents all the same
        (``ns.identity_of``). Without this a PUT of one stored the new content beside it:
        two documents under one ``_id``. Found by opening the batches of each document's
        instant: only for a replacement whose document is not in the vault."""
        found: set[bytes] = set()
        for p in posts:
            patient = p.binding.patient
            for doc, head, own in zip(p.docs, p.heads, p.ids, strict=True):
                if head in stored or head != own:
                    continue
                streams = STREAMS_OF[p.collection]
                for entry in batches_in(self.node.state, patient, streams, doc.time_ms,
                                        doc.time_ms + 1):
                    if erased_key(entry[0]) in self.node.state:
                        continue  # listed by an older chain's index after an erasure
                    try:
                        items = self.access._batch(entry[0]).items
                    except NotFoundError:  # another member's batch: not in this vault
                        continue
                    if any(r.time_ms == doc.time_ms and r.ns is None
                           and ns.identity_of(r) == (p.collection, doc.key, 1) for r in items):
                        found.add(head)
                        break
        return found

    def _head(self, patient: bytes, collection: str, own: bytes, target: str | None
              ) -> bytes:
        """The document a document sent is a version of: the one whose ``_id`` a PUT named
        (``target``), else the one its identity belongs to (itself, unless moved there)."""
        canon = self.versions.canonical(patient, own)
        if target is None:
            return canon
        hit = self._by_id(patient, collection, target)
        return canon if hit is None else self.versions.canonical(patient, hit)

    def _by_id(self, patient: bytes, collection: str, doc_id: str) -> bytes | None:
        """The identity tag of this patient's document with ``_id`` ``doc_id`` in a stream
        of ``collection``, or None (a PUT with an unknown ``_id`` is an upsert)."""
        try:
            prefix = bytes.fromhex(doc_id)
        except ValueError:
            return None
        if len(prefix) != 12:
            return None
        for tag, row in self.ingest.vault.tags_from(prefix).items():
            if row.patient == patient and row.stream in STREAMS_OF[collection] \
                    and len(tag) == 32:
                return tag
        return None

    @staticmethod
    def _taken(p: _Post, j: int) -> InputError:
        return InputError(
            f"{p.collection}: this change moves document {p.heads[j][:12].hex()} to the "
            f"identity (time and type) of another document, {p.ids[j][:12].hex()}, which "
            "stays as it is: delete that one first, or keep the time")

    @staticmethod
    def _raced(p: _Post, j: int) -> InputError:
        return InputError(
            f"{p.collection}: the document {p.heads[j][:12].hex()} this one lands on was "
            "changed by another request while this one was on its way, so what cannot be "
            "modified was not checked against it: nothing was stored; send it again")

    @staticmethod
    def _late_indexes(p: _Post) -> list[tuple[int, InputError]]:
        """(index in the body sent, error) of the documents refused when stored."""
        out = []
        j = 0
        for i, o in enumerate(p.outcomes):
            if isinstance(o, nsaccept.Accepted):
                if j in p.late:
                    out.append((i, p.late[j]))
                j += 1
        return out

    def _queue(self, p: _Post, batches: list[Batch], tags: list[bytes]) -> list[Any]:
        gw, key = self._gateway(p.binding.account)
        seq = max(self._next_seq.get(gw.id, 0), self.ingest.next_seq(gw.id))
        jobs = []
        for i, b in enumerate(batches):
            # vouched: our gateway does not sign; our data.commit signature vouches (one
            # node signature per upload: state/data.py, format 2)
            up = prepare_upload(self.node.chain, p.binding.patient, gw.id, seq, b, key,
                                vouched=True)
            # The document tags go with the first batch: kept if it is committed.
            jobs.append(self.ingest.submit(up, commit=False, tags=tags if i == 0 else ()))
            seq += 1
        self._next_seq[gw.id] = seq
        return jobs

    def _patient(self, patient: bytes) -> Identity:
        try:
            return identity(self.node, patient.hex())
        except NotFoundError:
            raise PermissionDeniedError("the patient this uploader secret is bound to has no "
                                        "account on this node any more; ask the operator"
                                        ) from None

    def _gateway(self, name: str) -> tuple[Identity, Any]:
        hit = self._gw_keys.get(name)
        if hit is None:
            gw = identity(self.node, name)
            hit = (gw, keys_of(self.node, gw)[0])
            self._gw_keys[name] = hit
        return hit

    # --- reads -------------------------------------------------------------------------------
    def _reader(self, binding: Binding) -> Identity:
        """Who reads for the credential: the uploader's own secret reads its patient's data
        (xDrip+ treatment download, Trio's fetches, Loop's profile import) as the patient
        herself, signed with her custodial key and audited like her own reads; a reader's
        token as the reader."""
        if binding.role in _AS_PATIENT:
            self._live(binding)  # again at each read: a socket outlives its first check
            return self._patient(binding.patient)
        return identity(self.node, binding.account)

    def _streams(self, binding: Binding, collection: str, reader: Identity) -> tuple[str, ...]:
        """The streams a read of ``collection`` asks for: all of them for the patient, the
        ones a reader's active grants name (at least the first: its denial says why)."""
        wanted = STREAMS_OF[collection]
        if binding.role in _AS_PATIENT:
            return wanted
        granted = {s for g in grants_of(self.node.state, binding.patient, reader.id)
                   if g.status == "active" for s in g.streams}
        return tuple(s for s in wanted if s in granted) or wanted[:1]

    def _permitted(self, binding: Binding, reader: Identity, streams: tuple[str, ...],
                   now_ms: int) -> list[tuple[int, int]] | None:
        """The spans ``[from, to)`` a reader's active raw grants of ``streams`` let her read
        now (None: the patient's own credential, no bound; [] none); a relative window
        (``last_days``) a minute shorter at its start, as it moves on by the time a read is
        ordered. A narrowed read stays inside them: one wholly outside would be denied
        (``outside_window``) where the wider read it stands for is permitted and clipped."""
        if binding.role in _AS_PATIENT:
            return None
        return [(lo + (60_000 if "last_days" in g.window else 0), hi)
                for g in grants_of(self.node.state, binding.patient, reader.id)
                if g.active_at(now_ms) and g.view == "raw" and set(streams) <= set(g.streams)
                for lo, hi in [granted_span(g.window, None, now_ms)]]

    def _release(self, binding: Binding, collection: str, query: ns.Query
                 ) -> list[tuple[bytes, tuple[Record, ...]]]:
        """The records the credential may read, batch by batch (ciphertext hash, records);
        the read is ordered and audited first (write-ahead)."""
        reader = self._reader(binding)
        keys = keys_of(self.node, reader, [0] if binding.role in _AS_PATIENT else None)
        streams = self._streams(binding, collection, reader)
        window = None
        if query.start_ms is not None or query.end_ms is not None:
            lo = max(0, query.start_ms or 0)
            hi = query.end_ms if query.end_ms is not None else (1 << 53)
            window = {"from": lo, "to": max(hi, lo + 1)}
        req = Request(binding.patient, streams, "raw", window)
        release = self.access.read_as(reader.id, keys, req)
        assert isinstance(release, RawRelease)
        g = release.grounds
        out = []
        for ct in g.batches:  # the permitted batches, through the access service's cache
            # (stream, records) before the clinical issue's access service, a batch object
            # with ``items`` after it: either way the decrypted records of the batch.
            got: Any = self.access._batch(ct)
            items = got[1] if isinstance(got, tuple) else got.items
            out.append((ct, tuple(r for r in items if g.start_ms <= r.time_ms < g.end_ms)))
        return out

    def _found(self, binding: Binding, collection: str, records: list[Record]
               ) -> list[ns.Found]:
        return self._named(binding, self._unnamed(collection, records))

    @staticmethod
    def _unnamed(collection: str, records: list[Record]) -> list[ns.Found]:
        return [f for f in with_deltas(ns.docs_from_records(records))
                if f.collection == collection]

    def _named(self, binding: Binding, found: list[ns.Found]) -> list[ns.Found]:
        # _id as POST echoed it: the keyed hash of the document's Nightscout identity (of
        # its first identity, when a change moved it: node/nsversions.py).
        return [ns.Found(f.collection, f.key, f.time_ms,
                         dict(f.doc, _id=self.tag_of(binding.patient, f.collection,
                                                     f.key)[:12].hex()))
                for f in found]

    def tag_of(self, patient: bytes, collection: str, key: str) -> bytes:
        """The tag naming the document content of Nightscout identity ``key`` belongs to."""
        return self.versions.canonical(patient, self._key(patient, collection, key))

    def read(self, binding: Binding, collection: str, query: ns.Query
             ) -> list[dict[str, Any]]:
        """Documents of ``collection`` the reader's grant allows (the uploader's secret: its
        patient's own documents), each at its last version; every read is audited.

        Raises PermissionDeniedError (denied by consent: audited), AuthenticationError.
        """
        return [f.doc for f in self._select(binding, collection, query)]

    def _select(self, binding: Binding, collection: str, query: ns.Query) -> list[ns.Found]:
        narrow = self._newest(binding, collection, query)
        if narrow is not None:
            found = self._select_in(binding, collection, narrow)
            if len(found) == narrow.count:
                return found[:query.count]
            # Fewer than the state's count promised (a record superseded by a newer version
            # of its document): the whole window, in a second audited read.
        return self._select_in(binding, collection, query)

    def _newest(self, binding: Binding, collection: str, query: ns.Query) -> ns.Query | None:
        """A query for the newest ``count`` documents since a time and nothing else (a
        follower's poll, in Nightscout's default window of 4 days; for entries, of type sgv
        or of any type), narrowed to start at the latest hour that holds one more of them
        than asked (the reading before the oldest gives its ``delta``): the read then
        decrypts, renders and lists in its audit record the few batches it answers from, not
        every batch of the window. None for any other query, when the narrower window would
        be the same, or when it would lie after every span a reader's grants allow."""
        streams = _COUNTED.get(collection)
        met = _MET_BY_ALL.get(collection, frozenset())
        if (streams is None or query.either or not met.issuperset(query.where)
                or query.start_ms is None or query.end_ms is not None):
            return None
        start = newest_start(self.node.state, binding.patient, streams, query.start_ms,
                             query.count + 1)
        if start <= query.start_ms:
            return None
        reader = self._reader(binding)
        allowed = self._permitted(binding, reader, self._streams(binding, collection, reader),
                                  int(time.time() * 1000))
        if allowed and all(start >= hi for _, hi in allowed):
            return None
        return replace(query, start_ms=start, count=query.count + 1)

    def _select_in(self, binding: Binding, collection: str, query: ns.Query
                   ) -> list[ns.Found]:
        by_ct = self._release(binding, collection, query)
        records = self.access.current(binding.patient, by_ct)
        if any(c.field.split(".", 1)[0] == "_id" for c in (*query.where, *query.either)):
            return ns.select(self._found(binding, collection, records), query)
        # An _id is a keyed hash per document: name only the ones the query keeps (a follower
        # asking for the newest reading names one document, not the whole window's).
        return self._named(binding, ns.select(self._unnamed(collection, records), query))

    def follow(self, binding: Binding, collection: str, since_ms: int, before: Followed | None
               ) -> tuple[list[dict[str, Any]] | None, list[tuple[int, int]], Followed]:
        """A feed's next read of ``collection`` from ``since_ms`` on (a socket's
        ``dataUpdate``), after the read that saw ``before`` (None: a first read, of the whole
        window). Returns the documents read (None: nothing can have changed, so nothing was
        read and no access was recorded), the time spans ``[from, to)`` they were read from,
        and what this read saw (to pass as ``before`` next time).

        A document the feed may hold changes only with a new batch (a reading, a dose, an
        edit's new content), a new version (an edit, a deletion, a move; by any process or
        member: ``edits``) or an erasure. So the read covers the new batches' hours and the
        hours of the batches of every version of each changed document (its first, by the
        vault's identity tag, and its changes' ``doc.version`` batches): in at most
        ``_MAX_SPANS`` reads (each audited), else one from the earliest of them on. It reads
        the whole window when a batch left the window before its time (an erasure), when the
        changes are no longer all known (``EditLog``'s bounds), or when a changed document
        is not in this node's vault. Raises PermissionDeniedError (the read's denial,
        audited), AuthenticationError.
        """
        patient, reader = binding.patient, self._reader(binding)
        streams = self._streams(binding, collection, reader)
        edits, changed = self.edits.since(patient, -1 if before is None else before.edits)
        whole = [(since_ms, _FAR)]
        if collection == "profile":  # the newest, of any age: the stream's mark, not its index
            seen = Followed({}, edits, self.ingest.vault.mark(patient, streams))
            if (before is not None and before.mark == seen.mark and changed is not None
                    and not self._in_streams(changed, streams)):
                return None, [], seen
            return self.read(binding, collection, _feed_query(collection, 0, _FAR)), whole, seen
        held = {e[0]: (e[2], e[3]) for e in batches_in(
            self.node.state, patient, streams, since_ms, _FAR)}
        seen = Followed({ct: end for ct, (_, end) in held.items()}, edits)
        spans = whole
        if (before is not None and changed is not None
                and all(ct in held or end <= since_ms for ct, end in before.batches.items())):
            where = self._where(patient, changed, held)
            if where is not None:
                where += [span for ct, span in held.items() if ct not in before.batches]
                allowed = self._permitted(binding, reader, streams, int(time.time() * 1000))
                if allowed:  # none: read, so the denial says why
                    where = [(max(lo, a), min(hi, b)) for lo, hi in where for a, b in allowed
                             if max(lo, a) < min(hi, b)]
                if not where:
                    return None, [], seen
                spans = _merged(where, since_ms)
        docs = [d for lo, hi in spans
                for d in self.read(binding, collection, _feed_query(collection, lo, hi))]
        return docs, spans, seen

    def _in_streams(self, docs: list[bytes], streams: tuple[str, ...]) -> bool:
        """Whether any of the changed documents ``docs`` (tags) was first uploaded in one of
        ``streams``, or is not in this node's vault (so it may be)."""
        owners = self.ingest.vault.tag_owners(sorted(set(docs)))
        return any(doc not in owners or owners[doc].stream in streams for doc in docs)

    def _where(self, patient: bytes, docs: list[bytes], held: dict[bytes, tuple[int, int]]
               ) -> list[tuple[int, int]] | None:
        """Where in the window (the spans of ``held`` batches) the changed documents ``docs``
        (tags) are, in every version: the batch holding the first (the vault's identity
        tag) and those of the changes (``doc.version``). None when a document's first
        batch is not in this node's vault (uploaded through another member)."""
        if not docs:
            return []
        owners = self.ingest.vault.tag_owners(sorted(set(docs)))
        spans = []
        for doc in set(docs):
            first = owners.get(doc)
            if first is None:
                return None
            cts = [first.ct, *(ct for v in versions_of(self.node.state, patient, doc)
                               for ct in v["cts"])]
            spans += [held[ct] for ct in cts if ct in held]
        return spans

    def delete(self, binding: Binding, collection: str, query: ns.Query
               ) -> dict[str, Any]:
        """Delete the documents ``query`` finds (by ``find[_id]``, or any find): each gets a
        deletion as its next version, signed by the uploader's gateway; nothing is erased.
        Answers as Nightscout does: ``{"n": deleted, "ok": 1}``.

        Raises PermissionDeniedError (a reader token), RejectedError (the ledger refused).
        """
        if binding.role != "upload":
            raise PermissionDeniedError("a reader token cannot delete; the uploader's own "
                                        "API secret can")
        gw, key = self._gateway(binding.account)
        n = 0
        for f in self._select(binding, collection, query):
            tag = self.tag_of(binding.patient, collection, f.key)
            version, deleted = self.versions.current(binding.patient, tag)
            if not deleted:
                self.versions.record(gw.id, [key], binding.patient, tag, version + 1, [])
                n += 1
        return {"n": n, "ok": 1}

    def history(self, binding: Binding, collection: str, doc_id: str) -> list[dict[str, Any]]:
        """Every version of the document with ``_id`` ``doc_id``, oldest first, for the
        patient (her uploader's secret, or her own session through ``patient_binding``):
        who made each (account id), when (block height and time), the ledger transaction,
        and the document (None for a deletion). Raises NotFoundError."""
        if binding.role not in _AS_PATIENT:
            raise PermissionDeniedError("only the patient sees every version of a document")
        by_ct = self._release(binding, collection, ns.Query(count=ns.MAX_COUNT))
        for _ct, records in by_ct:
            for f in self._found(binding, collection, list(records)):
                if f.doc["_id"] == doc_id:
                    tag = self.tag_of(binding.patient, collection, f.key)
                    return self.versions.history(binding.patient, by_ct, collection, tag)
        raise NotFoundError(f"no {collection} document with _id {doc_id[:24]!r} here")


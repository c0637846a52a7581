"""Nightscout v1 on a node: who a credential is, uploads into the vault, reads through consent.

Credentials (``<data>/nightscout.json``, holding only ``crypto.legacy.credential_hash`` of
what a client presents, never a secret):

- an *uploader secret* is bound to one patient and one gateway account (kind ``gateway``,
  sponsored by the node's organization, bound by the patient, its key custodial in the
  wallet). Uploaders send ``api-secret: sha1hex(secret)`` (or sha512hex); what they upload
  becomes ``gateway-attested`` batches through the ingest service. It cannot read.
- a *reader token* (``?token=`` or ``api-secret``) is bound to a reader account (clinician,
  caregiver...) and one patient; each read is an ``access`` request signed with the reader's
  custodial keys, decided by ``decide`` and audited like any other read (node/access.py).

Deduplication as Nightscout does it (interop/nightscout.py): a document whose identity was
stored before is not stored again; POST echoes it with its ``_id``. The node remembers
identities as HMAC-SHA-256 under a key derived from the master key (``<data>/nightscout.db``),
so the index reveals no reading times to someone holding only the folder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..crypto import generate
from ..crypto.hashing import hmac_sha256
from ..crypto.legacy import credential_hash, nightscout_secret_digests
from ..errors import (
    AuthenticationError,
    GlucoledgerError,
    InputError,
    PermissionDeniedError,
)
from ..glucose.readings import parse_batch
from ..interop import nightscout as ns
from ..state.consent import Request, grants_of
from ..vault.batch import prepare_upload
from .access import AccessService, RawRelease
from .accounts import AddressBook, Identity, identity, keys_of
from .devices import bind_device, create_keyed_account, org_account
from .ingest import IngestService
from .service import Node

__all__ = ["STREAMS_OF", "Binding", "NightscoutService"]

#: Which streams each collection is read from.
STREAMS_OF: dict[str, tuple[str, ...]] = {
    "entries": ("cgm", "smbg", "notes"),
    "treatments": ("insulin", "carbs", "smbg", "notes"),
    "devicestatus": ("notes",),
    "profile": ("settings",),
}


@dataclass(frozen=True)
class Binding:
    role: str  # "upload" | "read"
    patient: bytes
    account: str  # gateway name (upload) or reader name (read)


class NightscoutService:
    def __init__(self, node: Node, ingest: IngestService, access: AccessService) -> None:
        self.node = node
        self.ingest = ingest
        self.access = access
        self.path = node.data_dir / "nightscout.json"
        self._mu = threading.Lock()
        self._seq_mu: dict[bytes, threading.Lock] = defaultdict(threading.Lock)
        self._next_seq: dict[bytes, int] = {}
        self._bindings = self._load()
        self._dedup_key = hmac_sha256(node.master, b"glucoledger nightscout dedup v1")
        self._db = sqlite3.connect(node.data_dir / "nightscout.db", check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (k BLOB PRIMARY KEY)")
        self._db_mu = threading.Lock()
        self._gw_keys: dict[str, Any] = {}

    def close(self) -> None:
        self._db.close()

    # --- credentials -----------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._bindings, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def _bind(self, forms: list[str], role: str, patient: Identity, account: str) -> None:
        if any(len(f) < 12 for f in forms):
            raise InputError("a Nightscout secret or token has at least 12 characters")
        with self._mu:
            for f in forms:
                self._bindings[credential_hash(f).hex()] = {
                    "role": role, "patient": patient.id.hex(), "account": account}
            self._save()

    def add_uploader(self, patient_name: str, secret: str) -> Identity:
        """Bind an uploader secret to the patient through a new gateway account."""
        patient = identity(self.node, patient_name)
        if patient.kind != "patient":
            raise InputError(f"{patient_name} is a {patient.kind}, not a patient")
        if len(secret) < 12:
            raise InputError("a Nightscout API secret has at least 12 characters")
        book = AddressBook(self.node)
        n = sum(1 for i in book.all() if i.name.startswith(f"{patient_name}.ns-gw"))
        name = f"{patient_name}.ns-gw{n + 1}"
        key = generate("ed25519")
        org, org_key = org_account(self.node)
        gid = create_keyed_account(self.node, "gateway", [key], sponsor=(org, [org_key]))
        self.node.wallet.save(f"{name}.1", key)
        gw = Identity(name, gid, "gateway", (f"{name}.1",))
        book.add(gw)
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
                return Binding(hit["role"], bytes.fromhex(hit["patient"]), hit["account"])
        if api_secret or token:
            raise AuthenticationError("the api-secret (SHA-1 hex of your secret) or token is "
                                      "not known here: check the uploader's secret")
        raise AuthenticationError("send the api-secret header (SHA-1 hex of your API secret) "
                                  "or ?token=")

    # --- uploads ---------------------------------------------------------------------------
    def _key(self, patient: bytes, collection: str, key: str) -> bytes:
        return hmac_sha256(self._dedup_key, patient + b"|" + collection.encode() + b"|"
                           + key.encode())

    def doc_id(self, patient: bytes, collection: str, key: str) -> str:
        return self._key(patient, collection, key)[:12].hex()

    def _seen(self, keys: list[bytes]) -> set[bytes]:
        if not keys:
            return set()
        with self._db_mu:
            found: set[bytes] = set()
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                rows = self._db.execute(
                    f"SELECT k FROM seen WHERE k IN ({','.join('?' * len(part))})", part)
                found.update(bytes(r[0]) for r in rows)
            return found

    def upload(self, binding: Binding, collection: str, body: Any, now_ms: int
               ) -> list[dict[str, Any]]:
        """Store a POST body; return the stored documents with ``_id`` (Nightscout's echo).

        All or nothing per request: every document is validated before anything is stored.
        Raises InputError subclasses (bad documents), PermissionDeniedError (a read token),
        RejectedError / SignatureError from ingest.
        """
        if binding.role != "upload":
            raise PermissionDeniedError("this token may read (through a grant), not upload; "
                                        "uploaders use their own API secret")
        docs = ns.parse_docs(collection, body)
        ids = [self._key(binding.patient, collection, d.key) for d in docs]
        seen = self._seen(ids)
        fresh = [(d, k) for d, k in zip(docs, ids, strict=True) if k not in seen]
        by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for d, _ in fresh:
            for stream, item in d.items:
                by_stream[stream].append(item)
        batches = [parse_batch(s, items, now_ms=now_ms) for s, items in by_stream.items()]
        if batches:
            self._ingest(binding, batches)
            with self._db_mu:
                self._db.executemany("INSERT OR IGNORE INTO seen (k) VALUES (?)",
                                     [(k,) for _, k in fresh])
        return [dict(d.echo, _id=k[:12].hex()) for d, k in zip(docs, ids, strict=True)]

    def _gateway(self, name: str) -> tuple[Identity, Any]:
        hit = self._gw_keys.get(name)
        if hit is None:
            gw = identity(self.node, name)
            hit = (gw, keys_of(self.node, gw)[0])
            self._gw_keys[name] = hit
        return hit

    def _ingest(self, binding: Binding, batches: list[Any]) -> None:
        gw, key = self._gateway(binding.account)
        jobs = []
        with self._seq_mu[gw.id]:
            seq = max(self._next_seq.get(gw.id, 0), self.ingest.next_seq(gw.id))
            for b in batches:
                up = prepare_upload(self.node.chain, binding.patient, gw.id, seq, b, key)
                jobs.append(self.ingest.submit(up, commit=False))
                seq += 1
            self._next_seq[gw.id] = seq
        errors: list[GlucoledgerError] = []
        for job in jobs:
            try:
                self.ingest._wait(job)
            except GlucoledgerError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # --- reads -------------------------------------------------------------------------------
    def read(self, binding: Binding, collection: str, query: ns.Query
             ) -> list[dict[str, Any]]:
        """Documents of ``collection`` the reader's grant allows; every read is audited.

        Raises PermissionDeniedError (an upload secret; or denied by consent: audited),
        AuthenticationError.
        """
        if binding.role != "read":
            raise PermissionDeniedError("an uploader secret only uploads; to read, use a "
                                        "reader token bound to an account with a grant")
        reader = identity(self.node, binding.account)
        wanted = STREAMS_OF[collection]
        granted = {s for g in grants_of(self.node.state, binding.patient, reader.id)
                   if g.status == "active" for s in g.streams}
        streams = tuple(s for s in wanted if s in granted) or wanted[:1]
        window = None
        if query.start_ms is not None or query.end_ms is not None:
            lo = max(0, query.start_ms or 0)
            hi = query.end_ms if query.end_ms is not None else (1 << 53)
            window = {"from": lo, "to": max(hi, lo + 1)}
        req = Request(binding.patient, streams, "raw", window)
        with self._seq_mu[reader.id]:  # consecutive nonces: one request at a time
            env = self.access.request(reader.id, keys_of(self.node, reader), req).raw
            release = self.access.read(env)
        assert isinstance(release, RawRelease)
        found = [f for f in ns.docs_from_records(release.records) if f.collection == collection]
        # _id as POST echoed it: the keyed hash of the document's Nightscout identity.
        return [dict(f.doc, _id=self.doc_id(binding.patient, collection, f.key))
                for f in ns.select(found, query)]

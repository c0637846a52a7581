"""Audited reads: raw readings or signed summaries, released only after the audit is ordered.

How a read is authenticated: the requester signs an ``access`` transaction on her own account
with her next nonce (``access_request``). The state machine checks the signature, that the
keys are the requester's, and the nonce (so a forged request is refused as ``bad_signature``
or ``not_cosigner``, a replayed one as ``bad_nonce``), then computes the decision itself with
``decide`` at the block's time and records it with the exact batches it covers
(state/access.py). Nobody can claim a decision: it is derived on every node.

Write-ahead: ``AccessService.read`` first submits the envelope; ``Node.submit`` returns only
after the orderer durably appended it and the block holding it was stored. Only then does it
read the recorded decision from the applied state, and only for a permit does it open the
listed batches. A refused or denied request raises and releases nothing; either way the
request is on the ledger (a refused one in the log with its reason code, a denied one with its
decision in the patient's audit trail). Reads made for a credential at the edge go through
``read_as`` and its ``ReadGuard`` (node/readguard.py): past the credential's read budget
nothing is signed or ordered (429), and an identical request denied a moment ago is answered
from that denial's record instead of being ordered again (counted, and in the security log).

Releases:
- ``view "raw"``: the records in the permitted streams and window, decrypted for the
  requester; or, when the request names ``wrap_to`` (an X25519 public key), sealed under a
  fresh key that is wrapped to it with HPKE (RFC 9180), so the node hands over only a box.
- ``view "summary"``: the consensus CGM metrics (glucose.metrics) of the permitted window
  and the AGP percentile profile (glucose.agp, aggregate only: no daily profile, no
  reading; withheld below ``MIN_PROFILE_DAYS`` days with data, where a bin's median would
  be a reading). Under a summary grant (whole UTC days only: state/consent.py
  ``_check_days``) a day counts only when its readings cover at least 70 % of it
  (``sufficient_days``), so a day of a few readings gives no numbers. With the
  commitments they were computed from (data.commit tx hashes and ciphertext hashes) and
  the node's signature (context ``"summary"``) over all of it.
- A raw release of CGM data carries the same summary (unsigned), computed from exactly the
  released values, so a report built from raw data and one from a summary agree. It is
  computed when first asked for (``RawRelease.summary``): a Nightscout read, which shows
  records only, never computes it.

Which values count (one rule for both views, glucose/timeline.py): the batches are taken in
upload order (the log index of their ``data.commit``), and for one record type and instant
the later upload supersedes the earlier one, so a raw read releases exactly the values the
summary counted. The summary's window is the permitted window itself (the period asked,
intersected with the grant), never the span of the data; each CGM reading's nominal interval
is its uploading device's (by the model the maker registered), or the median spacing of its
batch when the model is unknown (a gateway, an unlisted sensor).

Which documents count (one rule for every release and the Nightscout reads,
node/nsversions.py ``is_current``): a Nightscout document edited, moved or deleted
(``doc.version``, state/versions.py) counts only as its last version: the records of earlier
versions, of a deleted document and of a change the ledger refused are left out of the
summary, the raw records, the AGP, the reports and FHIR, exactly as a Nightscout reader sees
the document now. The patient's own raw read also lists them apart (``RawRelease.history``),
so she can see and prove every version; nobody else's does.

Computed metrics are cached (``AccessService(summaries=N)``, in memory only): a summary is a
pure function of the batches it covers (content-addressed by their ciphertext hashes, in the
order the access record lists them), of each batch's upload order and interval (fixed when
the batch is first opened), of the window and of which records the version rule leaves out
(a deletion adds no batch), so the cache key is exactly (view, ciphertext hashes, from, to,
records left out) and a hit returns the same Summary and profile, bit for bit, that
computing them again would. A new upload in the window is a new batch (a new key); an
erasure empties the cache (``forget``), and a summary whose records were read before an
erasure is not kept (it may be over erased batches). The access itself is still ordered,
audited and signed on every read; only the arithmetic is reused. Reports of whole local days
(node/localdays.py) keep one window all day, so repeated reads of a day hit.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .. import codec
from ..crypto import PrivateKey, PublicKey
from ..crypto.hashing import hmac_sha256
from ..crypto.hpke import hpke_seal
from ..crypto.seal import new_key, seal
from ..errors import (
    InputError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
)
from ..glucose.agp import Agp, compute_agp
from ..glucose.metrics import SUFFICIENT_ACTIVE_BP, Summary, summarize
from ..glucose.readings import CgmReading, Record
from ..glucose.timeline import interval_for_model, median_spacing_ms, resolve
from ..ledger.tx import SignedTx, Transaction, sign
from ..state.access import access_key, batches_in, erased_key, released_digest
from ..state.consent import DAY_MS, Request, load_grant
from ..state.devices import device_key
from ..vault.store import Vault
from .nsversions import (
    DEDUP_CONTEXT,
    DocRef,
    doc_refs,
    has_versions,
    is_current,
    superseded,
)
from .service import Node
from .settled import SETTLE_MS, Days, Fixed, SettledDays

if TYPE_CHECKING:
    from .readguard import ReadGuard

__all__ = ["AccessDeniedError", "AccessRefusedError", "AccessService", "RawRelease",
           "SealedRelease", "SignedSummary", "access_request"]

SUMMARY_CONTEXT = "summary"


class AccessDeniedError(PermissionDeniedError):
    """The request was authentic and is audited, but ``decide`` denied it (``code``)."""

    def __init__(self, message: str, *, code: str, tx_hash: bytes) -> None:
        super().__init__(message, code=code)
        self.tx_hash = tx_hash


class AccessRefusedError(PermissionDeniedError):
    """The state machine refused the request itself (forged, replayed, malformed): ``code``."""

    def __init__(self, message: str, *, code: str, tx_hash: bytes | None) -> None:
        super().__init__(message, code=code)
        self.tx_hash = tx_hash


def access_request(chain: str, requester: bytes, keys: Sequence[PrivateKey], request: Request,
                   nonce: int) -> SignedTx:
    """The requester's side: sign an ``access`` transaction for ``request``."""
    return sign(Transaction(chain, "access", {"request": request.to_value()}, requester, nonce),
                keys)


@dataclass(frozen=True, slots=True)
class Grounds:
    """What every release carries: the audit record that allowed it."""

    access_tx: bytes
    patient: bytes
    requester: bytes
    grant: bytes
    emergency: bool
    start_ms: int
    end_ms: int
    commits: tuple[bytes, ...]
    batches: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RawRelease:
    grounds: Grounds
    records: tuple[Record, ...]
    #: The patient's own read only: the records in the window that no longer count (earlier
    #: versions of edited or moved Nightscout documents, deleted ones), in upload order.
    history: tuple[Record, ...] = ()
    #: Computes ``summary`` from exactly the released readings, on first use: a Nightscout
    #: read, which shows records only, never pays for the metrics.
    summarize: Callable[[], Summary | None] = field(default=lambda: None, repr=False,
                                                   compare=False)
    _summary: list[Summary | None] = field(default_factory=list, repr=False, compare=False)

    @property
    def summary(self) -> Summary | None:
        """The consensus metrics of the released CGM readings (None without CGM
        readings)."""
        if not self._summary:
            self._summary.append(self.summarize())
        return self._summary[0]


@dataclass(frozen=True, slots=True)
class SealedRelease:
    """Records sealed for the requester: ``box`` under a fresh key, wrapped with HPKE.

    Open with ``hpke_open(x25519_private, wrapped_key, "release", access_tx)`` then
    ``open_sealed(key, box, "release", access_tx)``; the plaintext is canonical CBOR of
    ``{"records": [record values]}``.
    """

    grounds: Grounds
    wrapped_key: bytes
    box: bytes


@dataclass(frozen=True, slots=True)
class SignedSummary:
    grounds: Grounds
    summary: Summary
    node_key: PublicKey
    signature: bytes
    #: The AGP percentile profile (aggregate only: ``days`` is empty).
    profile: Agp

    def statement(self) -> bytes:
        return summary_statement(self.grounds, self.summary, self.profile)

    def verify(self, node_key: PublicKey) -> Summary:
        """Raise SignatureError unless ``node_key`` signed this summary; return it."""
        node_key.verify(SUMMARY_CONTEXT, self.statement(), self.signature)
        return self.summary


def summary_statement(g: Grounds, summary: Summary, profile: Agp) -> bytes:
    return codec.encode({"access": g.access_tx, "patient": g.patient, "requester": g.requester,
                         "grant": g.grant, "from": g.start_ms, "to": g.end_ms,
                         "commits": list(g.commits), "batches": list(g.batches),
                         "summary": summary.to_value(), "profile": profile.to_value()})


@dataclass(frozen=True, slots=True)
class _Batch:
    """A decrypted batch: its stream, records, upload order (log index), CGM interval and
    the Nightscout documents its records belong to (node/nsversions.py)."""

    stream: str
    items: tuple[Record, ...]
    order: int
    interval_ms: int
    refs: tuple[DocRef, ...] = ()


def _weight(batch: _Batch) -> int:
    """What a batch counts against the cache's budget: its records, plus one for the batch
    itself (measured 2026-12-04: a reading of a day batch holds 0.92 KB, a one-reading
    batch 1.31 KB)."""
    return len(batch.items) + 1


class _Uploads(NamedTuple):
    """The records of a release's window that count, each with its batch's CGM interval
    (upload order); those the version rule leaves out; and where they were (batch, record
    indexes), which is part of a computed summary's cache key."""

    counted: list[tuple[Record, int]]
    withheld: list[Record]
    dropped: tuple[tuple[bytes, tuple[int, ...]], ...]


#: The decrypted-batch cache's budget (``_weight``): about 519 day batches of a 5-minute
#: sensor (about 140 MB), or 75,000 one-reading batches, 65 patients' 4 days of uploads one
#: reading at a time (about 100 MB).
READ_CACHE_RECORDS: Final = 150_000


class AccessService:
    """Audited reads. ``cache`` keeps decrypted batches holding up to that many records (and
    one more a batch: ``_weight``) in memory (never on disk), least recently read dropped
    first, so repeated reads of the same weeks skip decryption and parsing; ``forget`` drops
    batches (the erasure service calls it). The budget is in records, not batches: a phone
    uploading each reading as it comes makes 1,152 one-reading batches in the 4 days a
    follower polls, and a budget of 512 batches made every such poll decrypt them all again
    (a read walks its batches in order, and the least recently read is always the next one
    wanted)."""

    def __init__(self, node: Node, vault: Vault, *, cache: int = READ_CACHE_RECORDS,
                 summaries: int = 256, guard: ReadGuard | None = None) -> None:
        from .readguard import ReadGuard

        self.node = node
        self.vault = vault
        #: the per-credential read budget and the memory of repeated denials (``read_as``)
        self.guard = guard or ReadGuard(node)
        self._cache: OrderedDict[bytes, _Batch] = OrderedDict()
        self._cache_size = cache
        self._cache_records = 0  # records in the cache
        self._computed: OrderedDict[_Key, _Computed] = OrderedDict()
        self._computed_size = summaries
        self._computed_lock = threading.Lock()
        self._erasures = 0  # calls of ``forget``: a summary is kept only if none came between
        self._dedup = hmac_sha256(node.master, DEDUP_CONTEXT)
        #: what a summary grant counts of each day, fixed by its first release
        self.settled = SettledDays(node)

    def forget(self, cts: Sequence[bytes] | None = None) -> None:
        if cts is None:
            self._cache.clear()
            self._cache_records = 0
        for ct in cts or ():
            gone = self._cache.pop(ct, None)
            if gone is not None:
                self._cache_records -= _weight(gone)
        with self._computed_lock:  # a summary over erased batches must not outlive them
            self._computed.clear()
            self._erasures += 1

    def _cached(self, key: _Key) -> _Computed | None:
        with self._computed_lock:
            hit = self._computed.get(key)
            if hit is not None:
                self._computed.move_to_end(key)
            return hit

    def _keep(self, key: _Key, value: _Computed, erasures: int) -> None:
        """Keep a computed summary, unless batches were forgotten (erased) since its records
        were read (``erasures``: ``self._erasures`` then): it may be over erased batches."""
        if not self._computed_size:
            return
        with self._computed_lock:
            if erasures != self._erasures:
                return
            self._computed[key] = value
            while len(self._computed) > self._computed_size:
                self._computed.popitem(last=False)

    def _batch(self, ct: bytes) -> _Batch:
        hit = self._cache.get(ct)
        if hit is not None:
            self._cache.move_to_end(ct)
            return hit
        row = self.vault.by_ct(ct)
        # strict=False: the GCM tag authenticated the plaintext this node encoded; skip the
        # canonical re-scan (measured: the hottest step of a first read, README)
        _salt, batch = self.vault.open(row, strict=False)
        value = _Batch(row.stream, batch.items, row.tx_index or 0,
                       self._interval(row.uploader, batch.items),
                       doc_refs(self._dedup, row.patient, batch.items))
        if self._cache_size and ct not in self._cache:
            self._cache[ct] = value
            self._cache_records += _weight(value)
            while self._cache_records > self._cache_size:
                self._cache_records -= _weight(self._cache.popitem(last=False)[1])
        return value

    # --- the requester side, for custodial clients (CLI, demo) --------------------------
    def request(self, requester: bytes, keys: Sequence[PrivateKey], request: Request) -> SignedTx:
        return access_request(self.node.chain, requester, keys, request,
                              self.node.next_nonce(requester))

    def read_as(self, requester: bytes, keys: Sequence[PrivateKey], request: Request
                ) -> RawRelease | SealedRelease | SignedSummary:
        """``read`` of a request signed here with custodial keys, built and ordered under the
        requester's account lock (``Node.account_lock``): concurrent reads of one account take
        consecutive nonces. Raises as ``read`` does.

        Every read made for a credential at the node's edge (REST, portal, FHIR, Nightscout
        and its socket feeds) comes through here, and meets ``guard`` (node/readguard.py)
        first: RateLimitedError past the (requester, patient) read budget, nothing signed
        or ordered; RepeatedDenialError for an identical request denied a moment ago,
        answered from that denial's record without a new transaction."""
        self.guard.spend(requester, request.patient)
        with self.node.account_lock(requester):  # identical requests meet one after another
            self.guard.repeated(requester, request)
            try:
                return self.read(self.request(requester, keys, request).raw)
            except AccessDeniedError as exc:
                self.guard.denied(requester, request, exc)
                raise

    # --- the audited read ------------------------------------------------------------------
    def authorize(self, envelope: bytes) -> tuple[Grounds, dict[str, Any]]:
        """Order the access request; return its grounds if the ledger recorded a permit.

        Raises AccessRefusedError (forged, replayed or malformed: refused by the machine and
        kept in the log), AccessDeniedError (authentic but denied; in the audit trail),
        InputError (not an access request for this chain: nothing ordered).
        """
        stx = SignedTx.decode(envelope)
        if stx.tx.type != "access" or stx.tx.chain != self.node.chain:
            raise InputError(f"expected an access request for chain {self.node.chain!r}")
        receipt = self.node.submit([stx.raw])[0]  # durable and applied when this returns
        if not receipt.ok:
            raise AccessRefusedError(
                f"access request refused ({receipt.result.code}): {receipt.result.message}; "
                f"it is recorded in the log at index {receipt.index} and nothing was released",
                code=receipt.result.code, tx_hash=receipt.tx_hash)
        record = self.node.state.get(access_key(stx.tx_hash))
        if record is None:  # pragma: no cover - an accepted access always records
            raise NotFoundError("the access record is missing from the state")
        decision = record["decision"]
        if decision["decision"] != "permit":
            raise AccessDeniedError(
                f"access denied ({decision['reason']}): {decision['message']} "
                f"(audited as {stx.tx_hash.hex()[:16]})", code=decision["reason"],
                tx_hash=stx.tx_hash)
        if "digest" in record:
            commits, batches = self._released(record, stx.tx_hash, receipt.index)
        else:
            commits, batches = tuple(record["commits"]), tuple(record["batches"])
        if any(self._erased_before(ct, record["height"]) for ct in batches):
            kept = [(c, ct) for c, ct in zip(commits, batches, strict=True)
                    if not self._erased_before(ct, record["height"])]
            commits, batches = tuple(c for c, _ in kept), tuple(ct for _, ct in kept)
        grounds = Grounds(stx.tx_hash, record["patient"], record["requester"],
                          decision["grant"], record["emergency"], decision["from"],
                          decision["to"], commits, batches)
        return grounds, record

    def _released(self, record: dict[str, Any], access_tx: bytes, index: int
                  ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """The (commits, batches) a format-2 access record commits to (state/access.py).

        They are the index's batches of the permitted window, less those whose
        ``data.commit`` was ordered after the access (log index above ``index``): the
        index only grows by appends in log order, so the rest are exactly what the handler
        saw, in the same order. Checked against the record's count and digest; a batch
        erased since is missing, and the read is refused (nothing released)."""
        decision = record["decision"]
        entries = batches_in(self.node.state, record["patient"], decision["streams"],
                             decision["from"], decision["to"])
        if len(entries) != record["released"] or released_digest(entries) != record["digest"]:
            found = self.node.store.find_results([e[1] for e in entries])
            entries = [e for e in entries
                       if any(t.idx < index and t.decoded_result().ok
                              for t in found.get(e[1], []))]
        if len(entries) != record["released"] or released_digest(entries) != record["digest"]:
            raise NotFoundError(
                f"{record['released']} batches were permitted, but some of them were erased "
                f"after the read was ordered (audited as {access_tx.hex()[:16]}): nothing "
                "was released; read again")
        return tuple(e[1] for e in entries), tuple(e[0] for e in entries)

    def _erased_before(self, ct: bytes, height: int) -> bool:
        """Whether batch ``ct`` was erased by the block at ``height`` (a read's). Before state
        rule set 4 an erasure of part of a batch's range left it filed under its other hours
        (state/access.py ``_erase``), so reads of those hours list it: its blob and key are
        gone, and it has nothing to release."""
        mark = self.node.state.get(erased_key(ct))
        return mark is not None and mark["height"] <= height

    def _interval(self, uploader: bytes, items: Sequence[Record]) -> int:
        """The nominal CGM interval (ms) of a batch: its device model's, else the median
        spacing of its CGM readings."""
        device = self.node.state.get(device_key(uploader))
        model = device.get("model") if isinstance(device, dict) else None
        known = interval_for_model(model if isinstance(model, str) else None)
        if known is not None:
            return known
        return median_spacing_ms(sorted({r.time_ms for r in items if isinstance(r, CgmReading)}))

    def _uploads(self, grounds: Grounds, streams: Sequence[str], days: Days | None = None
                 ) -> _Uploads:
        """The records in the window, in upload order: those that count (with their batch's
        CGM interval) and those the version rule (``is_current``) leaves out. ``days``:
        a summary grant's read, which counts each day as it was first released
        (node/settled.py)."""
        state = self.node.state
        counted: list[tuple[Record, int]] = []
        withheld: list[Record] = []
        dropped: list[tuple[bytes, tuple[int, ...]]] = []
        batches = sorted(((ct, self._batch(ct)) for ct in grounds.batches),
                         key=lambda cb: cb[1].order)
        lo, hi = grounds.start_ms, grounds.end_ms
        for ct, b in batches:
            if b.stream not in streams:  # pragma: no cover - the index is per stream
                continue
            if days is not None:
                left = self._settled(grounds.patient, ct, b, days, lo, hi, counted, withheld)
                if left:
                    dropped.append((ct, left))
                continue
            gone = superseded(state, grounds.patient, ct, b.refs)
            if gone:
                dropped.append((ct, tuple(sorted(gone))))
                for i, r in enumerate(b.items):
                    if lo <= r.time_ms < hi:
                        if i in gone:
                            withheld.append(r)
                        else:
                            counted.append((r, b.interval_ms))
            else:
                counted.extend((r, b.interval_ms) for r in b.items if lo <= r.time_ms < hi)
        return _Uploads(counted, withheld, tuple(dropped))

    def _settled(self, patient: bytes, ct: bytes, b: _Batch, days: Days, lo: int, hi: int,
                 counted: list[tuple[Record, int]], withheld: list[Record]) -> tuple[int, ...]:
        """``_uploads`` of one batch for a summary grant, into ``counted`` and ``withheld``:
        of each settled day in ``[lo, hi)``, the records of a batch ordered before the day's
        first release, as the versions recorded before it left them; nothing of a day an
        erasure touched after it. Returns the indexes the version rule left out."""
        state = self.node.state
        versioned = {ref.index: ref for ref in b.refs if has_versions(state, ref)}
        rules: dict[int, tuple[bool, Fixed | None]] = {}  # day: (counts, fixed by)
        for day in {r.time_ms // DAY_MS for r in b.items}:
            fixed = days.first.get(day)
            rules[day] = (days.counts(day) and (fixed is None or b.order < fixed.index), fixed)
        if not versioned and all(ok for ok, _ in rules.values()):  # most batches: all of it
            counted.extend((r, b.interval_ms) for r in b.items if lo <= r.time_ms < hi)
            return ()
        left: list[int] = []
        for i, r in enumerate(b.items):
            if not lo <= r.time_ms < hi:
                continue
            ok, fixed = rules[r.time_ms // DAY_MS]
            if not ok:
                continue  # not settled, erased since, or ordered after its first release
            ref = versioned.get(i)
            if ref is not None and not is_current(state, patient, ct, ref,
                                                  self.settled.before(fixed)):
                left.append(i)
                withheld.append(r)
            else:
                counted.append((r, b.interval_ms))
        return tuple(left)

    def current(self, patient: bytes, by_ct: Sequence[tuple[bytes, Sequence[Record]]]
                ) -> list[Record]:
        """The records among ``by_ct`` (batch ciphertext hash, some of its records as
        ``_batch`` opened them) that count under the version rule: what a Nightscout reader
        sees now. The Nightscout reads (node/nightscout.py) use this, the releases
        ``_uploads``: one rule."""
        state = self.node.state
        out: list[Record] = []
        for ct, records in by_ct:
            b = self._batch(ct)
            # by value, not identity: the batch may have been opened again since ``records``
            # were taken from it (the cache is bounded); a record's annex names its document
            gone = {b.items[i] for i in superseded(state, patient, ct, b.refs)}
            out.extend(r for r in records if r not in gone)
        return out

    def read(self, envelope: bytes) -> RawRelease | SealedRelease | SignedSummary:
        """Order the request (write-ahead), then release what its recorded permit allows."""
        grounds, record = self.authorize(envelope)
        decision = record["decision"]
        request = Request.from_value(record["request"])
        if decision["view"] == "summary":
            return self._summary(grounds, decision["streams"], record["time"])
        erasures = self._erasures  # before the batches are read: see _keep
        uploads = self._uploads(grounds, decision["streams"])
        records = list(resolve(r for r, _ in uploads.counted).records)
        if request.wrap_to is not None:
            key = new_key()
            payload = codec.encode({"records": [r.to_value() for r in records]})
            return SealedRelease(grounds,
                                 hpke_seal(request.wrap_to, key, "release", grounds.access_tx),
                                 seal(key, payload, "release", grounds.access_tx))
        history = tuple(uploads.withheld) if grounds.requester == grounds.patient else ()
        return RawRelease(grounds, tuple(records), history,
                          functools.partial(self._metrics, grounds, uploads, erasures))

    def _metrics(self, grounds: Grounds, uploads: _Uploads, erasures: int) -> Summary | None:
        """The metrics of the CGM readings that count over the window, or None.
        ``erasures``: ``forget``'s count when the records were read."""
        key = ("raw", grounds.batches, grounds.start_ms, grounds.end_ms, uploads.dropped, ())
        hit = self._cached(key)
        if hit is not None:
            return hit[0]
        summary = _metrics_of(grounds, uploads.counted)
        self._keep(key, (summary, None), erasures)
        return summary

    def _summary(self, grounds: Grounds, streams: Sequence[str], time_ms: int
                 ) -> SignedSummary:
        """The signed summary of a permitted read ordered at ``time_ms``."""
        erasures = self._erasures
        grant = None if grounds.grant == b"owner" else load_grant(self.node.state, grounds.grant)
        start, end = grounds.start_ms, grounds.end_ms
        if grant is not None and grant.view == "summary":
            # under a summary grant each day counts as first released (node/settled.py),
            # once settled, and only with enough data (``sufficient_days``); a day still
            # settling counts for nothing and stays in the window, as a day of too few
            # readings does: "the last 14 days" stay 14 days, 13 of them with data
            view = "summary/days"
            days = self.settled.days(grounds.patient, time_ms, streams)
            uploads = self._uploads(grounds, streams, days)
            uploads = uploads._replace(counted=sufficient_days(uploads.counted))
            if days.unsettled_from * DAY_MS <= start:
                raise OutOfRangeError(
                    f"no summary of {_iso(grounds.start_ms)} to {_iso(grounds.end_ms)} yet: "
                    "under a summary grant a UTC day is summarized from "
                    f"{SETTLE_MS // 3_600_000} hours after it ends, when late sensor data "
                    "has arrived, and then stays as first released; ask again later "
                    f"(audited as {grounds.access_tx.hex()[:16]})")
            fixed = days.key(start // DAY_MS, -(-end // DAY_MS))
            erased = [d for d in sorted(days.erased) if start // DAY_MS <= d < -(-end // DAY_MS)]
        else:
            view, fixed, erased = "summary", (), []
            uploads = self._uploads(grounds, streams)
        key = (view, grounds.batches, start, end, uploads.dropped, fixed)
        hit = self._cached(key)
        if hit is not None and hit[0] is not None and hit[1] is not None:
            summary, profile = hit[0], hit[1]
        else:
            computed = _metrics_of(grounds, uploads.counted)
            if computed is None and view == "summary/days":
                gone = "" if not erased else (
                    f"; {', '.join(_iso(d * DAY_MS)[:10] for d in erased)} "
                    f"{'was' if len(erased) == 1 else 'were'} erased in part by the patient "
                    "after being summarized, and "
                    f"{'counts' if len(erased) == 1 else 'count'} for nothing since")
                raise OutOfRangeError(
                    f"no summary of {_iso(grounds.start_ms)} to {_iso(grounds.end_ms)}: under "
                    "a summary grant a day counts only when its CGM readings cover at least "
                    f"{SUFFICIENT_ACTIVE_BP // 100} % of it, and no day of this period does "
                    f"(a summary of a few readings would be those readings){gone}; audited as "
                    f"{grounds.access_tx.hex()[:16]}")
            if computed is None:
                raise OutOfRangeError(
                    f"the permitted window {_iso(grounds.start_ms)} to {_iso(grounds.end_ms)} "
                    "holds no CGM readings to summarize (a summary of the last N days ends at "
                    "the patient's last local midnight: today's readings count from tomorrow, "
                    f"and a raw read shows them now; audited as "
                    f"{grounds.access_tx.hex()[:16]})")
            summary = computed
            # the CGM readings that count, as resolve() keeps them (the later upload per
            # instant, sorted by time), without resolving the other record types
            last: dict[int, CgmReading] = {}
            for r, _ in uploads.counted:
                if isinstance(r, CgmReading):
                    last[r.time_ms] = r
            profile = compute_agp([last[t] for t in sorted(last)]).aggregate()
            self._keep(key, (summary, profile), erasures)
        sig = self.node.node_key.sign(SUMMARY_CONTEXT,
                                      summary_statement(grounds, summary, profile))
        return SignedSummary(grounds, summary, self.node.node_key.public, sig, profile)


#: (view, ciphertext hashes of the batches, from, to, records the version rule left out,
#: a summary grant's fixed days: ``Days.key``): what a computed summary depends on.
_Key = tuple[str, tuple[bytes, ...], int, int, tuple[tuple[bytes, tuple[int, ...]], ...],
             tuple[Any, ...]]
#: (summary or None without CGM readings, aggregate profile for the summary view)
_Computed = tuple[Summary | None, Agp | None]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def sufficient_days(counted: list[tuple[Record, int]]) -> list[tuple[Record, int]]:
    """The records among ``counted`` (upload order, each with its batch's CGM interval) of
    the UTC days whose CGM readings cover at least ``SUFFICIENT_ACTIVE_BP`` of the day (the
    consensus minimum of % active, glucose/metrics.py), weighed as the metrics weigh them
    (the later upload per instant, each reading standing for the time until the next, at
    most its interval). The summary a summary grant releases counts only these days: its
    windows are whole UTC days (state/consent.py ``_check_days``), so differencing two of
    them gives whole days, and a day of one or a few readings, which would be those
    readings, counts for nothing. Deterministic: every node computes the same days."""
    last: dict[int, tuple[CgmReading, int]] = {}
    for r, i in counted:
        if isinstance(r, CgmReading):
            last[r.time_ms] = (r, i)
    times = sorted(last)
    if not times:  # no CGM reading (none uploaded yet, or erased): no day counts
        return []
    covered: dict[int, int] = {}
    for t, following in zip(times, [*times[1:], None], strict=True):
        w = last[t][1] if following is None else min(last[t][1], following - t)
        covered[t // DAY_MS] = covered.get(t // DAY_MS, 0) + w
    need = DAY_MS * SUFFICIENT_ACTIVE_BP // 10_000
    days = {d for d, w in covered.items() if w >= need}
    return [(r, i) for r, i in counted if r.time_ms // DAY_MS in days]


def _metrics_of(grounds: Grounds, uploads: list[tuple[Record, int]]) -> Summary | None:
    """The metrics of the CGM readings among ``uploads`` over the window, or None."""
    cgm = [(r, i) for r, i in uploads if isinstance(r, CgmReading)]
    if not cgm:
        return None
    return summarize([r for r, _ in cgm], start_ms=grounds.start_ms,
                     end_ms=grounds.end_ms, intervals_ms=[i for _, i in cgm])
